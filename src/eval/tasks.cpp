#include "ebm/eval/tasks.h"

#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"

namespace ebm {
namespace {
// The test points of a 2D task: --data FILE or --n fresh points of --dataset.
torch::Tensor test_points_2d(const Config& c, EnergyImpl& energy) {
  const std::string task = c.get_string("task.name"), data = c.get_string("task.data"),
                    dataset = c.get_string("task.dataset");
  EBM_CHECK_USAGE(!data.empty() || !dataset.empty(), "eval: give --data FILE or --dataset NAME");
  EBM_CHECK_USAGE(c.get_float("task.tol") > 0, "--tol must be > 0, got ", c.get_float("task.tol"));
  torch::Tensor test;
  if (!data.empty()) {
    test = read_matrix(data);
  } else {
    const int64_t n = c.get_int("task.n");
    EBM_CHECK_USAGE(n >= 2, "--n must be >= 2, got ", n);
    auto gen = make_generator(c.get_int("task.seed"), kStreamTestData);
    test = toy2d(dataset, n, gen);
  }
  EBM_CHECK_DATA(energy.event_shape() == std::vector<int64_t>{2}, task, " needs a 2D model, got event shape ",
                 c10::IntArrayRef(energy.event_shape()));
  EBM_CHECK_DATA(test.size(1) == 2, (data.empty() ? dataset : data), ": ", task, " needs 2 columns, got ",
                 test.size(1));
  return test;
}

// Exact test NLL of a 2D model (quadrature of Z).
EvalReport nll2d_task(const Config& c, EnergyImpl& energy) {
  const std::string dataset = c.get_string("task.dataset");
  const double tol = c.get_float("task.tol");
  auto test = test_points_2d(c, energy);
  auto r = nll2d(energy, test, tol);
  EvalReport out;
  out.json = {{"task", "nll2d"},       {"n", test.size(0)},
              {"mean_nll", r.mean_nll}, {"nll_se", r.nll_se},
              {"log_z", r.log_z},       {"log_z_error", r.log_z_error},
              {"grid", r.grid},         {"converged", r.converged},
              {"box", {r.box.lo[0], r.box.hi[0], r.box.lo[1], r.box.hi[1]}}};
  std::ostringstream os;
  os << "mean NLL " << r.mean_nll << " +- " << r.nll_se << " nats over " << test.size(0)
     << " points\nlog Z " << r.log_z << " +- " << r.log_z_error << " (grid " << r.grid << "^2, box ["
     << r.box.lo[0] << ", " << r.box.hi[0] << "] x [" << r.box.lo[1] << ", " << r.box.hi[1] << "]"
     << (r.converged ? "" : ", NOT converged") << ")\n";
  if (!dataset.empty()) {
    const double h = toy2d_entropy(dataset);
    out.json["entropy"] = h;
    out.json["nll_minus_entropy"] = r.mean_nll - h;
    os << "data entropy " << h << " nats; NLL - entropy " << r.mean_nll - h << "\n";
  }
  out.text = os.str();
  return out;
}
// The model's mass around each cluster of the data against the data's share.
EvalReport modes_task(const Config& c, EnergyImpl& energy) {
  auto test = test_points_2d(c, energy);
  auto gen = make_generator(c.get_int("task.seed"), kStreamEval);
  auto r = mode_masses(energy, test, c.get_int("task.clusters"), c.get_float("task.z"),
                       c.get_float("task.min_diff"), gen, c.get_float("task.tol"));
  EvalReport out;
  out.json = mode_masses_json(r);
  out.json["task"] = "modes";
  out.json["n"] = test.size(0);
  std::ostringstream os;
  os << r.table();
  if (r.ok)
    os << "mode masses agree with the data within " << c.get_float("task.z") << " standard errors\n";
  else
    os << "warning: the model's mass differs from the data's in " << r.flagged.sum().item<int64_t>()
       << " cell(s): its density has the modes' shapes but not their weights (see README, 'Mode masses')\n";
  out.text = os.str();
  return out;
}

std::vector<ConfigKey> points_keys() {
  return {{"data", std::string(""), "test points (CSV/NPY)"},
          {"dataset", std::string(""), "fresh points from a built-in toy set"},
          {"n", int64_t(10000), "points drawn for --dataset"},
          {"tol", 1e-3, "quadrature tolerance on log Z"},
          {"seed", int64_t(0), "seed of the drawn points (and of k-means)"}};
}
}  // namespace

const EvalTaskRegistry& eval_task_registry() {
  static const EvalTaskRegistry reg = [] {
    EvalTaskRegistry r("eval task", "task", "name", "nll2d", "what ebm eval measures");
    r.add({"nll2d", "exact test NLL of a 2D model: log Z by quadrature, refined to --tol", points_keys()},
          nll2d_task);
    auto mode_keys = points_keys();
    mode_keys.push_back({"clusters", int64_t(8), "k-means cells the masses are compared in"});
    mode_keys.push_back({"z", 4.0, "flag a cell whose mass is more than z standard errors from the data's share"});
    mode_keys.push_back({"min_diff", 0.02, "... and more than this apart (absolute)"});
    r.add({"modes", "the model's mass in the cells of the data's clusters against the data's shares (2D, exact)",
           mode_keys},
          modes_task);
    return r;
  }();
  return reg;
}

std::shared_ptr<const Schema> eval_task_schema() {
  static const auto schema = [] {
    auto s = std::make_shared<Schema>();
    s->add({"task", {}, {eval_task_registry().group()}});
    return std::shared_ptr<const Schema>(s);
  }();
  return schema;
}

}  // namespace ebm
