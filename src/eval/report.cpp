// The report of a finished run: model samples (a 2D scatter plot or an image
// grid) and, for 2D data, the exact test NLL (eval.json).
#include "ebm/eval/report.h"

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ebm/core/rng.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/cell_shares.h"
#include "ebm/eval/eval.h"
#include "ebm/eval/images.h"
#include "ebm/model/generator_file.h"
#include "ebm/model/model.h"
#include "ebm/io/io.h"
#include "ebm/objectives/registry.h"
#include "ebm/sampling/jumps.h"
#include "ebm/sampling/registry.h"
#include "ebm/train/train.h"

namespace ebm {
namespace {
// Model samples from the eval stream: buffer-initialised chains run for
// eval.sample_steps transitions of the run's sampler, in the model's units
// (the inner energy of a standardised one), returned in the data's. A run
// whose chains jumped between modes in training (objective.jumps, vectors)
// samples the same way here: rounds of its jumps then
// sampler.steps transitions, so that the samples carry each mode's mass and
// not the share of its basin that fresh chains would fall into.
torch::Tensor model_samples(EnergyImpl& energy, const Config& cfg, const DataSplit& data, int64_t n) {
  AffineMap map;
  EnergyImpl& view = sampling_view(energy, &map);
  auto gen = run_generator(cfg, kStreamEval);
  auto buffer = build_buffer(cfg, data.train.event_shape());
  const auto train = data.model_train().x;
  buffer->fit_data(train);
  ChainState chains(buffer->init_samples(n, gen));
  auto sampler = build_sampler(cfg);
  const int64_t steps = cfg.get_int("eval.sample_steps");
  JumpSettings jumps = jump_settings(cfg);
  // (vectors: jumps between modes whatever the objective, as ebm sample's:
  // a DSM model's plot of a 95 / 5 mixture drew 44% in the small mode, the
  // basins' shares, while its own masses were right)
  if (jumps.moves == 0) jumps = {2, sampling_jump_options()};
  if (data.train.event_shape().size() != 1) {
    sampler->run(view, chains, steps, gen);
    return map.to_user(chains.x);
  }
  auto [lo, hi] = buffer->box();
  if (!lo.defined()) std::tie(lo, hi) = data_box(train);
  DataProposal proposal(jumps.proposal, train, lo.reshape({-1}), hi.reshape({-1}));
  const int64_t per_round = std::max<int64_t>(1, cfg.get_int("sampler.steps"));
  for (int64_t done = 0; done < steps; done += per_round) {
    proposal.jump(view, chains.x, jumps.moves, gen);
    sampler->run(view, chains, std::min(per_round, steps - done), gen);
  }
  return map.to_user(chains.x);
}

// A learned sampler's generator (vectors): its draws' shares of the training
// rows' k-means cells, into j["generator_cells"]; a warning when they differ.
std::string generator_cells(EnergyImpl& energy, const Config& cfg, const DataSplit& data, const std::string& out,
                            nlohmann::json* j) {
  const std::string model = out + "/model.pt";
  if (data.train.event_shape().size() != 1 || !std::filesystem::exists(model) || !has_generator(model)) return {};
  ModelInfo info;
  load_model(model, &info);
  auto gen = run_generator(cfg, kStreamEval);
  const auto draws = draw_generator_samples(model, energy, info, 10000, 0, "", gen);
  const CellShares s = cell_shares(draws, data.train.x, 8, 4.0, 0.02, 2.0, gen);
  if (j) (*j)["generator_cells"] = cell_shares_json(s);
  if (s.flagged_count() == 0) return {};
  return "warning: the generator's draws differ from the training data's shares in " +
         std::to_string(s.flagged_count()) + " of " + std::to_string(s.centers.size(0)) + " cells (" + s.worst() +
         "): draw from the energy (ebm sample), or refine the generator's draws with --steps "
         "(docs/learned-samplers.md, 'Dropped modes')\n";
}

// Samples of a model of any shape: samples.npy (eval.sample_chains rows of
// vectors; 64 images) and, for images, a PNG grid in the training data's
// value range.
std::string report_samples(EnergyImpl& energy, const Config& cfg, const DataSplit& data, const std::string& out) {
  const auto& train = data.train;
  const auto shape = train.event_shape();
  std::filesystem::create_directories(out + "/samples");
  const int64_t chains = cfg.get_int("eval.sample_chains");
  auto x = model_samples(energy, cfg, data, shape.size() == 1 ? chains : std::min<int64_t>(64, chains));
  // (float images mapped by data.standardize: in the user's units, as they were saved)
  write_npy(out + "/samples/samples.npy", (data.values ? data.values->to_user(x) : x).to(torch::kCPU, torch::kFloat));
  if (shape.size() == 3 && (shape[0] == 1 || shape[0] == 3)) {
    const double lo = train.x.min().item<double>(), hi = train.x.max().item<double>();
    write_image_grid(out + "/samples/samples.png", x, lo, hi > lo ? hi : lo + 1);
  }
  // (vectors of any dimension: the draws' shares of the training rows'
  // k-means cells, the check the 2D runs' mode masses make exactly)
  std::string cells;
  // (not a ce classifier, which fits no p(x), nor a class-conditional energy
  // of p(x | y) alone, whose classes' normalisers, and so their shares in
  // the marginal, nothing fixes; JEM fits the marginal; nor a model trained
  // without chains, whose sampler's step nobody tried on it: the particles
  // recipe's DSM model drew 0.457 of a cell of 0.110 by that step, which
  // says nothing of the model; ebm sample adapts the step and checks)
  const std::string objective = cfg.get_string("objective.name");
  ModelInfo info;
  if (std::filesystem::exists(out + "/model.pt")) load_model(out + "/model.pt", &info);
  if (shape.size() == 1 && info.sampler_ran && objective != "ce" &&
      (energy.num_classes() == 0 || objective == "jem")) {
    auto gen = run_generator(cfg, kStreamEval);
    const CellShares s = cell_shares(x, train.x, 8, 4.0, 0.02, 2.0, gen);
    if (s.flagged_count() > 0)
      cells = "warning: the model's draws differ from the training rows' shares in " +
              std::to_string(s.flagged_count()) + " of " + std::to_string(s.centers.size(0)) + " cells (" +
              s.worst() + "): the model misweights its modes, or its sampler does not reach them "
              "(docs/own-data.md, 'Mode masses')\n";
  }
  return "samples in " + out + "/samples\n" + cells + generator_cells(energy, cfg, data, out, nullptr);
}
}  // namespace

// Pictures and, in 2D, the exact test NLL of a finished run.
std::string report_run(EnergyImpl& energy, const Config& cfg, const DataSplit& data, const std::string& out) {
  const auto& train = data.train.x;
  const auto& test = data.test.x;
  if (data.train.event_shape() != std::vector<int64_t>{2}) return report_samples(energy, cfg, data, out);
  std::filesystem::create_directories(out + "/samples");
  Box2d view = bounding_box(train, 0.15);
  density_png(out + "/samples/density.png", energy, view);
  auto samples = model_samples(energy, cfg, data, cfg.get_int("eval.sample_chains"));
  write_csv(out + "/samples/samples.csv", samples, {"x0", "x1"});
  scatter_png(out + "/samples/samples.png", samples,
              train.narrow(0, 0, std::min<int64_t>(5000, train.size(0))), view);
  if (energy.num_classes() > 0)
    decision_png(out + "/samples/decision.png", energy, view, test, data.test.y);
  auto r = nll2d(energy, test);
  std::string warning;
  nlohmann::json j = {{"task", "nll2d"},      {"data", "test split"},
                      {"n", test.size(0)},   {"mean_nll", r.mean_nll},
                      {"nll_se", r.nll_se},  {"log_z", r.log_z},
                      {"log_z_error", r.log_z_error}, {"converged", r.converged}};
  if (energy.num_classes() > 0 && data.test.y.defined()) {  // (a classifier: its held-out accuracy too)
    torch::NoGradGuard ng;
    j["accuracy"] = (energy.class_energies(test).argmin(1) == data.test.y.to(torch::kLong))
                        .to(torch::kDouble).mean().item<double>();
  }
  const std::string name = cfg.get_string("data.name");
  if (cfg.get_string("data.path").empty() && is_toy2d(name)) {
    j["entropy"] = toy2d_entropy(name);
    j["nll_minus_entropy"] = r.mean_nll - toy2d_entropy(name);
  }
  // The modes' masses against the data's shares (ebm eval --task modes).
  auto kgen = run_generator(cfg, kStreamEval);
  if (test.size(0) >= 80) {
    auto modes = mode_masses(energy, test, r, 8, 4.0, 0.02, kgen);  // (on the NLL's grid)
    j["modes"] = mode_masses_json(modes);
    if (!modes.ok) warning = "warning: the model's mass differs from the data's around " +
                             std::to_string(modes.flagged.sum().item<int64_t>()) +
                             " of 8 clusters of the test data (eval.json \"modes\"; docs/own-data.md, 'Mode masses')\n";
  }
  // (an NLL whose log Z did not converge is not a number to trust: say so
  // beside it, as ebm eval --task nll2d does; "+- inf" alone went unread)
  if (!r.converged)
    warning += "warning: log Z did not converge on the quadrature's finest grid (its last change was " +
               c10::str(r.log_z_error) + " nats): the test NLL is not to be trusted; an energy too sharp for the "
               "grid, or mass far from the test rows\n";
  warning += generator_cells(energy, cfg, data, out, &j);
  atomic_write_text(out + "/eval.json", j.dump(2) + "\n");
  std::ostringstream os;
  os << "test NLL " << r.mean_nll << " +- " << r.nll_se << " nats (log Z " << r.log_z
            << " +- " << r.log_z_error << ")";
  if (j.contains("entropy")) os << "; data entropy " << j["entropy"].get<double>();
  if (j.contains("accuracy")) os << "; test accuracy " << j["accuracy"].get<double>();
  os << "\n" << warning;
  return os.str();
}

}  // namespace ebm
