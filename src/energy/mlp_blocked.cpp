#include "mlp_blocked.h"

#include <stdexcept>
#include <string>

#include "ebm/core/simd.h"

namespace ebm::detail {

#if EBM_AVX512_KERNELS
namespace {
// Everything here is internal (no inline function or template is shared with
// other translation units, where it could be merged with a non-AVX-512 copy).

constexpr int64_t kBlock = kBlockRows;      // chains in a block
constexpr int kVecs = int(kBlock / 16);   // vectors of 16 chains in a block
constexpr int kRows = 8;                // output rows of the main register tile
constexpr int64_t kDirectDim = 8;       // inputs up to this width: first layer formed directly

// Consecutive buffers out of one workspace, in the order taken; without a
// base it only counts. Each pass describes its layout once (a Buffers type
// built from a Carver) and carve() runs it twice: to size the workspace, then
// to hand out the buffers. Every size taken is a multiple of 16 floats, so
// every buffer stays 64-byte aligned.
class Carver {
 public:
  explicit Carver(float* base = nullptr) : base_(base) {}
  float* take(int64_t n) {
    float* p = base_ ? base_ + used_ : nullptr;
    used_ += n;
    return p;
  }
  int64_t used() const { return used_; }

 private:
  float* base_;
  int64_t used_ = 0;
};

template <class Buffers>
Buffers carve(const SwishMLPView& net, std::vector<float>& workspace) {
  Carver count;
  const Buffers sizing(net, count);  // (pointers unused: the count is wanted)
  (void)sizing;
  const size_t need = size_t(count.used()) + 16;  // + alignment slack
  if (workspace.size() < need) workspace.resize(need);
  auto addr = reinterpret_cast<uintptr_t>(workspace.data());
  Carver c(reinterpret_cast<float*>((addr + 63) & ~uintptr_t(63)));
  return Buffers(net, c);
}

int64_t widest(const SwishMLPView& net) {
  int64_t w = 0;
  for (int64_t width : net.width) w = width > w ? width : w;
  return w;
}

EBM_AVX512_BEGIN

// NS chain-minor operands B_s [k_len][kBlock] multiplied by the same A.
template <int NS>
struct Operands {
  const float* p[NS];
};

// acc[r][s kVecs + v] = sum_k A(r, k) B_s[k][16 v .. 16 v + 15] for NS
// operands B_s and A(r, k) = a[r rs + k cs]: the rows of W (rs = its row
// length, cs = 1) or of W^T (rs = 1, cs = its row length), read in place
// (one broadcast of A(r, k) serves every operand).
template <int MR, int NS>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void tile(
    const float* a, int64_t rs, int64_t cs, Operands<NS> b, int64_t k_len,
    __m512 (&acc)[MR][NS * kVecs]) {
  constexpr int kCols = NS * kVecs;
  // (a local array: the caller's is seen by its epilogue, and GCC would keep
  // it in memory through the loop)
  __m512 c[MR][kCols];
  _Pragma("GCC unroll 16")
  for (int r = 0; r < MR; ++r)
    _Pragma("GCC unroll 16")
    for (int j = 0; j < kCols; ++j) c[r][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < k_len; ++k) {
    __m512 bv[kCols];
    _Pragma("GCC unroll 16")
    for (int s = 0; s < NS; ++s)
      _Pragma("GCC unroll 16")
      for (int v = 0; v < kVecs; ++v) bv[s * kVecs + v] = _mm512_load_ps(b.p[s] + k * kBlock + 16 * v);
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * rs + k * cs]);
      _Pragma("GCC unroll 16")
      for (int j = 0; j < kCols; ++j) c[r][j] = _mm512_fmadd_ps(av, bv[j], c[r][j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int r = 0; r < MR; ++r)
    _Pragma("GCC unroll 16")
    for (int j = 0; j < kCols; ++j) acc[r][j] = c[r][j];
}

// The product of rows 0..n_rows of A with B, tile by tile, each tile's
// accumulators handed to epi(n0, acc).
template <int MR, int NS, class Epi>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void run_tile(
    int64_t n0, const float* a, int64_t rs, int64_t cs, Operands<NS> b, int64_t k_len, Epi& epi) {
  __m512 acc[MR][NS * kVecs];
  tile<MR, NS>(a + n0 * rs, rs, cs, b, k_len, acc);
  epi(n0, acc);
}

// Tiles of kRows rows for one operand; of 4 for several (the accumulators of
// 4 rows and 3 operands fill 24 of the 32 vector registers).
template <int NS, class Epi>
EBM_TARGET_AVX512 void product(int64_t n_rows, const float* a, int64_t rs, int64_t cs,
                               Operands<NS> b, int64_t k_len, Epi& epi) {
  constexpr int kMain = NS == 1 ? kRows : 4;
  int64_t n = 0;
  for (; n + kMain <= n_rows; n += kMain) run_tile<kMain, NS>(n, a, rs, cs, b, k_len, epi);
  if (kMain > 4)
    for (; n + 4 <= n_rows; n += 4) run_tile<4, NS>(n, a, rs, cs, b, k_len, epi);
  switch (n_rows - n) {
    case 3: run_tile<3, NS>(n, a, rs, cs, b, k_len, epi); break;
    case 2: run_tile<2, NS>(n, a, rs, cs, b, k_len, epi); break;
    case 1: run_tile<1, NS>(n, a, rs, cs, b, k_len, epi); break;
    default: break;
  }
}

template <class Epi>
EBM_TARGET_AVX512 void product(int64_t n_rows, const float* a, int64_t rs, int64_t cs,
                               const float* b, int64_t k_len, Epi& epi) {
  product<1>(n_rows, a, rs, cs, Operands<1>{{b}}, k_len, epi);
}

// out[j][i] = in[i][j] for a 16 x 16 tile (row strides ld_in, ld_out):
// pairs of rows interleaved, then quadruples, then 128-bit lanes twice.
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void transpose16(
    const float* in, int64_t ld_in, float* out, int64_t ld_out) {
  __m512 r[16], t[16];
  _Pragma("GCC unroll 16")
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * ld_in);
  _Pragma("GCC unroll 8")
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4 i + k], 128-bit lane L: column 4 L + k of rows 4 i .. 4 i + 3
  _Pragma("GCC unroll 4")
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
    t[4 + k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
    t[8 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
    t[12 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
  }
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
    r[4 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0xDD);
  }
  _Pragma("GCC unroll 16")
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(out + i * ld_out, r[i]);
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

// g[c] += sum_r W_0[n0 + r][c] delta[r] for a tile of first-layer rows
// (g: [dim][kBlock]): the tile's sum in registers, then one update of g (not
// a store-to-load chain through memory per row).
template <int MR>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void add_input_grad(
    const float* w0, int64_t n0, int64_t dim, const __m512 (&delta)[MR][kVecs], float* g) {
  for (int64_t c = 0; c < dim; ++c) {
    _Pragma("GCC unroll 16")
    for (int v = 0; v < kVecs; ++v) {
      __m512 sum[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
      _Pragma("GCC unroll 16")
      for (int r = 0; r < MR; ++r)
        sum[r & 1] = _mm512_fmadd_ps(_mm512_set1_ps(w0[(n0 + r) * dim + c]), delta[r][v], sum[r & 1]);
      float* gp = g + c * kBlock + 16 * v;
      _mm512_store_ps(gp, _mm512_add_ps(_mm512_load_ps(gp), _mm512_add_ps(sum[0], sum[1])));
    }
  }
}

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

// The first layer of a small input, a row at a time: acc = W_0 in_s for each
// operand (+ nothing: the epilogue adds the bias).
template <int NS, class Epi>
EBM_TARGET_AVX512 void small_layer(int64_t rows, const float* w0, int64_t dim, Operands<NS> in,
                                   Epi& epi) {
  for (int64_t n = 0; n < rows; ++n) {
    __m512 acc[1][NS * kVecs];
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NS * kVecs; ++j) acc[0][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < dim; ++c) {
      const __m512 wv = _mm512_set1_ps(w0[n * dim + c]);
      _Pragma("GCC unroll 16")
      for (int s = 0; s < NS; ++s)
        _Pragma("GCC unroll 16")
        for (int v = 0; v < kVecs; ++v)
          acc[0][s * kVecs + v] = _mm512_fmadd_ps(
              wv, _mm512_load_ps(in.p[s] + c * kBlock + 16 * v), acc[0][s * kVecs + v]);
    }
    epi(n, acc);
  }
}

template <class Epi>
EBM_TARGET_AVX512 void small_layer(int64_t rows, const float* w0, int64_t dim, const float* in,
                                   Epi& epi) {
  small_layer<1>(rows, w0, dim, Operands<1>{{in}}, epi);
}

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

// ----- denoising score matching -------------------------------------------

// Chain-major copy of a chain-minor block: out [kBlock][rows] from in
// [rows][kBlock] (the weight gradients' vector operand; rows a multiple of 16).
EBM_TARGET_AVX512 void to_chain_major(const float* __restrict in, int64_t rows,
                                      float* __restrict out) {
  for (int64_t n = 0; n < rows; n += 16)
    for (int64_t j = 0; j < kBlock; j += 16) transpose16(in + n * kBlock + j, kBlock, out + j * rows + n, rows);
}

// NP pairs (a_k chain-minor [rows][kBlock], b_k chain-major [kBlock][cols])
// whose products over the block's chains are summed into a weight gradient.
template <int NP>
struct Pairs {
  const float* a[NP];
  const float* b[NP];
};

// C [MR rows, 16 NC columns] += sum_k sum_t a_k(r, t) b_k[t] over the block's
// chains t (b row stride ldb).
template <int MR, int NC, int NP>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void rank_update_tile(
    float* c, int64_t ldc, Pairs<NP> ab, int64_t ldb) {
  __m512 acc[MR][NC];
  _Pragma("GCC unroll 16")
  for (int r = 0; r < MR; ++r)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < NC; ++v) acc[r][v] = _mm512_loadu_ps(c + r * ldc + 16 * v);
  for (int pass = 0; pass < NP; ++pass) {
    const float* a = ab.a[pass];
    const float* b = ab.b[pass];
    for (int64_t t = 0; t < kBlock; ++t) {
      __m512 bv[NC];
      _Pragma("GCC unroll 16")
      for (int v = 0; v < NC; ++v) bv[v] = _mm512_loadu_ps(b + t * ldb + 16 * v);
      _Pragma("GCC unroll 16")
      for (int r = 0; r < MR; ++r) {
        const __m512 av = _mm512_set1_ps(a[r * kBlock + t]);
        _Pragma("GCC unroll 16")
        for (int v = 0; v < NC; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
      }
    }
  }
  _Pragma("GCC unroll 16")
  for (int r = 0; r < MR; ++r)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < NC; ++v) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

// Rows n.. of the pairs' a operands.
template <int NP>
EBM_TARGET_AVX512 inline Pairs<NP> rows_from(Pairs<NP> ab, int64_t n) {
  for (int k = 0; k < NP; ++k) ab.a[k] += n * kBlock;
  return ab;
}

template <int NC, int NP>
EBM_TARGET_AVX512 void rank_update_rows(float* c, int64_t rows, int64_t ldc, Pairs<NP> ab) {
  int64_t n = 0;
  for (; n + kRows <= rows; n += kRows)
    rank_update_tile<kRows, NC, NP>(c + n * ldc, ldc, rows_from(ab, n), ldc);
  for (; n + 4 <= rows; n += 4)
    rank_update_tile<4, NC, NP>(c + n * ldc, ldc, rows_from(ab, n), ldc);
  for (; n < rows; ++n) rank_update_tile<1, NC, NP>(c + n * ldc, ldc, rows_from(ab, n), ldc);
}

// dW [rows, cols] += sum_k a_k b_k over the block (cols a multiple of 16).
template <int NP>
EBM_TARGET_AVX512 void rank_update(float* dw, int64_t rows, int64_t cols, Pairs<NP> ab) {
  int64_t k = 0;
  auto cols_from = [&](int64_t k0) {
    Pairs<NP> out = ab;
    for (int j = 0; j < NP; ++j) out.b[j] += k0;
    return out;
  };
  for (; k + 32 <= cols; k += 32) rank_update_rows<2, NP>(dw + k, rows, cols, cols_from(k));
  if (k < cols) rank_update_rows<1, NP>(dw + k, rows, cols, cols_from(k));
}

// swish(a) = a s (s = sigmoid(a)) and its first two derivatives a' = s + a s'
// and a'' = s' (2 + a u), with s' = s (1 - s) and u = 1 - 2 s.
struct SwishJet {
  __m512 s, sp, u, d1, d2;
};
EBM_TARGET_AVX512 inline __attribute__((always_inline)) SwishJet swish_jet(__m512 a) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  SwishJet j;
  j.s = sigmoid_avx512(a);
  j.sp = _mm512_fnmadd_ps(j.s, j.s, j.s);
  j.u = _mm512_fnmadd_ps(two, j.s, one);
  j.d1 = _mm512_fmadd_ps(a, j.sp, j.s);
  j.d2 = _mm512_mul_ps(j.sp, _mm512_fmadd_ps(a, j.u, two));
  return j;
}

// The weight gradients both loss sweeps clear before their first block
// (grad_w[i], i >= 1, which rank updates add to), and the per-lane
// accumulators [rows][16] they reduce after the last: W_0's (vw0,
// [width0][dim][16]), the output weights' (vwo) and each layer's bias (vb[i]).
EBM_TARGET_AVX512 void clear_grads(const SwishMLPView& net, const std::vector<float*>& grad_w,
                                   float* vw0, float* vwo, float* const* vb) {
  const size_t n_layers = net.width.size();
  for (size_t i = 0; i < n_layers; ++i)
    for (int64_t j = 0; j < 16 * net.width[i]; ++j) vb[i][j] = 0.0f;
  for (int64_t j = 0; j < net.width[0] * net.dim * 16; ++j) vw0[j] = 0.0f;
  for (int64_t j = 0; j < net.width.back() * 16; ++j) vwo[j] = 0.0f;
  for (size_t i = 1; i < n_layers; ++i)
    for (int64_t j = 0; j < net.width[i] * net.width[i - 1]; ++j) grad_w[i][j] = 0.0f;
}

EBM_TARGET_AVX512 void store_lane_sums(const SwishMLPView& net, const float* vw0, const float* vwo,
                                       const float* const* vb, const std::vector<float*>& grad_w,
                                       const std::vector<float*>& grad_b, float* grad_w_out) {
  for (int64_t j = 0; j < net.width[0] * net.dim; ++j)
    grad_w[0][j] = _mm512_reduce_add_ps(_mm512_load_ps(vw0 + 16 * j));
  for (int64_t j = 0; j < net.width.back(); ++j)
    grad_w_out[j] = _mm512_reduce_add_ps(_mm512_load_ps(vwo + 16 * j));
  for (size_t i = 0; i < net.width.size(); ++i)
    for (int64_t j = 0; j < net.width[i]; ++j)
      grad_b[i][j] = _mm512_reduce_add_ps(_mm512_load_ps(vb[i] + 16 * j));
}

// The mask of the lanes of vector v of a block of nc chains that hold one.
inline __mmask16 block_lanes(int64_t nc, int v) {
  return nc > 16 * v ? lanes_mask(nc - 16 * v) : __mmask16(0);
}

// Rows c0 .. c0 + nc - 1 of a row-major [*, dim] array (in: its row c0) as a
// chain-minor block out [dim][kBlock]; lanes past nc are zero.
EBM_TARGET_AVX512 void gather_block(const float* in, int64_t dim, int64_t nc, float* out) {
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
      _mm512_set1_epi32(int(dim)));
  for (int v = 0; v < kVecs; ++v) {
    const __mmask16 m = block_lanes(nc, v);
    for (int64_t c = 0; c < dim; ++c)  // (no address past the rows is formed)
      _mm512_store_ps(out + c * kBlock + 16 * v,
                      m ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, in + 16 * v * dim + c, 4)
                        : _mm512_setzero_ps());
  }
}

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

