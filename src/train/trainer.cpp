#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/core/simd.h"
#include "ebm/io/io.h"
#include "ebm/train/train.h"

namespace fs = std::filesystem;

namespace ebm {

namespace {
// One Adam update of n floats, in torch::optim::Adam's order of operations:
// g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= step_size m / (sqrt(v) / sqrt(bc2) + eps), the division by sqrt(bc2)
// taken as a product with its reciprocal (a rounding difference only).
EBM_MULTIVERSION void adam_update(float* __restrict p, const float* __restrict grad,
                                  float* __restrict m, float* __restrict v, int64_t n, float b1,
                                  float one_minus_b1, float b2, float one_minus_b2, float wd,
                                  float inv_sqrt_bc2, float eps, float neg_step) {
  for (int64_t j = 0; j < n; ++j) {
    const float g = wd != 0.0f ? grad[j] + wd * p[j] : grad[j];
    const float mj = m[j] * b1 + one_minus_b1 * g;
    const float vj = v[j] * b2 + one_minus_b2 * g * g;
    m[j] = mj;
    v[j] = vj;
    p[j] += neg_step * (mj / (std::sqrt(vj) * inv_sqrt_bc2 + eps));
  }
}

bool fusable_tensor(const torch::Tensor& t) {
  return !t.is_sparse() && t.scalar_type() == torch::kFloat && t.device().is_cpu() &&
         t.is_contiguous();
}
}  // namespace

bool FusedAdam::fusable() {
  for (auto& group : param_groups()) {
    if (static_cast<torch::optim::AdamOptions&>(group.options()).amsgrad()) return false;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (!fusable_tensor(p) || !fusable_tensor(p.grad()) || !p.grad().sizes().equals(p.sizes()))
        return false;
      auto it = state_.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == state_.end()) continue;
      auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
      for (const auto* t : {&st.exp_avg(), &st.exp_avg_sq()})
        if (!fusable_tensor(*t) || !t->sizes().equals(p.sizes())) return false;
    }
  }
  return true;
}

void reset_grads(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure != nullptr) {  // first: the gradients to check come from it
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  if (!fusable()) {
    torch::optim::Adam::step();
    return loss;
  }
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups()) {
    const auto& o = static_cast<torch::optim::AdamOptions&>(group.options());
    const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {  // as Adam initialises it
        auto st = std::make_unique<torch::optim::AdamParamState>();
        st->step(0);
        st->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(st)).first;
      }
      auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
      st.step(st.step() + 1);
      const double bc1 = 1 - std::pow(b1, st.step()), bc2 = 1 - std::pow(b2, st.step());
      adam_update(p.data_ptr<float>(), p.grad().data_ptr<float>(), st.exp_avg().data_ptr<float>(),
                  st.exp_avg_sq().data_ptr<float>(), p.numel(), float(b1), float(1 - b1),
                  float(b2), float(1 - b2), float(o.weight_decay()), float(1 / std::sqrt(bc2)),
                  float(o.eps()), float(-o.lr() / bc1));
      p.unsafeGetTensorImpl()->bump_version();
    }
  }
  return loss;
}

