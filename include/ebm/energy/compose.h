// Composition of energies (Du, Li & Mordatch 2020, "Compositional visual
// generation with energy based models"): several energies over the same
// event shape combined into one, itself an Energy that any sampler draws from.
//   and: E(x) = sum_i w_i E_i(x)                 (product of experts; w_i = 1 unless given)
//   or:  E(x) = -logsumexp_i(log pi_i - E_i(x))  (the mixture sum_i pi_i exp(-E_i) when every
//        E_i is normalised; pi = w / sum w, equal unless given)
//   not: E(x) = E_a(x) - w E_b(x)                (two terms; w = 1 unless given)
// A class-conditional model enters at a label through at_labels / LabelledEnergyImpl.
#pragma once

#include <string>
#include <vector>

#include "ebm/energy/energy.h"

namespace ebm {

// "and", "or", "not".
const std::vector<std::string>& compose_ops();

class ComposedEnergyImpl : public EnergyImpl {
 public:
  // Throws (kUsage) on an unknown op, fewer than one term ("not": exactly
  // two), terms of different event shapes, or weights of the wrong count or
  // sign (and/or: >= 0 with a positive sum; not: one weight for E_b, or two).
  ComposedEnergyImpl(std::vector<Energy> terms, std::string op, std::vector<double> weights = {});
  torch::Tensor energy(const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override;
  torch::Tensor grad(const torch::Tensor& x) override { return energy_and_grad(x).second; }
  std::vector<int64_t> event_shape() const override { return terms_.front()->event_shape(); }
  const std::string& op() const { return op_; }
  // The weight of each term as it enters: and w_i; or pi_i; not {1, -w}.
  const std::vector<double>& weights() const { return weights_; }

 private:
  std::vector<Energy> terms_;
  std::string op_;
  std::vector<double> weights_;
};

}  // namespace ebm
