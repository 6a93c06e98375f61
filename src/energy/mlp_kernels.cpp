// The MLP energy's graph-free analytic pass: the activations, the
// elementwise and small-input kernels, and the two members that drive them
// (forward_sweep, and fast_pass behind grad and energy_and_grad), kept in one
// translation unit with their kernels.
#include <ATen/Dispatch.h>

#include "ebm/core/error.h"
#include "ebm/core/gemm.h"
#include "ebm/core/simd.h"
#include "ebm/energy/energy.h"
#include "mlp_internal.h"

namespace ebm {

const std::vector<std::string>& mlp_activations() {
  static const std::vector<std::string> names = {"swish", "softplus", "elu", "leaky_relu"};
  return names;
}

namespace detail {
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

torch::Tensor reference_energy(const torch::Tensor& x, torch::TensorList params, Act act) {
  const size_t n = params.size() / 2 - 1;  // hidden layers
  auto h = x;
  for (size_t i = 0; i < n; ++i)
    h = apply_act(act, torch::nn::functional::linear(h, params[2 * i], params[2 * i + 1]));
  return torch::nn::functional::linear(h, params[2 * n], params[2 * n + 1]).squeeze(-1);
}

EBM_MULTIVERSION
void small_input_grad(const float* __restrict back, const float* __restrict deriv,
                      const float* __restrict wt, float* __restrict g, int64_t rows, int64_t d,
                      int64_t h, float* __restrict prod) {
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

bool blocked_view(torch::TensorList params, int64_t dim, SwishMLPView& view) {
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

std::pair<int64_t, int64_t> row_chunks(int64_t n) {
  constexpr int64_t kMinBlocks = 2;
  const int64_t blocks = (n + kBlockRows - 1) / kBlockRows;
  const int64_t threads =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks / kMinBlocks));
  const int64_t per = (blocks + threads - 1) / threads;
  return {(blocks + per - 1) / per, per * kBlockRows};
}
}  // namespace detail

using namespace detail;

namespace {

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

}  // namespace ebm
