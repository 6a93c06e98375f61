// Sliced score matching's blocked pass: the loss and its parameter gradient
// (swish_mlp_ssm_blocked, mlp_blocked.h).
#include "mlp_blocked_kernels.h"

namespace ebm::detail {

#if EBM_AVX512_KERNELS
namespace {
EBM_AVX512_BEGIN

// ----- sliced score matching ----------------------------------------------
//
// Along a row's projection v, E_v = v . g and E_vv = v^T H v are the first
// two derivatives of E(x + t v) at t = 0: the forward 2-jet z_i = W_i h_{i-1}
// + b_i, zd_i = W_i hd_{i-1}, zdd_i = W_i hdd_{i-1}, h_i = a(z_i), hd_i =
// a'(z_i) zd_i, hdd_i = a''(z_i) zd_i^2 + a'(z_i) zdd_i (hd_{-1} = v, hdd_{-1}
// = 0), E_v = w . hd, E_vv = w . hdd. The loss 1/2 E_v^2 - E_vv has the
// parameter gradient of F = c_a E_v - c_n E_vv with c_a = E_v / N and c_n =
// 1 / N held fixed: one reverse sweep of the jet, three cotangent streams.

// Per-layer block buffers of the SSM sweep, each [width][kBlock]; vb
// [width][16]: the bias gradient, per lane.
struct SsmLayer {
  float *h, *hd, *hdd, *zd, *zdd;  // the jet (zdd unused on the first layer)
  float *s1, *s2, *s3;             // the activation's first three derivatives at z
  float *cz, *czd, *czdd;          // the cotangents of z, zd, zdd
  float* vb;
};

// The SSM sweep's buffers.
struct SsmBuffers {
  float *xt, *vt;               // x, v: [dim][kBlock]
  float *ev, *evv, *ca, *cn;    // E_v, E_vv, c_a, c_n: [kBlock]
  float* cm;                    // chain-major scratch [kBlock][widest] x 3
  float *vw0, *vwo;             // as DsmBuffers
  SsmLayer layers[64];
  float* vb[64];
  SsmBuffers(const SwishMLPView& net, Carver& c)
      : xt(c.take(net.dim * kBlock)), vt(c.take(net.dim * kBlock)), ev(c.take(kBlock)),
        evv(c.take(kBlock)), ca(c.take(kBlock)), cn(c.take(kBlock)),
        cm(c.take(3 * kBlock * widest(net))), vw0(c.take(net.width[0] * net.dim * 16)),
        vwo(c.take(net.width.back() * 16)) {
    for (size_t i = 0; i < net.width.size(); ++i) {
      SsmLayer& l = layers[i];
      for (float** b : {&l.h, &l.hd, &l.hdd, &l.zd, &l.zdd, &l.s1, &l.s2, &l.s3, &l.cz, &l.czd,
                        &l.czdd})
        *b = c.take(net.width[i] * kBlock);
      vb[i] = l.vb = c.take(16 * net.width[i]);
    }
  }
};

// The forward epilogue from the products z, zd and, past the first layer,
// zdd (streams 0, 1, 2); the last layer adds w_out . hd and w_out . hdd to
// ev and evv.
struct SsmForwardEpi {
  const float* bias;
  const float* w_out;  // last layer, else null
  SsmLayer* l;
  float *ev, *evv;     // [kBlock], last layer
  template <int MR, int NCOL>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][NCOL]) {
    constexpr bool has_zdd = NCOL == 3 * kVecs;
    const __m512 one = _mm512_set1_ps(1.0f), three = _mm512_set1_ps(3.0f),
                 six = _mm512_set1_ps(6.0f);
    __m512 sv[kVecs], svv[kVecs];  // the tile's part of E_v and E_vv
    _Pragma("GCC unroll 16")
    for (int v = 0; v < kVecs; ++v) sv[v] = svv[v] = _mm512_setzero_ps();
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const int64_t n = n0 + r;
      const __m512 bn = _mm512_set1_ps(bias[n]);
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        const int64_t o = n * kBlock + 16 * v;
        const __m512 a = _mm512_add_ps(acc[r][v], bn);
        const __m512 zd = acc[r][kVecs + v];
        const SwishJet j = swish_jet(a);
        const __m512 d1 = j.d1, d2 = j.d2;  // and the third: s' (3 u + a (1 - 6 s'))
        const __m512 d3 = _mm512_mul_ps(
            j.sp, _mm512_fmadd_ps(a, _mm512_fnmadd_ps(six, j.sp, one), _mm512_mul_ps(three, j.u)));
        const __m512 hd = _mm512_mul_ps(d1, zd);
        __m512 hdd = _mm512_mul_ps(_mm512_mul_ps(d2, zd), zd);
        if constexpr (has_zdd) {
          hdd = _mm512_fmadd_ps(d1, acc[r][2 * kVecs + v], hdd);
          _mm512_store_ps(l->zdd + o, acc[r][2 * kVecs + v]);
        }
        if (!w_out) _mm512_store_ps(l->h + o, _mm512_mul_ps(a, j.s));
        _mm512_store_ps(l->hd + o, hd);
        _mm512_store_ps(l->hdd + o, hdd);
        _mm512_store_ps(l->zd + o, zd);
        _mm512_store_ps(l->s1 + o, d1);
        _mm512_store_ps(l->s2 + o, d2);
        _mm512_store_ps(l->s3 + o, d3);
        if (w_out) {
          const __m512 wn = _mm512_set1_ps(w_out[n]);
          sv[v] = _mm512_fmadd_ps(wn, hd, sv[v]);
          svv[v] = _mm512_fmadd_ps(wn, hdd, svv[v]);
        }
      }
    }
    if (w_out)
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        _mm512_store_ps(ev + 16 * v, _mm512_add_ps(_mm512_load_ps(ev + 16 * v), sv[v]));
        _mm512_store_ps(evv + 16 * v, _mm512_add_ps(_mm512_load_ps(evv + 16 * v), svv[v]));
      }
  }
};