Trainer::Trainer(Config cfg, std::string out_dir)
    : cfg_(std::move(cfg)), out_(std::move(out_dir)),
      gen_(make_generator(cfg_.get_int("seed"), kStreamTrain)) {
  const int64_t steps = cfg_.get_int("train.steps");
  EBM_CHECK_CONFIG(steps >= 0, "train.steps must be >= 0, got ", steps);
  EBM_CHECK_CONFIG(cfg_.get_int("train.batch_size") > 0, "train.batch_size must be > 0, got ",
                   cfg_.get_int("train.batch_size"));
  double lr = cfg_.get_float("train.lr");
  EBM_CHECK_CONFIG(lr > 0 && std::isfinite(lr), "train.lr must be > 0, got ", lr);
  EBM_CHECK_CONFIG(cfg_.get_int("train.log_every") > 0, "train.log_every must be > 0");
  EBM_CHECK_CONFIG(cfg_.get_int("train.checkpoint_every") > 0,
                   "train.checkpoint_every must be > 0");
  EBM_CHECK_CONFIG(cfg_.get_int("train.max_retries") >= 0, "train.max_retries must be >= 0");
  double f = cfg_.get_float("train.retry_lr_factor");
  EBM_CHECK_CONFIG(f > 0 && f < 1, "train.retry_lr_factor must be in (0, 1), got ", f);
  const std::string sched = cfg_.get_string("train.schedule");
  EBM_CHECK_CONFIG(sched == "constant" || sched == "step" || sched == "cosine",
                   "train.schedule must be constant, step or cosine, got '", sched, "'");
  EBM_CHECK_CONFIG(cfg_.get_int("train.decay_every") > 0, "train.decay_every must be > 0");
  const double limit = cfg_.get_float("train.energy_limit");
  EBM_CHECK_CONFIG(limit > 0, "train.energy_limit must be > 0 (inf: no limit), got ", limit);
  EBM_CHECK_CONFIG(cfg_.get_int("eval.sample_chains") > 0, "eval.sample_chains must be > 0, got ",
                   cfg_.get_int("eval.sample_chains"));
  EBM_CHECK_CONFIG(cfg_.get_int("eval.sample_steps") >= 0, "eval.sample_steps must be >= 0, got ",
                   cfg_.get_int("eval.sample_steps"));

  data_ = build_data(cfg_);
  // Parameters are initialised from their own stream, so the data or the
  // sampler settings never change the initial weights.
  const int64_t dim = data_.train.size(1);
  auto init_gen = make_generator(cfg_.get_int("seed"), kStreamInit);
  energy_ = build_energy(cfg_, dim);
  reset_parameters(*energy_, init_gen);
  energy_->train();
  objective_ = build_objective(cfg_, {dim});

  const std::string opt = cfg_.get_string("train.optimizer");
  const double wd = cfg_.get_float("train.weight_decay");
  if (opt == "adam") {
    double b1 = cfg_.get_float("train.beta1"), b2 = cfg_.get_float("train.beta2");
    EBM_CHECK_CONFIG(b1 >= 0 && b1 < 1, "train.beta1 must be in [0, 1), got ", b1);
    EBM_CHECK_CONFIG(b2 >= 0 && b2 < 1, "train.beta2 must be in [0, 1), got ", b2);
    optimizer_ = std::make_unique<FusedAdam>(
        energy_->parameters(), torch::optim::AdamOptions(lr).betas({b1, b2}).weight_decay(wd));
  } else if (opt == "sgd") {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        energy_->parameters(),
        torch::optim::SGDOptions(lr).momentum(cfg_.get_float("train.momentum")).weight_decay(wd));
  } else {
    fail(ExitCode::kBadConfig, "train.optimizer must be adam or sgd, got '", opt, "'");
  }
}

double Trainer::lr_at(int64_t step) const {
  const double lr = cfg_.get_float("train.lr");
  const int64_t steps = std::max<int64_t>(cfg_.get_int("train.steps"), 1);
  const int64_t warmup = cfg_.get_int("train.warmup");
  double out = lr;
  const std::string sched = cfg_.get_string("train.schedule");
  if (sched == "step") {
    out = lr * std::pow(cfg_.get_float("train.decay"), step / cfg_.get_int("train.decay_every"));
  } else if (sched == "cosine") {
    const double lo = cfg_.get_float("train.lr_min");
    out = lo + 0.5 * (lr - lo) * (1 + std::cos(M_PI * double(step) / steps));
  }
  if (warmup > 0 && step < warmup) out *= double(step + 1) / warmup;
  return out;
}

std::string Trainer::snapshot() const {
  torch::serialize::OutputArchive ar, model, opt, obj;
  energy_->save(model);
  optimizer_->save(opt);
  objective_->save(obj);
  ar.write("model", model);
  ar.write("optimizer", opt);
  ar.write("objective", obj);
  ar.write("rng", generator_state(gen_));
  ar.write("step", torch::tensor(step_));
  ar.write("lr_scale", torch::tensor(lr_scale_, torch::kDouble));
  ar.write("retries", torch::tensor(retries_));
  std::ostringstream os;
  ar.save_to(os);
  return os.str();
}

