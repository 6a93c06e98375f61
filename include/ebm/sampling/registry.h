// The [sampler] and [buffer] sections: every sampler registers its name, keys
// (with the short aliases of spec strings: "hmc:step=0.05,leapfrog=10") and a
// factory, so a config file and the --sampler flag share names, types and
// defaults.
#pragma once

#include <memory>
#include <vector>

#include "ebm/core/registry.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

using SamplerRegistry = ComponentRegistry<std::shared_ptr<Sampler>>;
const SamplerRegistry& sampler_registry();
Section sampler_section();
Section buffer_section();
// The sampler cfg's [sampler] section names.
std::shared_ptr<Sampler> build_sampler(const Config& cfg);
// The replay buffer of cfg's [buffer] section, for chains of `event_shape`
// stored on `device` (draw from it with a generator of that device); per
// class pools for `classes` > 0 (-1: energy.classes when energy.conditional).
std::shared_ptr<ReplayBuffer> build_buffer(const Config& cfg, std::vector<int64_t> event_shape,
                                           c10::Device device = c10::kCPU, int64_t classes = -1);

}  // namespace ebm
