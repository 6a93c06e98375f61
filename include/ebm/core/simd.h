// Portable builds run on any x86-64; hot elementwise loops are compiled twice
// (baseline and x86-64-v3: AVX2 + FMA) and the loader picks one at run time
// (GCC function multi-versioning). Elsewhere the attribute is empty.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define EBM_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EBM_MULTIVERSION
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

}  // namespace ebm