void Trainer::restore(const std::string& bytes) {
  std::istringstream is(bytes);
  torch::serialize::InputArchive ar, model, opt, obj;
  try {
    ar.load_from(is);
    ar.read("model", model);
    ar.read("optimizer", opt);
    ar.read("objective", obj);
  } catch (const c10::Error&) {
    fail(ExitCode::kBadData, "not a readable checkpoint (truncated, or another kind of file)");
  }
  try {
    load_weights(*energy_, model, "energy");
  } catch (const Error& e) {
    fail(ExitCode::kBadData, "checkpoint does not match this config: ", e.what());
  }
  optimizer_->load(opt);
  objective_->load(obj);
  torch::Tensor rng, step, scale, retries;
  ar.read("rng", rng);
  ar.read("step", step);
  ar.read("lr_scale", scale);
  ar.read("retries", retries);
  set_generator_state(gen_, rng);
  step_ = step.item<int64_t>();
  lr_scale_ = scale.item<double>();
  retries_ = retries.item<int64_t>();
}

void Trainer::save_checkpoint(const std::string& path) {
  const std::string bytes = snapshot();
  atomic_write(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    EBM_CHECK_CODE(out.good(), ExitCode::kInternal, tmp, ": write failed");
  });
}

void Trainer::load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EBM_CHECK_CODE(in.good(), ExitCode::kMissingInput, path,
                 ": cannot open checkpoint (nothing to resume)");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    restore(ss.str());
  } catch (const Error& e) {
    fail(e.code(), path, ": ", e.what());
  } catch (const c10::Error&) {
    fail(ExitCode::kBadData, path, ": checkpoint does not match this config");
  }
}

namespace {
// Drops metrics lines logged after `step` (they will be logged again).
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in.good()) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("step") && j["step"].get<int64_t>() > step) continue;
    kept += line + "\n";
  }
  in.close();
  atomic_write_text(path, kept);
}

bool all_finite(torch::nn::Module& m) {
  for (const auto& p : m.parameters())
    if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}
}  // namespace

