// A model trained without chains (score matching, learned samplers) keeps a
// [sampler] step nobody tried on it, 0.01 by default, and the recipes'
// Langevin noise is far below sqrt(2 step): sampled as trained, draws come
// from a much colder density. ebm sample, inpaint and denoise then sample by
// MALA at that step (where the trained sampler has no acceptance to adapt
// to), adapted by a warm-up first.
#pragma once

#include <cstdint>
#include <string>

#include "ebm/model/model.h"

namespace ebm::cli {

struct UntriedStep {
  double step = 0;       // the trained sampler's step (0: none, nothing to do)
  std::string spec;      // "mala:step=S" where the trained sampler adapts to no acceptance, else ""
  std::string sampler;   // what samples: "MALA" or the trained sampler's name
  int64_t warmup = 0;    // min(max(steps, 100), 500)
};
UntriedStep untried_step(const ModelInfo& info, int64_t steps);

}  // namespace ebm::cli
