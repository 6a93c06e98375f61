// The MLP energy's blocked score-matching losses (denoising_loss,
// sliced_loss): one cache-blocked pass (mlp_blocked.h) gives the mean loss
// and its parameter gradient together.
#include "ebm/core/device.h"
#include "ebm/core/simd.h"
#include "ebm/energy/energy.h"
#include "mlp_internal.h"

namespace ebm {

using namespace detail;

#if EBM_AVX512_KERNELS
// A mean loss with its parameter gradient from a blocked sweep
// (mlp_blocked.h), computed in the forward; backward scales the gradient. A
// backward asked for a graph (create_graph) differentiates the ATen form
// instead, so higher derivatives stay exact. Inputs: the per-row inputs
// (denoising: x, eps, sigma, r; sliced: x, v), then W_0, b_0, ..., W_n, b_n.
struct MLPEnergyImpl::BlockedLossFunction : torch::autograd::Function<BlockedLossFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::TensorList rows,
                               torch::TensorList params, int64_t kind, MLPEnergyImpl* self) {
    const size_t n = params.size() / 2 - 1;
    detail::SwishMLPView view;
    blocked_view(params, rows[0].size(1), view);
    std::vector<torch::Tensor> grads;
    for (size_t i = 0; i <= n; ++i) {
      grads.push_back(torch::empty_like(params[2 * i]));
      grads.push_back(i < n ? torch::empty_like(params[2 * i + 1])
                            : torch::zeros_like(params[2 * i + 1]));  // E's bias: no part in g
    }
    const double prior = self->options_.prior_std();
    const float prior_inv = prior > 0 ? float(1.0 / (prior * prior)) : 0.0f;
    // In parallel, each chunk's mean loss and gradient, then their weighted sum.
    const int64_t batch = rows[0].size(0);
    const auto [chunks, chunk_rows] = row_chunks(batch);
    if (int64_t(self->blocked_ws_.size()) < chunks) self->blocked_ws_.resize(chunks);
    std::vector<std::vector<torch::Tensor>> part(chunks);
    part[0] = grads;
    for (int64_t c = 1; c < chunks; ++c)
      for (const auto& g : grads) part[c].push_back(torch::empty_like(g));
    std::vector<double> losses(chunks);
    for_chunks(chunks, [&](int64_t c) {
      const int64_t r0 = c * chunk_rows, len = std::min(chunk_rows, batch - r0);
      auto at = [&](size_t k) {  // input k from row r0
        return rows[k].data_ptr<float>() + r0 * (rows[k].dim() == 2 ? rows[k].size(1) : 1);
      };
      std::vector<float*> pw(n), pb(n);
      for (size_t i = 0; i < n; ++i)
        pw[i] = part[c][2 * i].data_ptr<float>(), pb[i] = part[c][2 * i + 1].data_ptr<float>();
      float* pwo = part[c][2 * n].data_ptr<float>();
      auto& ws = self->blocked_ws_[c];
      losses[c] = kind == kSliced
                      ? detail::swish_mlp_ssm_blocked(view, at(0), at(1), len, prior_inv, pw, pb, pwo, ws)
                      : detail::swish_mlp_dsm_blocked(view, at(0), at(1), at(2), at(3), len,
                                                      prior_inv, pw, pb, pwo, ws);
    });
    double loss = 0.0;
    for (int64_t c = 0; c < chunks; ++c) {
      const double wc = double(std::min(chunk_rows, batch - c * chunk_rows)) / double(batch);
      loss += wc * losses[c];
      if (chunks == 1) break;
      for (size_t i = 0; i < 2 * n + 1; ++i) {
        if (c == 0)
          grads[i].mul_(wc);
        else
          grads[i].add_(part[c][i], wc);
      }
    }
    std::vector<torch::Tensor> saved(rows.begin(), rows.end());
    for (const auto& p : params) saved.push_back(p);
    ctx->save_for_backward(saved);
    ctx->saved_data["grads"] = grads;
    ctx->saved_data["rows"] = int64_t(rows.size());
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["act"] = int64_t(self->act_);
    ctx->saved_data["prior"] = prior;
    return torch::full({}, loss, rows[0].options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t n_rows = ctx->saved_data["rows"].toInt();
    const std::vector<torch::Tensor> params(saved.begin() + n_rows, saved.end());
    torch::autograd::variable_list out(saved.size() + 2);  // rows, params, kind, self
    const auto& go = grads[0];
    if (!go.defined()) return out;
    // A loss's own backward is seeded with 1: the stored gradient itself,
    // handed over once (the caller may modify what it is given); a repeated
    // backward (retain_graph) differentiates the ATen form as a graph would.
    const bool unit = go.numel() == 1 && go.item<double>() == 1.0;
    if (!torch::GradMode::is_enabled() && ctx->saved_data.count("grads")) {
      auto saved_grads = ctx->saved_data["grads"].toTensorVector();
      if (unit) ctx->saved_data.erase("grads");
      for (size_t i = 0; i < params.size(); ++i)
        out[n_rows + i] = unit ? std::move(saved_grads[i]) : saved_grads[i] * go;
      return out;
    }
    // A graph is wanted, or the gradient was handed over: differentiate the ATen form.
    const bool graph = torch::GradMode::is_enabled();
    torch::AutoGradMode enable(true);
    const auto act = static_cast<Act>(ctx->saved_data["act"].toInt());
    const double prior = ctx->saved_data["prior"].toDouble();
    // g = dE/dx at xt (the base term included), differentiable w.r.t. the params.
    auto score = [&](const torch::Tensor& xt) {
      auto e = reference_energy(xt, params, act);
      auto g = torch::autograd::grad({e.sum()}, {xt}, {}, true, true)[0];
      return prior > 0 ? g + xt / (prior * prior) : g;
    };
    graph_grads(
        [&] {
          if (ctx->saved_data["kind"].toInt() == kSliced) {
            const auto& v = saved[1];
            auto xr = saved[0].detach().requires_grad_(true);
            auto g = score(xr);
            auto q = (torch::autograd::grad({(g * v).sum()}, {xr}, {}, true, true)[0] * v).sum(1);
            return (0.5 * (g * v).sum(1).pow(2) - q).mean();
          }
          const auto &x = saved[0], &eps = saved[1];
          const auto s = saved[2].unsqueeze(1), r = saved[3].unsqueeze(1);
          auto g = score((x + s * eps).requires_grad_(true));
          return (0.5 * (r * g - (s / r) * eps).pow(2).sum(1)).mean();
        },
        go, params, out, n_rows, graph);
    if (!graph)  // as the handed-over gradient: detached, zeros where unused
      for (size_t i = 0; i < params.size(); ++i) {
        auto& o = out[n_rows + i];
        if (o.defined())
          o = o.detach();
        else if (params[i].requires_grad())
          o = torch::zeros_like(params[i]);
      }
    return out;
  }
};
#endif

