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
#include "ebm/train/train.h"

namespace ebm::cli {
namespace {
struct TrainArgs {
  Common common;
  std::string config, out;
  std::vector<std::string> sets;
  bool resume = false, force = false, help_config = false;
};

// Pictures and, in 2D, the exact test NLL of a finished run.
void report(Trainer& trainer, const Config& cfg, const std::string& out) {
  auto& energy = trainer.energy();
  const auto& test = trainer.data().test;
  if (test.size(1) != 2) return;
  std::filesystem::create_directories(out + "/samples");
  Box2d view = bounding_box(trainer.data().train, 0.15);
  density_png(out + "/samples/density.png", energy, view);
  auto buffer = build_buffer(cfg, {2});
  auto gen = make_generator(cfg.get_int("seed"), kStreamEval);
  ChainState chains(buffer->init_samples(cfg.get_int("eval.sample_chains"), gen));
  build_sampler(cfg)->run(energy, chains, cfg.get_int("eval.sample_steps"), gen);
  write_csv(out + "/samples/samples.csv", chains.x, {"x0", "x1"});
  scatter_png(out + "/samples/samples.png", chains.x, trainer.data().train.narrow(
      0, 0, std::min<int64_t>(5000, trainer.data().train.size(0))), view);
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
    apply_common(args->common);
    cfg.load_file(args->config);
    for (const auto& s : args->sets) cfg.set(s);
    if (args->common.seed_set) cfg.set_value("seed", args->common.seed);
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
    Trainer trainer(cfg, out);
    // A 2D run ends with the test NLL: its split must hold points for it.
    const auto& test = trainer.data().test;
    EBM_CHECK_DATA(test.size(1) != 2 || test.size(0) >= 2, trainer.data().description, ": ",
                   test.size(0), " test point(s) from data.test_fraction = ",
                   cfg.get_float("data.test_fraction"), "; the test NLL needs at least 2");
    auto t0 = std::chrono::steady_clock::now();
    int64_t rollbacks = trainer.run(args->resume);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "trained " << trainer.step() << " steps in " << secs << " s ("
              << rollbacks << " divergence rollbacks); outputs in " << out << "\n";
    report(trainer, cfg, out);
    return 0;
  };
}

}  // namespace ebm::cli
