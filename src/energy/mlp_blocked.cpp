#include "mlp_blocked.h"

#include <stdexcept>

#include "ebm/core/simd.h"

namespace ebm::detail {

#if EBM_AVX512_KERNELS
namespace {
// Everything here is internal (no inline function or template is shared with
// other translation units, where it could be merged with a non-AVX-512 copy).

constexpr int kVecs = 2;                // vectors of 16 chains in a block
constexpr int64_t kBlock = 16 * kVecs;  // chains in a block
constexpr int kRows = 8;                // output rows of the main register tile
constexpr int64_t kSmallDim = 8;        // inputs up to this width: first layer formed directly

EBM_AVX512_BEGIN

// acc[r][v] = sum_k A(r, k) B[k][16 v .. 16 v + 15] for a chain-minor B
// [k_len][kBlock] and A(r, k) = a[r rs + k cs]: the rows of W (rs = its row
// length, cs = 1) or of W^T (rs = 1, cs = its row length), read in place.
template <int MR>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void tile(
    const float* a, int64_t rs, int64_t cs, const float* __restrict b, int64_t k_len,
    __m512 (&acc)[MR][kVecs]) {
  // (a local array: the caller's is seen by its epilogue, and GCC would keep
  // it in memory through the loop)
  __m512 c[MR][kVecs];
  _Pragma("GCC unroll 16")
  for (int r = 0; r < MR; ++r)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < kVecs; ++v) c[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < k_len; ++k) {
    __m512 bv[kVecs];
    _Pragma("GCC unroll 16")
    for (int v = 0; v < kVecs; ++v) bv[v] = _mm512_load_ps(b + k * kBlock + 16 * v);
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * rs + k * cs]);
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) c[r][v] = _mm512_fmadd_ps(av, bv[v], c[r][v]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int r = 0; r < MR; ++r)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < kVecs; ++v) acc[r][v] = c[r][v];
}

// The product of rows 0..n_rows of A with B, tile by tile, each tile's
// accumulators handed to epi(n0, acc).
template <int MR, class Epi>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void run_tile(
    int64_t n0, const float* a, int64_t rs, int64_t cs, const float* b, int64_t k_len, Epi& epi) {
  __m512 acc[MR][kVecs];
  tile<MR>(a + n0 * rs, rs, cs, b, k_len, acc);
  epi(n0, acc);
}

template <class Epi>
EBM_TARGET_AVX512 void product(int64_t n_rows, const float* a, int64_t rs, int64_t cs,
                               const float* b, int64_t k_len, Epi& epi) {
  int64_t n = 0;
  for (; n + kRows <= n_rows; n += kRows) run_tile<kRows>(n, a, rs, cs, b, k_len, epi);
  for (; n + 4 <= n_rows; n += 4) run_tile<4>(n, a, rs, cs, b, k_len, epi);
  switch (n_rows - n) {
    case 3: run_tile<3>(n, a, rs, cs, b, k_len, epi); break;
    case 2: run_tile<2>(n, a, rs, cs, b, k_len, epi); break;
    case 1: run_tile<1>(n, a, rs, cs, b, k_len, epi); break;
    default: break;
  }
}

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
          float* ep = e + 16 * v;
          _mm512_store_ps(ep, _mm512_fmadd_ps(hv, wn, _mm512_load_ps(ep)));
        } else {
          _mm512_store_ps(h + n * kBlock + 16 * v, hv);
          _mm512_store_ps(dp, dv);
        }
      }
    }
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
      const int64_t n = n0 + r;
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) {
        float* dp = d + n * kBlock + 16 * v;
        const __m512 delta = _mm512_mul_ps(acc[r][v], _mm512_load_ps(dp));
        if (!w0) {
          _mm512_store_ps(dp, delta);
          continue;
        }
        for (int64_t c = 0; c < dim; ++c) {
          float* gp = g + c * kBlock + 16 * v;
          _mm512_store_ps(gp, _mm512_fmadd_ps(_mm512_set1_ps(w0[n * dim + c]), delta,
                                              _mm512_load_ps(gp)));
        }
      }
    }
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