// W_0's gradient from NV vectors of chains at row n of the first layer:
// vw[c] += sum over the vectors of zeta xt[c] + delta ct[c] (vw: [dim][16]
// per lane; xt, ct: the chains' inputs and dL/dg at coordinate c, row stride
// kBlock, from the first vector's chains).
template <int NV>
EBM_TARGET_AVX512 inline __attribute__((always_inline)) void add_first_layer_grad(
    float* vw, int64_t dim, const __m512 (&zeta)[NV], const __m512 (&delta)[NV],
    const float* xt, const float* ct) {
  for (int64_t c = 0; c < dim; ++c) {
    float* wp = vw + c * 16;
    __m512 t = _mm512_load_ps(wp);
    _Pragma("GCC unroll 16")
    for (int v = 0; v < NV; ++v) {
      t = _mm512_fmadd_ps(zeta[v], _mm512_load_ps(xt + c * kBlock + 16 * v), t);
      t = _mm512_fmadd_ps(delta[v], _mm512_load_ps(ct + c * kBlock + 16 * v), t);
    }
    _mm512_store_ps(wp, t);
  }
}

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

void swish_mlp_grad_blocked(const SwishMLPView& net, const float* x, int64_t batch, float* g,
                            float* e, std::vector<float>& workspace) {
  if (!cpu_has_avx512()) throw std::logic_error("swish_mlp_grad_blocked needs an AVX-512 CPU");
  if (net.width.empty() || net.width.size() > 64 || net.w.size() != net.width.size() ||
      net.b.size() != net.width.size())
    throw std::invalid_argument("swish_mlp_grad_blocked: 1 to 64 hidden layers, each with w and b");
  auto buf = carve<SweepBuffers>(net, workspace);
  sweep(net, x, batch, g, e, buf);
}