torch::Tensor MLPEnergyImpl::denoising_loss(const torch::Tensor& x, const torch::Tensor& eps,
                                            const torch::Tensor& sigma, const torch::Tensor& r) {
  return blocked_loss(kDenoising, {x, eps, sigma, r});
}

torch::Tensor MLPEnergyImpl::sliced_loss(const torch::Tensor& x, const torch::Tensor& v) {
  return blocked_loss(kSliced, {x, v});
}

torch::Tensor MLPEnergyImpl::blocked_loss(int64_t kind, const std::vector<torch::Tensor>& rows) {
#if EBM_AVX512_KERNELS
  const auto& x = rows[0];
  check_input(x);
  // Every per-row input a CPU tensor (with fast paths on) without a
  // gradient, [N, D] like x (x, eps, v) or [N] (sigma, r).
  const std::vector<int64_t> ranks = kind == kSliced ? std::vector<int64_t>{2, 2}
                                                     : std::vector<int64_t>{2, 2, 1, 1};
  bool ok = x.scalar_type() == torch::kFloat && static_cast<Act>(act_) == Act::kSwish &&
            x.size(0) > 0 && rows.size() == ranks.size();
  for (size_t k = 0; ok && k < rows.size(); ++k) {
    const auto& t = rows[k];
    ok = cpu_fast_path(t) && !t.requires_grad() && t.dim() == ranks[k] &&
         (ranks[k] == 2 ? t.sizes() == x.sizes() : t.size(0) == x.size(0));
  }
  // Decided before the weights are taken: with spectral normalisation that
  // runs the power iteration, which the general form would run again.
  // Without a gradient to compute, the general form is cheaper.
  bool any_grad = false;
  detail::SwishMLPView shape;
  shape.dim = x.size(1);
  for (size_t i = 0; ok && i < layers_.size(); ++i) {
    for (const auto& p : {layers_[i]->weight, layers_[i]->bias}) {
      ok = ok && p.scalar_type() == torch::kFloat && p.device().is_cpu() && p.is_contiguous();
      any_grad = any_grad || p.requires_grad();
    }
    if (i + 1 < layers_.size()) shape.width.push_back(layers_[i]->weight.size(0));
  }
  if (!ok || !torch::GradMode::is_enabled() || !any_grad || !detail::dsm_blocked_supported(shape))
    return {};
  const auto params = layer_params(is_training());
  detail::SwishMLPView view;
  if (!blocked_view(params, x.size(1), view)) return {};
  std::vector<torch::Tensor> in;
  for (const auto& t : rows) in.push_back(t.detach().to(torch::kFloat).contiguous());
  return BlockedLossFunction::apply(torch::TensorList(in), torch::TensorList(params), kind, this);
#else
  (void)kind, (void)rows;
  return {};
#endif
}

}  // namespace ebm
