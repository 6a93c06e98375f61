// ebm train --config FILE [--set key=value]... [--out DIR] [--resume]
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"
#include "ebm/sampling/registry.h"
#include "ebm/train/train.h"

namespace ebm::cli {
namespace {
struct TrainArgs {
  Common common;
  std::string config, out;
  std::vector<std::string> sets;
  bool resume = false, force = false, help_config = false;
};

// Model samples from the eval stream: buffer-initialised chains run for
// eval.sample_steps transitions of the run's sampler.
torch::Tensor model_samples(EnergyImpl& energy, const Config& cfg, const std::vector<int64_t>& shape,
                            int64_t n) {
  auto gen = run_generator(cfg, kStreamEval);
  ChainState chains(build_buffer(cfg, shape)->init_samples(n, gen));
  build_sampler(cfg)->run(energy, chains, cfg.get_int("eval.sample_steps"), gen);
  return chains.x;
}

// Samples of a model of any shape: samples.npy and, for images, a PNG grid
// in the training data's value range.
void report_samples(Trainer& trainer, const Config& cfg, const std::string& out) {
  const auto& train = trainer.data().train;
  const auto shape = train.event_shape();
  std::filesystem::create_directories(out + "/samples");
  auto x = model_samples(trainer.energy(), cfg, shape, std::min<int64_t>(64, cfg.get_int("eval.sample_chains")));
  write_npy(out + "/samples/samples.npy", x.to(torch::kCPU, torch::kFloat));
  if (shape.size() == 3 && (shape[0] == 1 || shape[0] == 3)) {
    const double lo = train.x.min().item<double>(), hi = train.x.max().item<double>();
    write_image_grid(out + "/samples/samples.png", x, lo, hi > lo ? hi : lo + 1);
  }
  std::cout << "samples in " << out << "/samples\n";
}

// Pictures and, in 2D, the exact test NLL of a finished run.
void report(Trainer& trainer, const Config& cfg, const std::string& out) {
  auto& energy = trainer.energy();
  const auto& train = trainer.data().train.x;
  const auto& test = trainer.data().test.x;
  if (trainer.data().train.event_shape() != std::vector<int64_t>{2}) return report_samples(trainer, cfg, out);
  std::filesystem::create_directories(out + "/samples");
  Box2d view = bounding_box(train, 0.15);
  density_png(out + "/samples/density.png", energy, view);
  auto samples = model_samples(energy, cfg, {2}, cfg.get_int("eval.sample_chains"));
  write_csv(out + "/samples/samples.csv", samples, {"x0", "x1"});
  scatter_png(out + "/samples/samples.png", samples,
              train.narrow(0, 0, std::min<int64_t>(5000, train.size(0))), view);
  auto r = nll2d(energy, test);
  nlohmann::json j = {{"task", "nll2d"},      {"data", "test split"},
                      {"n", test.size(0)},   {"mean_nll", r.mean_nll},
                      {"nll_se", r.nll_se},  {"log_z", r.log_z},
                      {"log_z_error", r.log_z_error}, {"converged", r.converged}};
  const std::string name = cfg.get_string("data.name");
  if (cfg.get_string("data.path").empty() && is_toy2d(name)) {
    j["entropy"] = toy2d_entropy(name);
    j["nll_minus_entropy"] = r.mean_nll - toy2d_entropy(name);
  }
  atomic_write_text(out + "/eval.json", j.dump(2) + "\n");
  std::cout << "test NLL " << r.mean_nll << " +- " << r.nll_se << " nats (log Z " << r.log_z
            << " +- " << r.log_z_error << ")";
  if (j.contains("entropy")) std::cout << "; data entropy " << j["entropy"].get<double>();
  std::cout << "\n";
}
}  // namespace

Runner add_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "train an energy-based model from a TOML config");
  cmd->add_option("--config", args->config, "TOML recipe (see configs/)");
  cmd->add_option("--set", args->sets, "override a config key: key=value (repeatable)");
  cmd->add_option("--out", args->out, "run directory (default runs/<config name>)");
  cmd->add_flag("--resume", args->resume, "continue from <out>/checkpoint.pt");
  cmd->add_flag("--force", args->force, "start over in an <out> that already holds a run");
  cmd->add_flag("--help-config", args->help_config, "list every config key and exit");
  add_common(cmd, args->common);
  return [args]() -> int {
    Config cfg = make_train_config();
    if (args->help_config) {
      std::cout << cfg.describe();
      return 0;
    }
    EBM_CHECK_USAGE(!args->config.empty(), "train: --config FILE is required");
    const c10::Device device = apply_common(args->common);
    cfg.load_file(args->config);
    for (const auto& s : args->sets) cfg.set(s);
    if (args->common.seed_set) cfg.set_value("seed", args->common.seed);
    cfg.validate();
    std::string out = args->out;
    if (out.empty()) out = "runs/" + std::filesystem::path(args->config).stem().string();
    EBM_CHECK_USAGE(args->resume || args->force ||
                        !std::filesystem::exists(out + "/checkpoint.pt"),
                    out, " already holds a run: --resume to continue it, --force to start over");
    {
      std::error_code ec;
      EBM_CHECK_CODE(!std::filesystem::exists(out, ec) || std::filesystem::is_directory(out, ec),
                     ExitCode::kMissingInput, "--out ", out, ": exists and is not a directory");
    }
    Trainer trainer(cfg, out, device);
    // A 2D run ends with the test NLL: its split must hold points for it.
    const auto& test = trainer.data().test;
    EBM_CHECK_DATA(test.event_shape() != std::vector<int64_t>{2} || test.size() >= 2, test.description, ": ",
                   test.size(), " test point(s) from data.test_fraction = ",
                   cfg.get_float("data.test_fraction"), "; the test NLL needs at least 2");
    auto t0 = std::chrono::steady_clock::now();
    int64_t rollbacks = trainer.run(args->resume);
    trainer.energy().to(torch::kCPU);  // (the report's pictures and quadrature run on the CPU)
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "trained " << trainer.step() << " steps in " << secs << " s ("
              << rollbacks << " divergence rollbacks); outputs in " << out << "\n";
    report(trainer, cfg, out);
    return 0;
  };
}

}  // namespace ebm::cli
