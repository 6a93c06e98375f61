#include "ebm/sampling/conditional.h"

#include "ebm/core/error.h"

namespace ebm {

ClampedEnergyImpl::ClampedEnergyImpl(Energy inner, torch::Tensor known, torch::Tensor free, torch::Tensor anchor,
                                     double anchor_std, torch::Tensor anchor_scale)
    : inner_(std::move(inner)),
      known_(std::move(known)),
      free_(free.to(torch::kBool)),
      anchor_(std::move(anchor)),
      anchor_scale_(std::move(anchor_scale)),
      anchor_std_(anchor_std) {
  TORCH_CHECK(inner_, "ClampedEnergy: no energy");
  TORCH_CHECK(anchor_std_ >= 0, "ClampedEnergy: anchor_std must be >= 0, got ", anchor_std_);
  TORCH_CHECK(anchor_std_ == 0 || anchor_.defined(), "ClampedEnergy: anchor_std without an anchor");
  register_module("inner", inner_);
}

namespace {
// `t` ([B, ...], one row per chain) for rows x: itself, or tiled when x
// holds whole copies of the chains one after another (parallel tempering
// evaluates its temperatures' chains together, [T B, ...]).
torch::Tensor for_rows(const torch::Tensor& t, const torch::Tensor& x) {
  if (!t.defined() || t.size(0) == x.size(0) || (t.size(0) == 1 && x.size(0) >= 1)) return t;
  const int64_t b = t.size(0);
  TORCH_CHECK(b > 0 && x.size(0) % b == 0, "ClampedEnergy: ", x.size(0), " rows for a completion of ", b,
              " chains (a sampler that evaluates a subset of its chains cannot complete rows)");
  std::vector<int64_t> reps(t.dim(), 1);
  reps[0] = x.size(0) / b;
  return t.repeat(reps);
}
}  // namespace

torch::Tensor ClampedEnergyImpl::fill(const torch::Tensor& x) const {
  return torch::where(for_rows(free_, x).to(x.device()), x, for_rows(known_, x).to(x.device(), x.scalar_type()));
}

torch::Tensor ClampedEnergyImpl::anchor_term(const torch::Tensor& x) const {
  if (anchor_std_ == 0) return torch::zeros({x.size(0)}, x.options());
  auto d = (x - for_rows(anchor_, x).to(x.device(), x.scalar_type())) *
           for_rows(free_, x).to(x.device(), x.scalar_type());
  if (anchor_scale_.defined()) d = d / anchor_scale_.to(x.device(), x.scalar_type());
  return d.square().flatten(1).sum(1) / (2 * anchor_std_ * anchor_std_);
}

torch::Tensor ClampedEnergyImpl::energy(const torch::Tensor& x) {
  return inner_->energy(fill(x)) + anchor_term(x);
}

torch::Tensor ClampedEnergyImpl::grad(const torch::Tensor& x) { return energy_and_grad(x).second; }

std::pair<torch::Tensor, torch::Tensor> ClampedEnergyImpl::energy_and_grad(const torch::Tensor& x) {
  auto [e, g] = inner_->energy_and_grad(fill(x));
  const auto mask = for_rows(free_, x).to(x.device(), x.scalar_type());
  g = g * mask;
  if (anchor_std_ > 0) {
    auto d = (x - for_rows(anchor_, x).to(x.device(), x.scalar_type())) * mask;
    // (per value: d / s^2 = (d / scale) / scale / std^2)
    const auto scale = anchor_scale_.defined() ? anchor_scale_.to(x.device(), x.scalar_type()) : torch::Tensor();
    if (scale.defined()) d = d / scale;
    e = e + d.square().flatten(1).sum(1) / (2 * anchor_std_ * anchor_std_);
    g = g + (scale.defined() ? d / scale : d) / (anchor_std_ * anchor_std_);
  }
  return {e, g};
}

Completion complete(EnergyImpl& energy, Sampler& sampler, const torch::Tensor& known, const torch::Tensor& free,
                    const torch::Tensor& init, const CompletionOptions& options, at::Generator& gen) {
  const int64_t b = known.size(0), k = options.chains();
  TORCH_CHECK(k >= 1, "complete: chains must be >= 1, got ", k);
  TORCH_CHECK(options.steps() >= 0, "complete: steps must be >= 0, got ", options.steps());
  TORCH_CHECK(init.size(0) == b * k, "complete: init has ", init.size(0), " rows for ", b, " rows x ", k,
              " chains");
  auto free_b = free.to(torch::kBool).expand_as(known);
  auto known_k = known.repeat_interleave(k, 0);
  auto free_k = free_b.repeat_interleave(k, 0);
  Energy view(Energy(), &energy);  // (aliasing, not owning)
  ClampedEnergyImpl clamped(view, known_k, free_k, options.anchor_std() > 0 ? known_k : torch::Tensor(),
                            options.anchor_std(), options.anchor_scale());
  ChainState state(clamped.fill(init.to(known.scalar_type())));
  Completion out;
  out.stats = sampler.run(clamped, state, options.steps(), gen);
  auto x = clamped.fill(state.x);
  torch::Tensor e;
  {
    torch::NoGradGuard ng;
    e = energy.energy(x).detach();
  }
  // (a non-finite chain never wins)
  auto ek = torch::nan_to_num(e, INFINITY, INFINITY, INFINITY).view({b, k});
  auto best = ek.argmin(1);                                   // [B]
  auto rows = torch::arange(b, best.options()) * k + best;    // [B]
  out.x = x.index_select(0, rows);
  out.energy = e.index_select(0, rows);
  return out;
}

}  // namespace ebm
