// Energies loaded from TorchScript (`ebm sample --energy-script FILE.pt`):
// a module saved by torch.jit.save whose forward maps x [B, D] to E(x) [B].
// scripts/make_script_energy.py writes an example.
//
// Contract checked at load (every failure is one line naming the file):
//   - missing or unreadable file: ExitCode::kMissingInput;
//   - not a TorchScript archive, no forward method, a forward that fails on a
//     probe batch zeros [2, D], or returns anything but a floating tensor of
//     shape [2] (or [2, 1], squeezed to [2]): ExitCode::kBadData with the
//     shape or type received;
//   - D: the module's int attribute `dim` when it has one (an explicit `dim`
//     argument must then agree), else the `dim` argument (> 0); neither:
//     ExitCode::kUsage asking for --dim.
// The module is put in eval() mode and its parameters stop requiring grad
// (sampling builds no graph over them). It computes in its own dtype: that of
// its first floating parameter or buffer (float32 for a typical saved module),
// or the input's dtype when it has none. Inputs of another dtype are cast in
// and the energy cast back, so float64 chains work against a float32 module
// with float32 precision (relative error ~1e-7 in E and dE/dx). grad() is
// LibTorch autograd through forward and the casts.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/energy/energy.h"

namespace ebm {

class ScriptEnergyImpl : public EnergyImpl {
 public:
  // dim = 0: take D from the module's `dim` attribute.
  explicit ScriptEnergyImpl(const std::string& path, int64_t dim = 0);
  // x [B, D] of any floating dtype -> [B] in x's dtype. A forward that
  // returns another shape here (it passed the probe) is kBadData too.
  torch::Tensor energy(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return {dim_}; }
  int64_t dim() const { return dim_; }
  // The dtype forward runs in; undefined (kUndefined) = the input's.
  c10::ScalarType dtype() const { return dtype_; }
  const std::string& path() const { return path_; }
  torch::jit::Module& module() { return module_; }

  // Moves the scripted module with this one (nn::Module::to does not see it).
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

 private:
  // forward on x (already in the module's dtype); the output as [B].
  torch::Tensor run(const torch::Tensor& x, const char* when);
  void refresh_dtype();  // and re-freeze the parameters

  std::string path_;
  torch::jit::Module module_;
  int64_t dim_ = 0;
  c10::ScalarType dtype_ = c10::ScalarType::Undefined;
};
TORCH_MODULE(ScriptEnergy);

}  // namespace ebm
