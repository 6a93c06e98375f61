#include "ebm/core/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <ATen/ops/empty.h>

#include <cmath>
#include <mutex>

#include "ebm/core/device.h"
#include "ebm/core/simd.h"

namespace ebm {

uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

at::Generator make_generator(uint64_t seed, uint64_t stream, c10::Device device) {
  if (device.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, stream));
  // Through the device's default generator, so that no CUDA header is needed
  // and a CPU-only LibTorch still links; the clone leaves the default alone.
  at::Generator def = at::globalContext().defaultGenerator(device);
  at::Generator gen = [&] {
    std::lock_guard<std::mutex> lock(def.mutex());
    return def.clone();
  }();
  gen.set_current_seed(mix_seed(seed, stream));
  return gen;
}

namespace {
inline uint64_t splitmix(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// One 64-bit draw -> the pair (r cos(theta), r sin(theta)).
inline void box_muller(uint64_t z, float& c, float& s) {
  // u1 in (0, 1] (rounding can give 1: r = 0), never 0; t in [-1/2, 1/2).
  const float u1 = (float(int32_t(z >> 33)) + 0.5f) * 4.656612873077393e-10f;
  const float t = float(int32_t(uint32_t(z) >> 8)) * 5.9604644775390625e-8f - 0.5f;
  const float r = std::sqrt(-2.0f * log_approx(u1));
  sincos_turns(t, s, c);
  c *= r;
  s *= r;
}

// Pair i gives out[i] = r cos(theta) and out[i + pairs] = r sin(theta); an odd
// last element takes the cosine of one more pair.
EBM_MULTIVERSION
void normal_fill_float(float* __restrict out, int64_t n, uint64_t seed) {
  const int64_t half = n / 2, pairs = (n + 1) / 2;
  for (int64_t i = 0; i < half; ++i) {
    float c, s;
    box_muller(splitmix(seed, uint64_t(i)), c, s);
    out[i] = c;
    out[i + pairs] = s;
  }
  if (pairs > half) {
    float c, s;
    box_muller(splitmix(seed, uint64_t(half)), c, s);
    out[half] = c;
  }
}

void normal_fill_double(double* out, int64_t n, uint64_t seed) {
  const int64_t half = n / 2, pairs = (n + 1) / 2;
  constexpr double k53 = 1.0 / 9007199254740992.0;
  for (int64_t i = 0; i < pairs; ++i) {
    const double u1 = (double(splitmix(seed, 2 * uint64_t(i)) >> 11) + 0.5) * k53;
    const double t = double(splitmix(seed, 2 * uint64_t(i) + 1) >> 11) * k53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = r * std::cos(2 * M_PI * t);
    if (i < half) out[i + pairs] = r * std::sin(2 * M_PI * t);
  }
}
}  // namespace

void normal_fill_(at::Tensor& t, at::Generator& gen) {
  if (!cpu_fast_path(t) || (t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble)) {
    t.normal_(0.0, 1.0, gen);
    return;
  }
  TORCH_CHECK(t.is_contiguous(), "normal_fill_ needs a contiguous tensor");
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  if (t.scalar_type() == at::kFloat)
    normal_fill_float(t.data_ptr<float>(), t.numel(), seed);
  else
    normal_fill_double(t.data_ptr<double>(), t.numel(), seed);
}

at::Tensor standard_normal(at::IntArrayRef sizes, at::Generator& gen, const at::TensorOptions& options) {
  auto t = at::empty(sizes, options);
  normal_fill_(t, gen);
  return t;
}

at::Tensor standard_normal(at::IntArrayRef sizes, at::Generator& gen, at::ScalarType dtype) {
  return standard_normal(sizes, gen, at::TensorOptions().dtype(dtype));
}

at::Tensor generator_state(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(at::Generator& gen, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace ebm
