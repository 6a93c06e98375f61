// The MLP energy's score-matching terms (score_terms): g = dE/dx and
// q = v^T H v by hand-derived forward-mode derivatives, with a hand-written
// parameter gradient; their fused kernels and the ATen form of each step.
#include "ebm/core/device.h"
#include "ebm/core/gemm.h"
#include "ebm/core/simd.h"
#include "ebm/energy/energy.h"
#include "mlp_internal.h"

namespace ebm {

using namespace detail;

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
      cpu_fast_path(zw) && bias.is_contiguous() && !zw.requires_grad()) {
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
      !cpu_fast_path(x) || !x.is_contiguous() || (v.defined() && !v.is_contiguous()))
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
        if (d1[i].scalar_type() == torch::kFloat && cpu_fast_path(d1[i]) &&
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
                     cpu_fast_path(A) && d1[0].scalar_type() == torch::kFloat;
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
      if (dza.scalar_type() == torch::kFloat && cpu_fast_path(dza) &&
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

}  // namespace ebm
