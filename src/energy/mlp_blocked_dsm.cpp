// Denoising score matching's blocked pass: the loss and its parameter
// gradient (swish_mlp_dsm_blocked, mlp_blocked.h).
#include "mlp_blocked_kernels.h"

namespace ebm::detail {

#if EBM_AVX512_KERNELS
namespace {
EBM_AVX512_BEGIN

// Per-layer block buffers of the DSM sweep, each [width][kBlock].
struct DsmLayer {
  float *h, *s1, *s2, *delta, *u, *p, *zeta;
  float* vb;  // [width][16]: the bias gradient, per lane
};

// The DSM sweep's buffers.
struct DsmBuffers {
  float *xt, *et, *gt, *ct;  // x + s eps, eps, g, dL/dg: [dim][kBlock]
  float* sr;                 // s, r: [2][kBlock]
  float *pcm, *hcm;          // chain-major scratch [kBlock][widest]
  float *vw0, *vwo;          // W_0's [width0][dim][16] and w_out's [width_last][16] lane sums
  DsmLayer layers[64];
  float* vb[64];
  DsmBuffers(const SwishMLPView& net, Carver& c)
      : xt(c.take(net.dim * kBlock)), et(c.take(net.dim * kBlock)), gt(c.take(net.dim * kBlock)),
        ct(c.take(net.dim * kBlock)), sr(c.take(2 * kBlock)), pcm(c.take(kBlock * widest(net))),
        hcm(c.take(kBlock * widest(net))), vw0(c.take(net.width[0] * net.dim * 16)),
        vwo(c.take(net.width.back() * 16)) {
    for (size_t i = 0; i < net.width.size(); ++i) {
      DsmLayer& l = layers[i];
      for (float** b : {&l.h, &l.s1, &l.s2, &l.delta, &l.u, &l.p, &l.zeta})
        *b = c.take(net.width[i] * kBlock);
      vb[i] = l.vb = c.take(16 * net.width[i]);
    }
  }
};

// The forward epilogue: h = swish(a), s1 = h'(a), s2 = h''(a); on the last
// layer delta = s1 w_out instead of h.
struct DsmForwardEpi {
  const float* bias;
  const float* w_out;  // last layer, else null
  DsmLayer* l;
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][kVecs]) {
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const int64_t n = n0 + r;
      const __m512 bn = _mm512_set1_ps(bias[n]);
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        const int64_t o = n * kBlock + 16 * v;
        const __m512 a = _mm512_add_ps(acc[r][v], bn);
        const SwishJet j = swish_jet(a);
        _mm512_store_ps(l->s1 + o, j.d1);
        _mm512_store_ps(l->s2 + o, j.d2);
        if (w_out)
          _mm512_store_ps(l->delta + o, _mm512_mul_ps(j.d1, _mm512_set1_ps(w_out[n])));
        else
          _mm512_store_ps(l->h + o, _mm512_mul_ps(a, j.s));
      }
    }
  }
};

// The backward epilogue into layer l (the product W^T delta of the layer
// above): u = acc, delta = s1 u; into the first layer also g += W_0^T delta
// (the tile's sum in registers, then one update of g per vector).
struct DsmBackwardEpi {
  DsmLayer* l;
  const float* w0;  // first layer: W_0 [rows, dim], else null
  int64_t dim;
  float* g;         // [dim][kBlock]
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][kVecs]) {
    __m512 delta[MR][kVecs];
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        const int64_t o = (n0 + r) * kBlock + 16 * v;
        delta[r][v] = _mm512_mul_ps(acc[r][v], _mm512_load_ps(l->s1 + o));
        _mm512_store_ps(l->u + o, acc[r][v]);
        _mm512_store_ps(l->delta + o, delta[r][v]);
      }
    }
    if (w0) add_input_grad(w0, n0, dim, delta, g);
  }
};

// The upward sweep's epilogue at layer l: gamma = acc (the adjoint of delta),
// p = gamma s1, zeta = gamma u s2 (u = w_out on the last layer); the last
// layer also adds p to the output weights' gradient and zeta (final there) to
// its bias gradient.
struct DsmUpEpi {
  DsmLayer* l;
  const float* w_out;  // last layer, else null
  float* vwo;          // last layer: [rows][16]
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][kVecs]) {
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const int64_t n = n0 + r;
      __m512 sp = _mm512_setzero_ps(), sz = _mm512_setzero_ps();
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        const int64_t o = n * kBlock + 16 * v;
        const __m512 p = _mm512_mul_ps(acc[r][v], _mm512_load_ps(l->s1 + o));
        const __m512 u = w_out ? _mm512_set1_ps(w_out[n]) : _mm512_load_ps(l->u + o);
        const __m512 z = _mm512_mul_ps(_mm512_mul_ps(acc[r][v], u), _mm512_load_ps(l->s2 + o));
        _mm512_store_ps(l->p + o, p);
        _mm512_store_ps(l->zeta + o, z);
        sp = _mm512_add_ps(sp, p);
        sz = _mm512_add_ps(sz, z);
      }
      if (w_out) {
        _mm512_store_ps(vwo + 16 * n, _mm512_add_ps(_mm512_load_ps(vwo + 16 * n), sp));
        _mm512_store_ps(l->vb + 16 * n, _mm512_add_ps(_mm512_load_ps(l->vb + 16 * n), sz));
      }
    }
  }
};

