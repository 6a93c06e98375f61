#include "ebm/train/step.h"

#include <cmath>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/tasks.h"
#include "ebm/model/model.h"
#include "ebm/train/distributed.h"

namespace ebm {

Batch draw_batch(const Dataset& data, int64_t n, at::Generator& gen) {
  auto idx = at::randint(data.size(), {n}, gen, data.x.options().dtype(torch::kLong));
  return {data.x.index_select(0, idx), data.y.defined() ? data.y.index_select(0, idx) : torch::Tensor()};
}

Batch draw_balanced_batch(const Dataset& data, int64_t n, at::Generator& gen) {
  TORCH_CHECK(data.y.defined(), "draw_balanced_batch: rows without labels");
  const auto y = data.y.to(torch::kLong);
  const auto counts = torch::bincount(y).to(torch::kDouble);
  const auto w = counts.reciprocal().index_select(0, y);  // (classes without rows are never indexed)
  const auto idx = at::multinomial(w, n, /*replacement=*/true, gen);
  return {data.x.index_select(0, idx), data.y.index_select(0, idx)};
}

const Dataset& step_rows(const TrainParts& parts) {
  if (parts.tasks.empty()) return parts.data;
  return parts.tasks[task_at_step(parts.step, parts.total_steps, int64_t(parts.tasks.size()))];
}

namespace {
std::vector<torch::Tensor> params_of(const Learner& l) { return l.module->parameters(); }

void update_averages(Learner& l, int64_t t) {
  if (l.ema <= 0) return;
  torch::NoGradGuard ng;
  auto params = l.module->parameters();
  if (l.averages.empty()) {
    for (const auto& p : params) l.averages.push_back(p.detach().clone());
    return;
  }
  const double d = std::min(l.ema, (1.0 + double(t)) / (10.0 + double(t)));
  for (size_t i = 0; i < params.size(); ++i) l.averages[i].mul_(d).add_(params[i].detach(), 1.0 - d);
}

bool all_finite(const std::vector<Learner>& learners) {
  for (const auto& l : learners)
    for (const auto& p : l.module->parameters())
      if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

// Each learner's gradient of its own loss. One learner: plain backward (a
// blocked loss hands its stored gradient over); several: autograd::grad per
// learner, so a loss's gradient never lands in another learner's parameters.
void backward_all(TrainParts& parts, const Output& out) {
  auto& ls = parts.learners;
  if (ls.size() == 1) {
    reset_grads(*ls[0].optimizer);
    out.loss.backward();
    return;
  }
  for (size_t i = 0; i < ls.size(); ++i) {
    torch::Tensor loss = out.loss;
    if (i > 0) {
      auto it = out.learner_losses.find(ls[i].name);
      TORCH_INTERNAL_ASSERT(it != out.learner_losses.end(), "the objective gave no loss for learner '",
                            ls[i].name, "'");
      loss = it->second;
    }
    auto params = params_of(ls[i]);
    reset_grads(*ls[i].optimizer);
    if (!loss.requires_grad()) continue;
    auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/i + 1 < ls.size(),
                                       /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t j = 0; j < params.size(); ++j)
      if (grads[j].defined()) params[j].mutable_grad() = grads[j];
  }
}
}  // namespace

StepResult train_step(TrainParts& parts, const StepOptions& options) {
  TORCH_INTERNAL_ASSERT(!parts.learners.empty() && parts.objective && parts.energy);
  for (auto& l : parts.learners)
    if (l.schedule) {
      const double lr = l.schedule(parts.step) * parts.lr_scale;
      for (auto& g : l.optimizer->param_groups()) g.options().set_lr(lr);
    }
  const Dataset& rows = step_rows(parts);
  Batch b = parts.draw ? parts.draw(rows, options.batch_size(), parts.gen)
                       : draw_batch(rows, options.batch_size(), parts.gen);
  StepResult r;
  r.output = parts.objective->compute(*parts.energy, b, parts.gen);
  r.loss = r.output.loss.item<double>();
  // Objectives without energies in their metrics (score matching) are
  // guarded by the loss and the weights alone.
  const double limit = options.energy_limit();
  auto within = [&](const char* k) {
    auto it = r.output.metrics.find(k);
    return it == r.output.metrics.end() || std::abs(it->second) <= limit;
  };
  r.diverged = !std::isfinite(r.loss) || !within("e_pos") || !within("e_neg");
  Collective* coll = options.collective();
  const bool parallel = coll != nullptr && coll->world() > 1;
  // (a data-parallel rank runs backward even when it diverged: the vote
  // rides in the gradient all-reduce below, and nothing steps on a vote)
  if (r.diverged && !parallel) return r;
  backward_all(parts, r.output);
  if (options.after_backward()) options.after_backward()(parts);
  if (parallel) {
    // One message per step: the gradients, then the divergence vote, the loss
    // and the metrics to average (every rank runs the same objective, so the
    // metrics' keys agree).
    std::vector<double> v = {r.diverged ? 1.0 : 0.0, std::isfinite(r.loss) ? r.loss : 0.0};
    for (const auto& [k, x] : r.output.metrics) v.push_back(std::isfinite(x) ? x : 0.0);
    v = coll->average_gradients(parts.learners, v);
    const double n = double(coll->world());
    r.diverged = v[0] > 0;
    if (r.diverged) return r;
    r.loss = v[1] / n;
    size_t i = 2;
    for (auto& [k, x] : r.output.metrics) x = v[i++] / n;
  }
  for (auto& l : parts.learners) {
    if (l.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params_of(l), l.grad_clip);
    l.optimizer->step();
  }
  if (coll != nullptr) coll->broadcast_buffers(parts.learners);
  // (data-parallel ranks hold bit-identical weights here: the same averaged
  // gradients through the same optimiser arithmetic, so they agree unasked)
  r.diverged = options.check_weights() && !all_finite(parts.learners);
  if (r.diverged) return r;
  for (auto& l : parts.learners) update_averages(l, parts.step);
  ++parts.step;
  return r;
}

void use_averages(std::vector<Learner>& learners) {
  torch::NoGradGuard ng;
  for (auto& l : learners) {
    if (l.averages.empty()) continue;
    auto params = l.module->parameters();
    TORCH_INTERNAL_ASSERT(params.size() == l.averages.size());
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(l.averages[i]);
  }
}

std::vector<torch::Tensor> module_state(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (const auto& p : module.parameters()) out.push_back(p.detach().clone());
  for (const auto& b : module.buffers()) out.push_back(b.detach().clone());
  return out;
}

void load_module_state(torch::nn::Module& module, const std::vector<torch::Tensor>& state) {
  torch::NoGradGuard no_grad;
  auto params = module.parameters();
  auto buffers = module.buffers();
  EBM_CHECK_DATA(state.size() == params.size() + buffers.size(), "saved weights of ", state.size(),
                 " tensors for a network of ", params.size() + buffers.size());
  size_t i = 0;
  for (auto& p : params) p.copy_(state[i++]);
  for (auto& b : buffers) b.copy_(state[i++]);
}

// The first learner keeps the archive names of single-learner checkpoints
// ("model", "optimizer"), so those resume; the others are "<name>.model", ...
std::string snapshot(const TrainParts& parts) {
  torch::serialize::OutputArchive ar, obj;
  for (size_t i = 0; i < parts.learners.size(); ++i) {
    const auto& l = parts.learners[i];
    const std::string prefix = i == 0 ? "" : l.name + ".";
    torch::serialize::OutputArchive model, opt;
    l.module->save(model);
    l.optimizer->save(opt);
    ar.write(prefix + "model", model);
    ar.write(prefix + "optimizer", opt);
    if (!l.averages.empty()) {
      torch::serialize::OutputArchive avg;
      for (size_t j = 0; j < l.averages.size(); ++j) avg.write(std::to_string(j), l.averages[j]);
      ar.write(prefix + "ema", avg);
    }
  }
  parts.objective->save(obj);
  ar.write("objective", obj);
  ar.write("rng", generator_state(parts.gen));
  ar.write("step", torch::tensor(parts.step));
  ar.write("lr_scale", torch::tensor(parts.lr_scale, torch::kDouble));
  ar.write("retries", torch::tensor(parts.retries));
  if (!parts.window.empty()) {  // (names joined by newlines; sums and counts in that order)
    std::string names;
    std::vector<double> sums, counts;
    for (const auto& [k, v] : parts.window) {
      names += k + "\n";
      sums.push_back(v.first);
      counts.push_back(double(v.second));
    }
    torch::serialize::OutputArchive w;
    w.write("names", c10::IValue(names));
    w.write("sums", torch::tensor(sums, torch::kDouble));
    w.write("counts", torch::tensor(counts, torch::kDouble));
    ar.write("metrics_window", w);
  }
  if (parts.best.step >= 0) {
    torch::serialize::OutputArchive best;
    best.write("score", torch::tensor(parts.best.score, torch::kDouble));
    best.write("nll", torch::tensor(parts.best.nll, torch::kDouble));
    if (parts.best.nll_rows.defined()) best.write("nll_rows", parts.best.nll_rows);
    best.write("step", torch::tensor(parts.best.step));
    for (size_t j = 0; j < parts.best.state.size(); ++j) best.write(std::to_string(j), parts.best.state[j]);
    ar.write("best", best);
  }
  std::ostringstream os;
  ar.save_to(os);
  return os.str();
}

void restore(TrainParts& parts, const std::string& bytes) {
  std::istringstream is(bytes);
  torch::serialize::InputArchive ar, obj;
  std::vector<torch::serialize::InputArchive> models(parts.learners.size()), opts(parts.learners.size()),
      avgs(parts.learners.size());
  std::vector<bool> has_avg(parts.learners.size(), false);
  try {
    ar.load_from(is);
    for (size_t i = 0; i < parts.learners.size(); ++i) {
      const std::string prefix = i == 0 ? "" : parts.learners[i].name + ".";
      ar.read(prefix + "model", models[i]);
      ar.read(prefix + "optimizer", opts[i]);
      has_avg[i] = ar.try_read(prefix + "ema", avgs[i]);
    }
    ar.read("objective", obj);
  } catch (const c10::Error&) {
    fail(ExitCode::kBadData, "not a readable checkpoint of these learners (truncated, or another kind of file)");
  }
  for (size_t i = 0; i < parts.learners.size(); ++i) {
    try {
      load_weights(*parts.learners[i].module, models[i], parts.learners[i].name);
    } catch (const Error& e) {
      fail(ExitCode::kBadData, "checkpoint does not match this config: ", e.what());
    }
    // (LibTorch's load sets the states the archive holds and keeps the
    // others: a rollback to a snapshot taken before the first step kept the
    // diverged steps' Adam moments, whose huge second moments then froze
    // the weights: a probe's JEM ended at chance accuracy)
    parts.learners[i].optimizer->state().clear();
    parts.learners[i].optimizer->load(opts[i]);
    // the moving average: from the checkpoint, or (none written: off then,
    // or saved before the first step) started afresh at the next step
    auto& l = parts.learners[i];
    l.averages.clear();
    if (l.ema > 0 && has_avg[i]) {
      const size_t n = l.module->parameters().size();
      for (size_t j = 0; j < n; ++j) {
        torch::Tensor t;
        EBM_CHECK_DATA(avgs[i].try_read(std::to_string(j), t), "checkpoint's moving average of '", l.name,
                       "' does not match this config");
        l.averages.push_back(t.to(l.module->parameters()[j].device()));
      }
    }
  }
  parts.objective->load(obj);
  torch::Tensor rng, step, scale, retries;
  ar.read("rng", rng);
  ar.read("step", step);
  ar.read("lr_scale", scale);
  ar.read("retries", retries);
  set_generator_state(parts.gen, rng);
  parts.step = step.item<int64_t>();
  parts.lr_scale = scale.item<double>();
  parts.retries = retries.item<int64_t>();
  parts.window.clear();
  torch::serialize::InputArchive w;
  if (ar.try_read("metrics_window", w)) {  // (none: written at a metrics line, or before windows were kept)
    c10::IValue names;
    torch::Tensor sums, counts;
    w.read("names", names);
    w.read("sums", sums);
    w.read("counts", counts);
    std::istringstream in(names.toStringRef());
    int64_t i = 0;
    for (std::string k; std::getline(in, k) && i < sums.numel(); ++i)
      parts.window[k] = {sums[i].item<double>(), int64_t(counts[i].item<double>())};
  }
  parts.best = TrainParts::Best();
  torch::serialize::InputArchive best;
  if (ar.try_read("best", best)) {
    torch::Tensor score, at;
    best.read("score", score);
    best.read("step", at);
    parts.best.score = score.item<double>();
    parts.best.step = at.item<int64_t>();
    torch::Tensor nll, t;
    if (best.try_read("nll", nll)) parts.best.nll = nll.item<double>();
    torch::Tensor rows;
    if (best.try_read("nll_rows", rows)) parts.best.nll_rows = rows.clone();
    for (size_t j = 0; best.try_read(std::to_string(j), t); ++j) parts.best.state.push_back(t.clone());
  }
}

}  // namespace ebm
