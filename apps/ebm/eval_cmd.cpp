// ebm eval --model model.pt --task NAME [task options] [--out FILE.json]
#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/eval/tasks.h"
#include "ebm/io/io.h"
#include "ebm/model/model.h"
#include "ebm/train/distributed.h"

namespace ebm::cli {

Runner add_eval(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, task, data, dataset, out, features, reference, samples, sampler, from, rows;
    int64_t steps = 200;
    int64_t n = 10000;
    double tol = 1e-3;
    int64_t clusters = 8;
    double z = 4.0, min_diff = 0.02;
    std::string in_data, labels, plot;
    int64_t bins = 15;
    int64_t n_tasks = 0;
    std::vector<double> eps;
    std::string norm;
    int64_t restarts = 1, purify = 0;
    double attack_step = 0;
    std::vector<std::string> out_data, score;
    std::string target, script, schedule, transition, base;
    int64_t dim = 0;
    int64_t temps = 1000, chains = 100, leapfrog = 10, moves = 1, nproc = 1, block = 64;
    double step = 0.05, spread = 1.0;
    bool reverse = false;
  };
  auto a = std::make_shared<Args>();
  const auto& tasks = eval_task_registry();
  std::string task_doc = "what to measure:";
  for (const auto& c : tasks.group().choices) task_doc += " " + c.name + " (" + c.doc + ")";
  auto* cmd = app.add_subcommand("eval", "evaluate a trained model");
  auto* model = cmd->add_option("--model", a->model, "model.pt from ebm train");
  auto* target = cmd->add_option("--target", a->target, "ais: an analytic target instead of a model (as ebm sample "
                                 "--target: gaussian:dim=10, funnel, mixture, double_well, ...; its exact log Z is shown)");
  auto* script = cmd->add_option("--energy-script", a->script, "ais: a TorchScript energy instead of a model (as ebm "
                                 "sample --energy-script; --data fits the base)");
  cmd->add_option("--dim", a->dim, "ais: dimension of --target / --energy-script (0 = its default)");
  model->excludes(target);
  model->excludes(script);
  target->excludes(script);
  cmd->add_option("--task", a->task, task_doc)->required();
  auto* d = cmd->add_option("--data", a->data, "test points (CSV/NPY)");
  auto* s = cmd->add_option("--dataset", a->dataset, "fresh points from a built-in toy set");
  d->excludes(s);
  cmd->add_option("--n", a->n,
                  "points drawn for --dataset (fid: images on each side, default 1000; ood: rows of each set at "
                  "most, default all; robustness: rows attacked, default 1000, 0 = all)");
  cmd->add_option("--tol", a->tol, "quadrature tolerance on log Z")->capture_default_str();
  auto* clusters = cmd->add_option("--clusters", a->clusters, "modes: k-means cells")->capture_default_str();
  auto* z = cmd->add_option("--z", a->z, "modes: flag at this many standard errors")->capture_default_str();
  auto* min_diff =
      cmd->add_option("--min-diff", a->min_diff, "modes: ... and this absolute difference")->capture_default_str();
  auto* features = cmd->add_option("--features", a->features, "fid: classifier model.pt whose features are compared");
  auto* reference =
      cmd->add_option("--reference", a->reference, "fid: fashion_mnist, mnist, a PNG folder, IDX or NPY images; ood: the training rows the "
                      "Gaussian baseline is fitted to (default: the model's training data; none = no baseline)");
  auto* samples = cmd->add_option("--samples", a->samples, "fid: score these images instead of drawing samples (then --model is optional: the images are read as --features reads its own)");
  auto* steps = cmd->add_option("--steps", a->steps, "fid: sampler transitions per drawn sample (an annealed sampler: default 1 sweep; generator: refining steps, default 0; robustness: PGD steps, default 20; ais --reverse: sampler steps per model sample, default 200)")->capture_default_str();
  auto* sampler = cmd->add_option("--sampler", a->sampler, "fid, generator, robustness (purification): sampler spec (default: the model's training sampler)");
  auto* from = cmd->add_option("--from", a->from, "fid: drawn samples start from noise (default) or generator (the "
                               "model's learned sampler, refined by --steps)");
  auto* in_data = cmd->add_option("--in-data,--in", a->in_data,
                                  "ood: in-distribution rows: a file, a folder, fashion_mnist or mnist (test split)");
  auto* out_data = cmd->add_option("--out-data", a->out_data,
                                   "ood: an OOD set, repeatable: a file, a folder, fashion_mnist, mnist, uniform, "
                                   "vflip:SPEC, hflip:SPEC, fit:SPEC (images of another size or channel count, e.g. "
                                   "CIFAR-10 for a Fashion-MNIST model, resized and converted to the model's) (--out "
                                   "is the JSON report)")
                       ->allow_extra_args(false);
  auto* score = cmd->add_option("--score", a->score,
                                "ood: energy, grad_norm, max_logit, logsumexp, max_softmax (repeatable or comma-separated; "
                                "default: all that apply)")
                    ->delimiter(',');
  auto* rows = cmd->add_option("--rows", a->rows,
                               "ood: write every row's scores to this CSV or NPY (float64) file (set: 0 = the in set, k = the "
                               "k-th --out-data; row: its index in its set, with --n among all of the set's rows; one column per "
                               "score and the Gaussian baseline's; higher = more in-distribution)");
  auto* labels =
      cmd->add_option("--labels", a->labels, "continual, calibration, classify, robustness: one label per row of a --data file (as the model was "
                      "trained: class indices, label values or words)");
  auto* bins = cmd->add_option("--bins", a->bins, "calibration: equal-width confidence bins")->capture_default_str();
  auto* plot = cmd->add_option("--plot", a->plot, "calibration: write the reliability diagram here (PNG)");
  auto* n_tasks = cmd->add_option("--tasks", a->n_tasks,
                                  "continual: tasks the classes are cut into (default: the model's data.tasks)");
  auto* eps = cmd->add_option("--eps", a->eps,
                              "robustness: attack radii, comma-separated (image models: [0, 1] pixel units; standardised "
                              "vectors: training standard deviations, each column's; else the data's units)")
                  ->delimiter(',');
  auto* norm = cmd->add_option("--norm", a->norm, "robustness: linf, l2 or linf,l2 (default both)");
  auto* restarts = cmd->add_option("--restarts", a->restarts, "robustness: PGD restarts (default 1: from the input)");
  auto* attack_step =
      cmd->add_option("--attack-step", a->attack_step, "robustness: PGD step size (default 2.5 eps / steps)");
  auto* purify = cmd->add_option("--purify", a->purify,
                                 "robustness: sampler transitions on E(x) before classifying (JEM's purification)");
  auto* temps = cmd->add_option("--temps", a->temps, "ais: intermediate distributions (default 1000)");
  auto* chains = cmd->add_option("--chains", a->chains, "ais: independent annealing runs (default 100)");
  auto* schedule = cmd->add_option("--schedule", a->schedule, "ais: linear, geometric or sigmoid (default)");
  auto* transition = cmd->add_option("--transition", a->transition, "ais: hmc (default) or mala");
  auto* moves = cmd->add_option("--moves", a->moves, "ais: transitions per temperature (default 1)");
  auto* leapfrog = cmd->add_option("--leapfrog", a->leapfrog, "ais: HMC leapfrog steps per transition (default 10)");
  auto* step = cmd->add_option("--step", a->step, "ais: the first step size, adapted per temperature (default 0.05)");
  auto* spread = cmd->add_option("--spread", a->spread, "ais, hmc: each chain's step in each transition times "
                                 "exp(U(-S, S)), independent of the state (default 1; 2 for funnels; 0: +-20% jitter)");
  auto* base = cmd->add_option("--base", a->base, "ais: gaussian (fitted to a target's draws, the model's training "
                               "rows or --data), mixture (a Gaussian per k-means cell of those rows, with its share), "
                               "uniform (the pixel box of an image model) or auto (default: uniform for images, else "
                               "mixture)");
  auto* reverse = cmd->add_flag("--reverse,--bidirectional", a->reverse, "ais: also reverse AIS from samples (a target's exact "
                                "draws: the two bracket log Z; a model's --steps sampler draws)");
  auto* n = cmd->get_option("--n");
  cmd->add_option("--out", a->out, "also write the result as JSON here (ood: OOD sets are given by --out-data)");
  auto* nproc = cmd->add_option("--nproc", a->nproc, "ais: run the chains in blocks of --block over N local ranks "
                                "(or torchrun's RANK, WORLD_SIZE, ...); the result does not depend on N");
  auto* block = cmd->add_option("--block", a->block, "ais --nproc: chains per block, each on its own stream")
                    ->capture_default_str();
  add_common(cmd, a->common);
  return [a, &tasks, nproc, block, spread, clusters, z, min_diff, features, reference, samples, steps, sampler, from, n, in_data, out_data,
          score, rows, labels, n_tasks, bins, plot, eps, norm, restarts, attack_step, purify, temps, chains, schedule,
          transition, leapfrog, moves, step, base, reverse]() -> int {
    EBM_CHECK_USAGE(a->nproc >= 1 && a->nproc <= 256, "--nproc must be in 1 .. 256, got ", a->nproc);
    EBM_CHECK_USAGE(a->block >= 1, "--block must be >= 1, got ", a->block);
    const DistConfig dist = dist_config_from_env();
    set_notes(dist.rank == 0);  // (rank 0 says the notes)
    const bool blocked = nproc->count() > 0 || block->count() > 0 || dist.world > 1;
    EBM_CHECK_USAGE(!blocked || a->task == "ais", "--nproc and --block split the chains of --task ais only");
    EBM_CHECK_USAGE(a->nproc == 1 || std::getenv("WORLD_SIZE") == nullptr || a->nproc == dist.world, "--nproc ",
                    a->nproc, " disagrees with WORLD_SIZE=", dist.world);
    apply_common(a->common);  // (the tasks run on the CPU)
    EBM_CHECK_USAGE(tasks.has(a->task), "--task ", a->task, ": unknown task (this build has: ",
                    tasks.known(), ")");
    // (fid of given images needs no model: the feature network's pixel
    // conventions read them)
    if (a->model.empty() && a->task == "fid" && !a->samples.empty() && !a->features.empty()) a->model = a->features;
    EBM_CHECK_USAGE(!a->model.empty() || (a->task == "ais" && (!a->target.empty() || !a->script.empty())),
                    "eval: give --model FILE (--target NAME or --energy-script FILE only with --task ais)");
    EBM_CHECK_USAGE(a->dim >= 0, "--dim must be >= 0, got ", a->dim);
    Config cfg(eval_task_schema());
    cfg.set_value("task.name", a->task);
    // (the 2D point tasks' keys; fid has its own)
    const bool points = a->task == "nll2d" || a->task == "modes";
    if (points || !a->data.empty()) cfg.set_value("task.data", a->data);
    if (points || !a->dataset.empty()) cfg.set_value("task.dataset", a->dataset);
    if (points || n->count()) cfg.set_value("task.n", a->n);
    if (points) cfg.set_value("task.tol", a->tol);
    // (continual, calibration and classify draw nothing)
    if (a->task != "continual" && a->task != "calibration" && a->task != "classify") cfg.set_value("task.seed", a->common.seed);
    // (task-specific options only when given: another task refuses them at
    // validate(), naming the option and the task it belongs to)
    if (clusters->count()) cfg.set_value("task.clusters", a->clusters);
    if (z->count()) cfg.set_value("task.z", a->z);
    if (min_diff->count()) cfg.set_value("task.min_diff", a->min_diff);
    if (features->count()) cfg.set_value("task.features", a->features);
    if (reference->count()) cfg.set_value("task.reference", a->reference);
    if (samples->count()) cfg.set_value("task.samples", a->samples);
    if (steps->count()) cfg.set_value("task.steps", a->steps);
    if (sampler->count()) cfg.set_value("task.sampler", a->sampler);
    auto joined = [](const std::vector<std::string>& v, const char* sep) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
      return s;
    };
    if (labels->count()) cfg.set_value("task.labels", a->labels);
    if (bins->count()) cfg.set_value("task.bins", a->bins);
    if (plot->count()) cfg.set_value("task.plot", a->plot);
    if (task_reads_model_path(a->task)) cfg.set_value("task.model", a->model);
    if (temps->count()) cfg.set_value("task.temps", a->temps);
    if (chains->count()) cfg.set_value("task.chains", a->chains);
    if (schedule->count()) cfg.set_value("task.schedule", a->schedule);
    if (transition->count()) cfg.set_value("task.transition", a->transition);
    if (leapfrog->count()) cfg.set_value("task.leapfrog", a->leapfrog);
    if (moves->count()) cfg.set_value("task.moves", a->moves);
    if (step->count()) cfg.set_value("task.step", a->step);
    if (spread->count()) cfg.set_value("task.spread", a->spread);
    if (base->count()) cfg.set_value("task.base", a->base);
    if (reverse->count()) cfg.set_value("task.reverse", a->reverse);
    if (from->count()) cfg.set_value("task.from", a->from);
    if (eps->count()) cfg.set_value("task.eps", a->eps);
    if (norm->count()) cfg.set_value("task.norm", a->norm);
    if (restarts->count()) cfg.set_value("task.restarts", a->restarts);
    if (attack_step->count()) cfg.set_value("task.attack_step", a->attack_step);
    if (purify->count()) cfg.set_value("task.purify", a->purify);
    if (n_tasks->count()) cfg.set_value("task.tasks", a->n_tasks);
    if (in_data->count()) cfg.set_value("task.in_data", a->in_data);
    if (out_data->count()) cfg.set_value("task.out_data", joined(a->out_data, "\n"));  // (one SPEC per line)
    if (score->count()) cfg.set_value("task.score", joined(a->score, ","));
    if (rows->count()) cfg.set_value("task.rows", a->rows);
    if (blocked) cfg.set_value("task.block", a->block);
    try {
      cfg.validate();
    } catch (const Error& e) {
      const std::string what = e.what();
      const auto k0 = what.find("key 'task."), at = what.find("belongs to "), end = what.find(", not to");
      if (e.code() != ExitCode::kBadConfig || k0 == std::string::npos || at == std::string::npos ||
          end == std::string::npos)
        throw;
      std::string opt = what.substr(k0 + 10, what.find('\'', k0 + 10) - k0 - 10);
      std::replace(opt.begin(), opt.end(), '_', '-');
      fail(ExitCode::kUsage, "--", opt, " is an option of ", what.substr(at + 11, end - at - 11), ", not of --task ",
           a->task);
    }
    // (a missing or read-only folder for the report, found before the work)
    if (!a->out.empty()) check_writable(a->out);
    if (plot->count()) check_writable(a->plot);
    ModelInfo info;
    Energy energy = eval_energy(a->model, a->target, a->script, a->dim, info);
    // (the ranks start once the command line, the model and the task's keys
    // are known good: an error in them is said once)
    if (a->nproc > 1 && std::getenv("WORLD_SIZE") == nullptr) return launch_local(a->nproc, 20.0);
    struct GroupGuard {  // (the group ends before the process does)
      ~GroupGuard() { set_process_group(nullptr); }
    } guard;
    if (dist.world > 1) set_process_group(std::make_shared<Collective>(dist));
    EvalReport r = tasks.make(cfg, *energy, info);
    if (process_group() != nullptr && process_group()->rank() != 0) return 0;  // (rank 0 reports)
    std::cout << r.text;
    if (!a->out.empty()) atomic_write_text(a->out, r.json.dump(2) + "\n");
    return 0;
  };
}

}  // namespace ebm::cli