// The downward sweep's epilogue into layer l (the product W^T zeta of the
// layer above): zeta += s1 acc, now final, into the bias gradient; into the
// first layer (where zeta is not kept) also W_0's gradient, zeta xt^T +
// delta c^T.
struct DsmDownEpi {
  DsmLayer* l;
  int64_t dim;
  const float *xt, *ct;  // first layer: [dim][kBlock], else null
  float* vw0;            // first layer: [rows][dim][16]
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][kVecs]) {
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const int64_t n = n0 + r;
      __m512 z[kVecs], delta[kVecs];
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        const int64_t o = n * kBlock + 16 * v;
        z[v] = _mm512_fmadd_ps(acc[r][v], _mm512_load_ps(l->s1 + o), _mm512_load_ps(l->zeta + o));
        if (xt)
          delta[v] = _mm512_load_ps(l->delta + o);
        else
          _mm512_store_ps(l->zeta + o, z[v]);
      }
      __m512 sz = z[0];
      _Pragma("GCC unroll 16")
      for (int v = 1; v < kVecs; ++v) sz = _mm512_add_ps(sz, z[v]);
      _mm512_store_ps(l->vb + 16 * n, _mm512_add_ps(_mm512_load_ps(l->vb + 16 * n), sz));
      if (xt) add_first_layer_grad(vw0 + n * dim * 16, dim, z, delta, xt, ct);
    }
  }
};

