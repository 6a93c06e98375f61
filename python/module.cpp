// The Python module ebm._ebm (pybind11 against Debian's python3-torch, which
// matches libtorch-dev): torch tensors in and out. python/ebm/__init__.py
// imports torch first (its tensor type must be registered) and adds the
// conveniences written in Python (config dicts, nn.Module energies).
#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include <chrono>
#include <filesystem>
#include <optional>

#include "ebm/core/config.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/registry.h"
#include "ebm/energy/script_energy.h"
#include "ebm/eval/tasks.h"
#include "ebm/model/model.h"
#include "ebm/sampling/diagnostics.h"
#include "ebm/sampling/sampling.h"
#include "ebm/train/resume_checks.h"
#include "ebm/train/train.h"

namespace py = pybind11;
using namespace ebm;

namespace {
// Rows as the energy takes them: integers (plain Python ints make int64
// tensors, which gave E = 7 where 4.67 is right, or NaN) and another float
// width (float64 rows for a float32 network: a raw "mat1 and mat2" error)
// become the energy's own floating type (its parameters', else float32).
at::Tensor as_rows(EnergyImpl& e, const at::Tensor& x) {
  auto p = e.parameters();
  if (p.empty()) {
    auto b = e.buffers();
    for (const auto& t : b)
      if (t.is_floating_point()) return x.is_floating_point() ? x : x.to(t.scalar_type());
    return x.is_floating_point() ? x : x.to(torch::kFloat);
  }
  return x.scalar_type() == p[0].scalar_type() ? x : x.to(p[0].scalar_type());
}

// Ctrl-C while the interpreter's lock is released: Python sees the signal
// only when its lock is taken; a loop that never takes it ran to its end
// (8.7 s of sampling, 200,000 training steps) before KeyboardInterrupt.
// raised(): true when a signal's handler raised a Python exception, left
// set on this thread for the caller; looked at every 0.2 s at most, the
// lock taken only then. (Signals reach the main thread alone.)
class SignalPoll {
 public:
  bool raised() { return check(nullptr); }
  // raised(), the exception taken into `into` under the same lock.
  bool raised(std::optional<py::error_already_set>& into) { return check(&into); }

 private:
  bool check(std::optional<py::error_already_set>* into) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(200)) return false;
    last_ = now;
    py::gil_scoped_acquire acquire;
    if (PyErr_CheckSignals() == 0) return false;
    if (into != nullptr) into->emplace();
    return true;
  }
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

py::dict stats_dict(double accept, double step_size, int64_t divergent, double energy_mean, double n_grad) {
  py::dict d;
  d["accept_rate"] = accept;
  d["step_size"] = step_size;
  d["n_divergent"] = divergent;
  d["energy_mean"] = energy_mean;
  d["n_grad"] = n_grad;
  return d;
}

// A run's config: a TOML file's path or TOML text, then key=value overrides.
Config train_config(const std::string& config, const std::vector<std::string>& sets) {
  Config cfg = make_train_config();
  std::error_code ec;
  // (one line naming a .toml file, or no '=' in it: a path, which must exist;
  // parsed as TOML text it failed with "saw '/'")
  const bool one_line = config.find('\n') == std::string::npos;
  const bool path_like = one_line && (config.find('=') == std::string::npos ||
                                      (config.size() > 5 && config.compare(config.size() - 5, 5, ".toml") == 0));
  if (one_line && (std::filesystem::is_regular_file(config, ec) || path_like))
    cfg.load_file(config);
  else
    cfg.load_string(config, "<python config>");
  for (const auto& s : sets) cfg.set(s);
  cfg.validate();
  return cfg;
}

py::dict sample(const Energy& energy, const at::Tensor& x0, const std::string& spec, int64_t steps, int64_t warmup,
                uint64_t seed, bool keep, double target_accept) {
  EBM_CHECK_USAGE(steps >= 0 && warmup >= 0, "sample: steps and warmup must be >= 0");
  auto sampler = make_sampler(spec);
  auto gen = make_generator(seed, kStreamSample, x0.device());
  ChainState chains(as_rows(*energy, x0.detach()).clone());
  std::vector<at::Tensor> draws;
  double accept = 0, energy_mean = 0, n_grad = 0;
  int64_t divergent = 0;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    SignalPoll poll;
    if (warmup > 0 && sampler->target_accept() > 0) {
      WarmupAdapter adapter(*sampler, WarmupOptions(warmup).target_accept(target_accept));
      while (!adapter.done() && !(interrupted = poll.raised())) adapter.step(*energy, chains, gen);
    } else {
      for (int64_t t = 0; t < warmup && !(interrupted = poll.raised()); ++t) sampler->step(*energy, chains, gen);
    }
    for (int64_t t = 0; t < steps && !interrupted && !(interrupted = poll.raised()); ++t) {
      Stats s = sampler->step(*energy, chains, gen);
      accept += s.accept_rate / double(steps);
      energy_mean += s.energy_mean / double(steps);
      n_grad += s.n_grad;
      divergent += s.n_divergent;
      if (keep) draws.push_back(chains.x.detach().clone());
    }
  }
  if (interrupted) throw py::error_already_set();  // (KeyboardInterrupt, as the signal's handler set it)
  py::dict d = stats_dict(steps > 0 ? accept : 0.0, sampler->step_size(), divergent, energy_mean, n_grad);
  d["x"] = chains.x.detach();
  d["sampler"] = sampler->name();
  if (keep) d["draws"] = draws.empty() ? at::Tensor() : at::stack(draws, 1);  // [chains, steps, ...]
  return d;
}