bool dsm_blocked_supported(const SwishMLPView& net) {
  if (!cpu_has_avx512() || net.dim < 1 || net.dim > kDirectDim || net.width.empty() || net.width.size() > 64) return false;
  for (size_t i = 0; i + 1 < net.width.size(); ++i)
    if (net.width[i] % 16 != 0) return false;
  return true;
}

namespace {
// A loss pass's arguments: a network it takes, weights, biases and
// gradients for every layer, and rows.
void check_loss_args(const char* name, const SwishMLPView& net, int64_t batch,
                     const std::vector<float*>& grad_w, const std::vector<float*>& grad_b) {
  if (!dsm_blocked_supported(net) || net.w.size() != net.width.size() ||
      net.b.size() != net.width.size() || grad_w.size() != net.width.size() ||
      grad_b.size() != net.width.size() || batch < 1)
    throw std::invalid_argument(std::string(name) +
                                ": unsupported network or batch, or no AVX-512 CPU");
}
}  // namespace

double swish_mlp_dsm_blocked(const SwishMLPView& net, const float* x, const float* eps,
                             const float* s, const float* r, int64_t batch, float prior_inv,
                             const std::vector<float*>& grad_w, const std::vector<float*>& grad_b,
                             float* grad_w_out, std::vector<float>& workspace) {
  check_loss_args("swish_mlp_dsm_blocked", net, batch, grad_w, grad_b);
  auto buf = carve<DsmBuffers>(net, workspace);
  return dsm_sweep(net, x, eps, s, r, batch, prior_inv, grad_w, grad_b, grad_w_out, buf);
}

