// ebm train --config FILE [--set key=value]... [--out DIR] [--resume] [--nproc N]
#include <pthread.h>
#include <signal.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/data/labels.h"
#include "ebm/energy/registry.h"
#include "ebm/eval/report.h"
#include "ebm/io/io.h"
#include "ebm/train/distributed.h"
#include "ebm/train/resume_checks.h"
#include "ebm/train/train.h"

namespace ebm::cli {
namespace {
// Ctrl-C or SIGTERM of a training process (a lone one or a rank of a
// data-parallel run; its launcher forwards them and waits): both are blocked in
// every thread from the command's start (threads inherit the mask; no
// handler runs inside a numerical kernel, where an asynchronous one was
// followed by a corrupted heap in 2 of 8 tries) and polled after each step:
// the step ends, a checkpoint is written there and the command exits 128 +
// the signal. Before, the process died with the steps since its last
// checkpoint lost. Unblocked after training: a signal then pending ends the
// process as its default action does.
class StopSignals {
 public:
  explicit StopSignals(bool on) : on_(on) {
    if (!on_) return;
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  // The pending stop signal, taken (0: none).
  int take() {
    if (!on_) return 0;
    sigset_t pending;
    sigpending(&pending);
    if (!sigismember(&pending, SIGINT) && !sigismember(&pending, SIGTERM)) return 0;
    const timespec now{0, 0};
    const int sig = sigtimedwait(&set_, nullptr, &now);
    return sig > 0 ? sig : 0;
  }
  void release() {
    if (on_) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    on_ = false;
  }
  ~StopSignals() { release(); }

 private:
  bool on_;
  sigset_t set_{}, old_{};
};
struct TrainArgs {
  Common common;
  std::string config, out;
  std::vector<std::string> sets;
  bool resume = false, force = false, help_config = false;
  int64_t nproc = 1;
};

}  // namespace

// A folder's class map (which sub-folder is which label), and a warning for
// classes no training row has (energy.classes above the labels' count).
static void report_classes(const Trainer& trainer) {
  const auto& tr = trainer.data().train;
  const std::string path = trainer.config().get_string("data.path");
  if (!path.empty() && (!tr.class_names.empty() || tr.description != path))  // (classes, or how it was read)
    std::cout << "data: " << tr.description << "\n";
  if (!tr.has_labels()) return;
  if (!energy_is_conditional(trainer.config())) return;
  const int64_t k = trainer.config().get_int("energy.classes");
  auto counts = torch::bincount(tr.y.to(torch::kCPU, torch::kLong).view({-1}), {}, k);
  std::vector<int64_t> empty;
  for (int64_t c = 0; c < k; ++c)
    if (counts[c].item<int64_t>() == 0) empty.push_back(c);
  if (empty.empty()) return;
  // (labels by value, -1 / 1 or 1 .. K, are named by their values)
  const int64_t named = int64_t(tr.class_names.size());
  const bool by_value = named_by_value(tr.class_names);
  std::string list;
  for (size_t i = 0; i < empty.size() && i < 10; ++i) {
    const auto c = size_t(empty[i]);
    list += i ? ", " : "";
    list += empty[i] >= named ? std::to_string(empty[i])
                              : by_value ? "label " + tr.class_names[c] : "'" + tr.class_names[c] + "'";
  }
  if (empty.size() > 10) list += ", ... (" + std::to_string(empty.size()) + " in all)";
  std::cerr << "ebm: warning: " << empty.size() << " of the model's " << k << " classes have no training rows (" << list;
  if (named > 0 && k > named)
    std::cerr << "): energy.classes = " << k << ", but the labels name " << named
              << " (energy.classes = 0 takes their count)\n";
  else
    std::cerr << (named > 0 ? "): no row of theirs is trained on\n" : "): labels are class indices 0 .. K-1\n");
}

Runner add_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "train an energy-based model from a TOML config");
  cmd->add_option("--config", args->config, "TOML recipe (see configs/)");
  cmd->add_option("--set", args->sets, "override a config key: key=value (repeatable)");
  cmd->add_option("--out", args->out, "run directory (default runs/<config name>)")
      ->check([](const std::string& v) { return v.empty() ? std::string("an empty directory name") : std::string(); });
  cmd->add_flag("--resume", args->resume, "continue from <out>/checkpoint.pt");
  cmd->add_flag("--force", args->force, "start over in an <out> that already holds a run")->excludes("--resume");
  cmd->add_flag("--help-config", args->help_config, "list every config key and exit");
  cmd->add_option("--nproc", args->nproc,
                  "data-parallel: start N local ranks (or run as one rank of torchrun's RANK, WORLD_SIZE, "
                  "MASTER_ADDR, MASTER_PORT)")
      ->capture_default_str();
  add_common(cmd, args->common);
  return [args]() -> int {
    Config cfg = make_train_config();
    if (args->help_config) {
      std::cout << cfg.describe();
      return 0;
    }
    EBM_CHECK_USAGE(!args->config.empty(), "train: --config FILE is required");
    EBM_CHECK_USAGE(args->nproc >= 1 && args->nproc <= 256, "--nproc must be in 1 .. 256, got ", args->nproc);
    const DistConfig dist = dist_config_from_env();
    // (before any thread starts, so that every one inherits the mask)
    // (not in a launcher of ranks, which forwards them)
    StopSignals stop_signals(args->nproc <= 1 || std::getenv("WORLD_SIZE") != nullptr);
    set_notes(dist.rank == 0);  // (rank 0 says the notes)
    EBM_CHECK_USAGE(args->nproc == 1 || std::getenv("WORLD_SIZE") == nullptr || args->nproc == dist.world,
                    "--nproc ", args->nproc, " disagrees with WORLD_SIZE=", dist.world);
    c10::Device device = apply_common(args->common);
    // (one GPU per rank: cuda means cuda:LOCAL_RANK)
    if (dist.world > 1 && device.is_cuda()) {
      EBM_CHECK_USAGE(!device.has_index() || device.index() == dist.local_rank, "--device ", device.str(),
                      ": a data-parallel rank uses cuda:LOCAL_RANK (", dist.local_rank, ")");
      device = c10::Device(c10::kCUDA, c10::DeviceIndex(dist.local_rank));
    }
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
    // (by the launching process or a lone one, and by rank 0: the other
    // ranks write nothing there)
    if (args->force && !args->resume && (std::getenv("WORLD_SIZE") == nullptr || dist.rank == 0))
      remove_old_run(out);
    // (the ranks start once the command line and config are known good: an
    // error in them is said once)
    if (args->nproc > 1 && std::getenv("WORLD_SIZE") == nullptr) return launch_local(args->nproc, 20.0);
    Trainer trainer(cfg, out, device);
    if (dist.world > 1) trainer.distribute(std::make_shared<Collective>(dist));
    // A 2D run ends with the test NLL: its split must hold points for it.
    const auto& test = trainer.data().test;
    // (data.test_fraction = 0 is the config's doing; a set too small, the data's)
    EBM_CHECK_CODE(test.event_shape() != std::vector<int64_t>{2} || test.size() >= 2,
                   cfg.get_float("data.test_fraction") == 0 ? ExitCode::kBadConfig : ExitCode::kBadData,
                   test.description, ": ", test.size(), " test point(s) from data.test_fraction = ",
                   cfg.get_float("data.test_fraction"), "; the test NLL needs at least 2");
    if (trainer.lead()) report_classes(trainer);
    auto t0 = std::chrono::steady_clock::now();
    int interrupted = 0;
    // (the ranks agree on a stop by a collective each step, Trainer::run:
    // every one stops at the step where any was signalled, rank 0 writes the
    // checkpoint; before, a Ctrl-C killed the ranks with the run's steps since
    // its last checkpoint, exit 70)
    int64_t first_step = -1;  // (the step a resumed run started from)
    trainer.on_step([&](int64_t step, const std::map<std::string, double>&) {
      if (first_step < 0) first_step = step - 1;
      if (const int sig = stop_signals.take(); sig != 0) interrupted = sig;
      return interrupted != 0;
    });
    int64_t rollbacks = trainer.run(args->resume);
    // (a rank that stopped with the others at their vote may hold its own
    // forwarded signal still pending: taken here, unblocking would kill it)
    if (trainer.step() < trainer.config().get_int("train.steps"))
      if (const int sig = stop_signals.take(); sig != 0 && interrupted == 0) interrupted = sig;
    stop_signals.release();
    // (a rank that was not signalled itself stopped with the others)
    if (interrupted == 0 && dist.world > 1 && trainer.step() < trainer.config().get_int("train.steps"))
      interrupted = SIGINT;
    if (interrupted != 0) {
      if (trainer.lead())
        std::cerr << "ebm: interrupted at step " << trainer.step() << "; checkpoint saved in " << out
                  << "/checkpoint.pt: --resume continues from there\n";
      return 128 + interrupted;
    }
    if (!trainer.lead()) return 0;  // (rank 0 reports)
    trainer.energy().to(torch::kCPU);  // (the report's pictures and quadrature run on the CPU)
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // (a resumed run's time is this run's: its steps are counted apart)
    if (first_step > 0)
      std::cout << "trained to step " << trainer.step() << " (" << trainer.step() - first_step
                << (trainer.step() - first_step == 1 ? " step" : " steps") << " in this run, "
                << secs << " s; ";
    else
      std::cout << "trained " << trainer.step() << " steps in " << secs << " s (";
    std::cout << rollbacks << " divergence rollbacks); outputs in " << out << "\n";
    if (trainer.config().get_bool("train.keep_best") && trainer.best_step() >= 0)
      std::cout << "model.pt: the weights of step " << trainer.best_step() << ", the lowest " << trainer.best_criterion() << " ("
                << trainer.best_score() << ", train.keep_best)\n";
    if (const auto& c = trainer.calibrated(); c.t)
      std::cout << "p(y | x) temperature " << *c.t << ", fitted on " << c.rows << " validation rows: their NLL "
                << c.nll << " -> " << c.nll_scaled << " (train.calibrate; ebm classify and eval apply it)\n";
    std::cout << report_run(*trainer.user_energy(), trainer.config(), trainer.data(), out);
    return 0;
  };
}

}  // namespace ebm::cli