// The cotangents of z, zd, zdd at element o of layer l from those of h, hd,
// hdd (ch, chd, chdd), added to the bias gradient's lane sum bsum:
//   czdd = chdd a', czd = chd a' + 2 chdd a'' zd,
//   cz = ch a' + chd a'' zd + chdd (a''' zd^2 + a'' zdd).
// Stored, except on the first layer, where only W_0's gradient takes them
// (vw0 += cz x^T + czd v^T).
template <bool kFirst>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void ssm_cotangents(
    const SsmLayer& l, int64_t o, __m512 ch, __m512 chd, __m512 chdd, __m512& bsum, float* vw0,
    int64_t dim, const float* xt, const float* vt) {
  const __m512 s1 = _mm512_load_ps(l.s1 + o), s2 = _mm512_load_ps(l.s2 + o);
  const __m512 zd = _mm512_load_ps(l.zd + o);
  const __m512 s2zd = _mm512_mul_ps(s2, zd);
  __m512 curv = _mm512_mul_ps(_mm512_mul_ps(_mm512_load_ps(l.s3 + o), zd), zd);
  if (!kFirst) curv = _mm512_fmadd_ps(s2, _mm512_load_ps(l.zdd + o), curv);
  const __m512 czdd = _mm512_mul_ps(chdd, s1);
  const __m512 czd = _mm512_fmadd_ps(chd, s1, _mm512_mul_ps(_mm512_add_ps(chdd, chdd), s2zd));
  const __m512 cz = _mm512_fmadd_ps(ch, s1, _mm512_fmadd_ps(chd, s2zd, _mm512_mul_ps(chdd, curv)));
  bsum = _mm512_add_ps(bsum, cz);
  if (kFirst) {
    add_first_layer_grad<1>(vw0, dim, {cz}, {czd}, xt, vt);
  } else {
    _mm512_store_ps(l.cz + o, cz);
    _mm512_store_ps(l.czd + o, czd);
    _mm512_store_ps(l.czdd + o, czdd);
  }
}

