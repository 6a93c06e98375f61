#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "ebm/core/error.h"
#include "ebm/core/gemm.h"
#include "ebm/core/simd.h"
#include "ebm/energy/energy.h"
#include "mlp_blocked.h"

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

// Float swish in one pass: v = z + bias[column], s = sigmoid(v), z <- v s,
// d <- (s + v s (1 - s)) * scale[column] (scale = the output layer's weights,
// or ones).
EBM_MULTIVERSION
void swish_fused_generic(float* __restrict z, float* __restrict d, int64_t rows, int64_t cols,
                         const float* __restrict bias, const float* __restrict scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict zr = z + r * cols;
    float* __restrict dr = d + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = zr[c] + bias[c];
      const float s = sigmoid_approx(v);
      const float h = v * s;
      zr[c] = h;
      dr[c] = (s + h * (1.0f - s)) * scale[c];
    }
  }
}

#if EBM_AVX512_KERNELS
EBM_AVX512_BEGIN
// One 16-lane swish step: h = v s and (s + h (1 - s)) * scale, s = sigmoid(v),
// stored under mask m (h only when h_out is given); returns h.
EBM_TARGET_AVX512 inline __m512 swish_step_avx512(__m512 v, __mmask16 m, __m512 scale,
                                                  float* h_out, float* d_out) {
  const __m512 sg = sigmoid_avx512(v);
  const __m512 h = _mm512_mul_ps(v, sg);
  if (h_out) _mm512_mask_storeu_ps(h_out, m, h);
  const __m512 dv = _mm512_fmadd_ps(h, _mm512_sub_ps(_mm512_set1_ps(1.0f), sg), sg);
  _mm512_mask_storeu_ps(d_out, m, _mm512_mul_ps(dv, scale));
  return h;
}

EBM_TARGET_AVX512
void swish_fused_avx512(float* __restrict z, float* __restrict d, int64_t rows, int64_t cols,
                        const float* __restrict bias, const float* __restrict scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict zr = z + r * cols;
    float* __restrict dr = d + r * cols;
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = lanes_mask(cols - c);
      const __m512 v =
          _mm512_add_ps(_mm512_maskz_loadu_ps(m, zr + c), _mm512_maskz_loadu_ps(m, bias + c));
      swish_step_avx512(v, m, _mm512_maskz_loadu_ps(m, scale + c), zr + c, dr + c);
    }
  }
}
// The last hidden layer's swish pass with the output layer folded in:
// d = swish'(v) w, e[r] = b_out + sum_c swish(v) w[c] (v = z + bias); z
// receives swish(v) only when keep_h.
EBM_TARGET_AVX512
void swish_last_avx512(float* __restrict z, float* __restrict d, int64_t rows, int64_t cols,
                       const float* __restrict bias, const float* __restrict w, float b_out,
                       float* __restrict e, bool keep_h) {
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict zr = z + r * cols;
    float* __restrict dr = d + r * cols;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = lanes_mask(cols - c);
      const __m512 v =
          _mm512_add_ps(_mm512_maskz_loadu_ps(m, zr + c), _mm512_maskz_loadu_ps(m, bias + c));
      const __m512 wl = _mm512_maskz_loadu_ps(m, w + c);
      const __m512 h = swish_step_avx512(v, m, wl, keep_h ? zr + c : nullptr, dr + c);
      acc = _mm512_fmadd_ps(h, wl, acc);  // tail lanes: wl = 0
    }
    e[r] = b_out + _mm512_reduce_add_ps(acc);
  }
}
EBM_AVX512_END
#endif

void swish_fused(float* z, float* d, int64_t rows, int64_t cols, const float* bias,
                 const float* scale) {
#if EBM_AVX512_KERNELS
  if (cpu_has_avx512()) return swish_fused_avx512(z, d, rows, cols, bias, scale);
#endif
  swish_fused_generic(z, d, rows, cols, bias, scale);
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

#if EBM_AVX512_KERNELS
EBM_AVX512_BEGIN
// small_input_layer and swish_fused in one pass: z never leaves registers.
EBM_TARGET_AVX512
void swish_input_layer_avx512(const float* __restrict x, const float* __restrict wt,
                              const float* __restrict b, float* __restrict z,
                              float* __restrict d, int64_t rows, int64_t dim, int64_t cols,
                              const float* __restrict scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * dim;
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = lanes_mask(cols - c);
      __m512 v = _mm512_maskz_loadu_ps(m, b + c);
      for (int64_t j = 0; j < dim; ++j)
        v = _mm512_fmadd_ps(_mm512_set1_ps(xr[j]), _mm512_maskz_loadu_ps(m, wt + j * cols + c), v);
      swish_step_avx512(v, m, _mm512_maskz_loadu_ps(m, scale + c), z + r * cols + c,
                        d + r * cols + c);
    }
  }
}
EBM_AVX512_END
#endif

// g[r, j] = sum_c back[r, c] deriv[r, c] wt[j, c]  (back may be null = ones);
// prod, when given, receives back * deriv.
EBM_MULTIVERSION
void small_input_grad(const float* __restrict back, const float* __restrict deriv,
                      const float* __restrict wt, float* __restrict g, int64_t rows, int64_t d,
                      int64_t h, float* __restrict prod = nullptr) {
  for (int64_t r = 0; r < rows; ++r) {
    if (prod && back) {  // the product first, then g from it
      float* __restrict pr = prod + r * h;
      const float* __restrict b0 = back + r * h;
      const float* __restrict d0 = deriv + r * h;
      for (int64_t c = 0; c < h; ++c) pr[c] = b0[c] * d0[c];
    }
    const bool from_prod = prod && back;
    const float* __restrict dr = from_prod ? prod + r * h : deriv + r * h;
    const float* __restrict br = back && !from_prod ? back + r * h : nullptr;
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

namespace {
// E(x) of the network part (no base term) with autograd ops, from params =
// W_0, b_0, ..., W_n, b_n (the weights as used).
torch::Tensor reference_energy(const torch::Tensor& x, torch::TensorList params, Act act) {
  const size_t n = params.size() / 2 - 1;  // hidden layers
  auto h = x;
  for (size_t i = 0; i < n; ++i)
    h = apply_act(act, torch::nn::functional::linear(h, params[2 * i], params[2 * i + 1]));
  return torch::nn::functional::linear(h, params[2 * n], params[2 * n + 1]).squeeze(-1);
}
}  // namespace

namespace {
// A backward asked for a graph (create_graph): the gradient of y_of() seeded
// with gy, itself differentiable (unless create_graph is false), w.r.t. the
// params that require one, into out[offset + i]; y_of() is not evaluated
// when none does.
template <class F>
void graph_grads(F&& y_of, const torch::Tensor& gy, const std::vector<torch::Tensor>& params,
                 torch::autograd::variable_list& out, size_t offset, bool create_graph = true) {
  std::vector<torch::Tensor> wrt;
  std::vector<size_t> at;
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].requires_grad()) wrt.push_back(params[i]), at.push_back(i);
  if (wrt.empty()) return;
  auto d = torch::autograd::grad({y_of()}, wrt, {gy}, /*retain_graph=*/create_graph,
                                 create_graph, /*allow_unused=*/true);
  for (size_t k = 0; k < at.size(); ++k) out[offset + at[k]] = d[k];
}
}  // namespace

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

