// The MLP energy as an autograd function with a hand-written parameter
// gradient (E(x) on the fast path).
#include "ebm/core/gemm.h"
#include "ebm/energy/energy.h"
#include "mlp_internal.h"

namespace ebm {

using namespace detail;

// The energy with a hand-written backward for the parameter gradient (the
// training step of contrastive divergence): one graph-free forward sweep keeps
// h_i and act'(z_i); backward is the delta recursion, two products a layer.
// Inputs x (not differentiated), then W_0, b_0, ..., W_n, b_n. A backward
// asked to build a graph (create_graph: grad mode is on) recomputes the
// energy with autograd ops and differentiates that, so higher derivatives
// stay exact.
struct MLPEnergyImpl::EnergyFunction : torch::autograd::Function<EnergyFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               torch::TensorList params, MLPEnergyImpl* self) {
    const size_t n = params.size() / 2 - 1;
    std::vector<torch::Tensor> h(n), d(n);
    for (size_t i = 0; i < n; ++i) {
      h[i] = torch::empty({x.size(0), params[2 * i].size(0)}, x.options());
      d[i] = torch::empty_like(h[i]);
    }
    torch::Tensor e;
    self->forward_sweep(x, params, h, d, &e);
    std::vector<torch::Tensor> saved = {x};
    for (const auto& p : params) saved.push_back(p);
    ctx->save_for_backward(saved);
    ctx->saved_data["h"] = h;
    ctx->saved_data["d"] = d;
    ctx->saved_data["act"] = int64_t(self->act_);
    return e;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto x = saved[0];
    const std::vector<torch::Tensor> params(saved.begin() + 1, saved.end());
    const int64_t n = int64_t(params.size()) / 2 - 1;
    torch::autograd::variable_list out(params.size() + 2);  // x, params, self
    const auto& ge = grads[0];
    if (!ge.defined()) return out;
    if (torch::GradMode::is_enabled()) {  // a graph is wanted: differentiate the ATen form
      const auto act = static_cast<Act>(ctx->saved_data["act"].toInt());
      graph_grads([&] { return reference_energy(x, params, act); }, ge, params, out, 1);
      return out;
    }
    const auto h = ctx->saved_data["h"].toTensorVector();
    const auto d = ctx->saved_data["d"].toTensorVector();
    const auto g = ge.contiguous();
    out[1 + 2 * n] = at::mv(h[n - 1].t(), g).unsqueeze(0);  // [1, H]
    out[2 + 2 * n] = g.sum().reshape({1});
    // delta_{n-1} = g * act'(z_{n-1}) * w_n (d[n-1] holds the last two);
    // delta_{i-1} = (delta_i W_i) * act'(z_{i-1}); dW_i = delta_i^T h_{i-1}.
    auto delta = d[n - 1] * g.unsqueeze(1);
    for (int64_t i = n - 1; i >= 0; --i) {
      out[1 + 2 * i] = fast_mm(delta.t(), i > 0 ? h[i - 1] : x);
      out[2 + 2 * i] = delta.sum(0);
      if (i > 0) {
        delta = fast_mm(delta, params[2 * i]);
        delta.mul_(d[i - 1]);
      }
    }
    return out;
  }
};

torch::Tensor MLPEnergyImpl::energy_function(const torch::Tensor& x, torch::TensorList params) {
  return EnergyFunction::apply(x, params, this);
}

}  // namespace ebm