py::dict train(const std::string& config, const std::string& out, const std::vector<std::string>& sets, bool resume,
               py::object callback, int64_t every, bool force) {
  Config cfg = train_config(config, sets);
  // (as the CLI: a directory holding a run is not written over silently,
  // which left the old run's report and grids beside the new model)
  EBM_CHECK_USAGE(resume || force || !holds_run(out), out,
                  " already holds a run: resume=True to continue it, force=True to start over");
  if (force && !resume) remove_old_run(out);
  // (the callback runs at the logged steps, train.log_every, and the last;
  // every = 1: after each step)
  if (every <= 0) every = cfg.get_int("train.log_every");
  const int64_t last = cfg.get_int("train.steps");
  Trainer trainer(cfg, out);
  // Ctrl-C, or an exception the callback raised (KeyboardInterrupt among
  // them), stops at the step with a checkpoint there, as `ebm train` does,
  // and is raised once the run has stopped (before, the steps since the last
  // checkpoint were lost and resume=True found none).
  std::optional<py::error_already_set> raised;
  SignalPoll poll;
  trainer.on_step([&, every, last](int64_t step, const std::map<std::string, double>& metrics) {
    if (poll.raised(raised)) return true;
    if (callback.is_none() || (step % every != 0 && step != last)) return false;
    py::gil_scoped_acquire acquire;
    try {
      py::dict m;
      for (const auto& [k, v] : metrics) m[py::str(k)] = v;
      py::object r = callback(step, m);
      return !r.is_none() && PyObject_IsTrue(r.ptr()) == 1;  // (Python's truth: "stop", 1, ...)
    } catch (py::error_already_set& e) {
      raised.emplace(std::move(e));
      return true;
    }
  });
  int64_t rollbacks = 0;
  {
    py::gil_scoped_release release;
    rollbacks = trainer.run(resume);
  }
  if (raised) {
    raised->restore();
    raised.reset();
    throw py::error_already_set();
  }
  py::dict d;
  d["steps"] = trainer.step();
  d["rollbacks"] = rollbacks;
  d["out"] = out;
  d["model"] = out + "/model.pt";
  return d;
}

// One evaluation task of `ebm eval` (task.<key> options as keyword values).
std::string evaluate(const std::string& task, const std::string& model, const std::string& target,
                     const std::string& script, int64_t dim, const std::vector<std::string>& sets) {
  Config cfg(eval_task_schema());
  cfg.set_value("task.name", task);
  if (task_reads_model_path(task)) cfg.set_value("task.model", model);
  for (const auto& s : sets) cfg.set("task." + s);
  cfg.validate();
  EBM_CHECK_USAGE(!model.empty() || !target.empty() || !script.empty(), "evaluate: give model=, target= or script=");
  ModelInfo info;
  Energy energy = eval_energy(model, target, script, dim, info);
  py::gil_scoped_release release;
  return eval_task_registry().make(cfg, *energy, info).json.dump();
}
}  // namespace