#if EBM_AVX512_KERNELS
namespace {
// The blocked sweep's view of float swish parameters W_0, b_0, ..., W_n, b_n;
// false when it cannot read them in place.
bool blocked_view(torch::TensorList params, int64_t dim, detail::SwishMLPView& view) {
  for (const auto& p : params)
    if (p.scalar_type() != torch::kFloat || !p.is_contiguous() || !p.device().is_cpu())
      return false;
  const size_t n_hidden = params.size() / 2 - 1;
  view.dim = dim;
  view.width.resize(n_hidden);
  view.w.resize(n_hidden);
  view.b.resize(n_hidden);
  for (size_t i = 0; i < n_hidden; ++i) {
    view.width[i] = params[2 * i].size(0);
    view.w[i] = params[2 * i].data_ptr<float>();
    view.b[i] = params[2 * i + 1].data_ptr<float>();
  }
  view.w_out = params[2 * n_hidden].data_ptr<float>();
  view.b_out = *params[2 * n_hidden + 1].data_ptr<float>();
  return true;
}

// The blocked passes' parallel split: rows 0..n in at most get_num_threads()
// chunks of whole 32-row blocks, at least two blocks a chunk. Returns the
// number of chunks and the rows of each (the last may be shorter).
std::pair<int64_t, int64_t> row_chunks(int64_t n) {
  using detail::kBlockRows;
  constexpr int64_t kMinBlocks = 2;
  const int64_t blocks = (n + kBlockRows - 1) / kBlockRows;
  const int64_t threads =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks / kMinBlocks));
  const int64_t per = (blocks + threads - 1) / threads;
  return {(blocks + per - 1) / per, per * kBlockRows};
}

// f(chunk) for each chunk, in parallel when there are several.
template <class F>
void for_chunks(int64_t chunks, F&& f) {
  if (chunks == 1) return f(0);
  at::parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) f(c);
  });
}
}  // namespace

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
  // Every per-row input a CPU tensor without a gradient, [N, D] like x
  // (x, eps, v) or [N] (sigma, r).
  const std::vector<int64_t> ranks = kind == kSliced ? std::vector<int64_t>{2, 2}
                                                     : std::vector<int64_t>{2, 2, 1, 1};
  bool ok = x.scalar_type() == torch::kFloat && static_cast<Act>(act_) == Act::kSwish &&
            x.size(0) > 0 && rows.size() == ranks.size();
  for (size_t k = 0; ok && k < rows.size(); ++k) {
    const auto& t = rows[k];
    ok = t.device().is_cpu() && !t.requires_grad() && t.dim() == ranks[k] &&
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

std::vector<torch::Tensor> MLPEnergyImpl::layer_params(bool update) {
  std::vector<torch::Tensor> params;
  for (size_t i = 0; i < layers_.size(); ++i) {
    params.push_back(weight(i, update));
    params.push_back(layers_[i]->bias);
  }
  return params;
}

torch::Tensor MLPEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x);
  bool update = is_training() && torch::GradMode::is_enabled();
  const auto params = layer_params(update);
  // The fast pass when no graph through x is wanted (a gradient in x, as score
  // matching or a learned sampler takes, goes through the ATen form).
  const bool fast = x.device().is_cpu() && !x.requires_grad() &&
                    (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble);
  torch::Tensor e;
  if (!fast) {
    e = reference_energy(x, params, static_cast<Act>(act_));
  } else {
    bool graph = false;
    if (torch::GradMode::is_enabled())
      for (const auto& p : params) graph = graph || p.requires_grad();
    // Without a graph nothing is kept: large inputs go in chunks, so the
    // sweep's buffers (two [64k, width] a layer) stay bounded.
    constexpr int64_t kChunk = 1 << 16;
    const auto xc = x.contiguous();
    if (graph || xc.size(0) <= kChunk) {
      e = EnergyFunction::apply(xc, torch::TensorList(params), this);
    } else {
      e = torch::empty({xc.size(0)}, xc.options());
      for (int64_t s = 0; s < xc.size(0); s += kChunk) {
        const int64_t len = std::min(kChunk, xc.size(0) - s);
        e.narrow(0, s, len).copy_(
            EnergyFunction::apply(xc.narrow(0, s, len), torch::TensorList(params), this));
      }
    }
  }
  if (options_.prior_std() > 0)
    e = e + x.pow(2).sum(-1) / (2 * options_.prior_std() * options_.prior_std());
  return e;
}

torch::Tensor MLPEnergyImpl::forward_sweep(const torch::Tensor& x, torch::TensorList params,
                                           std::vector<torch::Tensor>& z,
                                           std::vector<torch::Tensor>& deriv, torch::Tensor* e,
                                           bool keep_last_h) {
  const size_t n_hidden = z.size();
  const int64_t batch = x.size(0);
  const Act act = static_cast<Act>(act_);
  // (no views or copies through ATen here: their fixed cost is felt at a few
  // hundred chains)
  const auto w_last = params[2 * n_hidden].contiguous();  // [1, H]: the output weights
  const int64_t dim = x.size(1);
  const bool small = x.scalar_type() == torch::kFloat && dim <= kSmallDim;
  if (small) {  // W_0^T [D, H_0], into a reused buffer
    const int64_t width = params[0].size(0);
    if (!w0t_.defined() || w0t_.size(0) != dim || w0t_.size(1) != width)
      w0t_ = torch::empty({dim, width}, x.options());
    const auto w0 = params[0].contiguous();
    const float* src = w0.data_ptr<float>();
    float* dst = w0t_.data_ptr<float>();
    for (int64_t c = 0; c < width; ++c)
      for (int64_t j = 0; j < dim; ++j) dst[j * width + c] = src[c * dim + j];
  }
  const torch::Tensor w0t = small ? w0t_ : torch::Tensor();
  const bool fused = act == Act::kSwish && x.scalar_type() == torch::kFloat;
  if (fused && (!zeros_.defined() || zeros_.size(0) != z[0].size(1)))
    zeros_ = torch::zeros({z[0].size(1)}, x.options());
  auto h = x;
  for (size_t i = 0; i < n_hidden; ++i) {
    const bool last = i + 1 == n_hidden;
    const auto& bias = params[2 * i + 1];
#if EBM_AVX512_KERNELS
    if (i == 0 && small && fused && cpu_has_avx512()) {
      if (!last && (!ones_.defined() || ones_.size(0) != z[0].size(1)))
        ones_ = torch::ones({z[0].size(1)}, x.options());
      swish_input_layer_avx512(x.data_ptr<float>(), w0t.data_ptr<float>(), bias.data_ptr<float>(),
                               z[0].data_ptr<float>(), deriv[0].data_ptr<float>(), batch, dim,
                               z[0].size(1),
                               last ? w_last.data_ptr<float>() : ones_.data_ptr<float>());
      h = z[0];
      continue;
    }
#endif
    if (i == 0 && small)
      small_input_layer(x.data_ptr<float>(), w0t.data_ptr<float>(), bias.data_ptr<float>(),
                        z[0].data_ptr<float>(), batch, dim, z[0].size(1));
    else if (fused && h.is_contiguous() && params[2 * i].is_contiguous())
      sgemm(false, true, batch, z[i].size(1), h.size(1), 1.0f, h.data_ptr<float>(), h.size(1),
            params[2 * i].data_ptr<float>(), h.size(1), 0.0f, z[i].data_ptr<float>(),
            z[i].size(1));  // z = h W^T; the bias is added by the swish pass
    else if (fused)
      mm_into(z[i], h, params[2 * i].t());
    else
      at::addmm_out(z[i], bias, h, params[2 * i].t());  // [B, H_i]
#if EBM_AVX512_KERNELS
    if (fused && last && e && cpu_has_avx512()) {  // the output layer folded in
      *e = torch::empty({batch}, x.options());
      swish_last_avx512(z[i].data_ptr<float>(), deriv[i].data_ptr<float>(), batch, z[i].size(1),
                        bias.data_ptr<float>(), w_last.data_ptr<float>(),
                        *params[2 * n_hidden + 1].data_ptr<float>(), e->data_ptr<float>(),
                        keep_last_h);
      return w0t;
    }
#endif
    if (fused) {
      if (!last && (!ones_.defined() || ones_.size(0) != z[i].size(1)))
        ones_ = torch::ones({z[i].size(1)}, x.options());
      // (the hand-written first layer has added its bias already)
      const float* b = i == 0 && small ? zeros_.data_ptr<float>() : bias.data_ptr<float>();
      swish_fused(z[i].data_ptr<float>(), deriv[i].data_ptr<float>(), batch, z[i].size(1), b,
                  last ? w_last.data_ptr<float>() : ones_.data_ptr<float>());
      h = z[i];
      continue;
    }
    if (act == Act::kSwish || act == Act::kSoftplus) at::sigmoid_out(deriv[i], z[i]);
    AT_DISPATCH_FLOATING_TYPES(z[i].scalar_type(), "mlp_act", [&] {
      auto* zp = z[i].data_ptr<scalar_t>();
      auto* dp = deriv[i].data_ptr<scalar_t>();
      if (last)  // delta_{L-1} = w_L * act'(z_{L-1}), fused
        act_and_deriv_scaled<scalar_t>(act, zp, dp, batch, z[i].size(1),
                                       w_last.data_ptr<scalar_t>());
      else
        act_and_deriv<scalar_t>(act, zp, dp, z[i].numel());
    });
    h = z[i];
  }
  if (e) *e = at::addmv(params[2 * n_hidden + 1], z[n_hidden - 1], w_last.view({-1}));  // [B]
  return w0t;
}


