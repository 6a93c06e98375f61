// The chains of `ebm sample`: warm-up (adapted where the sampler can be),
// then the sampling steps, recording what the summary and --thin need. With
// --nproc the chains are cut into fixed blocks, each with a sampler, random
// stream and adaptation of its own, and ranks run contiguous runs of blocks:
// gathered in block order, the result does not depend on the number of ranks.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>

#include "ebm/energy/energy.h"
#include "ebm/sampling/sampling.h"

namespace ebm {
class Collective;
}

namespace ebm::cli {

struct ChainRunOptions {
  int64_t warmup = 0, steps = 0, thin = 0;
  int64_t tracked = 0;  // leading dimensions recorded for the summary (0 = none)
  bool split_all = false;  // every dimension's split-half moments, for R-hat beyond the tracked ones
  double target_accept = 0;
  bool adapt = true, adapt_mass = true;
  std::function<torch::Tensor(const torch::Tensor&)> to_user;  // model units -> the user's
  // Moves between modes (independence jumps, sampling/jumps.h) before every
  // jump_every-th transition, warm-up included; returns their acceptance.
  std::function<double(torch::Tensor&, at::Generator&)> jump;
  int64_t jump_every = 0;
};

struct ChainRun {
  torch::Tensor x;        // final states [n, ...event] (model units)
  torch::Tensor summary;  // [n, steps, tracked] float64 in the user's units, or undefined
  torch::Tensor kept;     // [n, steps / thin, dim] float64 in the user's units, or undefined
  torch::Tensor halves;   // [n, 2, 2, dim] split-half means and variances (SplitMoments), or undefined
  double accept = 0;      // mean acceptance over the steps and chains
  double n_grad = 0;      // gradient evaluations per chain
  double step_size = 0;   // the final step size (chain-weighted mean over blocks)
  int64_t divergent = 0, warm_divergent = 0;
  double jump_accept = 0;  // mean acceptance of the jumps (run_chains; 0 when none)
  int64_t jump_rounds = 0; // rounds of jumps tried (none in a run of 0 transitions)
};

// All chains of x0 as one batch, on `gen`.
ChainRun run_chains(EnergyImpl& energy, Sampler& sampler, const torch::Tensor& x0, at::Generator& gen,
                    const ChainRunOptions& options, bool progress = true);

// Blocks of `block` chains: block b samples with make_sampler() on stream
// (seed, kStreamSample + rank-free block id); this rank runs its share of the
// blocks; rank 0 returns the whole result (gathered over `coll`, which may
// be null for one process), the others their own share.
ChainRun run_chain_blocks(EnergyImpl& energy, const std::function<std::shared_ptr<Sampler>()>& make_sampler,
                          const torch::Tensor& x0, uint64_t seed, int64_t block, Collective* coll,
                          const ChainRunOptions& options);

}  // namespace ebm::cli
