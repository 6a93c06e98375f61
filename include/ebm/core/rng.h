// Randomness (DESIGN.md): every stochastic function takes an explicit
// at::Generator&; nothing is seeded globally. Streams are derived from
// (seed, stream id) so independent consumers never share a sequence.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/TensorOptions.h>

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

// A generator of `device` seeded from (seed, stream): random draws on a
// device need that device's generator. The CPU one is the same, bit for bit,
// as before devices were an option.
at::Generator make_generator(uint64_t seed, uint64_t stream, c10::Device device = c10::kCPU);

// Standard normal draws, fast: one 64-bit seed is taken from `gen` (so the
// generator advances deterministically and checkpoints stay exact), then a
// counter-based SplitMix64 stream feeds a vectorised Box-Muller transform.
// Float: 31-bit radius and 24-bit angle uniforms (|z| <= 6.66); double: 53-bit
// uniforms. The fast fill needs a contiguous tensor and cpu_fast_path
// (core/device.h); other dtypes, devices and forced ATen paths take ATen's
// normal_ with `gen` (a generator of the tensor's device).
at::Tensor standard_normal(at::IntArrayRef sizes, at::Generator& gen, const at::TensorOptions& options);
// On the CPU.
at::Tensor standard_normal(at::IntArrayRef sizes, at::Generator& gen, at::ScalarType dtype);
void normal_fill_(at::Tensor& t, at::Generator& gen);

// Generator state as a uint8 tensor and back (for checkpoints).
at::Tensor generator_state(at::Generator gen);
void set_generator_state(at::Generator& gen, const at::Tensor& state);

}  // namespace ebm
