#include "ebm/energy/standardized.h"

#include "ebm/core/error.h"

namespace ebm {

StandardizedEnergyImpl::StandardizedEnergyImpl(Energy inner, AffineMap map)
    : inner_(std::move(inner)), map_(std::move(map)) {
  TORCH_INTERNAL_ASSERT(inner_ && map_.defined());
  const auto shape = inner_->event_shape();
  EBM_CHECK_DATA(shape.size() == 1 && map_.shift.numel() == shape[0] && map_.scale.numel() == shape[0],
                 "a change of units needs one shift and scale per coordinate of a vector energy, got ",
                 map_.shift.numel(), " for event shape ", c10::IntArrayRef(shape));
  EBM_CHECK_DATA(torch::isfinite(map_.shift).all().item<bool>() && (map_.scale > 0).all().item<bool>() &&
                     torch::isfinite(map_.scale).all().item<bool>(),
                 "a change of units needs finite shifts and positive finite scales");
  register_module("inner", inner_);
  log_det_ = map_.log_det();
}

namespace {
// (before the change of units, which broadcasts: rows [B, 1] of a 2-D model
// were read as (v, v), and Python's m(x) returned their energies)
void check_rows(const torch::Tensor& x, int64_t d) {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == d, "the energy expects rows [B, ", d, "] (", d,
                 " values each), got ", x.sizes());
}
}  // namespace

torch::Tensor StandardizedEnergyImpl::energy(const torch::Tensor& x) {
  check_rows(x, map_.shift.numel());
  return inner_->energy(map_.to_model(x)) + log_det_;
}

torch::Tensor StandardizedEnergyImpl::class_energies(const torch::Tensor& x) {
  check_rows(x, map_.shift.numel());
  auto e = inner_->class_energies(map_.to_model(x));
  return e.defined() ? e + log_det_ : e;
}

torch::Tensor StandardizedEnergyImpl::grad(const torch::Tensor& x) {
  check_rows(x, map_.shift.numel());
  return map_.grad_to_user(inner_->grad(map_.to_model(x)));
}

std::pair<torch::Tensor, torch::Tensor> StandardizedEnergyImpl::energy_and_grad(const torch::Tensor& x) {
  check_rows(x, map_.shift.numel());
  auto [e, g] = inner_->energy_and_grad(map_.to_model(x));
  return {e + log_det_, map_.grad_to_user(g)};
}

std::pair<Energy, AffineMap> sampling_view(const Energy& energy) {
  if (auto s = std::dynamic_pointer_cast<StandardizedEnergyImpl>(energy)) return {s->inner(), s->map()};
  return {energy, {}};
}

EnergyImpl& sampling_view(EnergyImpl& energy, AffineMap* map) {
  if (auto* s = dynamic_cast<StandardizedEnergyImpl*>(&energy)) {
    if (map) *map = s->map();
    return *s->inner();
  }
  if (map) *map = {};
  return energy;
}

}  // namespace ebm
