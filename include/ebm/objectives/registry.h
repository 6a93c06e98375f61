// The [objective] section: every training objective registers its name, keys
// and a factory from (config, event shape).
#pragma once

#include <memory>
#include <vector>

#include "ebm/core/registry.h"
#include "ebm/objectives/objective.h"

namespace ebm {

// (config, event shape, device of the data and chains) -> objective
using ObjectiveRegistry =
    ComponentRegistry<std::shared_ptr<Objective>, const std::vector<int64_t>&, c10::Device>;
const ObjectiveRegistry& objective_registry();
// The jumps between modes a config's chains take (objective.jumps and its
// kernel-density proposal, cd and jem); moves = 0 for other objectives.
struct JumpSettings {
  int64_t moves = 0;
  DataProposalOptions proposal;
};
JumpSettings jump_settings(const Config& cfg);
Section objective_section();
// The objective cfg's [objective] section names; contrastive divergence also
// builds its sampler ([sampler]) and replay buffer ([buffer]) from cfg.
std::shared_ptr<Objective> build_objective(const Config& cfg, const std::vector<int64_t>& event_shape,
                                           c10::Device device = c10::kCPU);

}  // namespace ebm
