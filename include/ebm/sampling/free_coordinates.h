// An energy over some coordinates of rows whose other coordinates are held:
// x_f [B, F] -> E(rows_b with x_f at `index`). Moves that change those
// coordinates alone (independence jumps proposed from data rows' same
// columns, sampling/jumps.h) then target the conditional
// p(x_f | the rest) ∝ exp(-E), as inpainting a vector's masked values needs.
#pragma once

#include <torch/torch.h>

#include "ebm/energy/energy.h"

namespace ebm {

class FreeCoordinatesEnergyImpl : public EnergyImpl {
 public:
  // rows [B, D] (their free coordinates are ignored), index [F] (long).
  FreeCoordinatesEnergyImpl(EnergyImpl& inner, torch::Tensor rows, torch::Tensor index);
  torch::Tensor energy(const torch::Tensor& xf) override;
  std::vector<int64_t> event_shape() const override { return {index_.numel()}; }
  // The whole rows [B, D] with xf [B, F] at the free coordinates.
  torch::Tensor full(const torch::Tensor& xf) const;

 private:
  EnergyImpl* inner_;
  torch::Tensor rows_, index_;
};

}  // namespace ebm
