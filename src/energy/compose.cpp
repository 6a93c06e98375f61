#include "ebm/energy/compose.h"

#include <cmath>
#include <numeric>

#include "ebm/core/error.h"

namespace ebm {

const std::vector<std::string>& compose_ops() {
  static const std::vector<std::string> ops = {"and", "or", "not"};
  return ops;
}

ComposedEnergyImpl::ComposedEnergyImpl(std::vector<Energy> terms, std::string op, std::vector<double> weights)
    : terms_(std::move(terms)), op_(std::move(op)) {
  EBM_CHECK_USAGE(op_ == "and" || op_ == "or" || op_ == "not", "--compose ", op_,
                  ": unknown operation (and, or, not)");
  EBM_CHECK_USAGE(!terms_.empty(), "--compose ", op_, ": no energies to compose");
  for (const auto& t : terms_) TORCH_CHECK(t, "ComposedEnergy: null term");
  const auto shape = terms_.front()->event_shape();
  for (size_t i = 1; i < terms_.size(); ++i)
    EBM_CHECK_USAGE(terms_[i]->event_shape() == shape, "--compose ", op_, ": term ", i, " has event shape ",
                    c10::IntArrayRef(terms_[i]->event_shape()), ", term 0 has ", c10::IntArrayRef(shape));
  for (double w : weights) EBM_CHECK_USAGE(std::isfinite(w) && w >= 0, "--weights: ", w, " is not a finite weight >= 0");
  const size_t n = terms_.size();
  if (op_ == "not") {
    EBM_CHECK_USAGE(n == 2, "--compose not takes two energies (E_a - w E_b), got ", n);
    EBM_CHECK_USAGE(weights.size() <= 2, "--weights: not takes w (or 1,w), got ", weights.size(), " weights");
    const double w = weights.empty() ? 1.0 : weights.back();
    const double wa = weights.size() == 2 ? weights.front() : 1.0;
    weights_ = {wa, -w};
  } else {
    EBM_CHECK_USAGE(weights.empty() || weights.size() == n, "--weights: ", weights.size(), " weights for ", n,
                    " energies");
    weights_ = weights.empty() ? std::vector<double>(n, 1.0) : weights;
    const double sum = std::accumulate(weights_.begin(), weights_.end(), 0.0);
    EBM_CHECK_USAGE(sum > 0, "--weights: they sum to 0");
    if (op_ == "or")
      for (double& w : weights_) w /= sum;
  }
  for (size_t i = 0; i < n; ++i) register_module("term" + std::to_string(i), terms_[i]);
}

namespace {
// log pi_i as a [1, n] row (-inf where pi_i = 0).
torch::Tensor log_weights(const std::vector<double>& w, const torch::TensorOptions& options) {
  return torch::tensor(w, torch::kDouble).log().to(options).unsqueeze(0);
}
}  // namespace

torch::Tensor ComposedEnergyImpl::energy(const torch::Tensor& x) {
  std::vector<torch::Tensor> e;
  for (auto& t : terms_) e.push_back(t->energy(x));
  if (op_ == "or") {
    auto s = torch::stack(e, 1);  // [B, n]
    return -torch::logsumexp(log_weights(weights_, s.options()) - s, 1);
  }
  auto out = e[0] * weights_[0];
  for (size_t i = 1; i < e.size(); ++i) out = out + e[i] * weights_[i];
  return out;
}

std::pair<torch::Tensor, torch::Tensor> ComposedEnergyImpl::energy_and_grad(const torch::Tensor& x) {
  std::vector<torch::Tensor> es, gs;
  for (auto& t : terms_) {
    auto [e, g] = t->energy_and_grad(x);
    es.push_back(e);
    gs.push_back(g);
  }
  if (op_ == "or") {
    auto s = torch::stack(es, 1);                           // [B, n]
    auto logits = log_weights(weights_, s.options()) - s;   // log pi_i - E_i
    auto e = -torch::logsumexp(logits, 1);
    auto r = torch::softmax(logits, 1);                     // responsibilities
    auto g = torch::zeros_like(gs[0]);
    std::vector<int64_t> view(x.dim(), 1);
    view[0] = x.size(0);
    for (size_t i = 0; i < gs.size(); ++i) g = g + r.select(1, i).reshape(view) * gs[i];
    return {e, g};
  }
  auto e = es[0] * weights_[0];
  auto g = gs[0] * weights_[0];
  for (size_t i = 1; i < es.size(); ++i) {
    e = e + es[i] * weights_[i];
    g = g + gs[i] * weights_[i];
  }
  return {e, g};
}

}  // namespace ebm
