// warn_if_far_from_training (model/inputs.h) for rows given to an energy as
// loaded: the change of units is the energy's own (its sampling view).
#pragma once

#include <string>

#include <torch/torch.h>

#include "ebm/energy/energy.h"
#include "ebm/model/model.h"

namespace ebm {

void warn_if_far_from_training(EnergyImpl& energy, const ModelInfo& info, const torch::Tensor& x,
                               const std::string& what);

}  // namespace ebm