double swish_mlp_ssm_blocked(const SwishMLPView& net, const float* x, const float* v,
                             int64_t batch, float prior_inv, const std::vector<float*>& grad_w,
                             const std::vector<float*>& grad_b, float* grad_w_out,
                             std::vector<float>& workspace) {
  check_loss_args("swish_mlp_ssm_blocked", net, batch, grad_w, grad_b);
  auto buf = carve<SsmBuffers>(net, workspace);
  return ssm_sweep(net, x, v, batch, prior_inv, grad_w, grad_b, grad_w_out, buf);
}
#else
void swish_mlp_grad_blocked(const SwishMLPView&, const float*, int64_t, float*, float*,
                            std::vector<float>&) {
  throw std::logic_error("swish_mlp_grad_blocked needs an AVX-512 build");
}
bool dsm_blocked_supported(const SwishMLPView&) { return false; }
double swish_mlp_dsm_blocked(const SwishMLPView&, const float*, const float*, const float*,
                             const float*, int64_t, float, const std::vector<float*>&,
                             const std::vector<float*>&, float*, std::vector<float>&) {
  throw std::logic_error("swish_mlp_dsm_blocked needs an AVX-512 build");
}
double swish_mlp_ssm_blocked(const SwishMLPView&, const float*, const float*, int64_t, float,
                             const std::vector<float*>&, const std::vector<float*>&, float*,
                             std::vector<float>&) {
  throw std::logic_error("swish_mlp_ssm_blocked needs an AVX-512 build");
}
#endif

}  // namespace ebm::detail
