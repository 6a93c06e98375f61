// ebm eval --model model.pt --task nll2d (--data FILE | --dataset NAME [--n N])
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

Runner add_eval(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, task, data, dataset, out;
    int64_t n = 10000;
    double tol = 1e-3;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "evaluate a trained model");
  cmd->add_option("--model", a->model, "model.pt from ebm train")->required();
  cmd->add_option("--task", a->task, "nll2d: exact test NLL of a 2D model")->required();
  auto* d = cmd->add_option("--data", a->data, "test points (CSV/NPY)");
  auto* s = cmd->add_option("--dataset", a->dataset, "fresh points from a built-in toy set");
  d->excludes(s);
  cmd->add_option("--n", a->n, "points drawn for --dataset")->capture_default_str();
  cmd->add_option("--tol", a->tol, "quadrature tolerance on log Z")->capture_default_str();
  cmd->add_option("--out", a->out, "also write the result as JSON here");
  add_common(cmd, a->common);
  return [a]() -> int {
    apply_common(a->common);
    EBM_CHECK_USAGE(a->task == "nll2d", "--task ", a->task,
                    ": unknown task (this build has: nll2d)");
    EBM_CHECK_USAGE(!a->data.empty() || !a->dataset.empty(),
                    "eval: give --data FILE or --dataset NAME");
    EBM_CHECK_USAGE(a->tol > 0, "--tol must be > 0, got ", a->tol);
    Energy energy = load_model(a->model);
    torch::Tensor test;
    if (!a->data.empty()) {
      test = read_matrix(a->data);
    } else {
      EBM_CHECK_USAGE(a->n >= 2, "--n must be >= 2, got ", a->n);
      auto gen = make_generator(a->common.seed, kStreamTestData);
      test = toy2d(a->dataset, a->n, gen);
    }
    EBM_CHECK_DATA(energy->event_shape()[0] == 2, a->model, ": nll2d needs a 2D model, got D=",
                   energy->event_shape()[0]);
    EBM_CHECK_DATA(test.size(1) == 2, (a->data.empty() ? a->dataset : a->data),
                   ": nll2d needs 2 columns, got ", test.size(1));
    auto r = nll2d(*energy, test, a->tol);
    nlohmann::json j = {{"task", "nll2d"},       {"n", test.size(0)},
                        {"mean_nll", r.mean_nll}, {"nll_se", r.nll_se},
                        {"log_z", r.log_z},       {"log_z_error", r.log_z_error},
                        {"grid", r.grid},         {"converged", r.converged},
                        {"box", {r.box.lo[0], r.box.hi[0], r.box.lo[1], r.box.hi[1]}}};
    std::cout << "mean NLL " << r.mean_nll << " +- " << r.nll_se << " nats over " << test.size(0)
              << " points\nlog Z " << r.log_z << " +- " << r.log_z_error << " (grid " << r.grid
              << "^2, box [" << r.box.lo[0] << ", " << r.box.hi[0] << "] x [" << r.box.lo[1]
              << ", " << r.box.hi[1] << "]" << (r.converged ? "" : ", NOT converged") << ")\n";
    if (!a->dataset.empty()) {
      double h = toy2d_entropy(a->dataset);
      j["entropy"] = h;
      j["nll_minus_entropy"] = r.mean_nll - h;
      std::cout << "data entropy " << h << " nats; NLL - entropy " << r.mean_nll - h << "\n";
    }
    if (!a->out.empty()) atomic_write_text(a->out, j.dump(2) + "\n");
    return 0;
  };
}

}  // namespace ebm::cli
