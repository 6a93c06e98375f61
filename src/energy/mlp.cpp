#include <ATen/Dispatch.h>

#include "ebm/core/error.h"
#include "ebm/core/simd.h"
#include "ebm/energy/energy.h"

namespace ebm {

torch::Tensor EnergyImpl::grad(const torch::Tensor& x) {
  return energy_and_grad(x).second;
}

std::pair<torch::Tensor, torch::Tensor> EnergyImpl::energy_and_grad(const torch::Tensor& x) {
  torch::AutoGradMode enable(true);
  auto xr = x.detach().requires_grad_(true);
  auto e = energy(xr);                                         // [B]
  auto g = torch::autograd::grad({e.sum()}, {xr}, {}, false, false)[0];
  return {e.detach(), g.detach()};
}

void reset_parameters(torch::nn::Module& module, at::Generator& gen) {
  torch::NoGradGuard ng;
  for (auto& m : module.modules(/*include_self=*/true)) {
    for (auto& kv : m->named_parameters(/*recurse=*/false)) {
      if (kv.key() != "weight") continue;
      auto& w = kv.value();
      const int64_t fan_in = w.numel() / w.size(0);
      const double bound = 1.0 / std::sqrt(double(fan_in));
      w.uniform_(-bound, bound, gen);
      if (auto* b = m->named_parameters(false).find("bias")) b->uniform_(-bound, bound, gen);
    }
  }
}

const std::vector<std::string>& mlp_activations() {
  static const std::vector<std::string> names = {"swish", "softplus", "elu", "leaky_relu"};
  return names;
}

namespace {
constexpr double kLeakySlope = 0.2;

enum class Act { kSwish, kSoftplus, kElu, kLeaky };

Act parse_act(const std::string& name) {
  if (name == "swish" || name == "silu") return Act::kSwish;
  if (name == "softplus") return Act::kSoftplus;
  if (name == "elu") return Act::kElu;
  if (name == "leaky_relu") return Act::kLeaky;
  fail(ExitCode::kBadConfig, "energy.activation must be one of swish, softplus, elu, ",
       "leaky_relu; got '", name, "'");
}

torch::Tensor apply_act(Act act, const torch::Tensor& z) {
  switch (act) {
    case Act::kSwish: return torch::silu(z);
    case Act::kSoftplus: return torch::softplus(z);
    case Act::kElu: return torch::elu(z);
    case Act::kLeaky: return torch::leaky_relu(z, kLeakySlope);
  }
  TORCH_INTERNAL_ASSERT(false);
}

// In place: z <- act(z), d <- act'(z_old). For swish, d holds sigmoid(z) on
// entry (computed by ATen's vectorised kernel); the rest is one fused loop.
template <typename T>
void act_and_deriv(Act act, T* z, T* d, int64_t n);

// Float swish in one pass: s = sigmoid(z), z <- z s, d <- (s + z s (1 - s))
// * scale[column] (scale = the output layer's weights, or ones).
EBM_MULTIVERSION
void swish_fused(float* __restrict z, float* __restrict d, int64_t rows, int64_t cols,
                 const float* __restrict scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict zr = z + r * cols;
    float* __restrict dr = d + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = zr[c];
      const float s = 1.0f / (1.0f + exp_approx(-v));
      const float h = v * s;
      zr[c] = h;
      dr[c] = (s + h * (1.0f - s)) * scale[c];
    }
  }
}

// Input dimensions up to this use hand-written loops for the first layer and
// the final input gradient: a GEMM with K or N = 2 is mostly overhead.
constexpr int64_t kSmallDim = 4;

// z[r, :] = b + sum_j x[r, j] wt[j, :]   (wt = W^T, [D, H])
EBM_MULTIVERSION
void small_input_layer(const float* __restrict x, const float* __restrict wt,
                       const float* __restrict b, float* __restrict z, int64_t rows, int64_t d,
                       int64_t h) {
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict zr = z + r * h;
    for (int64_t c = 0; c < h; ++c) zr[c] = b[c];
    for (int64_t j = 0; j < d; ++j) {
      const float xv = x[r * d + j];
      const float* __restrict wj = wt + j * h;
      for (int64_t c = 0; c < h; ++c) zr[c] += xv * wj[c];
    }
  }
}

// g[r, j] = sum_c back[r, c] deriv[r, c] wt[j, c]  (back may be null = ones)
EBM_MULTIVERSION
void small_input_grad(const float* __restrict back, const float* __restrict deriv,
                      const float* __restrict wt, float* __restrict g, int64_t rows, int64_t d,
                      int64_t h) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict dr = deriv + r * h;
    const float* __restrict br = back ? back + r * h : nullptr;
    for (int64_t j = 0; j < d; ++j) {
      const float* __restrict wj = wt + j * h;
      float acc = 0.0f;
      if (br) {
#pragma omp simd reduction(+ : acc)
        for (int64_t c = 0; c < h; ++c) acc += br[c] * dr[c] * wj[c];
      } else {
#pragma omp simd reduction(+ : acc)
        for (int64_t c = 0; c < h; ++c) acc += dr[c] * wj[c];
      }
      g[r * d + j] = acc;
    }
  }
}