void MLPEnergyImpl::fast_pass(const torch::Tensor& x, bool want_energy) {
  const size_t n_hidden = layers_.size() - 1;
  const int64_t batch = x.size(0);
#if EBM_AVX512_KERNELS
  // Float swish on AVX-512: the cache-blocked sweep (mlp_blocked.h).
  if (x.scalar_type() == torch::kFloat && static_cast<Act>(act_) == Act::kSwish &&
      cpu_has_avx512()) {
    const auto params = layer_params(false);
    detail::SwishMLPView view;
    if (blocked_view(params, x.size(1), view)) {
      const int64_t dim = x.size(1);
      g_out_ = torch::empty({batch, dim}, x.options());
      if (want_energy) e_out_ = torch::empty({batch}, x.options());
      // Rows are independent: the split changes no result.
      const auto [chunks, rows] = row_chunks(batch);
      if (int64_t(blocked_ws_.size()) < chunks) blocked_ws_.resize(chunks);
      for_chunks(chunks, [&](int64_t c) {
        const int64_t r0 = c * rows, len = std::min(rows, batch - r0);
        detail::swish_mlp_grad_blocked(view, x.data_ptr<float>() + r0 * dim, len,
                                       g_out_.data_ptr<float>() + r0 * dim,
                                       want_energy ? e_out_.data_ptr<float>() + r0 : nullptr,
                                       blocked_ws_[c]);
      });
      add_prior(x, want_energy);
      return;
    }
  }
#endif
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
  const auto params = layer_params(false);
  // (the last layer's h is not needed afterwards: only the energy)
  const auto w0t = forward_sweep(x, params, z_, deriv_, want_energy ? &e_out_ : nullptr,
                                 /*keep_last_h=*/false);  // [D, H_0] when small
  const int64_t dim = x.size(1);
  const bool small = x.scalar_type() == torch::kFloat && dim <= kSmallDim;
  // delta_{i-1} = (delta_i W_i) * act'(z_{i-1}); dE/dx = delta_0 W_0.
  for (size_t i = n_hidden - 1; i > 0; --i) {
    const auto& w = params[2 * i];
    if (x.scalar_type() == torch::kFloat && w.is_contiguous())  // back = delta W
      sgemm(false, false, batch, w.size(1), w.size(0), 1.0f, deriv_[i].data_ptr<float>(),
            w.size(0), w.data_ptr<float>(), w.size(1), 0.0f, back_[i - 1].data_ptr<float>(),
            w.size(1));
    else
      mm_into(back_[i - 1], deriv_[i], w);
    if (!(i == 1 && small)) deriv_[i - 1].mul_(back_[i - 1]);
  }
  if (small) {  // the last product fused with the final elementwise one
    g_out_ = torch::empty({batch, dim}, x.options());
    small_input_grad(n_hidden > 1 ? back_[0].data_ptr<float>() : nullptr,
                     deriv_[0].data_ptr<float>(), w0t.data_ptr<float>(), g_out_.data_ptr<float>(),
                     batch, dim, z_[0].size(1));
  } else {
    g_out_ = fast_mm(deriv_[0], params[0]);  // [B, D]
  }
  add_prior(x, want_energy);
}

void MLPEnergyImpl::add_prior(const torch::Tensor& x, bool want_energy) {
  if (options_.prior_std() > 0) {
    double inv = 1.0 / (options_.prior_std() * options_.prior_std());
    g_out_.add_(x, inv);
    if (want_energy) e_out_.add_(x.pow(2).sum(-1), 0.5 * inv);
  }
}

torch::Tensor MLPEnergyImpl::grad(const torch::Tensor& x) {
  check_input(x);
  if (!x.device().is_cpu()) return EnergyImpl::grad(x);  // the fast pass is CPU code
  torch::NoGradGuard ng;
  fast_pass(x.contiguous(), false);
  return g_out_;
}

std::pair<torch::Tensor, torch::Tensor> MLPEnergyImpl::energy_and_grad(const torch::Tensor& x) {
  check_input(x);
  if (!x.device().is_cpu()) return EnergyImpl::energy_and_grad(x);
  torch::NoGradGuard ng;
  fast_pass(x.contiguous(), true);
  return {e_out_, g_out_};
}

// ----- score-matching terms ---------------------------------------------------
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// h = act(z) and its first three derivatives (the third only for the
// second-order terms' reverse sweep).
struct ActJet {
  torch::Tensor h, d1, d2, d3;
};