PYBIND11_MODULE(_ebm, m) {
  m.doc() = "ebm: energy-based models on LibTorch (samplers, training, evaluation)";
  // ebm's errors (bad config, bad data, ...) raise ebm.Error, a RuntimeError
  // whose message is the CLI's one line.
  // (held for the interpreter's lifetime, never destroyed after it; the
  // translator is this module's own, so torch's errors keep their types)
  static auto* error = new py::exception<Error>(m, "Error", PyExc_RuntimeError);
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(error->ptr(), e.what());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });

  py::class_<EnergyImpl, std::shared_ptr<EnergyImpl>>(m, "Energy", "an energy function E(x); p(x) = exp(-E(x)) / Z")
      .def("energy", [](EnergyImpl& e, const at::Tensor& x) { return e.energy(as_rows(e, x)); }, py::arg("x"),
           "E(x) for a batch x [B, ...] -> [B] (differentiable)")
      .def("__call__", [](EnergyImpl& e, const at::Tensor& x) { return e.energy(as_rows(e, x)); }, py::arg("x"))
      .def(
          "grad",
          [](EnergyImpl& e, const at::Tensor& x) {
            const auto rows = as_rows(e, x.detach());
            // (autograd's engine refuses to run under the interpreter's lock)
            py::gil_scoped_release release;
            return e.grad(rows).detach();
          },
          py::arg("x"), "dE/dx [B, ...]")
      .def_property_readonly("event_shape", &EnergyImpl::event_shape)
      .def_property_readonly("num_classes", &EnergyImpl::num_classes)
      .def("class_energies", [](EnergyImpl& e, const at::Tensor& x) { return e.class_energies(as_rows(e, x)); }, py::arg("x"),
           "E(x, y) for every class y [B, K] (class-conditional energies)")
      .def("parameters", [](EnergyImpl& e) { return e.parameters(); })
      .def("train_mode", [](EnergyImpl& e, bool on) { e.train(on); }, py::arg("on") = true);

  py::class_<AnalyticEnergyImpl, EnergyImpl, std::shared_ptr<AnalyticEnergyImpl>>(
      m, "Target", "an analytic target: exact mean, covariance, log Z and samples")
      .def("mean", &AnalyticEnergyImpl::mean)
      .def("covariance", &AnalyticEnergyImpl::covariance)
      .def("log_z", &AnalyticEnergyImpl::log_z)
      .def(
          "sample",
          [](AnalyticEnergyImpl& t, int64_t n, uint64_t seed) {
            EBM_CHECK_USAGE(n >= 0, "Target.sample: n must be >= 0, got ", n);
            auto gen = make_generator(seed, kStreamSample);
            return t.sample(n, gen);
          },
          py::arg("n"), py::arg("seed") = 0);

  m.def("load", [](const std::string& path) { return load_model(path); }, py::arg("path"),
        "the energy of a model.pt written by ebm train (eval mode, CPU)");
  m.def("model_info", [](const std::string& path) {
    ModelInfo info;
    load_model(path, &info);
    py::dict d;
    d["event_shape"] = info.event_shape;
    d["sampler"] = info.sampler_toml;
    d["data"] = info.data_toml;
    // (how users' images map into the energy's units: raw 0-255 pixels onto
    // [lo, hi]; float images' training range [raw_lo, raw_hi] onto [lo, hi])
    if (info.pixels) d["pixel_map"] = std::vector<double>{info.pixels->lo, info.pixels->hi};
    if (info.values)
      d["value_map"] = std::vector<double>{info.values->raw_lo, info.values->raw_hi, info.values->lo, info.values->hi};
    // (class k's name: a class folder's, a label value's (-1 / 1), a word label's)
    if (!info.class_names.empty()) d["class_names"] = info.class_names;
    return d;
  }, py::arg("path"));
  m.def("target", [](const std::string& spec, int64_t dim) { return make_target(spec, dim); }, py::arg("spec"),
        py::arg("dim") = 0, "an analytic target from a spec such as 'gaussian:dim=3,rho=0.5' or 'funnel'");
  m.def("target_names", &target_names);
  m.def("script_energy", [](const std::string& path, int64_t dim) -> Energy {
    return std::make_shared<ScriptEnergyImpl>(path, dim);
  }, py::arg("path"), py::arg("dim") = 0, "a TorchScript file whose forward maps x [B, D] to E(x) [B]");
  m.def("energy_from_config", [](const std::string& toml, std::vector<int64_t> event_shape, uint64_t seed) {
    Config cfg = make_train_config();
    cfg.load_string(toml, "<python config>");
    cfg.validate();
    Energy e = build_energy(cfg, event_shape);
    auto gen = make_generator(seed, kStreamInit);
    reset_parameters(*e, gen);
    return e;
  }, py::arg("toml"), py::arg("event_shape"), py::arg("seed") = 0,
        "a freshly initialised energy from the [energy] table of a TOML config");
  m.def("sample", &sample, py::arg("energy"), py::arg("x0"), py::arg("sampler") = "ula:step=0.01",
        py::arg("steps") = 100, py::arg("warmup") = 0, py::arg("seed") = 0, py::arg("keep") = false,
        py::arg("target_accept") = 0.0,
        "run chains from x0 [chains, ...] with a sampler spec ('nuts', 'hmc:step=0.1,leapfrog=10', 'mala', ...); "
        "returns x, the statistics, and draws [chains, steps, ...] when keep");
  m.def("diagnostics", [](const at::Tensor& draws) {
    py::dict d;
    d["ess_bulk"] = ess_bulk(draws);
    d["ess_tail"] = ess_tail(draws);
    d["rhat"] = rhat(draws);
    return d;
  }, py::arg("draws"), "ESS (bulk, tail) and R-hat per dimension of draws [chains, draws, D]");
  m.def("train", &train, py::arg("config"), py::arg("out"), py::arg("sets") = std::vector<std::string>{},
        py::arg("resume") = false, py::arg("callback") = py::none(), py::arg("every") = 0, py::arg("force") = false,
        "train from a TOML config (path or text); callback(step, metrics) at every logged step (train.log_every, "
        "or every `every` steps) and the last, True stops");
  m.def("evaluate_json", &evaluate, py::arg("task"), py::arg("model") = "", py::arg("target") = "",
        py::arg("script") = "", py::arg("dim") = 0, py::arg("sets") = std::vector<std::string>{});
  m.def("set_num_threads", [](int n) {
    EBM_CHECK_USAGE(n >= 1, "set_num_threads: n must be >= 1, got ", n);
    torch::set_num_threads(n);
  }, py::arg("n"));
}
