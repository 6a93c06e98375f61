// Small helpers of the image input and output conventions (model/inputs.h),
// in a header of their own so that their few users alone rebuild.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "ebm/data/image_reading.h"
#include "ebm/model/model.h"

namespace ebm {

// The model's range [lo, hi] of images read as pixels (their map) or of
// float images mapped by their range (data.standardize), as a PixelMap
// without dequantization for grids and uniform starts; nullopt for others.
// Shared by display_map (model/inputs.h) and the Trainer.
std::optional<PixelMap> image_map(const std::optional<PixelMap>& pixels, const std::optional<ValueMap>& values);

// Rows read from a file, put into an image model's units: raw 0-255 pixels
// through the model's pixel map (kBadData when the model has none); float
// values through its value map (checked against the training images'
// range), or without one taken as already in its units, checked against its
// clamp box. Shared by read_model_input and OOD's fit:SPEC (eval/ood.cpp).
torch::Tensor into_model_units(const torch::Tensor& x, bool pixels, const ModelInfo& info, const std::string& path);

// How an image model's training read its image files (data.image_size as
// its samples' [H, W], data.channels as their C, data.alpha), so images of
// other sizes and channel counts are made its own as they are read; alpha
// dropped, nothing resized, for other models and model files before them.
ImageReading model_image_reading(const ModelInfo& info);

// A standardised vector model's data spread in its own units:
// data.standardize_sd of its run (2 by default and for files that do not
// keep their [data] table). Its square is the scale of E's curvature there.
double model_standardize_sd(const ModelInfo& info);

}  // namespace ebm