// Float swish jet in one pass over z [rows, cols] (v = z + bias[column],
// s = sigmoid(v), s' = s (1 - s), u = 1 - 2 s); z is left holding v.
EBM_MULTIVERSION
void swish_jet_generic(float* __restrict z, const float* __restrict bias, float* __restrict h,
               float* __restrict d1, float* __restrict d2, float* __restrict d3, int64_t rows,
               int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const float v = z[i] + bias[c];
      const float s = sigmoid_approx(v);
      const float sp = s * (1.0f - s);
      const float u = 1.0f - 2.0f * s;
      z[i] = v;
      h[i] = v * s;
      d1[i] = s + v * sp;
      d2[i] = sp * (2.0f + v * u);
      if (d3) d3[i] = sp * (3.0f * u + v * (1.0f - 6.0f * sp));
    }
  }
}

#if EBM_AVX512_KERNELS
EBM_AVX512_BEGIN
EBM_TARGET_AVX512
void swish_jet_avx512(float* __restrict z, const float* __restrict bias, float* __restrict h,
                      float* __restrict d1, float* __restrict d2, float* __restrict d3,
                      int64_t rows, int64_t cols) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += 16) {
      const int64_t i = r * cols + c;
      const __mmask16 m = lanes_mask(cols - c);
      const __m512 v =
          _mm512_add_ps(_mm512_maskz_loadu_ps(m, z + i), _mm512_maskz_loadu_ps(m, bias + c));
      const __m512 sg = sigmoid_avx512(v);
      const __m512 sp = _mm512_mul_ps(sg, _mm512_sub_ps(one, sg));
      const __m512 u = _mm512_fnmadd_ps(two, sg, one);
      _mm512_mask_storeu_ps(z + i, m, v);
      _mm512_mask_storeu_ps(h + i, m, _mm512_mul_ps(v, sg));
      _mm512_mask_storeu_ps(d1 + i, m, _mm512_fmadd_ps(v, sp, sg));
      _mm512_mask_storeu_ps(d2 + i, m, _mm512_mul_ps(sp, _mm512_fmadd_ps(v, u, two)));
      if (d3) {  // sp (3 u + v (1 - 6 sp))
        const __m512 w = _mm512_fnmadd_ps(_mm512_set1_ps(6.0f), sp, one);
        const __m512 t = _mm512_fmadd_ps(v, w, _mm512_mul_ps(_mm512_set1_ps(3.0f), u));
        _mm512_mask_storeu_ps(d3 + i, m, _mm512_mul_ps(sp, t));
      }
    }
  }
}
EBM_AVX512_END
#endif

void swish_jet(float* z, const float* bias, float* h, float* d1, float* d2, float* d3,
               int64_t rows, int64_t cols) {
#if EBM_AVX512_KERNELS
  if (cpu_has_avx512()) return swish_jet_avx512(z, bias, h, d1, d2, d3, rows, cols);
#endif
  swish_jet_generic(z, bias, h, d1, d2, d3, rows, cols);
}

// The 2-jet of one layer's output along v in one pass (float):
// hd = d1 zd, hdd = d2 zd^2 + d1 zdd (zdd may be null: zero).
EBM_MULTIVERSION
void layer_tangents(int64_t n, const float* __restrict d1, const float* __restrict d2,
                    const float* __restrict zd, const float* __restrict zdd,
                    float* __restrict hd, float* __restrict hdd) {
  if (zdd) {
    for (int64_t i = 0; i < n; ++i) {
      hd[i] = d1[i] * zd[i];
      hdd[i] = d2[i] * zd[i] * zd[i] + d1[i] * zdd[i];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      hd[i] = d1[i] * zd[i];
      hdd[i] = d2[i] * zd[i] * zd[i];
    }
  }
}

// One swish layer of the score-matching forward pass, everything elementwise
// in one sweep (AVX-512 only; elsewhere act_jet, layer_tangents and ATen
// products do the same in separate passes). Null outputs are skipped.
struct SwishLayerArgs {
  int64_t rows, cols;
  const float* z;                // the product h_prev W^T [rows, cols], or null: a small
  const float *x, *vx, *wt;      // input layer, z = x W^T (and zd = vx W^T) formed here
  int64_t dim;                   // from x, vx [rows, dim] and wt = W^T [dim, cols]
  const float* bias;             // [cols]
  const float *zd, *zdd;         // second order: the products of hd_prev, hdd_prev (zdd optional)
  float *h, *d1, *d2, *d3;       // h = act(z + b) and its derivatives (h, d3 optional)
  float* zd_out;                 // small input, second order: receives zd
  float *hd, *hdd;               // second order: hd = d1 zd, hdd = d2 zd^2 + d1 zdd
  const float* w_last;           // last hidden layer: the output weights [cols], and
  float *delta, *q;              // delta = d1 w_last, q[r] = sum_c hdd w_last (second order)
};

#if EBM_AVX512_KERNELS
EBM_AVX512_BEGIN
EBM_TARGET_AVX512 void swish_layer_avx512(const SwishLayerArgs& p) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  const bool second = p.hdd != nullptr;
  for (int64_t r = 0; r < p.rows; ++r) {
    __m512 qacc = _mm512_setzero_ps();
    for (int64_t c = 0; c < p.cols; c += 16) {
      const int64_t i = r * p.cols + c;
      const __mmask16 m = lanes_mask(p.cols - c);
      __m512 v = _mm512_maskz_loadu_ps(m, p.bias + c), zd = _mm512_setzero_ps();
      if (p.z) {
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, p.z + i));
        if (second) zd = _mm512_maskz_loadu_ps(m, p.zd + i);
      } else {
        for (int64_t j = 0; j < p.dim; ++j) {
          const __m512 w = _mm512_maskz_loadu_ps(m, p.wt + j * p.cols + c);
          v = _mm512_fmadd_ps(_mm512_set1_ps(p.x[r * p.dim + j]), w, v);
          if (second) zd = _mm512_fmadd_ps(_mm512_set1_ps(p.vx[r * p.dim + j]), w, zd);
        }
        if (p.zd_out) _mm512_mask_storeu_ps(p.zd_out + i, m, zd);
      }
      const __m512 sg = sigmoid_avx512(v);
      const __m512 sp = _mm512_mul_ps(sg, _mm512_sub_ps(one, sg));
      const __m512 u = _mm512_fnmadd_ps(two, sg, one);
      const __m512 d1 = _mm512_fmadd_ps(v, sp, sg);                     // s + v s'
      const __m512 d2 = _mm512_mul_ps(sp, _mm512_fmadd_ps(v, u, two));  // 2 s' + v s''
      if (p.h) _mm512_mask_storeu_ps(p.h + i, m, _mm512_mul_ps(v, sg));
      _mm512_mask_storeu_ps(p.d1 + i, m, d1);
      _mm512_mask_storeu_ps(p.d2 + i, m, d2);
      if (p.d3) {  // s' (3 u + v (1 - 6 s'))
        const __m512 w = _mm512_fnmadd_ps(_mm512_set1_ps(6.0f), sp, one);
        const __m512 t = _mm512_fmadd_ps(v, w, _mm512_mul_ps(_mm512_set1_ps(3.0f), u));
        _mm512_mask_storeu_ps(p.d3 + i, m, _mm512_mul_ps(sp, t));
      }
      const __m512 wl = p.w_last ? _mm512_maskz_loadu_ps(m, p.w_last + c) : one;
      if (p.delta) _mm512_mask_storeu_ps(p.delta + i, m, _mm512_mul_ps(d1, wl));
      if (second) {
        __m512 hdd = _mm512_mul_ps(_mm512_mul_ps(d2, zd), zd);
        if (p.zdd) hdd = _mm512_fmadd_ps(d1, _mm512_maskz_loadu_ps(m, p.zdd + i), hdd);
        if (p.hd) _mm512_mask_storeu_ps(p.hd + i, m, _mm512_mul_ps(d1, zd));
        _mm512_mask_storeu_ps(p.hdd + i, m, hdd);
        if (p.q) qacc = _mm512_fmadd_ps(hdd, wl, qacc);  // tail lanes: wl = 0
      }
    }
    if (p.q) p.q[r] = _mm512_reduce_add_ps(qacc);
  }
}
EBM_AVX512_END
#endif

