// Portable builds run on any x86-64; hot elementwise loops are compiled twice
// (baseline, x86-64-v3: AVX2 + FMA, and x86-64-v4: AVX-512) and the loader picks one at run time
// (GCC function multi-versioning). Elsewhere the attribute is empty.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define EBM_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// A few kernels also have hand-written AVX-512 versions (instructions the
// compiler does not pick by itself: vscalefps, vrndscaleps, vrcp14ps), taken
// at run time when the CPU has AVX-512F and DQ.
#define EBM_AVX512_KERNELS 1
#define EBM_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,fma")))
#include <immintrin.h>
// GCC 12 warns falsely about the self-initialised _mm512_undefined_ps inside
// the AVX-512 intrinsics wherever they are inlined (GCC bug 105593): code
// using them sits between these two.
#define EBM_AVX512_BEGIN                                         \
  _Pragma("GCC diagnostic push")                                 \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define EBM_AVX512_END _Pragma("GCC diagnostic pop")
#else
#define EBM_MULTIVERSION
#define EBM_AVX512_KERNELS 0
#endif

namespace ebm {

// exp(x) for float, vectorisable: Cody-Waite range reduction and Cephes'
// degree-6 polynomial (relative error ~2e-7 over the clamped range).
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // Round to nearest by the 1.5 * 2^23 trick (no libm call, vectorises).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// 1 / (1 + exp(-x)), vectorisable (exp_approx's accuracy).
inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

// log(x) for finite float x > 0, vectorisable: exponent split and Cephes'
// logf polynomial on the mantissa in [sqrt(1/2), sqrt(2)) (error ~1 ulp).
inline float log_approx(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  float e = float(((bits >> 23) & 0xff) - 127);
  int32_t mbits = (bits & 0x007fffff) | 0x3f800000;  // mantissa in [1, 2)
  float m;
  std::memcpy(&m, &mbits, sizeof m);
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1.0f : e;
  const float f = m - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y = y - 2.12194440e-4f * e - 0.5f * z;
  return f + y + 0.693359375f * e;
}

// sin(2 pi t) and cos(2 pi t) for t in [-1/2, 1/2], vectorisable: quarter-turn
// reduction to |a| <= pi/4 and Cephes' sinf/cosf polynomials.
inline void sincos_turns(float t, float& s, float& c) {
  const float q = (t * 4.0f + 12582912.0f) - 12582912.0f;  // nearest quarter turn
  const float a = (t - 0.25f * q) * 6.28318530717958648f;
  const float a2 = a * a;
  const float sa = a + a * a2 * (-1.6666654611e-1f + a2 * (8.3321608736e-3f + a2 * -1.9515295891e-4f));
  const float ca = 1.0f - 0.5f * a2 +
                   a2 * a2 * (4.166664568298827e-2f + a2 * (-1.388731625493765e-3f + a2 * 2.443315711809948e-5f));
  const int32_t k = static_cast<int32_t>(q) & 3;  // angle = a + k pi/2
  const float s1 = (k & 1) ? ca : sa;
  const float c1 = (k & 1) ? sa : ca;
  s = (k & 2) ? -s1 : s1;
  c = ((k + 1) & 2) ? -c1 : c1;
}

// Set by tests to run the portable loops on a CPU that has AVX-512 too.
inline std::atomic<bool>& force_portable_kernels() {
  static std::atomic<bool> forced{false};
  return forced;
}

// Portable loops while in scope (tests).
struct ScopedPortableKernels {
  explicit ScopedPortableKernels(bool on) : was_(force_portable_kernels().exchange(on)) {}
  ~ScopedPortableKernels() { force_portable_kernels() = was_; }
  ScopedPortableKernels(const ScopedPortableKernels&) = delete;
  ScopedPortableKernels& operator=(const ScopedPortableKernels&) = delete;

 private:
  bool was_;
};

#if EBM_AVX512_KERNELS
inline bool cpu_has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return yes && !force_portable_kernels().load(std::memory_order_relaxed);
}

// sigmoid of 16 floats: exp(-v) = 2^n exp(r) with n = round(-v log2 e) and
// r = -v - n ln 2 (Cody-Waite, two constants), exp(r) by its degree-7 Taylor
// polynomial (|r| <= ln2 / 2: truncation < 1e-8), 2^n applied by vscalefps
// (saturates to 0 or inf without bit tricks), 1 / (1 + e) by vrcp14ps and one
// Newton step (relative error ~2^-28). Max relative error ~1.5e-7 against
// float64 (tested). |v| > 88 is clamped (the sigmoid is within 1e-38 of 0 or
// 1 there); NaN in v gives a finite value here: callers multiply by v, which
// carries the NaN.
EBM_AVX512_BEGIN
EBM_TARGET_AVX512 inline __m512 sigmoid_avx512(__m512 v) {
  const __m512 vc = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(vc, _mm512_set1_ps(-1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmsub_ps(n, _mm512_set1_ps(0.693359375f), vc);  // -v - n c1
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);         // + n (c1 - ln 2)
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512 den = _mm512_add_ps(_mm512_scalef_ps(p, n), _mm512_set1_ps(1.0f));
  const __m512 q = _mm512_rcp14_ps(den);
  return _mm512_fmadd_ps(q, _mm512_fnmadd_ps(den, q, _mm512_set1_ps(1.0f)), q);
}
EBM_AVX512_END

// The mask of the first min(16, remaining) lanes.
inline __mmask16 lanes_mask(int64_t remaining) {
  return remaining >= 16 ? __mmask16(0xffff) : __mmask16((1u << remaining) - 1u);
}
#else
inline bool cpu_has_avx512() { return false; }  // (no AVX-512 kernels in this build)
#endif

}  // namespace ebm
