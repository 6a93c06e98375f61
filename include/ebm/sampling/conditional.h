// Sampling some coordinates given the others: inpainting (the masked pixels
// given the rest), trajectory prediction (the future given the past) and
// denoising (every pixel, optionally anchored to the observation). The
// conditional p(x_free | x_known) is proportional to exp(-E(x)) as a function
// of x_free alone, so any sampler run on the clamped energy below draws from
// it: its fixed coordinates feel no force, whatever they drift to is replaced
// by the known values.
#pragma once

#include <torch/torch.h>

#include "ebm/energy/energy.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

// x -> E(where(free, x, known)) + |free * (x - anchor) / s|^2 / 2 with
// s = anchor_std x anchor_scale (the last term only when anchor_std > 0: the
// Gaussian likelihood of an observation `anchor` with noise of std s, which
// turns E into the posterior energy of denoising; anchor_scale [...event],
// undefined = 1, gives each value its own, as a standardised model's columns
// need). known, anchor: [B, ...event]; free: a bool mask of the same shape,
// or broadcastable to it. dE/dx is zero on the fixed coordinates.
class ClampedEnergyImpl : public EnergyImpl {
 public:
  ClampedEnergyImpl(Energy inner, torch::Tensor known, torch::Tensor free, torch::Tensor anchor = {},
                    double anchor_std = 0.0, torch::Tensor anchor_scale = {});
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor grad(const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return inner_->event_shape(); }
  // The full state: the known values where fixed, x where free.
  torch::Tensor fill(const torch::Tensor& x) const;

 private:
  torch::Tensor anchor_term(const torch::Tensor& x) const;  // [B] (zeros without an anchor)
  Energy inner_;
  torch::Tensor known_, free_, anchor_, anchor_scale_;
  double anchor_std_;
};

struct CompletionOptions {
  CompletionOptions(int64_t steps) : steps_(steps) {}
  TORCH_ARG(int64_t, steps);           // sampler transitions per chain
  TORCH_ARG(int64_t, chains) = 1;      // chains per row; the one of lowest E(x) is kept
  TORCH_ARG(double, anchor_std) = 0;   // > 0: anchor the free coordinates to `known` (denoising)
  TORCH_ARG(torch::Tensor, anchor_scale) = {};  // [...event]: each value's std is anchor_std x this
};

struct Completion {
  torch::Tensor x;       // [B, ...event]: known values kept, free ones sampled
  torch::Tensor energy;  // [B] E(x) of the kept chain (without the anchor term)
  Stats stats;           // the sampler's, over the run
};

// Completes every row of `known` [B, ...event]: `chains` chains per row start
// from `init` ([B * chains, ...event], chains of row i at rows i*chains ..
// (i+1)*chains - 1; only its free coordinates matter) and run `steps`
// transitions of `sampler` on the clamped energy; per row the chain whose
// final E(x) is lowest is returned.
Completion complete(EnergyImpl& energy, Sampler& sampler, const torch::Tensor& known, const torch::Tensor& free,
                    const torch::Tensor& init, const CompletionOptions& options, at::Generator& gen);

}  // namespace ebm