// za = a W^T [rows, cols] for a small a [rows, dim] (wt = W^T [dim, cols]) and
// ha = d1 za in one pass.
EBM_MULTIVERSION
void small_input_tangent(const float* __restrict a, const float* __restrict wt,
                         const float* __restrict d1, float* __restrict za, float* __restrict ha,
                         int64_t rows, int64_t dim, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict zr = za + r * cols;
    for (int64_t c = 0; c < cols; ++c) zr[c] = 0.0f;
    for (int64_t j = 0; j < dim; ++j) {
      const float av = a[r * dim + j];
      const float* __restrict wj = wt + j * cols;
      for (int64_t c = 0; c < cols; ++c) zr[c] += av * wj[c];
    }
    const float* __restrict dr = d1 + r * cols;
    float* __restrict hr = ha + r * cols;
    for (int64_t c = 0; c < cols; ++c) hr[c] = dr[c] * zr[c];
  }
}

// Column sums (in double) of d1 za + c[row] hdd (c, hdd null: first order).
EBM_MULTIVERSION
void top_tangent_colsum(const float* __restrict d1, const float* __restrict za,
                        const float* __restrict c, const float* __restrict hdd,
                        double* __restrict colsum, int64_t rows, int64_t cols) {
  for (int64_t k = 0; k < cols; ++k) colsum[k] = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * cols;
    if (hdd) {
      const float cr = c[r];
#pragma omp simd
      for (int64_t k = 0; k < cols; ++k) colsum[k] += double(d1[o + k] * za[o + k] + cr * hdd[o + k]);
    } else {
#pragma omp simd
      for (int64_t k = 0; k < cols; ++k) colsum[k] += double(d1[o + k] * za[o + k]);
    }
  }
}

// Inputs and outputs of layer_cotangents (all [rows, cols] row-major unless
// said otherwise; optional ones are null when absent).
struct CotangentArgs {
  int64_t rows, cols;
  const float* base;          // cotangent of h: [rows, cols], or one [cols] row for all
  bool base_rows;             // whether base has a row per sample
  const float *d1, *d2, *d3;  // the activation's first three derivatives at z (d3: second order)
  const float* za;            // tangent of z along the first-order cotangent
  const float* g;             // optional: cotangent of h from the layer above
  const float *gvv, *gv;      // second order: cotangents of hdd and hd (gv optional)
  const float *zd, *zdd;      // second order: the 2-jet of z along v (zdd optional)
  float *dz, *dzd, *dzdd;     // outputs: cotangents of z, zd, zdd
  double* colsum;             // output: column sums of dz ([cols])
};

// One branch-free body per combination of the optional inputs, so that each
// vectorises; inlined into the multiversioned callers below.
template <bool kG, bool kSecond, bool kGv, bool kZdd>
__attribute__((always_inline)) inline void layer_cotangents_body(const CotangentArgs& p) {
  const int64_t cols = p.cols;
  const float* __restrict d1 = p.d1;
  const float* __restrict d2 = p.d2;
  const float* __restrict za = p.za;
  const float* __restrict g = p.g;
  const float* __restrict gvv = p.gvv;
  const float* __restrict gv = p.gv;
  const float* __restrict d3 = p.d3;
  const float* __restrict zd = p.zd;
  const float* __restrict zdd = p.zdd;
  float* __restrict dz = p.dz;
  float* __restrict dzd = p.dzd;
  float* __restrict dzdd = p.dzdd;
  double* __restrict colsum = p.colsum;
  for (int64_t c = 0; c < cols; ++c) colsum[c] = 0.0;
  for (int64_t r = 0; r < p.rows; ++r) {
    const int64_t o = r * cols;
    const float* __restrict br = p.base + (p.base_rows ? o : 0);
    // Every pointer is a distinct buffer (more than GCC will check at run time).
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = o + c;
      float t = br[c] * d2[i] * za[i];
      if constexpr (kG) t += g[i] * d1[i];
      if constexpr (kSecond) {
        const float a = gvv[i], y = zd[i];
        float td = 2.0f * a * d2[i] * y;
        t += a * d3[i] * y * y;
        if constexpr (kZdd) t += a * d2[i] * zdd[i];
        if constexpr (kGv) {
          td += gv[i] * d1[i];
          t += gv[i] * d2[i] * y;
        }
        dzd[i] = td;
        dzdd[i] = a * d1[i];
      }
      dz[i] = t;
      colsum[c] += double(t);
    }
  }
}

EBM_MULTIVERSION void layer_cotangents_first(const CotangentArgs& p) {
  if (p.g)
    layer_cotangents_body<true, false, false, false>(p);
  else
    layer_cotangents_body<false, false, false, false>(p);
}

EBM_MULTIVERSION void layer_cotangents_second(const CotangentArgs& p) {
  const int k = (p.g ? 4 : 0) + (p.gv ? 2 : 0) + (p.zdd ? 1 : 0);
  switch (k) {
    case 0: return layer_cotangents_body<false, true, false, false>(p);
    case 1: return layer_cotangents_body<false, true, false, true>(p);
    case 2: return layer_cotangents_body<false, true, true, false>(p);
    case 3: return layer_cotangents_body<false, true, true, true>(p);
    case 4: return layer_cotangents_body<true, true, false, false>(p);
    case 5: return layer_cotangents_body<true, true, false, true>(p);
    case 6: return layer_cotangents_body<true, true, true, false>(p);
    default: return layer_cotangents_body<true, true, true, true>(p);
  }
}

// The cotangent of one layer's pre-activation in one pass (float):
// dz = base d2 za + G d1 (base: row r of a [rows, cols] array, or the same
// vector for every row when base_rows = false; G may be null) and, with
// gvv, the second-order terms: dz += GVV (d3 zd^2 + d2 zdd) + GV d2 zd,
// dzd = 2 GVV d2 zd + GV d1, dzdd = GVV d1 (gv and zdd may be null).
// colsum (the bias gradient) receives the column sums of dz, accumulated in
// double so that long batches lose nothing to float rounding.
void layer_cotangents(const CotangentArgs& p) {
  if (p.gvv)
    layer_cotangents_second(p);
  else
    layer_cotangents_first(p);
}

