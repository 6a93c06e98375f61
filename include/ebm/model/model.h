// Model files (DESIGN.md "model"): model.pt holds an energy's weights, the
// [energy] config section that rebuilds it and the event shape of one sample
// ({D} for vectors, {C, H, W} for images). Sampling, scoring and evaluation
// load models through this module without linking training.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "ebm/core/affine.h"
#include "ebm/core/config.h"
#include "ebm/data/low_rank_gaussian.h"
#include "ebm/data/pixels.h"
#include "ebm/energy/energy.h"
#include "ebm/energy/generator.h"

namespace ebm {

// Writes model.pt atomically. `cfg` holds the [energy] section that built the
// energy; a noise-conditional energy's level is stored as it is now.
// `transform` maps the user's units to the energy's (data.standardize).
// `pixels`: the map of raw pixels into the model's range (image data), so
// that every command reads and writes images as the model was trained. The
// [sampler] section of `cfg`, when it has one, is kept as the model's
// default sampler, and its [data] section as the description of the data
// (ebm predict reads a trajectory's step width from it).
// A generator trained beside the energy (objective.name = "vera", ...) is
// kept with its [generator] table. `start`: the Gaussian the run's chains
// started from (buffer.init = "fit"), in the energy's units, which `ebm
// sample` and `ebm eval` start their chains from too. `values`: the map of
// float images' values into the model's range (data.standardize).
// `temperature`: a classifier's p(y | x) temperature fitted on the run's
// validation rows (train.calibrate; model/temperature.h).
void save_model(const std::string& path, EnergyImpl& energy, const Config& cfg,
                const std::vector<int64_t>& event_shape, const AffineMap& transform = {},
                const std::optional<PixelMap>& pixels = std::nullopt, GeneratorImpl* generator = nullptr,
                const std::vector<std::string>& class_names = {}, const LowRankGaussian* start = nullptr,
                const std::optional<ValueMap>& values = std::nullopt, bool sampler_ran = true,
                std::optional<double> temperature = std::nullopt);

// What a model file says beside the weights.
struct ModelInfo {
  std::vector<int64_t> event_shape;
  std::optional<PixelMap> pixels;  // image models trained on pixels
  // Image models trained on float values mapped into their range
  // (data.standardize): users' float images are in the map's raw units.
  std::optional<ValueMap> values;
  std::string sampler_toml;        // the training run's [sampler] table, or empty
  // Whether training ran that sampler (its step was used, or adapted); false
  // after score matching or cross entropy, whose [sampler] is a default
  // nobody tried on this energy. Older files: true.
  bool sampler_ran = true;
  std::string data_toml;           // the training run's [data] table, or empty (older files)
  // Label k's name (a class sub-folder's, or a built-in set's), when the
  // training data named them; empty otherwise.
  std::vector<std::string> class_names = {};
  // The run's seed, which with data_toml rebuilds its train/test split
  // (train.h model_data_split); none in older files.
  std::optional<int64_t> seed = std::nullopt;
  // The Gaussian the run's chains started from (buffer.init = "fit"), on the
  // CPU in the energy's units; undefined when they started from noise.
  LowRankGaussian start = {};
  // Float-image models (not pixels): the box their uniform starts come from
  // (buffer.init_low, init_high: the training images' range unless set),
  // where chain_start draws when there is no fit; none in older files.
  std::optional<std::pair<double, double>> start_box = std::nullopt;
  // A classifier's temperature T of p(y | x) = softmax(-E(x, y) / T), fitted
  // on the run's validation rows (train.calibrate); none: T = 1.
  std::optional<double> temperature = std::nullopt;
};
// Rebuilds the energy (eval mode, CPU). Throws kMissingInput (no file) or
// kBadData (not a model file, or weights that do not match their config).
// A model with a change of units loads as a StandardizedEnergyImpl: energies
// and log-densities in the user's units (sample its inner() energy).
// Model files of formats 1 (a scalar input dimension) and 2 load too.
Energy load_model(const std::string& path, ModelInfo* info = nullptr);

// The generator a model file keeps (eval mode, CPU), drawing in the model's
// units; kBadData when the run trained none.
Generator load_generator(const std::string& path);

// The [energy] table of a TOML document (a model file's config, or a run's
// config.toml) as a validated Config of the energy schema. Keys written by
// earlier versions for components other than the selected one (their flat
// schema wrote every key) are dropped; other tables are ignored.
Config energy_config(const std::string& toml_text, const std::string& origin);

// A model file's [data] table (ModelInfo::data_toml) as a validated Config
// of the [data] section. kBadData naming `origin` when it does not parse.
Config data_config(const std::string& toml_text, const std::string& origin);

// module.load(archive), refusing (kBadData, naming `file`) weights whose
// shapes or dtypes differ from the module's: LibTorch's load would adopt them.
void load_weights(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                  const std::string& file);

}  // namespace ebm