template <typename T>
EBM_MULTIVERSION void act_and_deriv_scaled(Act act, T* z, T* d, int64_t rows, int64_t cols, const T* scale) {
  act_and_deriv(act, z, d, rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    T* dr = d + r * cols;
    for (int64_t c = 0; c < cols; ++c) dr[c] *= scale[c];
  }
}

template <typename T>
EBM_MULTIVERSION void act_and_deriv(Act act, T* z, T* d, int64_t n) {
  switch (act) {
    case Act::kSwish:
      for (int64_t j = 0; j < n; ++j) {
        T s = d[j], h = z[j] * s;
        z[j] = h;
        d[j] = s + h * (T(1) - s);
      }
      break;
    case Act::kSoftplus:  // d holds sigmoid(z)
      for (int64_t j = 0; j < n; ++j) {
        T v = z[j];
        z[j] = std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v)));
      }
      break;
    case Act::kElu:
      for (int64_t j = 0; j < n; ++j) {
        T v = z[j];
        bool pos = v > T(0);
        T ev = pos ? T(1) : std::exp(v);
        z[j] = pos ? v : ev - T(1);
        d[j] = ev;
      }
      break;
    case Act::kLeaky:
      for (int64_t j = 0; j < n; ++j) {
        T v = z[j];
        bool pos = v > T(0);
        z[j] = pos ? v : T(kLeakySlope) * v;
        d[j] = pos ? T(1) : T(kLeakySlope);
      }
      break;
  }
}
}  // namespace

MLPEnergyImpl::MLPEnergyImpl(const MLPEnergyOptions& options) : options_(options) {
  EBM_CHECK_CONFIG(options_.in_dim() > 0, "MLPEnergyOptions.in_dim must be > 0, got ",
                   options_.in_dim());
  EBM_CHECK_CONFIG(!options_.hidden().empty(), "energy.hidden must list at least one width");
  for (auto w : options_.hidden())
    EBM_CHECK_CONFIG(w > 0, "energy.hidden widths must be > 0, got ", w);
  EBM_CHECK_CONFIG(options_.prior_std() >= 0 && std::isfinite(options_.prior_std()),
                   "energy.prior_std must be >= 0, got ", options_.prior_std());
  act_ = static_cast<int>(parse_act(options_.activation()));
  int64_t in = options_.in_dim();
  std::vector<int64_t> outs = options_.hidden();
  outs.push_back(1);
  for (size_t i = 0; i < outs.size(); ++i) {
    layers_.push_back(register_module("fc" + std::to_string(i),
                                      torch::nn::Linear(in, outs[i])));
    if (options_.spectral_norm()) {
      auto u = torch::ones({outs[i]}) / std::sqrt(double(outs[i]));
      u_.push_back(register_buffer("u" + std::to_string(i), u));
    }
    in = outs[i];
  }
}

void MLPEnergyImpl::check_input(const torch::Tensor& x) const {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == options_.in_dim(), "MLP energy expects [B, ",
                 options_.in_dim(), "] input, got ", x.sizes());
}

torch::Tensor MLPEnergyImpl::weight(size_t i, bool update) {
  const auto& w = layers_[i]->weight;
  if (!options_.spectral_norm()) return w;
  torch::Tensor v;
  {
    torch::NoGradGuard ng;
    auto& u = u_[i];
    auto wd = w.detach();
    v = torch::nn::functional::normalize(torch::mv(wd.t(), u),
                                         torch::nn::functional::NormalizeFuncOptions().dim(0));
    if (update) {
      u.copy_(torch::nn::functional::normalize(
          torch::mv(wd, v), torch::nn::functional::NormalizeFuncOptions().dim(0)));
      v = torch::nn::functional::normalize(torch::mv(wd.t(), u),
                                           torch::nn::functional::NormalizeFuncOptions().dim(0));
    }
  }
  auto sigma = torch::dot(u_[i], torch::mv(w, v));
  return w / sigma;
}

torch::Tensor MLPEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x);
  bool update = is_training() && torch::GradMode::is_enabled();
  const Act act = static_cast<Act>(act_);
  auto h = x;
  for (size_t i = 0; i + 1 < layers_.size(); ++i)
    h = apply_act(act, torch::nn::functional::linear(h, weight(i, update), layers_[i]->bias));
  auto e = torch::nn::functional::linear(h, weight(layers_.size() - 1, update),
                                         layers_.back()->bias)
               .squeeze(-1);
  if (options_.prior_std() > 0)
    e = e + x.pow(2).sum(-1) / (2 * options_.prior_std() * options_.prior_std());
  return e;
}

