// Datasets: the 2D toy generators of FFJORD (Grathwohl et al. 2019,
// lib/toy_data.py) and VERA (Grathwohl et al. 2021), re-derived without
// scikit-learn, and seeded splits of any [N, D] matrix.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "ebm/core/affine.h"
#include "ebm/core/registry.h"
#include "ebm/data/pixels.h"

namespace ebm {

// A data set (DESIGN.md "data"): x [N, ...event] float32 (vectors [N, D],
// images [N, C, H, W]) and, when the data have them, integer labels y [N].
struct Dataset {
  torch::Tensor x;            // [N, ...event]
  torch::Tensor y;            // [N] int64, or undefined
  std::string description;    // the file or set it came from, for messages
  // x holds raw 0-255 pixels (PNG, IDX ubyte, the built-in image sets, integer
  // NPY as data/integer_arrays.h says), for a PixelMap (data/pixels.h).
  bool pixels = false;
  std::vector<std::string> class_names = {};  // label k's name, when known
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
  std::vector<int64_t> event_shape() const { return x.sizes().slice(1).vec(); }
  bool has_labels() const { return y.defined(); }
  // The rows `index` [K] (labels too).
  Dataset rows(const torch::Tensor& index) const;
  Dataset to(const c10::Device& device) const;
};

// 8gaussians, 25gaussians, swissroll, moons, 2spirals, checkerboard, pinwheel,
// rings, circles, and unbalanced0 ... unbalanced4 (data/unbalanced.h).
const std::vector<std::string>& toy2d_names();
// One of those, or unbalanced<v> for any variant v >= 0.
bool is_toy2d(const std::string& name);
// n points, float32 [n, 2]; deterministic given the generator state.
torch::Tensor toy2d(const std::string& name, int64_t n, at::Generator& gen);
// The class of each row of toy2d(name, n, gen) for the two-class sets, given
// a generator in the state toy2d was called with: moons (0 upper, 1 lower
// moon) and circles (0 outer, 1 inner); undefined for the other sets.
torch::Tensor toy2d_labels(const std::string& name, int64_t n, at::Generator& gen);
// Differential entropy of the data distribution in nats (for NLL reports):
// closed-form where known, otherwise a stated Monte Carlo estimate.
double toy2d_entropy(const std::string& name);

// The equal-weight isotropic Gaussian mixtures among the toy sets
// (8gaussians, 25gaussians): their centres [K, 2] and common std, for
// sample-based scores of a model's draws under the true density; nullopt
// for the other sets.
struct ToyMixture {
  torch::Tensor centers;  // [K, 2] float64
  double std = 0;
  torch::Tensor log_density(const torch::Tensor& x) const;  // [N, 2] -> [N] float64
};
std::optional<ToyMixture> toy2d_mixture(const std::string& name);

struct Split {
  torch::Tensor train, test;
};
// Random permutation from `gen`, the last round(test_fraction * N) rows test.
Split split_rows(const torch::Tensor& data, double test_fraction, at::Generator& gen);

// The split in the user's units, and the change of units into the model's
// (data.standardize; undefined: none).
struct DataSplit {
  Dataset train, test;
  // Rows of the training split held out for validation (data.val_fraction;
  // empty when 0): never trained on, not part of test.
  Dataset val;
  AffineMap transform;
  // Images read as raw pixels: the map into the model's range (data.scale,
  // data.dequantize), already applied to train and test.
  std::optional<PixelMap> pixels;
  // Float images under data.standardize: the map of their values into the
  // model's range (data.scale), already applied to train, test and val.
  std::optional<ValueMap> values;
  // The training rows in the model's units.
  Dataset model_train() const {
    Dataset out = train;
    if (transform.defined()) out.x = transform.to_model(train.x);
    return out;
  }
};
// As split_rows, labels following their rows.
DataSplit split_dataset(const Dataset& data, double test_fraction, at::Generator& gen);

// ----- The [data] section ------------------------------------------------------
// data.name selects a registered set (factory: config, generator -> Dataset):
// the toy sets, the simulated trajectory sets particles and pendulum
// (data/trajectories.h) and the image sets fashion_mnist and mnist (data/images.h,
// data.split picking their train or test part); data.path, when set, reads a
// file instead (CSV, NPY, IDX or PNG rows, their shape kept; data.labels
// optionally gives one integer label per row) or a folder of PNGs.
// data.classes then keeps the rows of the listed labels.
using DatasetRegistry = ComponentRegistry<Dataset, at::Generator&>;
const DatasetRegistry& dataset_registry();
Section data_section();
// The whole data set of a config, not yet split.
Dataset build_dataset(const Config& cfg, at::Generator& gen);

}  // namespace ebm
