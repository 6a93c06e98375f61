#include "ebm/eval/tasks.h"

#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"

namespace ebm {
namespace {
// Exact test NLL of a 2D model (quadrature of Z).
EvalReport nll2d_task(const Config& c, EnergyImpl& energy) {
  const std::string data = c.get_string("task.data"), dataset = c.get_string("task.dataset");
  const double tol = c.get_float("task.tol");
  EBM_CHECK_USAGE(!data.empty() || !dataset.empty(), "eval: give --data FILE or --dataset NAME");
  EBM_CHECK_USAGE(tol > 0, "--tol must be > 0, got ", tol);
  torch::Tensor test;
  if (!data.empty()) {
    test = read_matrix(data);
  } else {
    const int64_t n = c.get_int("task.n");
    EBM_CHECK_USAGE(n >= 2, "--n must be >= 2, got ", n);
    auto gen = make_generator(c.get_int("task.seed"), kStreamTestData);
    test = toy2d(dataset, n, gen);
  }
  EBM_CHECK_DATA(energy.event_shape() == std::vector<int64_t>{2}, "nll2d needs a 2D model, got event shape ",
                 c10::IntArrayRef(energy.event_shape()));
  EBM_CHECK_DATA(test.size(1) == 2, (data.empty() ? dataset : data), ": nll2d needs 2 columns, got ",
                 test.size(1));
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
}  // namespace

const EvalTaskRegistry& eval_task_registry() {
  static const EvalTaskRegistry reg = [] {
    EvalTaskRegistry r("eval task", "task", "name", "nll2d", "what ebm eval measures");
    r.add({"nll2d", "exact test NLL of a 2D model: log Z by quadrature, refined to --tol",
           {{"data", std::string(""), "test points (CSV/NPY)"},
            {"dataset", std::string(""), "fresh points from a built-in toy set"},
            {"n", int64_t(10000), "points drawn for --dataset"},
            {"tol", 1e-3, "quadrature tolerance on log Z"},
            {"seed", int64_t(0), "seed of the drawn points"}}},
          nll2d_task);
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
