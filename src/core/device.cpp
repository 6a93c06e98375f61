#include "ebm/core/device.h"

#include <ATen/Context.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "ebm/core/error.h"

namespace ebm {
namespace {
std::atomic<int>& fast_paths_flag() {
  static std::atomic<int> flag{[] {
    const char* env = std::getenv("EBM_FAST_PATHS");
    return (env != nullptr && std::strcmp(env, "0") == 0) ? 0 : 1;
  }()};
  return flag;
}
}  // namespace

bool fast_paths_enabled() { return fast_paths_flag().load(std::memory_order_relaxed) != 0; }

void set_fast_paths_enabled(bool enabled) {
  fast_paths_flag().store(enabled ? 1 : 0, std::memory_order_relaxed);
}

c10::Device parse_device(const std::string& spec) {
  const bool cuda = spec == "cuda" || spec.rfind("cuda:", 0) == 0;
  EBM_CHECK_USAGE(spec == "cpu" || cuda, "--device must be cpu, cuda or cuda:N, got '", spec, "'");
  if (!cuda) return c10::Device(c10::kCPU);
  int64_t index = 0;
  if (spec.size() > 5) {
    const std::string digits = spec.substr(5);
    EBM_CHECK_USAGE(!digits.empty() && digits.size() <= 3 &&
                        digits.find_first_not_of("0123456789") == std::string::npos,
                    "--device ", spec, ": expected cuda:N with N a device index");
    index = std::stoll(digits);
  }
  EBM_CHECK_USAGE(at::hasCUDA(), "--device ", spec,
                  ": this build or machine has no CUDA (LibTorch built without it, or no GPU)");
  const int64_t count = int64_t(at::getNumGPUs());
  EBM_CHECK_USAGE(index < count, "--device ", spec, ": only ", count, " CUDA device(s) here");
  return c10::Device(c10::kCUDA, c10::DeviceIndex(index));
}

}  // namespace ebm