void MLPEnergyImpl::fast_pass(const torch::Tensor& x, bool want_energy) {
  const size_t n_hidden = layers_.size() - 1;
  const int64_t batch = x.size(0);
  const Act act = static_cast<Act>(act_);
  if (z_.size() != n_hidden || z_[0].size(0) != batch || z_[0].scalar_type() != x.scalar_type()) {
    z_.assign(n_hidden, {});
    deriv_.assign(n_hidden, {});
    back_.assign(n_hidden, {});
    for (size_t i = 0; i < n_hidden; ++i) {
      z_[i] = torch::empty({batch, options_.hidden()[i]}, x.options());
      deriv_[i] = torch::empty_like(z_[i]);
      back_[i] = torch::empty_like(z_[i]);
    }
  }
  std::vector<torch::Tensor> w(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) w[i] = weight(i, false);
  auto w_last = w[n_hidden][0].contiguous();  // [H]
  const int64_t dim = x.size(1);
  const bool small = x.scalar_type() == torch::kFloat && dim <= kSmallDim;
  torch::Tensor w0t;  // [D, H_0]
  if (small) w0t = w[0].t().contiguous();
  auto h = x;
  for (size_t i = 0; i < n_hidden; ++i) {
    if (i == 0 && small)
      small_input_layer(x.data_ptr<float>(), w0t.data_ptr<float>(),
                        layers_[0]->bias.data_ptr<float>(), z_[0].data_ptr<float>(), batch, dim,
                        z_[0].size(1));
    else
      at::addmm_out(z_[i], layers_[i]->bias, h, w[i].t());  // [B, H_i]
    const bool last = i + 1 == n_hidden;
    if (act == Act::kSwish && x.scalar_type() == torch::kFloat) {
      if (!last && (!ones_.defined() || ones_.size(0) != z_[i].size(1)))
        ones_ = torch::ones({z_[i].size(1)});
      swish_fused(z_[i].data_ptr<float>(), deriv_[i].data_ptr<float>(), batch, z_[i].size(1),
                  last ? w_last.data_ptr<float>() : ones_.data_ptr<float>());
      h = z_[i];
      continue;
    }
    if (act == Act::kSwish || act == Act::kSoftplus) at::sigmoid_out(deriv_[i], z_[i]);
    AT_DISPATCH_FLOATING_TYPES(z_[i].scalar_type(), "mlp_act", [&] {
      auto* zp = z_[i].data_ptr<scalar_t>();
      auto* dp = deriv_[i].data_ptr<scalar_t>();
      if (last)  // delta_{L-1} = w_L * act'(z_{L-1}), fused
        act_and_deriv_scaled<scalar_t>(act, zp, dp, batch, z_[i].size(1),
                                       w_last.data_ptr<scalar_t>());
      else
        act_and_deriv<scalar_t>(act, zp, dp, z_[i].numel());
    });
    h = z_[i];
  }
  if (want_energy) e_out_ = at::addmv(layers_.back()->bias, h, w_last);  // [B]
  // delta_{i-1} = (delta_i W_i) * act'(z_{i-1}); dE/dx = delta_0 W_0.
  for (size_t i = n_hidden - 1; i > 0; --i) {
    at::mm_out(back_[i - 1], deriv_[i], w[i]);
    if (!(i == 1 && small)) deriv_[i - 1].mul_(back_[i - 1]);
  }
  if (small) {  // the last product fused with the final elementwise one
    g_out_ = torch::empty({batch, dim}, x.options());
    small_input_grad(n_hidden > 1 ? back_[0].data_ptr<float>() : nullptr,
                     deriv_[0].data_ptr<float>(), w0t.data_ptr<float>(), g_out_.data_ptr<float>(),
                     batch, dim, z_[0].size(1));
  } else {
    g_out_ = at::mm(deriv_[0], w[0]);  // [B, D]
  }
  if (options_.prior_std() > 0) {
    double inv = 1.0 / (options_.prior_std() * options_.prior_std());
    g_out_.add_(x, inv);
    if (want_energy) e_out_.add_(x.pow(2).sum(-1), 0.5 * inv);
  }
}

torch::Tensor MLPEnergyImpl::grad(const torch::Tensor& x) {
  check_input(x);
  torch::NoGradGuard ng;
  fast_pass(x.contiguous(), false);
  return g_out_;
}

std::pair<torch::Tensor, torch::Tensor> MLPEnergyImpl::energy_and_grad(const torch::Tensor& x) {
  check_input(x);
  torch::NoGradGuard ng;
  fast_pass(x.contiguous(), true);
  return {e_out_, g_out_};
}

}  // namespace ebm