// The jet at z = zw + bias (zw = the layer's product, [N, H], fresh).
ActJet act_jet(Act act, torch::Tensor zw, const torch::Tensor& bias, bool third) {
  ActJet j;
  if (act == Act::kSwish && zw.scalar_type() == torch::kFloat && zw.is_contiguous() &&
      zw.device().is_cpu() && bias.is_contiguous() && !zw.requires_grad()) {
    j.h = torch::empty_like(zw);
    j.d1 = torch::empty_like(zw);
    j.d2 = torch::empty_like(zw);
    if (third) j.d3 = torch::empty_like(zw);
    swish_jet(zw.data_ptr<float>(), bias.data_ptr<float>(), j.h.data_ptr<float>(),
              j.d1.data_ptr<float>(), j.d2.data_ptr<float>(),
              third ? j.d3.data_ptr<float>() : nullptr, zw.size(0), zw.size(1));
    return j;
  }
  const auto z = zw + bias;
  switch (act) {
    case Act::kSwish: {  // h = z s, s' = s (1 - s), s'' = s' u, s''' = s' (1 - 6 s')
      auto s = torch::sigmoid(z);
      auto sp = s * (1 - s);
      auto u = 1 - 2 * s;
      j.h = z * s;
      j.d1 = s + z * sp;             // s + z s'
      j.d2 = sp * (2 + z * u);       // 2 s' + z s''
      if (third) j.d3 = sp * (3 * u + z * (1 - 6 * sp));  // 3 s'' + z s'''
      break;
    }
    case Act::kSoftplus: {
      auto s = torch::sigmoid(z);
      auto sp = s * (1 - s);
      j.h = torch::softplus(z);
      j.d1 = s;
      j.d2 = sp;
      if (third) j.d3 = sp * (1 - 2 * s);
      break;
    }
    case Act::kElu: {
      auto pos = z > 0;
      auto ez = torch::exp(torch::clamp_max(z, 0));
      j.h = torch::where(pos, z, ez - 1);
      j.d1 = torch::where(pos, torch::ones_like(z), ez);
      j.d2 = torch::where(pos, torch::zeros_like(z), ez);
      if (third) j.d3 = j.d2;
      break;
    }
    case Act::kLeaky: {
      auto pos = z > 0;
      j.h = torch::leaky_relu(z, kLeakySlope);
      j.d1 = torch::where(pos, torch::ones_like(z), torch::full_like(z, kLeakySlope));
      j.d2 = torch::zeros_like(z);
      if (third) j.d3 = j.d2;
      break;
    }
  }
  return j;
}

// Whether MLPScoreFunction's forward takes one fused sweep a layer
// (swish_layer_avx512): float32 CPU swish networks on AVX-512 CPUs.
bool fused_score_layers(Act act, const torch::Tensor& x, const torch::Tensor& v,
                        torch::TensorList params) {
#if EBM_AVX512_KERNELS
  if (act != Act::kSwish || !cpu_has_avx512() || x.scalar_type() != torch::kFloat ||
      !x.device().is_cpu() || !x.is_contiguous() || (v.defined() && !v.is_contiguous()))
    return false;
  for (const auto& p : params)
    if (p.scalar_type() != torch::kFloat || !p.is_contiguous()) return false;
  return true;
#else
  return false;
#endif
}

