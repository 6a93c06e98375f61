// Network helpers shared by the test executables.
#pragma once

#include <torch/torch.h>

#include "ebm/energy/energy.h"

namespace ebm::test_helpers {

// The [energy] and [sampler] tables of the tests' tiny conv energy on
// [1, 8, 8] images (BENCHMARKS.md's igebm-fmnist recipe, scaled down).
inline const char* tiny_conv_image_toml() {
  return R"(
[energy]
name = "conv"
channels = [4, 8]
kernels = [3, 3]
strides = [2, 2]
paddings = [1, 1]
hidden = [16]
[sampler]
steps = 3
step_size = 1.0
noise = 0.005
grad_clip = 0.03
)";
}

// A float64 copy of a float MLP in eval mode (no power-iteration update
// between evaluations), for checking float paths against; net is put in eval
// mode too.
inline MLPEnergy float64_copy(MLPEnergy& net) {
  MLPEnergy ref(net->options());
  net->eval();
  ref->eval();
  ref->to(torch::kDouble);
  torch::NoGradGuard ng;
  auto dst = ref->named_parameters();
  for (const auto& kv : net->named_parameters()) dst[kv.key()].copy_(kv.value());
  auto dst_b = ref->named_buffers();
  for (const auto& kv : net->named_buffers()) dst_b[kv.key()].copy_(kv.value());
  return ref;
}

// E(x, y) = 1/2 |x - m_y|^2 over the flattened event (m [K, D]), E(x) their
// -logsumexp(-.): a class-conditional energy whose every value is known.
// `shape` is the event shape (default [D]).
class ClassQuadratics : public EnergyImpl {
 public:
  explicit ClassQuadratics(torch::Tensor means, std::vector<int64_t> shape = {}) : shape_(std::move(shape)) {
    if (shape_.empty()) shape_ = {means.size(1)};
    m_ = register_parameter("m", std::move(means));
  }
  torch::Tensor energy(const torch::Tensor& x) override { return -torch::logsumexp(-class_energies(x), 1); }
  torch::Tensor class_energies(const torch::Tensor& x) override {
    return 0.5 * (x.flatten(1).unsqueeze(1) - m_.to(x.dtype()).unsqueeze(0)).pow(2).sum(2);  // [B, K]
  }
  int64_t num_classes() const override { return m_.size(0); }
  std::vector<int64_t> event_shape() const override { return shape_; }

 private:
  torch::Tensor m_;
  std::vector<int64_t> shape_;
};

}  // namespace ebm::test_helpers
