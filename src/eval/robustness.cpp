#include "ebm/eval/robustness.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/images.h"
#include "ebm/model/far_inputs.h"
#include "ebm/model/input_units.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"

namespace ebm {
namespace {

// Per-row L2 norms of [B, ...] as [B, 1, ...] (broadcast over a row).
torch::Tensor row_norms(const torch::Tensor& t) {
  std::vector<int64_t> shape(t.dim(), 1);
  shape[0] = t.size(0);
  return t.flatten(1).norm(2, 1).view(shape);
}

// x0 + delta with delta clipped to the ball, then the point to the range.
torch::Tensor project(const torch::Tensor& x0, torch::Tensor delta, const AttackOptions& o) {
  if (o.norm == "linf") {
    delta = delta.clamp(-o.eps, o.eps);
  } else {
    const auto n = row_norms(delta);
    delta = delta * torch::where(n > o.eps, o.eps / n.clamp_min(1e-30), torch::ones_like(n));
  }
  return (x0 + delta).clamp(o.lo, o.hi);
}

// Cross entropy per row and its gradient in x.
std::pair<torch::Tensor, torch::Tensor> loss_and_grad(EnergyImpl& energy, const torch::Tensor& x,
                                                      const torch::Tensor& y) {
  auto xr = x.detach().requires_grad_(true);
  auto loss = torch::nn::functional::cross_entropy(
      -energy.class_energies(xr), y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  auto g = torch::autograd::grad({loss.sum()}, {xr})[0];
  return {loss.detach(), g.detach()};
}

torch::Tensor predictions(EnergyImpl& energy, const torch::Tensor& x) {
  torch::NoGradGuard ng;
  return energy.class_energies(x).argmin(1);
}
}  // namespace

AttackResult pgd_attack(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& y,
                        const AttackOptions& o, at::Generator& gen, int64_t batch) {
  EBM_CHECK_USAGE(energy.num_classes() > 0, "robustness: the model is not a classifier (not class-conditional)");
  EBM_CHECK_USAGE(o.norm == "linf" || o.norm == "l2", "--norm must be linf or l2, got '", o.norm, "'");
  EBM_CHECK_USAGE(o.eps >= 0 && std::isfinite(o.eps), "--eps must be >= 0, got ", o.eps);
  EBM_CHECK_USAGE(o.steps >= 1, "--steps must be >= 1, got ", o.steps);
  EBM_CHECK_USAGE(o.restarts >= 1, "--restarts must be >= 1, got ", o.restarts);
  EBM_CHECK_USAGE(o.step_size >= 0 && std::isfinite(o.step_size), "--attack-step must be >= 0, got ", o.step_size);
  TORCH_CHECK(x.size(0) == y.size(0) && batch >= 1, "pgd_attack: ", x.size(0), " rows, ", y.size(0), " labels");
  const double a = o.step_size > 0 ? o.step_size : 2.5 * o.eps / double(o.steps);
  energy.eval();
  FreezeParameters frozen(energy);
  AttackResult r;
  r.trace.assign(o.steps + 1, 0.0);
  std::vector<torch::Tensor> xs, losses, robust;
  const auto yl = y.to(torch::kLong);
  for (int64_t i = 0; i < x.size(0); i += batch) {
    const int64_t b = std::min(batch, x.size(0) - i);
    const auto x0 = x.narrow(0, i, b).detach(), y0 = yl.narrow(0, i, b);
    auto best = x0.clone();
    auto best_loss = torch::full({b}, -std::numeric_limits<float>::infinity(), x0.options());
    auto best_wrong = torch::zeros({b}, torch::kBool);
    auto ok = torch::ones({b}, torch::kBool);
    for (int64_t rs = 0; rs < o.restarts; ++rs) {
      torch::Tensor start = torch::zeros_like(x0);
      if (rs > 0) {
        if (o.norm == "linf") {
          start = at::empty(x0.sizes(), x0.options()).uniform_(-o.eps, o.eps, gen);
        } else {  // (uniform in the ball: a random direction, radius eps u^(1/D))
          auto dir = at::normal(0.0, 1.0, x0.sizes(), gen, x0.options());
          const double dim = double(x0[0].numel());
          auto u = at::empty({b}, x0.options()).uniform_(0, 1, gen).pow(1.0 / dim);
          std::vector<int64_t> shape(x0.dim(), 1);
          shape[0] = b;
          start = dir / row_norms(dir).clamp_min(1e-30) * (o.eps * u).view(shape);
        }
      }
      auto xa = project(x0, start, o);
      for (int64_t s = 0; s < o.steps; ++s) {
        auto [loss, g] = loss_and_grad(energy, xa, y0);
        if (rs == 0) r.trace[s] += loss.sum().item<double>();
        const auto dir = o.norm == "linf" ? g.sign() : g / row_norms(g).clamp_min(1e-30);
        xa = project(x0, xa + a * dir - x0, o);
      }
      auto [loss, g] = loss_and_grad(energy, xa, y0);
      if (rs == 0) r.trace[o.steps] += loss.sum().item<double>();
      const auto wrong = predictions(energy, xa) != y0;
      ok &= wrong.logical_not();
      const auto take = (wrong & best_wrong.logical_not()) | ((wrong == best_wrong) & (loss > best_loss));
      std::vector<int64_t> rows(x0.dim(), 1);
      rows[0] = b;
      best = torch::where(take.view(rows), xa, best);
      best_loss = torch::where(take, loss, best_loss);
      best_wrong |= wrong;
    }
    xs.push_back(best);
    losses.push_back(best_loss);
    robust.push_back(ok);
  }
  for (auto& t : r.trace) t /= double(x.size(0));
  r.x = torch::cat(xs);
  r.loss = torch::cat(losses);
  r.robust = torch::cat(robust);
  return r;
}

std::vector<ConfigKey> robustness_task_keys() {
  auto keys = labelled_data_keys();
  keys.push_back({"eps", std::vector<double>{0.01, 0.03, 0.1},
                  "attack radii: in [0, 1] pixel units for image models (8/255 = 0.031), input units otherwise"});
  keys.push_back({"norm", std::string("linf,l2"), "attack norms, comma-separated: linf, l2"});
  keys.push_back({"steps", int64_t(20), "PGD steps per restart"});
  keys.push_back({"restarts", int64_t(1), "PGD restarts (the first from the input, the rest from random points)"});
  keys.push_back({"attack_step", 0.0, "PGD step size in the units of eps; 0 = 2.5 eps / steps"});
  keys.push_back({"purify", int64_t(0), "sampler transitions on E(x) applied to every input before classifying"});
  keys.push_back({"sampler", std::string(""), "purification sampler spec; empty = the model's training sampler"});
  keys.push_back({"n", int64_t(1000), "rows attacked (a random subset); 0 = all"});
  keys.push_back({"seed", int64_t(0), "seed of the subset, the restarts and purification"});
  return keys;
}

EvalReport robustness_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  EBM_CHECK_USAGE(energy.num_classes() > 0,
                  "robustness: the model is not class-conditional (energy.conditional = true): not a classifier");
  const auto eps_list = c.get_float_list("task.eps");
  EBM_CHECK_USAGE(!eps_list.empty(), "--eps: give at least one radius");
  for (double e : eps_list) EBM_CHECK_USAGE(e >= 0 && std::isfinite(e), "--eps must be >= 0, got ", e);
  std::vector<std::string> norms;
  {
    std::stringstream ss(c.get_string("task.norm"));
    for (std::string t; std::getline(ss, t, ',');)
      if (!t.empty()) norms.push_back(t);
  }
  EBM_CHECK_USAGE(!norms.empty(), "--norm: give linf, l2 or both");
  for (const auto& nm : norms) EBM_CHECK_USAGE(nm == "linf" || nm == "l2", "--norm must be linf or l2, got '", nm, "'");
  const int64_t purify = c.get_int("task.purify"), n = c.get_int("task.n");
  EBM_CHECK_USAGE(purify >= 0, "--purify must be >= 0, got ", purify);
  EBM_CHECK_USAGE(n >= 0, "--n must be >= 0, got ", n);
  std::string spec;
  Dataset data = labelled_task_data(c, info, "robustness", &spec);
  warn_if_far_from_training(energy, info, data.x, spec);  // (rows in other units than the training data's)
  auto gen = make_generator(c.get_int("task.seed"), kStreamEval);
  const int64_t given = data.size();
  if (n > 0 && n < data.size()) data = data.rows(torch::randperm(data.size(), gen, torch::kLong).narrow(0, 0, n));
  const auto y = data.y.to(torch::kLong);
  // Radii in the model's units: image models' in [0, 1] pixel units; float
  // images mapped into the model's range (ModelInfo::values) in their
  // training images' units, as they were saved.
  // A standardised vector model is attacked in its own units, radii in
  // training standard deviations: in the data's units one radius is 100 sd
  // of a column in thousandths and nothing of one in thousands (a probe's
  // eps 0.1 took accuracy from 0.896 to 0.018).
  AffineMap map;
  EnergyImpl& inner = sampling_view(energy, &map);
  const bool standardised = map.defined() && data.x.dim() == 2;
  EnergyImpl& model = standardised ? inner : energy;
  const torch::Tensor xs = standardised ? map.to_model(data.x).to(data.x.scalar_type()) : data.x;
  double unit = info.pixels ? info.pixels->hi - info.pixels->lo : info.values ? info.values->gain() : 1.0;
  if (standardised)
    unit = model_standardize_sd(info);
  AttackOptions base;
  base.steps = c.get_int("task.steps");
  base.restarts = c.get_int("task.restarts");
  base.step_size = c.get_float("task.attack_step") * unit;
  if (info.pixels) {
    base.lo = info.pixels->lo;
    base.hi = info.pixels->hi;
  }
  std::shared_ptr<Sampler> sampler = purify > 0 ? model_sampler(info, c.get_string("task.sampler")) : nullptr;
  auto accuracy = [&](const torch::Tensor& x) {
    torch::Tensor in = x;
    if (purify > 0) {
      // (on the energy in its own units, where the sampler's step was tuned;
      // x is in them already when the model is standardised)
      inner.eval();
      FreezeParameters frozen(inner);
      const bool mapped = map.defined() && !standardised;
      ChainState chains(mapped ? map.to_model(x).to(x.scalar_type()) : x.clone());
      sampler->run(inner, chains, purify, gen);
      in = mapped ? map.to_user(chains.x.detach()).to(x.scalar_type()) : chains.x.detach();
    }
    torch::Tensor pred;
    {
      torch::NoGradGuard ng;
      std::vector<torch::Tensor> p;
      for (int64_t i = 0; i < in.size(0); i += 500)
        p.push_back(model.class_energies(in.narrow(0, i, std::min<int64_t>(500, in.size(0) - i))).argmin(1));
      pred = torch::cat(p);
    }
    return (pred == y).to(torch::kDouble).mean().item<double>();
  };
  const auto clean_pred = predictions(model, xs);
  const double clean = (clean_pred == y).to(torch::kDouble).mean().item<double>();
  nlohmann::json j = {{"data", spec},         {"n", data.size()},         {"clean_accuracy", clean},
                      {"steps", base.steps},  {"restarts", base.restarts}, {"purify", purify},
                      {"eps_units", info.pixels      ? "pixels in [0, 1]"
                                    : standardised ? "training standard deviations (each column's)"
                                                   : "input units"}};
  std::ostringstream t;
  // (which rows: a random subset says so, with its seed, so the result can
  // be paired with the user's own scores of those rows)
  if (data.size() < given) {
    j["rows_given"] = given;
    j["subset"] = "random, --seed " + std::to_string(c.get_int("task.seed"));
  }
  t << std::fixed << std::setprecision(4) << "robustness of " << spec << " ("
    << (data.size() < given ? "a random " + std::to_string(data.size()) + " of " + std::to_string(given) + " rows (--n 0: all)"
                            : std::to_string(data.size()) + " rows")
    << ", PGD "
    << base.steps << " steps x " << base.restarts << " restart(s)"
    << (info.pixels ? ", eps in [0, 1] pixel units" : standardised ? ", eps in training standard deviations" : "")
    << "): clean accuracy " << clean;
  if (purify > 0) {
    const double cp = accuracy(xs);
    j["clean_purified_accuracy"] = cp;
    t << ", purified (" << purify << " steps) " << cp;
    // (a purifier that resamples rather than cleans forgets the class: its
    // accuracies under attack then measure the sampler, not the defence)
    const double se = std::sqrt(std::max(clean * (1 - clean), 0.01) / double(data.size()));
    if (clean - cp > std::max(0.05, 3 * se))
      notes() << "ebm: warning: robustness: purification lowered the clean accuracy from " << clean << " to " << cp
              << ": its sampler (" << (c.get_string("task.sampler").empty() ? "the model's training sampler"
                                                                             : c.get_string("task.sampler"))
              << ") moves inputs away from their class; give --sampler with a smaller step (langevin:step=...) "
                 "or fewer --purify steps\n";
  }
  t << "\n  norm  eps       accuracy  mean CE" << (purify > 0 ? "  purified" : "") << "\n";
  nlohmann::json attacks = nlohmann::json::array();
  for (const auto& nm : norms) {
    std::vector<AttackResult> results;
    for (double e : eps_list) {
      AttackOptions o = base;
      o.norm = nm;
      o.eps = e * unit;
      results.push_back(pgd_attack(model, xs, y, o, gen));
    }
    // A row broken within a smaller radius is broken within every larger
    // one: each radius counts the breaks found at any radius up to it.
    std::vector<torch::Tensor> robust;
    for (size_t i = 0; i < eps_list.size(); ++i) {
      auto held = results[i].robust.clone();
      for (size_t k = 0; k < eps_list.size(); ++k)
        if (eps_list[k] <= eps_list[i]) held = held.logical_and(results[k].robust);
      robust.push_back(held);
    }
    for (size_t i = 0; i < eps_list.size(); ++i) {
      const double e = eps_list[i];
      const auto& r = results[i];
      const double acc = robust[i].to(torch::kDouble).mean().item<double>();
      const double ce = r.loss.mean().item<double>();
      nlohmann::json row = {{"norm", nm}, {"eps", e}, {"accuracy", acc}, {"mean_ce", ce}};
      t << "  " << std::left << std::setw(5) << nm << " " << std::setw(9) << e << " " << std::setw(9) << acc << " "
        << std::setw(8) << ce << std::right;
      if (purify > 0) {
        const double pa = accuracy(r.x);
        row["purified_accuracy"] = pa;
        t << " " << pa;
      }
      t << "\n";
      attacks.push_back(row);
    }
  }
  j["attacks"] = attacks;
  return {j, t.str()};
}

}  // namespace ebm