// Inputs: x [N, D], v [N, D] or undefined, then W_0, b_0, ..., W_n, b_n (the
// weights as used, so autograd chains through spectral normalisation).
// Outputs g = dE/dx and q = v^T H v of the network part (no base term).
//
// Forward: z_i = W_i h_{i-1} + b_i, h_i = a(z_i), and along v the 2-jet
// zd_i = W_i hd_{i-1}, hd_i = a' zd_i, zdd_i = W_i hdd_{i-1},
// hdd_i = a'' zd_i^2 + a' zdd_i (hd_{-1} = v, hdd_{-1} = 0), q = w . hdd;
// g by the delta recursion. Backward: given cotangents A (of g) and c (of q),
// the parameter gradient of sum_b A_b . g_b + c_b q_b equals that of the
// surrogate sum_b w . (ha_b + c_b hdd_b), ha the tangent along A (A . g is
// the directional derivative of E along A). One reverse sweep carries four
// cotangent streams (of h, ha, hd, hdd); the one of ha is the delta
// recursion already stored.
struct MLPScoreFunction : torch::autograd::Function<MLPScoreFunction> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor x,
                               c10::optional<torch::Tensor> v_opt, torch::TensorList params,
                               int64_t act_code) {
    const Act act = static_cast<Act>(act_code);
    torch::Tensor v = v_opt.has_value() ? *v_opt : torch::Tensor();
    const int64_t n = int64_t(params.size()) / 2 - 1;  // hidden layers
    const bool second = v.defined();
    std::vector<torch::Tensor> h(n), d1(n), d2(n), d3(n), zd(n), zdd(n), hd(n), hdd(n);
    // back[i] = delta_{i+1} W_{i+1}, kept: the reverse sweep needs it again.
    std::vector<torch::Tensor> delta(n), back(n);
    auto w_last = params[2 * n][0];  // [H]
    const bool fused = fused_score_layers(act, x, v, params);
    const bool small = fused && x.size(1) <= kSmallDim;  // first layer formed in the sweep
    const torch::Tensor w0t = small ? params[0].t().contiguous() : torch::Tensor();  // [D, H_0]
    torch::Tensor q;
    torch::Tensor prev = x, prev_d = v, prev_dd;
    for (int64_t i = 0; i < n; ++i) {
      const auto& w = params[2 * i];
#if EBM_AVX512_KERNELS
      if (fused) {  // one sweep; h and hd of the last layer are never used
        const bool last = i == n - 1, formed = small && i == 0;
        torch::Tensor zw;
        if (!formed) {  // (products with a contiguous W^T: oneDNN's NN kernel is faster)
          const auto wt = w.t().contiguous();
          zw = fast_mm(prev, wt);
          if (second) zd[i] = fast_mm(prev_d, wt);
          if (second && prev_dd.defined()) zdd[i] = fast_mm(prev_dd, wt);
        }
        auto fresh = [&] { return torch::empty({x.size(0), w.size(0)}, x.options()); };
        const torch::Tensor wl = last ? w_last.contiguous() : torch::Tensor();
        d1[i] = fresh(), d2[i] = fresh();
        if (!last) h[i] = fresh();
        if (second) {
          d3[i] = fresh(), hdd[i] = fresh();
          if (!last) hd[i] = fresh();
          if (formed) zd[i] = fresh();
        }
        if (last) delta[i] = fresh();
        if (last && second) q = torch::empty({x.size(0)}, x.options());
        auto ptr = [](const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };
        SwishLayerArgs a{};
        a.rows = x.size(0), a.cols = w.size(0);
        a.z = ptr(zw);
        if (formed) a.x = ptr(x), a.vx = ptr(v), a.wt = ptr(w0t), a.dim = x.size(1);
        a.bias = ptr(params[2 * i + 1]);
        if (!formed) a.zd = ptr(zd[i]), a.zdd = ptr(zdd[i]);
        a.h = ptr(h[i]), a.d1 = ptr(d1[i]), a.d2 = ptr(d2[i]), a.d3 = ptr(d3[i]);
        if (formed) a.zd_out = ptr(zd[i]);
        a.hd = ptr(hd[i]), a.hdd = ptr(hdd[i]);
        a.w_last = ptr(wl), a.delta = ptr(delta[i]), a.q = ptr(q);
        swish_layer_avx512(a);
        prev = h[i], prev_d = hd[i], prev_dd = hdd[i];
        continue;
      }
#endif
      auto j = act_jet(act, fast_mm(prev, w.t()), params[2 * i + 1], second);  // [N, H_i]
      h[i] = j.h, d1[i] = j.d1, d2[i] = j.d2, d3[i] = j.d3;
      if (second) {
        zd[i] = fast_mm(prev_d, w.t());
        if (prev_dd.defined()) zdd[i] = fast_mm(prev_dd, w.t());
        if (d1[i].scalar_type() == torch::kFloat && d1[i].device().is_cpu() &&
            d1[i].is_contiguous() && d2[i].is_contiguous()) {  // one pass
          hd[i] = torch::empty_like(zd[i]);
          hdd[i] = torch::empty_like(zd[i]);
          layer_tangents(zd[i].numel(), d1[i].data_ptr<float>(), d2[i].data_ptr<float>(),
                         zd[i].data_ptr<float>(),
                         zdd[i].defined() ? zdd[i].data_ptr<float>() : nullptr,
                         hd[i].data_ptr<float>(), hdd[i].data_ptr<float>());
        } else {
          hd[i] = d1[i] * zd[i];
          hdd[i] = d2[i] * zd[i] * zd[i];
          if (zdd[i].defined()) hdd[i] = hdd[i] + d1[i] * zdd[i];
        }
        prev_d = hd[i];
        prev_dd = hdd[i];
      }
      prev = h[i];
    }
    if (!delta[n - 1].defined()) delta[n - 1] = d1[n - 1] * w_last;
    for (int64_t i = n - 1; i > 0; --i) {
      back[i - 1] = fast_mm(delta[i], params[2 * i]);
      if (!(small && i == 1)) delta[i - 1] = back[i - 1] * d1[i - 1];
    }
    torch::Tensor g;
    if (small) {  // g = delta_0 W_0, with delta_0 = back_0 d1_0 formed on the way
      g = torch::empty({x.size(0), x.size(1)}, x.options());
      if (n > 1) delta[0] = torch::empty_like(d1[0]);
      small_input_grad(n > 1 ? back[0].data_ptr<float>() : nullptr,
                       n > 1 ? d1[0].data_ptr<float>() : delta[0].data_ptr<float>(),
                       w0t.data_ptr<float>(), g.data_ptr<float>(), x.size(0), x.size(1),
                       d1[0].size(1), n > 1 ? delta[0].data_ptr<float>() : nullptr);
    } else {
      g = fast_mm(delta[0], params[0]);  // [N, D]
    }
    if (!q.defined())
      q = second ? torch::mv(hdd[n - 1], w_last) : torch::zeros({x.size(0)}, x.options());
    std::vector<torch::Tensor> saved = {x, v};
    for (const auto& p : params) saved.push_back(p);
    for (int64_t i = 0; i < n; ++i)
      for (auto* t : {&h[i], &d1[i], &d2[i], &d3[i], &zd[i], &zdd[i], &hd[i], &hdd[i], &delta[i],
                      &back[i]})
        saved.push_back(*t);
    // Saved lists hold no undefined tensors: those become empty 1-d
    // placeholders (every real entry is 2-d).
    for (auto& t : saved)
      if (!t.defined()) t = torch::empty({0}, x.options());
    ctx->saved_data["state"] = saved;
    ctx->saved_data["n"] = n;
    return {g, q};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto st = ctx->saved_data["state"].toTensorVector();
    for (auto& t : st)
      if (t.dim() == 1 && t.numel() == 0) t = torch::Tensor();
    const int64_t n = ctx->saved_data["n"].toInt();
    const int64_t np = 2 * (n + 1);
    auto x = st[0], v = st[1];
    std::vector<torch::Tensor> W(n + 1), h(n), d1(n), d2(n), d3(n), zd(n), zdd(n), hd(n), hdd(n),
        delta(n), back(n);
    for (int64_t i = 0; i <= n; ++i) W[i] = st[2 + 2 * i];
    for (int64_t i = 0; i < n; ++i) {
      const auto* s = &st[2 + np + 10 * i];
      h[i] = s[0], d1[i] = s[1], d2[i] = s[2], d3[i] = s[3], zd[i] = s[4], zdd[i] = s[5];
      hd[i] = s[6], hdd[i] = s[7], delta[i] = s[8], back[i] = s[9];
    }
    auto A = grads[0].defined() ? grads[0] : torch::zeros_like(x);
    auto c = grads[1];
    const bool second = v.defined() && c.defined();
    // Hand-written passes when no graph is asked for (a backward with
    // create_graph runs with grad mode on) and the tensors are float CPU.
    const bool raw = !torch::GradMode::is_enabled() && A.scalar_type() == torch::kFloat &&
                     A.device().is_cpu() && d1[0].scalar_type() == torch::kFloat;
    if (raw) {
      A = A.contiguous();
      if (second) c = c.contiguous();
    }
    // Tangent along A: za_0 = W_0 A, ha_i = a'(z_i) za_i, za_{i+1} = W_{i+1} ha_i
    // (ha of the top layer only enters through its column sums).
    std::vector<torch::Tensor> za(n), ha(n);
    for (int64_t i = 0; i < n; ++i) {
      if (raw && i == 0 && x.size(1) <= kSmallDim) {
        TORCH_INTERNAL_ASSERT(d1[0].is_contiguous());  // all freshly computed
        za[0] = torch::empty_like(d1[0]);
        ha[0] = torch::empty_like(d1[0]);
        auto w0t = W[0].t().contiguous();
        small_input_tangent(A.data_ptr<float>(), w0t.data_ptr<float>(), d1[0].data_ptr<float>(),
                            za[0].data_ptr<float>(), ha[0].data_ptr<float>(), x.size(0),
                            x.size(1), d1[0].size(1));
        continue;
      }
      za[i] = fast_mm(i == 0 ? A : ha[i - 1], raw ? W[i].t().contiguous() : W[i].t());
      if (!(raw && i == n - 1)) ha[i] = d1[i] * za[i];
    }
    variable_list gw(np);
    if (raw) {
      TORCH_INTERNAL_ASSERT(d1[n - 1].is_contiguous() && za[n - 1].is_contiguous() &&
                            (!second || hdd[n - 1].is_contiguous()));
      auto colsum = torch::empty({d1[n - 1].size(1)}, x.options().dtype(torch::kDouble));
      top_tangent_colsum(d1[n - 1].data_ptr<float>(), za[n - 1].data_ptr<float>(),
                         second ? c.data_ptr<float>() : nullptr,
                         second ? hdd[n - 1].data_ptr<float>() : nullptr,
                         colsum.data_ptr<double>(), d1[n - 1].size(0), d1[n - 1].size(1));
      gw[2 * n] = colsum.to(torch::kFloat).unsqueeze(0);
    } else {
      auto top = second ? ha[n - 1] + c.unsqueeze(1) * hdd[n - 1] : ha[n - 1];
      gw[2 * n] = top.sum(0, /*keepdim=*/true);
    }
    gw[2 * n + 1] = torch::zeros({1}, x.options());
    auto w_last = W[n][0];
    // Cotangents of h, hd and hdd (that of ha, GA, gives dza = GA a' = delta).
    torch::Tensor G, GV, GVV;
    if (second) GVV = c.unsqueeze(1) * w_last;
    for (int64_t i = n - 1; i >= 0; --i) {
      const auto& dza = delta[i];
      torch::Tensor dz, dzd, dzdd, gb;
      // The fused kernel builds no graph: only when none is asked for (a
      // backward with create_graph runs with grad mode on).
      if (dza.scalar_type() == torch::kFloat && dza.device().is_cpu() &&
          !torch::GradMode::is_enabled()) {
        auto ptr = [](const torch::Tensor& t) -> const float* {
          if (!t.defined()) return nullptr;
          TORCH_INTERNAL_ASSERT(t.is_contiguous());  // all freshly computed
          return t.data_ptr<float>();
        };
        const bool top_layer = i == n - 1;
        const torch::Tensor base = top_layer ? w_last.contiguous() : back[i];
        if (second) GVV = GVV.contiguous();
        dz = torch::empty_like(d1[i]);
        auto colsum = torch::empty({dz.size(1)}, dz.options().dtype(torch::kDouble));
        if (second) {
          dzd = torch::empty_like(dz);
          dzdd = torch::empty_like(dz);
        }
        CotangentArgs args{};
        args.rows = dz.size(0), args.cols = dz.size(1);
        args.base = ptr(base), args.base_rows = !top_layer;
        args.d1 = ptr(d1[i]), args.d2 = ptr(d2[i]), args.za = ptr(za[i]), args.g = ptr(G);
        if (second) {
          args.gvv = ptr(GVV), args.gv = ptr(GV), args.d3 = ptr(d3[i]);
          args.zd = ptr(zd[i]), args.zdd = ptr(zdd[i]);
          args.dzd = dzd.data_ptr<float>(), args.dzdd = dzdd.data_ptr<float>();
        }
        args.dz = dz.data_ptr<float>();
        args.colsum = colsum.data_ptr<double>();
        layer_cotangents(args);
        gb = colsum.to(torch::kFloat);
      } else {
        dz = (i == n - 1 ? w_last.expand_as(d1[i]) : back[i]) * d2[i];
        dz.mul_(za[i]);
        if (G.defined()) dz.addcmul_(G, d1[i]);
        if (second) {
          dzdd = GVV * d1[i];
          dzd = 2 * GVV * d2[i] * zd[i];
          auto t = GVV * d3[i] * zd[i] * zd[i];
          if (zdd[i].defined()) t = t + GVV * d2[i] * zdd[i];
          if (GV.defined()) {
            dzd = dzd + GV * d1[i];
            t = t + GV * d2[i] * zd[i];
          }
          dz = dz + t;
        }
        gb = dz.sum(0);
      }
      auto gW = fast_mm(dz.t(), i == 0 ? x : h[i - 1]);
      mm_into(gW, dza.t(), i == 0 ? A : ha[i - 1], 1.0f);
      if (second) {
        mm_into(gW, dzd.t(), i == 0 ? v : hd[i - 1], 1.0f);
        if (i > 0) mm_into(gW, dzdd.t(), hdd[i - 1], 1.0f);
      }
      gw[2 * i] = gW;
      gw[2 * i + 1] = gb;
      if (i > 0) {
        G = fast_mm(dz, W[i]);
        if (second) {
          GV = fast_mm(dzd, W[i]);
          GVV = fast_mm(dzdd, W[i]);
        }
      }
    }
    variable_list out = {torch::Tensor(), torch::Tensor()};
    for (auto& t : gw) out.push_back(t);
    out.push_back(torch::Tensor());
    return out;
  }
};
}  // namespace

