// What the blocked passes over a float swish MLP (mlp_blocked.h) share: the
// workspace carving, the register-tiled products with their epilogue hook,
// transposes, the rank-32 weight-gradient updates and the loss passes'
// gradient bookkeeping. Internal to mlp_blocked_grad.cpp, mlp_blocked_dsm.cpp
// and mlp_blocked_ssm.cpp.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "ebm/core/simd.h"
#include "mlp_blocked.h"

namespace ebm::detail {

#if EBM_AVX512_KERNELS
// All in an unnamed namespace: each translation unit that includes this gets
// its own copy, so no inline function or template is merged across units
// with a copy compiled for another target. ([[maybe_unused]]: not every unit
// takes every helper.)
namespace {

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

[[maybe_unused]]
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

// Chain-major copy of a chain-minor block: out [kBlock][rows] from in
// [rows][kBlock] (the weight gradients' vector operand; rows a multiple of 16).
[[maybe_unused]]
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
[[maybe_unused]]
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

[[maybe_unused]]
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
[[maybe_unused]]
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

// A loss pass's arguments: a network it takes, weights, biases and
// gradients for every layer, and rows.
[[maybe_unused]]
void check_loss_args(const char* name, const SwishMLPView& net, int64_t batch,
                     const std::vector<float*>& grad_w, const std::vector<float*>& grad_b) {
  if (!dsm_blocked_supported(net) || net.w.size() != net.width.size() ||
      net.b.size() != net.width.size() || grad_w.size() != net.width.size() ||
      grad_b.size() != net.width.size() || batch < 1)
    throw std::invalid_argument(std::string(name) +
                                ": unsupported network or batch, or no AVX-512 CPU");
}

EBM_AVX512_END
}  // namespace
#endif

}  // namespace ebm::detail
