// The sampling sweep: dE/dx (and E) of a float swish MLP, block by block
// (swish_mlp_grad_blocked, mlp_blocked.h).
#include "mlp_blocked_kernels.h"

namespace ebm::detail {

#if EBM_AVX512_KERNELS
namespace {
EBM_AVX512_BEGIN

// A hidden layer's epilogue: v = acc + bias, s = sigmoid(v), h = v s and
// h' = s + h (1 - s). Inner layers store h (the next product's input) and h';
// the last stores delta = h' w_out (dE/dz) and adds h w_out to the energy.
struct ForwardEpi {
  const float* bias;
  const float* w_out;  // null: an inner layer
  float* h;            // [rows][kBlock]
  float* d;            // [rows][kBlock]
  float* e;            // [kBlock], accumulated (last layer)
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][kVecs]) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 esum[kVecs];  // the tile's part of the energy, added to e once
    _Pragma("GCC unroll 16")
    for (int v = 0; v < kVecs; ++v) esum[v] = _mm512_setzero_ps();
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const int64_t n = n0 + r;
      const __m512 bn = _mm512_set1_ps(bias[n]);
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        const __m512 z = _mm512_add_ps(acc[r][v], bn);
        const __m512 s = sigmoid_avx512(z);
        const __m512 hv = _mm512_mul_ps(z, s);
        const __m512 dv = _mm512_fmadd_ps(hv, _mm512_sub_ps(one, s), s);
        float* dp = d + n * kBlock + 16 * v;
        if (w_out) {
          const __m512 wn = _mm512_set1_ps(w_out[n]);
          _mm512_store_ps(dp, _mm512_mul_ps(dv, wn));
          esum[v] = _mm512_fmadd_ps(hv, wn, esum[v]);
        } else {
          _mm512_store_ps(h + n * kBlock + 16 * v, hv);
          _mm512_store_ps(dp, dv);
        }
      }
    }
    if (w_out)
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v)
        _mm512_store_ps(e + 16 * v, _mm512_add_ps(_mm512_load_ps(e + 16 * v), esum[v]));
  }
};

// The backward epilogue into hidden layer i-1: delta_{i-1} = (delta_i W_i) *
// h'_{i-1}, in place over h'_{i-1}; into the first layer of a small input, also
// g[c] += W_0[n][c] delta_0[n] for each input coordinate c (delta_0 not stored).
struct BackwardEpi {
  float* d;            // [rows][kBlock]: h' in, delta out
  const float* w0;     // small input: W_0 [rows, dim], else null
  int64_t dim;
  float* g;            // small input: [dim][kBlock], accumulated
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][kVecs]) {
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        float* dp = d + (n0 + r) * kBlock + 16 * v;
        acc[r][v] = _mm512_mul_ps(acc[r][v], _mm512_load_ps(dp));  // delta
        if (!w0) _mm512_store_ps(dp, acc[r][v]);
      }
    }
    if (w0) add_input_grad(w0, n0, dim, acc, g);
  }
};

// Stores the accumulators (the input gradient of a wide input, [dim][kBlock]).
struct StoreEpi {
  float* out;
  template <int MR>
  EBM_TARGET_AVX512 inline __attribute__((always_inline)) void operator()(
      int64_t n0, __m512 (&acc)[MR][kVecs]) {
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r)
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) _mm512_store_ps(out + (n0 + r) * kBlock + 16 * v, acc[r][v]);
  }
};

// The sampling sweep's block buffers.
struct SweepBuffers {
  float *xt, *gt;         // the inputs and the gradient [dim][kBlock]
  float* et;              // the energy [kBlock]
  float *h[64], *d[64];   // per layer [width][kBlock]: h, and h' (then delta)
  SweepBuffers(const SwishMLPView& net, Carver& c)
      : xt(c.take(net.dim * kBlock)), gt(c.take(net.dim * kBlock)), et(c.take(kBlock)) {
    for (size_t i = 0; i < net.width.size(); ++i)
      h[i] = c.take(net.width[i] * kBlock), d[i] = c.take(net.width[i] * kBlock);
  }
};