EBM_TARGET_AVX512 double dsm_sweep(const SwishMLPView& net, const float* x, const float* eps,
                                   const float* s, const float* r, int64_t batch, float prior_inv,
                                   const std::vector<float*>& grad_w,
                                   const std::vector<float*>& grad_b, float* grad_w_out,
                                   DsmBuffers& buf) {
  const size_t n_layers = net.width.size();
  const int64_t dim = net.dim, last = int64_t(n_layers) - 1;
  float *xt = buf.xt, *et = buf.et, *gt = buf.gt, *ct = buf.ct, *sr = buf.sr;
  float *pcm = buf.pcm, *hcm = buf.hcm, *vw0 = buf.vw0, *vwo = buf.vwo;
  DsmLayer* layers = buf.layers;
  clear_grads(net, grad_w, vw0, vwo, buf.vb);
  const float inv_n = 1.0f / float(batch);
  double loss = 0.0;
  for (int64_t c0 = 0; c0 < batch; c0 += kBlock) {
    const int64_t nc = batch - c0 < kBlock ? batch - c0 : kBlock;
    // The block, chain-minor; lanes past the batch get x = eps = 0, s = 0,
    // r = 1 (finite throughout) and dL/dg = 0 (no part in the gradients).
    gather_block(x + c0 * dim, dim, nc, xt);
    gather_block(eps + c0 * dim, dim, nc, et);
    for (int v = 0; v < kVecs; ++v) {
      const __mmask16 m = block_lanes(nc, v);
      const __m512 one = _mm512_set1_ps(1.0f);
      const __m512 sv = m ? _mm512_maskz_loadu_ps(m, s + c0 + 16 * v) : _mm512_setzero_ps();
      _mm512_store_ps(sr + 16 * v, sv);
      _mm512_store_ps(sr + kBlock + 16 * v, m ? _mm512_mask_loadu_ps(one, m, r + c0 + 16 * v) : one);
      for (int64_t c = 0; c < dim; ++c) {
        float* xp = xt + c * kBlock + 16 * v;
        _mm512_store_ps(xp, _mm512_fmadd_ps(sv, _mm512_load_ps(et + c * kBlock + 16 * v),
                                            _mm512_load_ps(xp)));
        _mm512_store_ps(gt + c * kBlock + 16 * v, _mm512_setzero_ps());
      }
    }
    // Forward.
    for (size_t i = 0; i < n_layers; ++i) {
      DsmForwardEpi epi{net.b[i], int64_t(i) == last ? net.w_out : nullptr, &layers[i]};
      if (i == 0)
        small_layer(net.width[0], net.w[0], dim, xt, epi);
      else
        product(net.width[i], net.w[i], net.width[i - 1], 1, layers[i - 1].h, net.width[i - 1], epi);
    }
    // Backward to g = W_0^T delta_0.
    for (int64_t i = last; i >= 1; --i) {
      DsmBackwardEpi epi{&layers[i - 1], i == 1 ? net.w[0] : nullptr, dim, gt};
      product(net.width[i - 1], net.w[i], 1, net.width[i - 1], layers[i].delta, net.width[i], epi);
    }
    if (last == 0)
      for (int64_t n = 0; n < net.width[0]; ++n)
        for (int64_t c = 0; c < dim; ++c)
          for (int64_t j = 0; j < kBlock; ++j)
            gt[c * kBlock + j] += net.w[0][n * dim + c] * layers[0].delta[n * kBlock + j];
    // The loss and its gradient in g: res = r g - (s / r) eps, dL/dg = r res / N
    // (zero in the lanes past nc); the squares summed in double.
    __m512d lsum[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    for (int v = 0; v < kVecs; ++v) {
      const __mmask16 m = block_lanes(nc, v);
      const __m512 rv = _mm512_load_ps(sr + kBlock + 16 * v);
      const __m512 q = _mm512_div_ps(_mm512_load_ps(sr + 16 * v), rv);
      for (int64_t c = 0; c < dim; ++c) {
        const int64_t o = c * kBlock + 16 * v;
        const __m512 g = _mm512_fmadd_ps(_mm512_set1_ps(prior_inv), _mm512_load_ps(xt + o),
                                         _mm512_load_ps(gt + o));
        const __m512 res = _mm512_maskz_sub_ps(
            m, _mm512_mul_ps(rv, g), _mm512_mul_ps(q, _mm512_load_ps(et + o)));
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(res));
        const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(res), 1)));
        lsum[0] = _mm512_fmadd_pd(lo, lo, lsum[0]);
        lsum[1] = _mm512_fmadd_pd(hi, hi, lsum[1]);
        _mm512_store_ps(ct + o, _mm512_mul_ps(_mm512_mul_ps(rv, res), _mm512_set1_ps(inv_n)));
      }
    }
    loss += 0.5 * _mm512_reduce_add_pd(_mm512_add_pd(lsum[0], lsum[1]));
    // Up: gamma_0 = W_0 c, then gamma_i = W_i p_{i-1}.
    for (size_t i = 0; i < n_layers; ++i) {
      DsmUpEpi epi{&layers[i], int64_t(i) == last ? net.w_out : nullptr, vwo};
      if (i == 0)
        small_layer(net.width[0], net.w[0], dim, ct, epi);
      else
        product(net.width[i], net.w[i], net.width[i - 1], 1, layers[i - 1].p, net.width[i - 1], epi);
    }
    // Down: dW_i += delta_i p_{i-1}^T + zeta_i h_{i-1}^T, zeta_{i-1} += s1 W_i^T zeta_i.
    for (int64_t i = last; i >= 1; --i) {
      const int64_t w_in = net.width[i - 1];
      to_chain_major(layers[i - 1].p, w_in, pcm);
      to_chain_major(layers[i - 1].h, w_in, hcm);
      rank_update<2>(grad_w[i], net.width[i], w_in, Pairs<2>{{layers[i].delta, layers[i].zeta}, {pcm, hcm}});
      DsmDownEpi epi{&layers[i - 1], dim, i == 1 ? xt : nullptr, ct, vw0};
      product(w_in, net.w[i], 1, w_in, layers[i].zeta, net.width[i], epi);
    }
    if (last == 0) {  // the single layer's zeta is final after the upward sweep
      const DsmLayer& l = layers[0];
      for (int64_t n = 0; n < net.width[0]; ++n) {
        __m512 z[kVecs], delta[kVecs];
        for (int v = 0; v < kVecs; ++v) {
          z[v] = _mm512_load_ps(l.zeta + n * kBlock + 16 * v);
          delta[v] = _mm512_load_ps(l.delta + n * kBlock + 16 * v);
        }
        add_first_layer_grad(vw0 + n * dim * 16, dim, z, delta, xt, ct);
      }
    }
  }
  store_lane_sums(net, vw0, vwo, buf.vb, grad_w, grad_b, grad_w_out);
  return loss / double(batch);
}

EBM_AVX512_END
}  // namespace

bool dsm_blocked_supported(const SwishMLPView& net) {
  if (!cpu_has_avx512() || net.dim < 1 || net.dim > kDirectDim || net.width.empty() || net.width.size() > 64) return false;
  for (size_t i = 0; i + 1 < net.width.size(); ++i)
    if (net.width[i] % 16 != 0) return false;
  return true;
}

double swish_mlp_dsm_blocked(const SwishMLPView& net, const float* x, const float* eps,
                             const float* s, const float* r, int64_t batch, float prior_inv,
                             const std::vector<float*>& grad_w, const std::vector<float*>& grad_b,
                             float* grad_w_out, std::vector<float>& workspace) {
  check_loss_args("swish_mlp_dsm_blocked", net, batch, grad_w, grad_b);
  auto buf = carve<DsmBuffers>(net, workspace);
  return dsm_sweep(net, x, eps, s, r, batch, prior_inv, grad_w, grad_b, grad_w_out, buf);
}
#else
bool dsm_blocked_supported(const SwishMLPView&) { return false; }
double swish_mlp_dsm_blocked(const SwishMLPView&, const float*, const float*, const float*,
                             const float*, int64_t, float, const std::vector<float*>&,
                             const std::vector<float*>&, float*, std::vector<float>&) {
  throw std::logic_error("swish_mlp_dsm_blocked needs an AVX-512 build");
}
#endif

}  // namespace ebm::detail
