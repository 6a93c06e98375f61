#include "ebm/sampling/free_coordinates.h"

namespace ebm {

FreeCoordinatesEnergyImpl::FreeCoordinatesEnergyImpl(EnergyImpl& inner, torch::Tensor rows, torch::Tensor index)
    : inner_(&inner), rows_(std::move(rows)), index_(std::move(index)) {
  TORCH_CHECK(rows_.dim() == 2 && index_.dim() == 1 && index_.numel() >= 1 &&
                  index_.max().item<int64_t>() < rows_.size(1) && index_.min().item<int64_t>() >= 0,
              "FreeCoordinatesEnergy: want rows [B, D] and indices in 0 .. D - 1, got ", rows_.sizes(), " and ",
              index_.sizes());
  index_ = index_.to(rows_.device(), torch::kLong);
}

torch::Tensor FreeCoordinatesEnergyImpl::full(const torch::Tensor& xf) const {
  TORCH_CHECK(xf.dim() == 2 && xf.size(0) == rows_.size(0) && xf.size(1) == index_.numel(),
              "FreeCoordinatesEnergy: want [", rows_.size(0), ", ", index_.numel(), "], got ", xf.sizes());
  return rows_.index_copy(1, index_, xf.to(rows_.scalar_type()));
}

torch::Tensor FreeCoordinatesEnergyImpl::energy(const torch::Tensor& xf) { return inner_->energy(full(xf)); }

}  // namespace ebm