EBM_TARGET_AVX512 void sweep(const SwishMLPView& net, const float* x, int64_t batch, float* g,
                             float* e, SweepBuffers& buf) {
  const size_t n_layers = net.width.size();
  const int64_t dim = net.dim;
  const bool small = dim <= kDirectDim;
  float *xt = buf.xt, *gt = buf.gt, *et = buf.et;
  float* const* h = buf.h;
  float* const* d = buf.d;
  for (int64_t c0 = 0; c0 < batch; c0 += kBlock) {
    const int64_t nc = batch - c0 < kBlock ? batch - c0 : kBlock;
    // The block's inputs, chain-minor; lanes past the batch are zero (finite
    // values through the sweep, never stored out).
    const bool tiles = nc == kBlock && dim % 16 == 0;  // 16 x 16 vector transposes
    if (tiles)
      for (int64_t c = 0; c < dim; c += 16)
        for (int64_t j = 0; j < kBlock; j += 16)
          transpose16(x + (c0 + j) * dim + c, dim, xt + c * kBlock + j, kBlock);
    else
      for (int64_t c = 0; c < dim; ++c)
        for (int64_t j = 0; j < kBlock; ++j) xt[c * kBlock + j] = j < nc ? x[(c0 + j) * dim + c] : 0.0f;
    for (int64_t j = 0; j < dim * kBlock; ++j) gt[j] = 0.0f;
    for (int64_t j = 0; j < kBlock; ++j) et[j] = 0.0f;
    // Forward.
    for (size_t i = 0; i < n_layers; ++i) {
      const bool last = i + 1 == n_layers;
      ForwardEpi epi{net.b[i], last ? net.w_out : nullptr, h[i], d[i], et};
      const int64_t k_len = i ? net.width[i - 1] : dim;
      if (i == 0 && small) {  // z = W_0 x formed directly
        small_layer(net.width[0], net.w[0], dim, xt, epi);
      } else {
        product(net.width[i], net.w[i], k_len, 1, i ? h[i - 1] : xt, k_len, epi);
      }
    }
    // Backward: A(n, k) = W_i[k][n], read down the columns of W_i.
    for (size_t i = n_layers - 1; i >= 1; --i) {
      const bool into_input = i == 1 && small;
      BackwardEpi epi{d[i - 1], into_input ? net.w[0] : nullptr, dim, gt};
      product(net.width[i - 1], net.w[i], 1, net.width[i - 1], d[i], net.width[i], epi);
    }
    if (small && n_layers == 1) {  // g = delta_0 W_0, delta_0 = h'_0 w_out
      BackwardEpi epi{d[0], net.w[0], dim, gt};
      for (int64_t n = 0; n < net.width[0]; ++n) {
        __m512 one[1][kVecs];
        _Pragma("GCC unroll 16")
        for (int v = 0; v < kVecs; ++v) one[0][v] = _mm512_set1_ps(1.0f);
        epi(n, one);
      }
    } else if (!small) {  // g = delta_0 W_0, a product of its own
      StoreEpi epi{gt};
      product(dim, net.w[0], 1, dim, d[0], net.width[0], epi);
    }
    if (tiles)
      for (int64_t c = 0; c < dim; c += 16)
        for (int64_t j = 0; j < kBlock; j += 16)
          transpose16(gt + c * kBlock + j, kBlock, g + (c0 + j) * dim + c, dim);
    else
      for (int64_t j = 0; j < nc; ++j)
        for (int64_t c = 0; c < dim; ++c) g[(c0 + j) * dim + c] = gt[c * kBlock + j];
    if (e)
      for (int64_t j = 0; j < nc; ++j) e[c0 + j] = et[j] + net.b_out;
  }
}

EBM_AVX512_END
}  // namespace

void swish_mlp_grad_blocked(const SwishMLPView& net, const float* x, int64_t batch, float* g,
                            float* e, std::vector<float>& workspace) {
  if (!cpu_has_avx512()) throw std::logic_error("swish_mlp_grad_blocked needs an AVX-512 CPU");
  if (net.width.empty() || net.width.size() > 64 || net.w.size() != net.width.size() ||
      net.b.size() != net.width.size())
    throw std::invalid_argument("swish_mlp_grad_blocked: 1 to 64 hidden layers, each with w and b");
  auto buf = carve<SweepBuffers>(net, workspace);
  sweep(net, x, batch, g, e, buf);
}
#else
void swish_mlp_grad_blocked(const SwishMLPView&, const float*, int64_t, float*, float*,
                            std::vector<float>&) {
  throw std::logic_error("swish_mlp_grad_blocked needs an AVX-512 build");
}
#endif

}  // namespace ebm::detail
