// train.init: a run that starts from a trained model's weights (fine-tuning,
// or learning on as new data arrive) instead of fresh ones.
#pragma once

#include <optional>
#include <string>

#include "ebm/core/affine.h"
#include "ebm/core/config.h"
#include "ebm/data/data.h"
#include "ebm/energy/energy.h"
#include "ebm/model/model.h"

namespace ebm {

struct InitModel {
  std::string path;
  Energy energy;  // in the model's own units (the inner energy of a standardised model)
  ModelInfo info;
};

// The model train.init names (nullopt when empty), with `data` put into its
// units, so its weights mean on this run's rows what they meant on its own:
// its standardisation of vectors, its value map of float images and its class
// names (labels looked up by name or value) replace the ones this run's data
// would have fitted. kMissingInput (no file), kBadData (another kind of data:
// pixels or not, another sample shape, a label the model lacks), kBadConfig
// (data.standardize or data.scale unlike the model's). A train.init file that
// is gone is read from `run_dir`/init.pt, the copy its run keeps (with a note):
// a run resumes in the units it started in.
std::optional<InitModel> adopt_init_model(const Config& cfg, DataSplit& data, const std::string& run_dir = "");

// Trainer::run's check of train.init against the run's copy, `run_dir`/init.pt:
// a fresh run needs the file (kMissingInput) and, on `lead`, copies it there; a
// resumed run needs the same model as its copy (kBadConfig when the file
// changed since) and copies it when the run kept none (an earlier version).
void keep_init_copy(const Config& cfg, const std::string& run_dir, bool resume, bool lead);

// Copies the model's weights (parameters and buffers, by name) into `energy`,
// built from this run's [energy] settings: kBadConfig naming the first
// weight that the two lack or shape differently.
void copy_init_weights(const InitModel& init, EnergyImpl& energy);
// The same for a learned sampler's network (objective.name = vera, meg, ...),
// when the model keeps one (this run's [generator] settings must be its);
// false, leaving `generator` as it is, when the model has none.
bool copy_init_generator(const InitModel& init, torch::nn::Module& generator);

}  // namespace ebm