int64_t Trainer::run(bool resume) {
  const std::string ckpt = out_ + "/checkpoint.pt", metrics_path = out_ + "/metrics.jsonl";
  const int64_t steps = cfg_.get_int("train.steps");
  // (resuming creates nothing until the checkpoint is found)
  EBM_CHECK_CODE(!resume || fs::exists(ckpt), ExitCode::kMissingInput, ckpt,
                 ": cannot open checkpoint (nothing to resume)");
  fs::create_directories(out_);
  if (resume) {
    // The energy the checkpoint holds is the one its run's config describes
    // (weights of another shape are refused as they load; other settings,
    // such as the activation, would be taken silently).
    const std::string old_cfg = out_ + "/config.toml";
    if (fs::exists(old_cfg)) {
      Config was = make_train_config();
      was.load_file(old_cfg);
      std::istringstream a(was.section_toml("energy")), b(cfg_.section_toml("energy"));
      std::string la, lb;  // (one schema: the same keys in the same order)
      while (std::getline(a, la) && std::getline(b, lb))
        EBM_CHECK_CONFIG(la == lb, "--resume: the run in ", out_, " has energy setting '", la,
                         "' (", old_cfg, "), this config '", lb,
                         "': a checkpoint continues with its own energy");
    }
    load_checkpoint(ckpt);
    EBM_CHECK_CONFIG(steps >= step_, "train.steps = ", steps, " is below the step the checkpoint ",
                     ckpt, " reached (", step_, "): nothing to resume");
    truncate_metrics(metrics_path, step_);
  } else {
    atomic_write_text(metrics_path, "");
  }
  atomic_write_text(out_ + "/config.toml", cfg_.to_toml());
  // (a fresh run writes its own split over whatever test.csv was there)
  if (!resume || !fs::exists(out_ + "/test.csv")) write_csv(out_ + "/test.csv", data_.test);

  std::ofstream metrics(metrics_path, std::ios::app);
  std::string good = snapshot();
  const int64_t batch = cfg_.get_int("train.batch_size"), n_train = data_.train.size(0);
  const int64_t log_every = cfg_.get_int("train.log_every");
  const int64_t ckpt_every = cfg_.get_int("train.checkpoint_every");
  const double limit = cfg_.get_float("train.energy_limit");
  const double clip = cfg_.get_float("train.grad_clip");
  Progress progress("train", steps, step_);
  auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, double> acc;  // metrics averaged over the log period
  int64_t acc_n = 0;

  while (step_ < steps) {
    const double lr = lr_at(step_) * lr_scale_;
    for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
    auto idx = at::randint(n_train, {batch}, gen_, torch::kLong);
    Batch b{data_.train.index_select(0, idx), {}};
    Output out = objective_->compute(*energy_, b, gen_);
    const double loss = out.loss.item<double>();
    // Objectives without energies in their metrics (score matching) are
    // guarded by the loss and the weights alone.
    auto metric = [&](const char* k) {
      auto it = out.metrics.find(k);
      return it == out.metrics.end() ? 0.0 : it->second;
    };
    bool bad = !std::isfinite(loss) || !(std::abs(metric("e_pos")) <= limit) ||
               !(std::abs(metric("e_neg")) <= limit);
    if (!bad) {
      reset_grads(*optimizer_);
      out.loss.backward();
      if (clip > 0) torch::nn::utils::clip_grad_norm_(energy_->parameters(), clip);
      optimizer_->step();
      bad = !all_finite(*energy_);
    }
    if (bad) {
      const int64_t tries = retries_ + 1, max = cfg_.get_int("train.max_retries");
      const double scale = lr_scale_ * cfg_.get_float("train.retry_lr_factor");
      const int64_t at_step = step_;
      nlohmann::json ev = {{"event", "divergence"}, {"step", at_step}, {"loss", loss},
                           {"e_pos", metric("e_pos")}, {"e_neg", metric("e_neg")},
                           {"retry", tries}, {"lr_scale", scale}};
      metrics << ev.dump() << "\n" << std::flush;
      progress.finish();
      EBM_CHECK_CODE(tries <= max, ExitCode::kInternal, "training diverged at step ", at_step,
                     " (loss ", loss, ") after ", max,
                     " rollbacks with smaller learning rates; see ", metrics_path);
      restore(good);
      retries_ = tries;
      lr_scale_ = scale;
      std::cerr << "ebm: divergence at step " << at_step << " (loss " << loss
                << "); rolled back to step " << step_ << ", learning rate x" << scale << "\n";
      continue;
    }
    ++step_;
    acc["loss"] += loss;
    for (const auto& [k, v] : out.metrics) acc[k] += v;
    ++acc_n;
    if (step_ % log_every == 0 || step_ == steps) {
      nlohmann::json j;
      j["step"] = step_;
      for (const auto& [k, v] : acc) j[k] = v / acc_n;
      j["lr"] = lr;
      j["time"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      metrics << j.dump() << "\n" << std::flush;
      acc.clear();
      acc_n = 0;
    }
    if (step_ % ckpt_every == 0 || step_ == steps) {
      save_checkpoint(ckpt);
      good = snapshot();
    }
    std::ostringstream extra;
    extra.precision(4);
    extra << "loss " << loss;
    if (out.metrics.count("e_pos")) extra << "  E+ " << metric("e_pos") << "  E- " << metric("e_neg");
    progress.update(step_, extra.str());
    if (callback_ && callback_(step_, out.metrics)) break;
  }
  progress.finish();
  if (steps == 0) save_checkpoint(ckpt);
  energy_->eval();
  save_model(out_ + "/model.pt", *energy_, cfg_, data_.train.size(1));
  return retries_;
}

}  // namespace ebm
