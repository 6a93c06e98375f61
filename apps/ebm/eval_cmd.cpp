// ebm eval --model model.pt --task NAME [task options] [--out FILE.json]
#include <iostream>

#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/eval/tasks.h"
#include "ebm/io/io.h"
#include "ebm/model/model.h"

namespace ebm::cli {

Runner add_eval(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, task, data, dataset, out;
    int64_t n = 10000;
    double tol = 1e-3;
    int64_t clusters = 8;
    double z = 4.0, min_diff = 0.02;
  };
  auto a = std::make_shared<Args>();
  const auto& tasks = eval_task_registry();
  std::string task_doc = "what to measure:";
  for (const auto& c : tasks.group().choices) task_doc += " " + c.name + " (" + c.doc + ")";
  auto* cmd = app.add_subcommand("eval", "evaluate a trained model");
  cmd->add_option("--model", a->model, "model.pt from ebm train")->required();
  cmd->add_option("--task", a->task, task_doc)->required();
  auto* d = cmd->add_option("--data", a->data, "test points (CSV/NPY)");
  auto* s = cmd->add_option("--dataset", a->dataset, "fresh points from a built-in toy set");
  d->excludes(s);
  cmd->add_option("--n", a->n, "points drawn for --dataset")->capture_default_str();
  cmd->add_option("--tol", a->tol, "quadrature tolerance on log Z")->capture_default_str();
  auto* clusters = cmd->add_option("--clusters", a->clusters, "modes: k-means cells")->capture_default_str();
  auto* z = cmd->add_option("--z", a->z, "modes: flag at this many standard errors")->capture_default_str();
  auto* min_diff =
      cmd->add_option("--min-diff", a->min_diff, "modes: ... and this absolute difference")->capture_default_str();
  cmd->add_option("--out", a->out, "also write the result as JSON here");
  add_common(cmd, a->common);
  return [a, &tasks, clusters, z, min_diff]() -> int {
    apply_common(a->common);  // (the tasks run on the CPU)
    EBM_CHECK_USAGE(tasks.has(a->task), "--task ", a->task, ": unknown task (this build has: ",
                    tasks.known(), ")");
    Config cfg(eval_task_schema());
    cfg.set_value("task.name", a->task);
    cfg.set_value("task.data", a->data);
    cfg.set_value("task.dataset", a->dataset);
    cfg.set_value("task.n", a->n);
    cfg.set_value("task.tol", a->tol);
    cfg.set_value("task.seed", a->common.seed);
    // (task-specific options only when given: another task refuses them)
    if (clusters->count()) cfg.set_value("task.clusters", a->clusters);
    if (z->count()) cfg.set_value("task.z", a->z);
    if (min_diff->count()) cfg.set_value("task.min_diff", a->min_diff);
    cfg.validate();
    Energy energy = load_model(a->model);
    EvalReport r = tasks.make(cfg, *energy);
    std::cout << r.text;
    if (!a->out.empty()) atomic_write_text(a->out, r.json.dump(2) + "\n");
    return 0;
  };
}

}  // namespace ebm::cli
