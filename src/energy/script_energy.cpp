#include "ebm/energy/script_energy.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ebm/core/error.h"

namespace ebm {
namespace {
// LibTorch messages span many lines (backtraces, TorchScript tracebacks): keep
// the line that says what went wrong -- the last "SomeError: ..." (or
// "...Exception: ...") line when there is one, else the first line.
std::string one_line(const std::string& message) {
  std::string best;
  std::istringstream in(message);
  for (std::string line; std::getline(in, line);) {
    if (best.empty() && !line.empty()) best = line;
    // (the interpreter's last "RuntimeError: ...", or a script's own raise,
    // "builtins.ValueError: ...": the user's message, not "The following
    // operation failed in the TorchScript interpreter.")
    const size_t colon = line.find(": ");
    if (colon == std::string::npos || colon == 0 || line[0] == ' ') continue;
    const std::string kind = line.substr(0, colon);
    const bool error_kind = kind.find(' ') == std::string::npos &&
                            (kind.size() >= 5 && (kind.compare(kind.size() - 5, 5, "Error") == 0 ||
                                                  kind.compare(kind.size() - 5, 5, "ption") == 0));
    if (error_kind) best = line.substr(colon + 2);
  }
  return best;
}
}  // namespace

ScriptEnergyImpl::ScriptEnergyImpl(const std::string& path, int64_t dim) : path_(path) {
  std::error_code ec;
  EBM_CHECK_CODE(std::filesystem::is_regular_file(path, ec) && std::ifstream(path).good(),
                 ExitCode::kMissingInput, path, ": energy script not found or not readable");
  try {
    module_ = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    fail(ExitCode::kBadData, path,
         ": not a TorchScript module (save one with torch.jit.save, see "
         "scripts/make_script_energy.py): ",
         one_line(e.what()));
  }
  EBM_CHECK_DATA(module_.find_method("forward").has_value(), path,
                 ": the TorchScript module has no forward method");

  EBM_CHECK_USAGE(dim >= 0, path, ": --dim must be > 0, got ", dim);
  int64_t own_dim = 0;
  if (module_.hasattr("dim")) {
    auto v = module_.attr("dim");
    EBM_CHECK_DATA(v.isInt() && v.toInt() > 0, path,
                   ": the module's `dim` attribute must be a positive int, got ",
                   v.isInt() ? std::to_string(v.toInt()) : v.tagKind());
    own_dim = v.toInt();
    EBM_CHECK_USAGE(dim == 0 || dim == own_dim, path, ": --dim ", dim,
                    " disagrees with the module's dim attribute ", own_dim);
  }
  dim_ = own_dim > 0 ? own_dim : dim;
  EBM_CHECK_USAGE(dim_ > 0, path,
                  ": the module has no int attribute `dim`; give the dimension with --dim");

  module_.eval();
  refresh_dtype();

  torch::NoGradGuard no_grad;
  const auto probe_dtype = dtype_ == c10::ScalarType::Undefined ? torch::kFloat : dtype_;
  run(torch::zeros({2, dim_}, probe_dtype), " on the probe batch zeros [2, D]");
}

void ScriptEnergyImpl::refresh_dtype() {
  // Frozen for sampling (again after a move: to() may give new tensors).
  for (auto p : module_.parameters()) p.requires_grad_(false);
  dtype_ = c10::ScalarType::Undefined;
  for (const auto& t : module_.parameters()) {
    if (t.is_floating_point()) {
      dtype_ = t.scalar_type();
      return;
    }
  }
  for (const auto& t : module_.buffers()) {
    if (t.is_floating_point()) {
      dtype_ = t.scalar_type();
      return;
    }
  }
}

torch::Tensor ScriptEnergyImpl::run(const torch::Tensor& x, const char* when) {
  c10::IValue out;
  try {
    out = module_.forward({x});
  } catch (const std::exception& e) {
    fail(ExitCode::kBadData, path_, ": forward failed", when, " with input ", x.scalar_type(),
         " ", x.sizes(), ": ", one_line(e.what()));
  }
  EBM_CHECK_DATA(out.isTensor(), path_, ": forward must return a tensor E(x) [B], got ",
                 out.tagKind(), when);
  auto e = out.toTensor();
  const int64_t b = x.size(0);
  // [B, 1] is the common nn.Linear(h, 1) head: accepted and squeezed.
  if (e.dim() == 2 && e.size(0) == b && e.size(1) == 1) e = e.squeeze(1);
  EBM_CHECK_DATA(e.dim() == 1 && e.size(0) == b && e.is_floating_point(), path_,
                 ": forward must map [B, D] to a floating tensor [B]; for input [", b, ", ", dim_,
                 "] it returned ", e.scalar_type(), " ", out.toTensor().sizes(), when);
  return e;
}

torch::Tensor ScriptEnergyImpl::energy(const torch::Tensor& x) {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == dim_, path_, ": the energy expects [B, ", dim_,
                 "] input, got ", x.sizes());
  const auto want = dtype_ == c10::ScalarType::Undefined ? x.scalar_type() : dtype_;
  return run(x.to(want), "").to(x.scalar_type());  // [B]
}

void ScriptEnergyImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  EnergyImpl::to(device, dtype, non_blocking);
  module_.to(device, dtype, non_blocking);
  refresh_dtype();
}

void ScriptEnergyImpl::to(torch::Dtype dtype, bool non_blocking) {
  EnergyImpl::to(dtype, non_blocking);
  module_.to(dtype, non_blocking);
  refresh_dtype();
}

void ScriptEnergyImpl::to(torch::Device device, bool non_blocking) {
  EnergyImpl::to(device, non_blocking);
  module_.to(device, non_blocking);
  refresh_dtype();
}

}  // namespace ebm