std::pair<torch::Tensor, torch::Tensor> MLPEnergyImpl::score_terms(const torch::Tensor& x,
                                                                   const torch::Tensor& v) {
  check_input(x);
  const bool update = is_training() && torch::GradMode::is_enabled();
  const auto params = layer_params(update);
  auto xd = x.detach().contiguous();
  auto vd = v.defined() ? v.detach().contiguous() : v;
  c10::optional<torch::Tensor> vo;
  if (vd.defined()) vo = vd;
  auto out = MLPScoreFunction::apply(xd, vo, torch::TensorList(params), int64_t(act_));
  auto g = out[0], q = out[1];
  if (options_.prior_std() > 0) {
    const double inv = 1.0 / (options_.prior_std() * options_.prior_std());
    g = g + inv * xd;
    if (vd.defined()) q = q + inv * vd.pow(2).sum(1);
  }
  return {g, q};
}

// ----- noise-conditional MLP ------------------------------------------------
NoiseConditionalMLPImpl::NoiseConditionalMLPImpl(const NoiseConditionalMLPOptions& o)
    : options_(o) {
  EBM_CHECK_CONFIG(o.in_dim() > 0, "NoiseConditionalMLPOptions.in_dim must be > 0, got ",
                   o.in_dim());
  EBM_CHECK_CONFIG(o.noise_level() > 0 && std::isfinite(o.noise_level()),
                   "energy.noise_level must be > 0, got ", o.noise_level());
  EBM_CHECK_CONFIG(o.prior_std() >= 0 && std::isfinite(o.prior_std()),
                   "energy.prior_std must be >= 0, got ", o.prior_std());
  f_ = register_module("f", MLPEnergy(MLPEnergyOptions(o.in_dim() + 1, o.hidden())
                                          .activation(o.activation())
                                          .spectral_norm(o.spectral_norm())));
  set_noise_level(o.noise_level());
}

torch::Tensor NoiseConditionalMLPImpl::with_level(const torch::Tensor& x,
                                                  const torch::Tensor& sigma) const {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == options_.in_dim(),
                 "noise-conditional MLP expects [B, ", options_.in_dim(), "] input, got ",
                 x.sizes());
  EBM_CHECK_DATA(sigma.dim() == 1 && sigma.size(0) == x.size(0),
                 "noise-conditional MLP expects one sigma per row, got ", sigma.sizes());
  return torch::cat({x, sigma.log().unsqueeze(1)}, 1);
}

torch::Tensor NoiseConditionalMLPImpl::energy_at(const torch::Tensor& x,
                                                 const torch::Tensor& sigma) {
  auto s = sigma.to(x.dtype());
  auto e = f_->energy(with_level(x, s)) / s;
  if (options_.prior_std() > 0)
    e = e + x.pow(2).sum(-1) / (2 * options_.prior_std() * options_.prior_std());
  return e;
}

std::pair<torch::Tensor, torch::Tensor> NoiseConditionalMLPImpl::score_terms(
    const torch::Tensor& x, const torch::Tensor& v, const torch::Tensor& sigma) {
  auto s = sigma.to(x.dtype());
  auto xd = x.detach();
  torch::Tensor vin;
  if (v.defined()) vin = torch::cat({v.detach(), torch::zeros({v.size(0), 1}, v.options())}, 1);
  auto [gf, qf] = f_->score_terms(with_level(xd, s), vin);
  auto g = gf.narrow(1, 0, options_.in_dim()) / s.unsqueeze(1);  // d/dx of f / sigma
  auto q = qf / s;
  if (options_.prior_std() > 0) {
    const double inv = 1.0 / (options_.prior_std() * options_.prior_std());
    g = g + inv * xd;
    if (v.defined()) q = q + inv * v.detach().pow(2).sum(1);
  }
  return {g, q};
}

}  // namespace ebm
