// Reading inputs for, and writing outputs of, the commands that take a model
// (issue 17, "Pixel conventions"): PNG, IDX and (for a model trained on
// pixels) integer NPY hold raw 0-255 pixels for the model's pixel map;
// other NPY arrays and CSV rows are taken as already in the model's range,
// or for a model trained on float images mapped by their range
// (data.standardize; ModelInfo::values) as in its training images' units.
// PNG output is written as pixels, float NPY output in the model's range
// (a value-mapped model's: in its images' units), IDX output as uint8 pixels.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>

#include "ebm/data/data.h"
#include "ebm/model/model.h"

namespace ebm {

// The value range of an image model's samples: its pixel map's, or for one
// trained on float arrays the box [clamp_min, clamp_max] its chains stayed in
// (its [sampler] table), when both are finite; none otherwise (vectors).
// A model with a value map (ModelInfo::values) has the map's [lo, hi].
std::optional<std::pair<double, double>> image_range(const ModelInfo& info);

// Where an image model's uniform starts lie: image_range, else the start box
// a float-image model's file keeps (ModelInfo::start_box); none otherwise.
std::optional<std::pair<double, double>> start_range(const ModelInfo& info);

// Where fresh chains start: n draws [n, event...] float32 on `device` in the
// energy's units, from the Gaussian the run's chains started from
// (ModelInfo::start, buffer.init = "fit"; clamped into an image model's
// range), else uniform over an image model's range, else N(0, I). `gen` must
// be the device's.
torch::Tensor chain_start(const ModelInfo& info, int64_t n, at::Generator& gen,
                          const c10::Device& device = c10::kCPU);

// One line on stderr when vector rows lie far outside the data the model was
// trained on (the median row more than 10 of the training data's standard
// deviations from its mean in some column): data in other units, most
// likely. `map` is the model's change of units (sampling_view); without one
// (data.standardize = off, images) it says nothing.
void warn_if_far_from_training(const AffineMap& map, const ModelInfo& info, const torch::Tensor& x,
                               const std::string& what);

// One line on stderr when, the median row being near, some rows lie over 100
// training standard deviations from the mean in some column (values in
// `ignore`, a bool mask broadcastable to x, left out): the model knows nothing
// there (a typo's 1e6 among values of 1e4 went through denoising unchanged).
void warn_of_far_rows(const AffineMap& map, const ModelInfo& info, const torch::Tensor& x, const std::string& what,
                      const torch::Tensor& ignore = {});

// Rows of `path` as a batch [N, ...event_shape] in the model's range
// (float32). A PNG file is one image, a directory every PNG in it (sorted).
// kBadData naming the file when the rows do not make the model's samples, or
// when pixels are given to a model that was not trained on pixels.
torch::Tensor read_model_input(const std::string& path, const ModelInfo& info);

// read_model_input, or a built-in image set by name: fashion_mnist or mnist
// (their `split`; NAME:train or NAME:test picks another) through the model's
// pixel map. kUsage when a built-in set is asked of a model not trained on
// pixels.
torch::Tensor read_model_data(const std::string& spec, const ModelInfo& info, const std::string& split = "test");
// The same with labels: a built-in set's own, a folder's sub-folders', or
// `labels` (CSV, NPY or IDX: one integer >= 0 per row) for a file; y is
// undefined when none are known. kUsage for `labels` beside a built-in set.
Dataset read_model_dataset(const std::string& spec, const ModelInfo& info, const std::string& split = "test",
                           const std::string& labels = "");

// Model-range images [N, C, H, W] written by extension: .png a grid (cols per
// row, 0 = about square), .npy float32, .idx / .idx.gz uint8 pixels (IDX,
// no compression); `map` turns values into pixels (default [-1, 1]).
// `values`: a float-image model's map (ModelInfo::values), whose .npy
// output is in the user's units, as its training images were.
void write_images(const std::string& path, const torch::Tensor& x, const PixelMap& map, int64_t cols = 0,
                  const std::optional<ValueMap>& values = std::nullopt);

// How an image model's samples are shown as pixels: its pixel map, or its
// value map's range [lo, hi] (no dequantization); nullopt for others.
std::optional<PixelMap> display_map(const ModelInfo& info);

}  // namespace ebm
