// Randomness (DESIGN.md): every stochastic function takes an explicit
// at::Generator&; nothing is seeded globally. Streams are derived from
// (seed, stream id) so independent consumers never share a sequence.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ebm {

// Well-known stream ids, so a stream means the same thing in every run.
enum Stream : uint64_t {
  kStreamInit = 1,      // parameter initialisation
  kStreamTrain = 2,     // batches, sampler noise, buffer during training
  kStreamEval = 3,      // evaluation-time randomness
  kStreamData = 4,      // synthetic data generation and splits
  kStreamSample = 5,    // `ebm sample`
  kStreamTestData = 6,  // fresh held-out toy data
};

// SplitMix64 of (seed, stream): decorrelated seeds for nearby inputs.
uint64_t mix_seed(uint64_t seed, uint64_t stream);

// A CPU generator seeded from (seed, stream).
at::Generator make_generator(uint64_t seed, uint64_t stream);

// Standard normal draws, fast: one 64-bit seed is taken from `gen` (so the
// generator advances deterministically and checkpoints stay exact), then a
// counter-based SplitMix64 stream feeds a vectorised Box-Muller transform.
// Float: 31-bit radius and 24-bit angle uniforms (|z| <= 6.66); double: 53-bit
// uniforms. normal_fill_ overwrites a contiguous tensor; other dtypes and
// devices fall back to ATen's normal_ with `gen`.
at::Tensor standard_normal(at::IntArrayRef sizes, at::Generator& gen, at::ScalarType dtype);
void normal_fill_(at::Tensor& t, at::Generator& gen);

// Generator state as a uint8 tensor and back (for checkpoints).
at::Tensor generator_state(at::Generator gen);
void set_generator_state(at::Generator& gen, const at::Tensor& state);

}  // namespace ebm