// ws: 64-byte aligned, sized by workspace_floats().
EBM_TARGET_AVX512 void sweep(const SwishMLPView& net, const float* x, int64_t batch, float* g,
                             float* e, float* ws) {
  const size_t n_layers = net.width.size();
  const int64_t dim = net.dim;
  const bool small = dim <= kSmallDim;
  float* xt = ws;                     // [dim][kBlock]
  float* gt = xt + dim * kBlock;      // [dim][kBlock]
  float* et = gt + dim * kBlock;      // [kBlock]
  float* layers = et + kBlock;        // per layer: h [H][kBlock], d [H][kBlock]
  auto h_of = [&](size_t i) {
    float* p = layers;
    for (size_t j = 0; j < i; ++j) p += 2 * net.width[j] * kBlock;
    return p;
  };
  float* h[64];
  float* d[64];
  for (size_t i = 0; i < n_layers; ++i) {
    h[i] = h_of(i);
    d[i] = h[i] + net.width[i] * kBlock;
  }
  for (int64_t c0 = 0; c0 < batch; c0 += kBlock) {
    const int64_t nc = batch - c0 < kBlock ? batch - c0 : kBlock;
    // The block's inputs, chain-minor; lanes past the batch are zero (finite
    // values through the sweep, never stored out).
    for (int64_t c = 0; c < dim; ++c)
      for (int64_t j = 0; j < kBlock; ++j) xt[c * kBlock + j] = j < nc ? x[(c0 + j) * dim + c] : 0.0f;
    for (int64_t j = 0; j < dim * kBlock; ++j) gt[j] = 0.0f;
    for (int64_t j = 0; j < kBlock; ++j) et[j] = 0.0f;
    // Forward.
    for (size_t i = 0; i < n_layers; ++i) {
      const bool last = i + 1 == n_layers;
      ForwardEpi epi{net.b[i], last ? net.w_out : nullptr, h[i], d[i], et};
      const int64_t k_len = i ? net.width[i - 1] : dim;
      if (i == 0 && small) {  // z = W_0 x formed directly, a row at a time
        for (int64_t n = 0; n < net.width[0]; ++n) {
          __m512 acc[1][kVecs];
          _Pragma("GCC unroll 16")
          for (int v = 0; v < kVecs; ++v) acc[0][v] = _mm512_setzero_ps();
          for (int64_t c = 0; c < dim; ++c) {
            const __m512 wv = _mm512_set1_ps(net.w[0][n * dim + c]);
            _Pragma("GCC unroll 16")
            for (int v = 0; v < kVecs; ++v)
              acc[0][v] = _mm512_fmadd_ps(wv, _mm512_load_ps(xt + c * kBlock + 16 * v), acc[0][v]);
          }
          epi(n, acc);
        }
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
  if (net.width.empty() || net.width.size() > 64 || net.w.size() != net.width.size() ||
      net.b.size() != net.width.size())
    throw std::invalid_argument("swish_mlp_grad_blocked: 1 to 64 hidden layers, each with w and b");
  int64_t floats = 2 * net.dim * kBlock + kBlock;
  for (int64_t width : net.width) floats += 2 * width * kBlock;
  const size_t need = size_t(floats) + 16;  // + alignment slack
  if (workspace.size() < need) workspace.resize(need);
  auto addr = reinterpret_cast<uintptr_t>(workspace.data());
  float* ws = reinterpret_cast<float*>((addr + 63) & ~uintptr_t(63));
  sweep(net, x, batch, g, e, ws);
}
#else
void swish_mlp_grad_blocked(const SwishMLPView&, const float*, int64_t, float*, float*,
                            std::vector<float>&) {
  throw std::logic_error("swish_mlp_grad_blocked needs an AVX-512 build");
}
#endif

}  // namespace ebm::detail
