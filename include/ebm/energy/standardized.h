// An energy in a user's units over one trained in standardised units:
// E_x(x) = E_u((x - shift) / scale) + sum log scale, so exp(-E_x) has the
// same normaliser as exp(-E_u) and -E_x - log Z is the log-density of x
// (the change of variables' Jacobian included). Model files of runs on
// standardised data load as this (model.h); samplers should run on inner()
// in its own units (their step sizes were tuned there) and map the draws
// back with map().to_user.
#pragma once

#include "ebm/core/affine.h"
#include "ebm/energy/energy.h"

namespace ebm {

class StandardizedEnergyImpl : public EnergyImpl {
 public:
  StandardizedEnergyImpl(Energy inner, AffineMap map);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor grad(const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return inner_->event_shape(); }
  // A class-conditional inner energy's E(x, y) in the user's units (the same
  // constant added), so its p(y | x) is the inner one's; features likewise.
  int64_t num_classes() const override { return inner_->num_classes(); }
  torch::Tensor class_energies(const torch::Tensor& x) override;
  torch::Tensor features(const torch::Tensor& x) override { return inner_->features(map_.to_model(x)); }
  const Energy& inner() const { return inner_; }
  const AffineMap& map() const { return map_; }

 private:
  Energy inner_;
  AffineMap map_;
  double log_det_;
};

// The energy to sample and the map from its units to the user's: the inner
// energy of a StandardizedEnergyImpl, else `energy` itself and the identity.
std::pair<Energy, AffineMap> sampling_view(const Energy& energy);
EnergyImpl& sampling_view(EnergyImpl& energy, AffineMap* map);

}  // namespace ebm
