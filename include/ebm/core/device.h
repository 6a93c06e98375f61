// Devices (DESIGN.md: device is an option, never hard-coded). The library's
// hand-written CPU kernels (raw-pointer loops, AVX-512 sweeps, the fused
// optimiser) run only on CPU tensors and only while fast paths are enabled;
// everything else takes the ATen path, which runs unchanged on any device.
// Tests switch fast paths off to exercise, on the CPU, the path CUDA takes.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

namespace ebm {

// On unless set_fast_paths_enabled(false) or the environment variable
// EBM_FAST_PATHS=0 (read once, at the first call).
bool fast_paths_enabled();
void set_fast_paths_enabled(bool enabled);

// True when a hand-written CPU kernel may take `t`.
inline bool cpu_fast_path(const at::Tensor& t) {
  return t.device().is_cpu() && fast_paths_enabled();
}

// Scoped switch: fast paths off (or on) until the end of the scope.
class FastPathsGuard {
 public:
  explicit FastPathsGuard(bool enabled) : saved_(fast_paths_enabled()) {
    set_fast_paths_enabled(enabled);
  }
  ~FastPathsGuard() { set_fast_paths_enabled(saved_); }
  FastPathsGuard(const FastPathsGuard&) = delete;
  FastPathsGuard& operator=(const FastPathsGuard&) = delete;

 private:
  bool saved_;
};

// "cpu", "cuda" or "cuda:N" -> a device this build and machine can use;
// anything else, or a CUDA device without one, throws kUsage naming it.
c10::Device parse_device(const std::string& spec);

}  // namespace ebm
