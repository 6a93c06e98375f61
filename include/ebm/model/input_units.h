// Rows read from a file, put into an image model's units: raw 0-255 pixels
// through the model's pixel map (kBadData when the model has none); float
// values taken as already in its units, checked against its clamp box.
// Shared by read_model_input and OOD's fit:SPEC (eval/ood.cpp).
#pragma once

#include <torch/torch.h>

#include <string>

#include "ebm/model/model.h"

namespace ebm {

torch::Tensor into_model_units(const torch::Tensor& x, bool pixels, const ModelInfo& info, const std::string& path);

}  // namespace ebm