// The reverse epilogue into layer l from the products W^T cz, W^T czd,
// W^T czdd of the layer above (the cotangents of h, hd, hdd).
template <bool kFirst>
struct SsmReverseEpi {
  SsmLayer* l;
  int64_t dim;
  const float *xt, *vt;  // first layer: [dim][kBlock]
  float* vw0;            // first layer: [rows][dim][16]
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][3 * kVecs]) {
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const int64_t n = n0 + r;
      __m512 bsum = _mm512_setzero_ps();
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v)
        ssm_cotangents<kFirst>(*l, n * kBlock + 16 * v, acc[r][v], acc[r][kVecs + v],
                               acc[r][2 * kVecs + v], bsum, kFirst ? vw0 + n * dim * 16 : nullptr,
                               dim, kFirst ? xt + 16 * v : nullptr, kFirst ? vt + 16 * v : nullptr);
      _mm512_store_ps(l->vb + 16 * n, _mm512_add_ps(_mm512_load_ps(l->vb + 16 * n), bsum));
    }
  }
};

// The top layer's cotangents, elementwise: those of h, hd, hdd are 0,
// c_a w_out and -c_n w_out; the output weights' gradient gets c_a hd - c_n hdd.
template <bool kFirst>
EBM_TARGET_AVX512 void ssm_top(SsmLayer& l, int64_t width, const float* w_out, const float* ca,
                               const float* cn, float* vwo, int64_t dim, const float* xt,
                               const float* vt, float* vw0) {
  for (int64_t n = 0; n < width; ++n) {
    const __m512 wn = _mm512_set1_ps(w_out[n]);
    __m512 bsum = _mm512_setzero_ps(), wsum = _mm512_setzero_ps();
    _Pragma("GCC unroll 16")
    for (int v = 0; v < kVecs; ++v) {
      const int64_t o = n * kBlock + 16 * v;
      const __m512 a = _mm512_load_ps(ca + 16 * v), c = _mm512_load_ps(cn + 16 * v);
      wsum = _mm512_fmadd_ps(a, _mm512_load_ps(l.hd + o), wsum);
      wsum = _mm512_fnmadd_ps(c, _mm512_load_ps(l.hdd + o), wsum);
      ssm_cotangents<kFirst>(l, o, _mm512_setzero_ps(), _mm512_mul_ps(a, wn),
                             _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(c, wn)), bsum,
                             kFirst ? vw0 + n * dim * 16 : nullptr, dim,
                             kFirst ? xt + 16 * v : nullptr, kFirst ? vt + 16 * v : nullptr);
    }
    _mm512_store_ps(l.vb + 16 * n, _mm512_add_ps(_mm512_load_ps(l.vb + 16 * n), bsum));
    _mm512_store_ps(vwo + 16 * n, _mm512_add_ps(_mm512_load_ps(vwo + 16 * n), wsum));
  }
}

EBM_TARGET_AVX512 double ssm_sweep(const SwishMLPView& net, const float* x, const float* vproj,
                                   int64_t batch, float prior_inv,
                                   const std::vector<float*>& grad_w,
                                   const std::vector<float*>& grad_b, float* grad_w_out,
                                   SsmBuffers& buf) {
  const size_t n_layers = net.width.size();
  const int64_t dim = net.dim, last = int64_t(n_layers) - 1;
  float *xt = buf.xt, *vt = buf.vt, *ev = buf.ev, *evv = buf.evv, *ca = buf.ca, *cn = buf.cn;
  float *cm = buf.cm, *vw0 = buf.vw0, *vwo = buf.vwo;
  SsmLayer* layers = buf.layers;
  clear_grads(net, grad_w, vw0, vwo, buf.vb);
  const float inv_n = 1.0f / float(batch);
  double loss = 0.0;
  for (int64_t c0 = 0; c0 < batch; c0 += kBlock) {
    const int64_t nc = batch - c0 < kBlock ? batch - c0 : kBlock;
    // The block, chain-minor; lanes past the batch get x = v = 0 (finite
    // throughout) and c_a = c_n = 0 (no part in the gradients).
    gather_block(x + c0 * dim, dim, nc, xt);
    gather_block(vproj + c0 * dim, dim, nc, vt);
    for (int64_t j = 0; j < kBlock; ++j) ev[j] = evv[j] = 0.0f;
    // Forward: the jet along v.
    for (size_t i = 0; i < n_layers; ++i) {
      SsmForwardEpi epi{net.b[i], int64_t(i) == last ? net.w_out : nullptr, &layers[i], ev, evv};
      if (i == 0) {
        small_layer<2>(net.width[0], net.w[0], dim, Operands<2>{{xt, vt}}, epi);
      } else {
        const SsmLayer& in = layers[i - 1];
        product<3>(net.width[i], net.w[i], net.width[i - 1], 1, Operands<3>{{in.h, in.hd, in.hdd}},
                   net.width[i - 1], epi);
      }
    }
    // The loss and the fixed coefficients c_a, c_n (the base term 1/2 |x|^2
    // prior_inv adds prior_inv x . v to E_v and prior_inv |v|^2 to E_vv).
    for (int64_t j = 0; j < kBlock; ++j) {
      if (j >= nc) {
        ca[j] = cn[j] = 0.0f;
        continue;
      }
      float xv = 0.0f, vv = 0.0f;
      for (int64_t c = 0; c < dim; ++c) {
        xv += xt[c * kBlock + j] * vt[c * kBlock + j];
        vv += vt[c * kBlock + j] * vt[c * kBlock + j];
      }
      const float e1 = ev[j] + prior_inv * xv, e2 = evv[j] + prior_inv * vv;
      loss += 0.5 * double(e1) * e1 - double(e2);
      ca[j] = e1 * inv_n;
      cn[j] = inv_n;
    }
    // Reverse: the top layer elementwise, then per layer the weight gradient
    // cz h^T + czd hd^T + czdd hdd^T and the cotangents W^T (cz, czd, czdd).
    if (last == 0)
      ssm_top<true>(layers[0], net.width[0], net.w_out, ca, cn, vwo, dim, xt, vt, vw0);
    else
      ssm_top<false>(layers[last], net.width[last], net.w_out, ca, cn, vwo, dim, xt, vt, vw0);
    for (int64_t i = last; i >= 1; --i) {
      const int64_t w_in = net.width[i - 1];
      const SsmLayer &l = layers[i], &in = layers[i - 1];
      float *c1 = cm, *c2 = cm + kBlock * w_in, *c3 = cm + 2 * kBlock * w_in;
      to_chain_major(in.h, w_in, c1);
      to_chain_major(in.hd, w_in, c2);
      to_chain_major(in.hdd, w_in, c3);
      rank_update<3>(grad_w[i], net.width[i], w_in, Pairs<3>{{l.cz, l.czd, l.czdd}, {c1, c2, c3}});
      const Operands<3> cot{{l.cz, l.czd, l.czdd}};
      if (i == 1) {
        SsmReverseEpi<true> epi{&layers[0], dim, xt, vt, vw0};
        product<3>(w_in, net.w[i], 1, w_in, cot, net.width[i], epi);
      } else {
        SsmReverseEpi<false> epi{&layers[i - 1], dim, nullptr, nullptr, nullptr};
        product<3>(w_in, net.w[i], 1, w_in, cot, net.width[i], epi);
      }
    }
  }
  store_lane_sums(net, vw0, vwo, buf.vb, grad_w, grad_b, grad_w_out);
  return loss / double(batch);
}

EBM_AVX512_END
}  // namespace

double swish_mlp_ssm_blocked(const SwishMLPView& net, const float* x, const float* v,
                             int64_t batch, float prior_inv, const std::vector<float*>& grad_w,
                             const std::vector<float*>& grad_b, float* grad_w_out,
                             std::vector<float>& workspace) {
  check_loss_args("swish_mlp_ssm_blocked", net, batch, grad_w, grad_b);
  auto buf = carve<SsmBuffers>(net, workspace);
  return ssm_sweep(net, x, v, batch, prior_inv, grad_w, grad_b, grad_w_out, buf);
}
#else
double swish_mlp_ssm_blocked(const SwishMLPView&, const float*, const float*, int64_t, float,
                             const std::vector<float*>&, const std::vector<float*>&, float*,
                             std::vector<float>&) {
  throw std::logic_error("swish_mlp_ssm_blocked needs an AVX-512 build");
}
#endif

}  // namespace ebm::detail
