// The training schema, assembled from every component's registration, and
// the builders that turn a validated Config into a run's parts.
#include <unordered_set>
#include <algorithm>
#include <cmath>
#include <functional>
#include <iomanip>
#include <sstream>

#include <c10/util/accumulate.h>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/tasks.h"
#include "ebm/energy/classifier_mlp.h"
#include "ebm/energy/generator.h"
#include "ebm/energy/registry.h"
#include "ebm/objectives/registry.h"
#include "ebm/sampling/registry.h"
#include "ebm/train/data_notes.h"
#include "ebm/train/train.h"

namespace ebm {

namespace {
Section train_section() {
  return {"train",
          {{"steps", int64_t(10000), "training iterations"},
           {"batch_size", int64_t(256), "data points (and chains) per iteration"},
           {"lr", 1e-4, "learning rate"},
           {"weight_decay", 0.0, "L2 weight decay"},
           {"grad_clip", 0.0, "clip the parameter gradient norm; 0 = off"},
           {"ema", 0.0,
            "exponential moving average of every network's weights (e.g. 0.999), written to model.pt; "
            "checkpoints keep both; 0 = off (model.pt holds the last weights)"},
           {"warmup", int64_t(0), "linear learning-rate warm-up steps"},
           {"log_every", int64_t(100), "metrics.jsonl line period (and of the validation, data.val_fraction)"},
           {"keep_best", false,
            "model.pt takes the energy's weights at the lowest validation NLL seen (every log_every steps), not "
            "the last: of p(y | x) for classifying energies (ce, jem) on labelled data, the exact NLL (quadrature) "
            "for 2D models; needs data.val_fraction > 0; not with train.ema"},
           {"calibrate", std::string("auto"),
            "temperature | none | auto: a classifier's p(y | x) = softmax(-E(x, y) / T) with T fitted by maximum "
            "likelihood on the validation rows at the end of the run (model.pt keeps T; ebm classify and eval apply "
            "it); auto = temperature where a classifying energy has 100 or more validation rows and T fitted on half "
            "of them lowers the other half's NLL by more than twice its standard error, else none"},
           {"init", std::string(""),
            "model.pt whose energy weights this run starts from (fine-tuning, or learning on as new data "
            "arrive), with this run's [energy] settings equal to its; the run keeps that model's data map "
            "(standardisation, value map) and classes, so the weights mean what they did; a learned sampler's "
            "network starts from the model's too when it keeps one; empty = fresh weights"},
           {"checkpoint_every", int64_t(1000), "checkpoint period"},
           {"snapshot_every", int64_t(0),
            "period of the in-memory copies of the run that a divergence rolls back to (a second divergence "
            "before the next copy rolls back to the last checkpoint); 0 = auto: checkpoint_every / 10"},
           {"sample_every", int64_t(0),
            "image runs: samples/step-NNNNNN.png grids of fresh chains (and -buffer.png) at this period; 0 = off"},
           {"max_retries", int64_t(3), "divergence rollbacks before giving up"},
           {"retry_lr_factor", 0.5, "learning-rate factor per rollback"},
           {"energy_limit", 1e6, "|mean energy| above this counts as divergence"}},
          {optimizer_registry().group(), schedule_registry().group()}};
}

Section eval_section() {
  return {"eval",
          {{"sample_chains", int64_t(2000), "chains drawn for the sample plot"},
           {"sample_steps", int64_t(500), "sampler steps for the sample plot"}},
          {}};
}
}  // namespace

std::shared_ptr<const Schema> train_schema() {
  static const auto schema = [] {
    auto s = std::make_shared<Schema>();
    s->add({"", {{"seed", int64_t(0), "seed of every random stream of the run"}}, {}});
    s->add(data_section());
    s->add(energy_section());
    s->add(sampler_section());
    s->add(buffer_section());
    s->add(objective_section());
    s->add(generator_section());
    s->add(train_section());
    s->add(eval_section());
    return std::shared_ptr<const Schema>(s);
  }();
  return schema;
}

Config make_train_config() { return Config(train_schema()); }

at::Generator run_generator(const Config& cfg, Stream purpose, int64_t rank, c10::Device device) {
  TORCH_INTERNAL_ASSERT(rank >= 0);
  // (ranks above 0 take streams no single-process purpose uses)
  return make_generator(cfg.get_int("seed"), uint64_t(purpose) + (uint64_t(rank) << 32), device);
}

namespace {
// data.standardize's map. A column constant in the training rows has no
// spread of its own: it takes the geometric mean of the other columns'
// scales, so that a value off it means the same in whatever units the data
// come in (AffineMap::standardize's scale 1 is in the data's units: a dead
// ReLU feature made nonzero scored AUROC 0.999 in metres, 0.506 in km).
AffineMap standardize_columns(const torch::Tensor& x, double sd) {
  AffineMap map = AffineMap::standardize(x, sd);
  if (x.size(0) < 2) return map;
  const auto spread = x.to(torch::kCPU, torch::kDouble).reshape({x.size(0), -1}).std(0) > 0;
  if (spread.all().item<bool>() || !spread.any().item<bool>()) return map;
  const double fill = map.scale.masked_select(spread).log().mean().exp().item<double>();
  map.scale = torch::where(spread, map.scale, torch::full_like(map.scale, fill)).contiguous();
  return map;
}
}  // namespace

DataSplit build_data(const Config& cfg) {
  auto gen = run_generator(cfg, kStreamData);
  Dataset all = build_dataset(cfg, gen);
  DataSplit split = split_dataset(all, cfg.get_float("data.test_fraction"), gen);
  // (validation rows come out of the training rows, after the test split,
  // which is the same with or without them)
  const double val_fraction = cfg.get_float("data.val_fraction");
  EBM_CHECK_CONFIG(val_fraction >= 0 && val_fraction < 1, "data.val_fraction must be in [0, 1), got ", val_fraction);
  if (val_fraction > 0) {
    DataSplit tv = split_dataset(split.train, val_fraction, gen);
    EBM_CHECK_DATA(tv.train.size() > 0, all.description, ": data.val_fraction = ", val_fraction, " of ",
                   split.train.size(), " training rows leaves none to train on");
    // (too few rows for one validation row: none, which the run says)
    if (tv.test.size() > 0) {
      split.train = tv.train;
      split.val = tv.test;
    }
  }
  const std::string mode = cfg.get_string("data.standardize");
  EBM_CHECK_CONFIG(mode == "on" || mode == "off" || mode == "auto",
                   "data.standardize must be on, off or auto, got '", mode, "'");
  const bool vectors = split.train.event_shape().size() == 1;
  const bool float_images = !all.pixels && split.train.event_shape().size() == 3;
  EBM_CHECK_CONFIG(mode != "on" || vectors || float_images,
                   "data.standardize = on needs vector data or float images, got rows of shape ",
                   c10::IntArrayRef(split.train.event_shape()));
  const double sd = cfg.get_float("data.standardize_sd");
  EBM_CHECK_CONFIG(sd > 0 && std::isfinite(sd), "data.standardize_sd must be > 0, got ", sd);
  const auto range = cfg.get_float_list("data.scale");
  EBM_CHECK_CONFIG(range.size() == 2 && range[0] < range[1] && std::isfinite(range[0]) && std::isfinite(range[1]),
                   "data.scale must be [lo, hi] with lo < hi, got ", c10::ArrayRef<double>(range));
  // data.clip: each column clamped to its training quantiles (train and
  // validation rows; the test rows stay as they were, so the NLL is honest).
  const auto clip = cfg.get_float_list("data.clip");
  if (!clip.empty()) {
    EBM_CHECK_CONFIG(clip.size() == 2 && clip[0] >= 0 && clip[0] < clip[1] && clip[1] <= 1,
                     "data.clip must be [q_lo, q_hi] with 0 <= q_lo < q_hi <= 1, got ", c10::ArrayRef<double>(clip));
    EBM_CHECK_CONFIG(vectors && !all.pixels, "data.clip clamps vector data, got ",
                     all.pixels ? "pixels" : "rows of shape " + c10::str(c10::IntArrayRef(split.train.event_shape())));
    const auto d = split.train.x.to(torch::kDouble);
    const auto q = torch::quantile(d, torch::tensor(clip, torch::kDouble), /*dim=*/0);  // [2, D]
    for (Dataset* s : {&split.train, &split.val})
      if (s->x.defined() && s->size() > 0)
        s->x = torch::max(torch::min(s->x.to(torch::kDouble), q[1]), q[0]).to(s->x.scalar_type());
  }
  if (vectors && !all.pixels && mode != "off") split.transform = standardize_columns(split.train.x, sd);
  // Float images: one map of the training images' range onto data.scale
  // (the same for every pixel, unlike a vector's columns, which a constant
  // border would make degenerate), so the recipes' sampler settings, tuned
  // for [-1, 1], hold whatever units the images were saved in.
  if (float_images && mode != "off" && split.train.size() > 0) {
    EBM_CHECK_DATA(torch::isfinite(split.train.x).all().item<bool>(), all.description,
                   ": holds NaN or infinite values");
    const ValueMap map = ValueMap::fit(split.train.x, range[0], range[1]);
    for (Dataset* d : {&split.train, &split.test, &split.val})
      if (d->x.defined()) d->x = map.to_model(d->x);
    split.values = map;
  }
  // (auto: uniform for pixels, none for values, so a recipe reads either)
  const std::string given = cfg.get_string("data.dequantize");
  EBM_CHECK_CONFIG(given == "none" || given == "uniform" || given == "gaussian" || given == "auto",
                   "data.dequantize must be none, uniform, gaussian or auto, got '", given, "'");
  const std::string deq = given != "auto" ? given : all.pixels ? "uniform" : "none";
  EBM_CHECK_CONFIG(deq != "uniform" || all.pixels, "data.dequantize = ", deq, ": ", all.description,
                   " holds values, not 0-255 pixels (PNG, IDX, integer NPY or a built-in image set); ",
                   vectors ? "for values use gaussian" : "for float images use none");
  EBM_CHECK_CONFIG(deq != "gaussian" || (!all.pixels && vectors), "data.dequantize = gaussian needs vector data, got ",
                   all.pixels ? "images read as pixels (use uniform)"
                              : "rows of shape " + c10::str(c10::IntArrayRef(split.train.event_shape())));
  const double deq_std = cfg.get_float("data.dequantize_std");
  EBM_CHECK_CONFIG(deq_std > 0 && std::isfinite(deq_std), "data.dequantize_std must be > 0, got ", deq_std);
  if (!all.pixels && cfg.has_key("sampler.clamp_min") && cfg.has_key("sampler.clamp_max")) {
    // Float data far outside the box the chains are clamped to (0-255
    // pixels saved as floats, for a recipe whose box is [-1, 1]) can never
    // be matched by the negatives. The box is in the model's units: after
    // data.standardize, when it applies.
    const double lo = cfg.get_float("sampler.clamp_min"), hi = cfg.get_float("sampler.clamp_max");
    if (std::isfinite(lo) && std::isfinite(hi) && lo < hi)
      check_in_pixel_range(split.model_train().x, lo, hi,
                           all.description + (split.transform.defined() ? " (standardised; " : " (") +
                               "against sampler.clamp_min, clamp_max)",
                           split.transform.defined() ? "the box is in the model's units, the columns standardised "
                                                       "to sd data.standardize_sd"
                                                     : "");
  }
  if (all.pixels) {
    EBM_CHECK_CONFIG(mode != "on", "data.standardize = on: ", all.description,
                     " holds pixels, mapped into the model's range by data.scale instead");
    PixelMap map;
    map.lo = range[0];
    map.hi = range[1];
    map.dequantize = deq == "uniform";
    for (Dataset* d : {&split.train, &split.test, &split.val}) {
      if (!d->x.defined()) continue;
      d->x = map.to_model(d->x);
      d->pixels = false;
    }
    split.pixels = map;
  }
  return split;
}

std::optional<DataSplit> model_data_split(const ModelInfo& info, const std::string& model, std::string* why) {
  if (info.data_toml.empty() || !info.seed) {
    *why = model + " does not say what it was trained on (written before model files kept the run's data and seed)";
    return std::nullopt;
  }
  Config cfg = make_train_config();
  cfg.load_string(info.data_toml, model + " [data]");
  cfg.set_value("seed", *info.seed);
  try {
    return build_data(cfg);
  } catch (const Error& e) {
    *why = model + "'s training data: " + e.what();
    return std::nullopt;
  }
}

Learner make_learner(const Config& cfg, std::string name, std::shared_ptr<torch::nn::Module> module) {
  Learner l;
  l.name = std::move(name);
  l.optimizer = optimizer_registry().make(cfg, module->parameters());
  l.schedule = schedule_registry().make(cfg, cfg.get_int("train.steps"));
  l.grad_clip = cfg.get_float("train.grad_clip");
  l.ema = cfg.get_float("train.ema");
  EBM_CHECK_CONFIG(l.ema >= 0 && l.ema < 1, "train.ema must be in [0, 1), got ", l.ema);
  l.module = std::move(module);
  return l;
}

torch::Tensor vector_jitter(const Config& cfg, const Dataset& data, bool pixels) {
  if (pixels || data.x.dim() != 2 || cfg.get_string("data.dequantize") != "gaussian") return {};
  return (cfg.get_float("data.dequantize_std") * data.x.to(torch::kDouble).std(0, /*unbiased=*/false))
      .to(data.x.scalar_type());
}

namespace {
// data.balance: whether batches draw every class equally often. A
// class-conditional energy trained on p(x | y) alone (cd, dsm, ...) learns
// each class's density, which the classes' shares do not enter: drawn in
// the data's shares a class of 5% got 5% of the updates, and its samples
// (--label) were mostly other classes' shapes. A classifier's p(y | x)
// learns the shares as its prior, so ce and jem (the objective, or the
// energy under another objective, as JEM-VERA) keep them under auto.
}  // namespace

bool balanced_classes(const Config& cfg, const Dataset& data, bool quiet) {
  const std::string mode = cfg.get_string("data.balance");
  EBM_CHECK_CONFIG(mode == "auto" || mode == "on" || mode == "off", "data.balance must be auto, on or off, got '",
                   mode, "'");
  EBM_CHECK_CONFIG(mode != "on" || data.has_labels(), "data.balance = on draws classes equally often: it needs "
                   "labelled rows (data.labels, class folders or a built-in set)");
  if (mode == "off" || !data.has_labels() || data.size() == 0) return false;
  const auto counts = torch::bincount(data.y.to(torch::kCPU, torch::kLong));
  const auto present = counts.masked_select(counts > 0);
  const int64_t most = present.max().item<int64_t>(), fewest = present.min().item<int64_t>();
  if (mode == "auto") {
    const std::string objective = cfg.get_string("objective.name");
    // (a jem energy is a classifier whatever trains its p(x): VERA's too)
    if (objective == "ce" || objective == "jem" || cfg.get_string("energy.name") == "jem" ||
        !energy_is_conditional(cfg) || most < 2 * fewest)
      return false;
  }
  if (!quiet)
    notes() << "ebm: note: batches draw the " << present.numel() << " classes equally often (data.balance = " << mode
            << "; their rows run from " << fewest << " to " << most << ")"
            << (energy_is_conditional(cfg) || cfg.get_string("energy.name") == "jem"
                    ? ": p(y | x) is learned for equal class shares, and validation (train.keep_best, "
                      "train.calibrate) weighs the classes equally"
                    : "")
            << (cfg.get_string("energy.name") == "jem" ? " (p(x), the sum over classes, holds them equally too)" : "")
            << "\n";
  return true;
}

torch::Tensor class_weights(const torch::Tensor& y, bool balanced) {
  if (!balanced || !y.defined() || y.numel() == 0) return {};
  const auto yl = y.to(torch::kCPU, torch::kLong);
  const auto counts = torch::bincount(yl).to(torch::kDouble);
  const double present = (counts > 0).sum().item<double>();
  return double(yl.numel()) / (present * counts.index_select(0, yl));
}

std::function<Batch(const Dataset&, int64_t, at::Generator&)> augmented_draw(const Config& cfg, const Dataset& data,
                                                              const std::optional<PixelMap>& pixels) {
  const bool balance = balanced_classes(cfg, data);
  const bool flip = cfg.get_bool("data.flip");
  const bool dequantize = pixels && pixels->dequantize;
  EBM_CHECK_CONFIG(!flip || data.event_shape().size() == 3, "data.flip = true needs images [C, H, W], got rows of ",
                   c10::IntArrayRef(data.event_shape()));
  const torch::Tensor jitter = vector_jitter(cfg, data, pixels.has_value());
  if (!flip && !dequantize && !jitter.defined() && !balance) return nullptr;
  const PixelMap map = pixels.value_or(PixelMap());
  return [flip, dequantize, map, jitter, balance](const Dataset& data, int64_t n, at::Generator& gen) {
    Batch b = balance ? draw_balanced_batch(data, n, gen) : draw_batch(data, n, gen);
    if (dequantize) b.x = b.x + map.noise(b.x.sizes(), gen, b.x.options());
    if (jitter.defined()) b.x = b.x + jitter * at::normal(0.0, 1.0, b.x.sizes(), gen, b.x.options());
    if (flip) {
      auto mirrored = at::rand({n}, gen, b.x.options()) < 0.5;  // [n]
      b.x = torch::where(mirrored.view({n, 1, 1, 1}), b.x.flip({3}), b.x);
    }
    return b;
  };
}

void resolve_energy_base(Config& cfg, const std::vector<int64_t>& shape) {
  if (!cfg.has_key("energy.base") || cfg.get_string("energy.base") != "auto") return;
  const std::string name = cfg.get_string("energy.name"), objective = cfg.get_string("objective.name");
  const bool vectors = shape.size() == 1 && shape[0] <= 1024;
  const bool mlp = name == "jem" ? cfg.get_string("energy.net") == "mlp" || cfg.get_string("energy.net") == "auto"
                                 : name == "mlp" && energy_is_conditional(cfg);
  bool denoising = objective == "dsm";
  if (objective == "jem") {
    const std::string px = cfg.get_string("objective.px");
    denoising = px == "dsm" || (px == "auto" && shape.size() == 1 && shape[0] > kJemCdMaxDim &&
                                cfg.get_float("objective.pxy_weight") == 0);
  }
  // (class-incremental runs, data.tasks > 1, learn their classes in turn: a
  // base fitted to every class's labelled rows up front would hand the
  // first task the later ones' classes; one Gaussian of the rows instead)
  const bool incremental = cfg.has_key("data.tasks") && cfg.get_int("data.tasks") > 1;
  const bool base = vectors && mlp && denoising;
  cfg.set_value("energy.base", std::string(!base ? "none" : incremental ? "gaussian" : "classes"));
  // (the fitted base bounds E and makes exp(-E) normalisable; the recipe's
  // prior_std term beside it narrows an otherwise right density: on 32-d
  // Gaussian classes its samples' sds came out 17% small, AIS 39.13 against
  // 38.57 without it (truth 38.53) and a shift along low-variance directions
  // ranked 0.841 against 0.870 (exact 0.874); only a far ring of ReLU
  // features ranked better with it, 0.957 against 0.930)
  if (base && cfg.has_key("energy.prior_std")) cfg.set_value("energy.prior_std", 0.0);
}

void resolve_buffer_capacity(Config& cfg, const std::vector<int64_t>& shape) {
  // (the objectives that keep a replay buffer; score matching's runs have none)
  if (!cfg.has_key("buffer.capacity") || !cfg.has_key("objective.name")) return;
  if (const std::string o = cfg.get_string("objective.name"); o != "cd" && o != "jem") return;
  const int64_t capacity = cfg.get_int("buffer.capacity");
  const int64_t row = 4 * c10::multiply_integers(shape);  // (float32 chains)
  if (capacity <= 0 || row <= 0 || capacity * row <= kBufferBytes) return;
  const auto gib = [](double bytes) {
    std::ostringstream os;
    os << std::setprecision(2) << bytes / double(int64_t(1) << 30) << " GiB";
    return os.str();
  };
  if (cfg.is_set("buffer.capacity")) {
    notes() << "ebm: note: buffer.capacity = " << capacity << " chains of " << c10::IntArrayRef(shape) << " hold "
            << gib(double(capacity) * double(row)) << " in memory and in every checkpoint\n";
    return;
  }
  // (the default's 10,000 chains of 128 x 128 colour images: 2 GiB in
  // memory and in every checkpoint, a minute to write each, for 80 images)
  const int64_t fits = std::max<int64_t>({kBufferBytes / row, cfg.get_int("train.batch_size"), int64_t(1)});
  cfg.set_value("buffer.capacity", fits);
  notes() << "ebm: note: buffer.capacity = " << fits << " (not the default " << capacity << "): that many chains of "
          << c10::IntArrayRef(shape) << " fill " << gib(double(fits) * double(row))
          << " of memory and of every checkpoint; --set buffer.capacity=N to choose\n";
}

TrainParts build_parts(const Config& cfg, const Dataset& train, c10::Device device,
                       const std::optional<PixelMap>& pixels) {
  TrainParts p;
  const auto shape = train.event_shape();
  // Parameters are initialised from their own stream, so the data or the
  // sampler settings never change the initial weights.
  auto init_gen = run_generator(cfg, kStreamInit);
  p.energy = build_energy(cfg, shape);
  reset_parameters(*p.energy, init_gen);
  p.energy->to(device);
  p.energy->train();
  p.objective = build_objective(cfg, shape, device);
  // A noise-conditional energy without a level of its own evaluates at the
  // objective's smallest.
  if (auto* nc = p.energy->noise_conditional())
    if (cfg.get_float("energy.noise_level") == 0 && p.objective->smallest_noise_level() > 0)
      nc->set_noise_level(p.objective->smallest_noise_level());
  p.learners.push_back(make_learner(cfg, "energy", p.energy));
  // The objective's own networks (a generator, ...): initialised from the
  // same stream after the energy, each with its learner.
  for (auto& m : p.objective->learned_modules()) {
    reset_parameters(*m.module, init_gen);
    m.module->to(device);
    Config lc = cfg;
    double lr = m.lr, b1 = m.beta1, b2 = m.beta2;
    if (m.name == "generator") {
      lr = cfg.get_float("generator.lr");
      b1 = cfg.get_float("generator.beta1");
      b2 = cfg.get_float("generator.beta2");
    }
    if (lr > 0) lc.set_value("train.lr", lr);
    if (b1 >= 0) lc.set_value("train.beta1", b1);
    if (b2 >= 0) lc.set_value("train.beta2", b2);
    if (m.constant_lr) {
      lc.set_value("train.schedule", std::string("constant"));
      lc.set_value("train.warmup", int64_t(0));
    }
    p.learners.push_back(make_learner(lc, m.name, m.module));
  }
  // ([generator] keys for an objective without one were taken without a
  // word: a user who set generator.latent_dim under cd got no generator; a
  // note, not an error: one config serves several objectives by --set)
  {
    bool has_generator = false;
    for (const auto& m : p.objective->learned_modules()) has_generator = has_generator || m.name == "generator";
    if (const Section* gs = cfg.schema().section("generator"); gs != nullptr && !has_generator) {
      std::vector<std::string> keys;
      for (const auto& k : gs->keys) keys.push_back(k.name);
      for (const auto& g : gs->groups) {
        keys.push_back(g.selector);
        for (const auto& c : g.choices)
          for (const auto& k : c.keys) keys.push_back(k.name);
      }
      for (const auto& k : keys)
        if (cfg.is_set("generator." + k)) {
          notes() << "ebm: note: generator." << k << " is set, but objective.name = \""
                  << cfg.get_string("objective.name") << "\" trains no generator (vera, kim_bengio and meg do): "
                  << "[generator] is unused\n";
          break;
        }
    }
  }
  p.data = train.to(device);
  p.objective->fit_data(p.data.x);
  if (cfg.has_key("energy.base") && cfg.get_string("energy.base") != "none" && cfg.get_string("energy.base") != "auto")
    if (auto* m = dynamic_cast<ClassifierMLPImpl*>(p.energy.get())) {
      // (batches that draw the classes equally often: the base's class
      // shares equal too; with the data's it kept a 95/4/1 prior that
      // data.balance = on was asked to drop, and keep_best kept the base)
      const double a = m->fit_base(p.data.x, p.data.has_labels() ? p.data.y : torch::Tensor(),
                                   balanced_classes(cfg, p.data, /*quiet=*/true));
      // (too few rows to fix every direction of the covariance: the user
      // should know the base is a guess along some of them)
      if (p.data.size() <= 2 * p.data.x.size(1))
        notes() << "ebm train: note: energy.base = " << cfg.get_string("energy.base") << " fitted to " << p.data.size()
                << " rows of " << p.data.x.size(1) << " values, too few to fit every direction of its covariance: "
                << "shrunk by " << a << " of each column's variance (the ridge held-out rows choose)\n";
    }
  p.gen = run_generator(cfg, kStreamTrain, 0, device);
  p.draw = augmented_draw(cfg, p.data, pixels);
  p.balanced = balanced_classes(cfg, p.data, /*quiet=*/true);
  const int64_t tasks = cfg.get_int("data.tasks");
  EBM_CHECK_CONFIG(tasks >= 1, "data.tasks must be >= 1, got ", tasks);
  if (tasks > 1) {
    const int64_t steps = cfg.get_int("train.steps");
    EBM_CHECK_CONFIG(steps >= tasks, "data.tasks = ", tasks, " needs train.steps >= ", tasks, " (one share per task), got ",
                     steps);
    const auto groups = task_classes(p.data.y, tasks);
    // (p(y | x) normalised over the batch's classes is 1 for a task of one
    // class, whatever the energy: a probe's run of six one-class tasks
    // logged loss 0 at every step and left the weights as they started)
    EBM_CHECK_CONFIG(groups[0].size() >= 2 || !cfg.has_key("objective.normalize") ||
                         cfg.get_string("objective.normalize") != "batch",
                     "data.tasks = ", tasks, " over ", tasks * int64_t(groups[0].size()),
                     " classes makes tasks of one class, and objective.normalize = batch contrasts only the classes of "
                     "a batch: nothing would be learned; use tasks of 2 or more classes, or objective.normalize = all");
    for (const auto& classes : groups) p.tasks.push_back(task_rows(p.data, classes));
    p.total_steps = steps;
  }
  return p;
}

namespace {
// Float images mapped by their range (ValueMap): the map's span against
// that of the central 99.8% of their values (over at most ~1M of them).
void note_far_image_values(const DataSplit& split) {
  const auto& v = split.values;
  const auto& x = split.train.x;
  if (!v || !x.defined() || x.numel() < 1000) return;
  auto flat = x.reshape({-1});
  const int64_t stride = std::max<int64_t>(1, flat.numel() / 1000000);
  flat = flat.slice(0, 0, flat.numel(), stride).to(torch::kCPU, torch::kDouble);
  const auto q = torch::quantile(flat, torch::tensor({0.001, 0.999}, torch::kDouble));
  const double a = q[0].item<double>(), b = q[1].item<double>(), span = v->hi - v->lo;
  // (b == a: nearly every value one background level, sparse images, not a squeeze)
  if (!(b - a < 0.1 * span) || !(b > a)) return;
  const auto user = v->to_user(q);  // (the central values in the images' units)
  notes() << "ebm: note: " << split.train.description << ": 99.8% of the images' values lie in ["
          << user[0].item<double>() << ", " << user[1].item<double>() << "], under a tenth of their whole range ["
          << v->raw_lo << ", " << v->raw_hi
          << "], which data.standardize maps onto data.scale: a few far values squeeze the images into a small "
             "part of the model's range; if they are defects (hot pixels, a fill value), clip them "
             "(docs/images.md)\n";
}

// Pixels (0-255) that all lie in the bottom tenth of that range: images
// saved with other units in 8-bit integers (class maps 0..9, a mask scaled
// 0..20), which the pixel map leaves nearly black: the model sees images
// that hardly differ. Under half of it: dark images, which the model sees
// in a small part of its range (a probe's bars at 0..60 trained to FID 4.7,
// the Gaussian baseline's 0.85; the same images as floats, mapped by their
// own range, 0.21 against a floor of 0.19).
void note_dim_pixels(const DataSplit& split) {
  if (!split.pixels || !split.train.x.defined() || split.train.x.numel() == 0) return;
  const auto top = split.pixels->to_pixels(split.train.x.max().unsqueeze(0))[0].item<int64_t>();
  if (top >= 128) return;
  if (top < 26)
    notes() << "ebm: warning: " << split.train.description << ": every pixel lies in 0.." << top
            << " of 0-255, so the images are nearly black in the model's range and hardly differ: if the values are "
               "not 8-bit pixels (classes, counts, a mask of small numbers), save them as floats (a float NPY is "
               "mapped by its own range) or scale them to 0-255\n";
  else
    notes() << "ebm: warning: " << split.train.description << ": every pixel lies in 0.." << top
            << " of 0-255: the images fill under half of the model's range and differ little in it, which "
               "training resolves poorly; scale them to 0-255 first, or save them as floats (a float NPY is "
               "mapped by its own range)\n";
}

// Rows are read as 32-bit floats: a column far from zero relative to its
// spread (timestamps, UTM coordinates, an offset of 1e9) keeps only a few
// of its values' digits (1.7e9 in steps of 128), which no standardisation
// restores. Says so when the steps are over 1% of the column's sd.
// float32's spacing at each column's largest value over its sd: [D] (0 for
// constant columns).
torch::Tensor float_step_ratios(const torch::Tensor& d) {
  auto step = d.abs().amax(0);  // -> float32's spacing at the largest value: 2^(e - 23) in [2^e, 2^(e+1))
  for (int64_t j = 0; j < step.size(0); ++j) {
    int e = 0;
    std::frexp(step[j].item<double>(), &e);
    step[j] = std::ldexp(1.0, e - 24);
  }
  const auto sd = d.std(0);
  return torch::where(sd > 0, step / sd.clamp_min(1e-300), torch::zeros_like(sd));
}

void note_float_steps(const DataSplit& split) {
  const auto& x = split.train.x;
  if (split.train.pixels || !x.defined() || x.dim() != 2 || x.size(0) < 2) return;
  const auto d = x.to(torch::kCPU, torch::kDouble);
  const auto sd = d.std(0), ratio = float_step_ratios(d);
  const int64_t j = ratio.argmax().item<int64_t>();
  const double r = ratio[j].item<double>();
  if (!(r > 0.01)) return;
  notes() << "ebm: note: " << split.train.description << ": column " << j + 1 << " (values up to "
          << d.select(1, j).abs().max().item<double>() << ", standard deviation " << sd[j].item<double>()
          << ") is held in 32-bit floats, whose steps there (" << r * sd[j].item<double>() << ") are "
          << std::lround(100 * r) << "% of its standard deviation: subtract an offset (or change its units) "
             "before training, or its finer detail is lost\n";
}
}  // namespace

void note_far_values(const DataSplit& split) {
  note_far_image_values(split);
  note_dim_pixels(split);
  note_float_steps(split);
  const auto& x = split.train.x;
  if (!split.transform.defined() || !x.defined() || x.dim() != 2 || x.size(0) < 200) return;
  const auto d = x.to(torch::kCPU, torch::kDouble);  // [N, D], the user's units
  const auto q = torch::quantile(d, torch::tensor({0.01, 0.99}, torch::kDouble), /*dim=*/0);  // [2, D]
  const auto core = (d >= q[0]).logical_and(d <= q[1]).to(torch::kDouble);
  const auto n = core.sum(0);
  const auto mean = (d * core).sum(0) / n;
  const auto core_sd = (((d - mean) * core).pow(2).sum(0) / (n - 1).clamp_min(1)).sqrt();
  const auto sd = d.std(0);
  const auto ratio = sd / core_sd.clamp_min(1e-300);
  const int64_t j = ratio.argmax().item<int64_t>();
  const double r = ratio[j].item<double>();
  if (!(r > 10) || core_sd[j].item<double>() <= 0) return;
  std::ostringstream times;  // (a ratio of 1e28 overflowed lround: -9223372036854775808x)
  if (r < 1e9) times << std::lround(r);
  else times << std::setprecision(3) << r;
  notes() << "ebm: note: " << split.train.description << ": column " << j + 1 << "'s standard deviation ("
          << sd[j].item<double>() << ") is " << times.str() << "x that of its central 98% of rows ("
          << core_sd[j].item<double>()
          << "): a few far values set the scale of data.standardize and squeeze the other rows into a small part "
             "of the model's units, where the sampler and the network resolve them poorly; if they are errors or "
             "outliers, remove them or clip them (--set \"data.clip=[0.01, 0.99]\"; docs/own-data.md)\n";
}

namespace {
// Each column's number of distinct values in rows x [N >= 2, D]: [D] (one
// sort down the rows).
torch::Tensor distinct_values(const torch::Tensor& x) {
  const auto sorted = std::get<0>(x.to(torch::kCPU, torch::kFloat).sort(0));
  return (sorted.narrow(0, 1, x.size(0) - 1) != sorted.narrow(0, 0, x.size(0) - 1)).sum(0) + 1;
}

// "2 (detail), 5 (detail), ... (12 in all)": the first 10 of the 0-based
// column indices `columns` [K], counted from 1.
std::string column_list(const torch::Tensor& columns, const std::function<std::string(int64_t)>& detail) {
  std::string list;
  for (int64_t i = 0; i < columns.numel() && i < 10; ++i) {
    const int64_t j = columns[i].item<int64_t>();
    list += c10::str(i ? ", " : "", j + 1, " (", detail(j), ")");
  }
  if (columns.numel() > 10) list += c10::str(", ... (", columns.numel(), " in all)");
  return list;
}
}  // namespace

void note_constant_columns(const DataSplit& split) {
  const auto& x = split.train.x;
  if (split.train.pixels || !x.defined() || x.dim() != 2 || x.size(0) < 2) return;
  const auto [lo, hi] = x.to(torch::kCPU).aminmax(0);
  const auto flat = (lo == hi).nonzero().reshape({-1});
  if (flat.numel() == 0) return;
  const auto user = lo.to(torch::kDouble);  // (the split's rows are in the user's units)
  const std::string list = column_list(flat, [&](int64_t j) { return c10::str(user[j].item<double>()); });
  notes() << "ebm: note: " << split.train.description << ": column" << (flat.numel() > 1 ? "s " : " ") << list
          << (flat.numel() > 1 ? " hold" : " holds") << " one value in every training row: a point mass, which no "
          << "density fits (the energy sharpens there without end and the NLL means little); drop "
          << (flat.numel() > 1 ? "them" : "it") << " from the data";
  // (rows are read as 32-bit floats: a column of 1e4 + 1e-4 z in a float64
  // file arrives as one value, and "drop it" was the wrong advice)
  const auto big = (user.index_select(0, flat).abs() >= 1024.0).any().item<bool>();
  if (big)
    notes() << " (or, if the file holds finer differences than 32-bit floats keep at such values, steps of 6e-5 "
               "at 1,000 and 1e-3 at 10,000, subtract an offset from the column first)";
  notes() << "\n";
}

namespace {
// FNV-1a over each row's bytes (float32, contiguous): [N] hashes.
std::vector<uint64_t> row_hashes(const torch::Tensor& x) {
  const auto c = x.to(torch::kCPU, torch::kFloat).reshape({x.size(0), -1}).contiguous();
  const int64_t n = c.size(0), width = c.size(1) * int64_t(sizeof(float));
  const auto* bytes = reinterpret_cast<const unsigned char*>(c.data_ptr<float>());
  std::vector<uint64_t> h(size_t(n), 1469598103934665603ull);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t b = 0; b < width; ++b) h[size_t(i)] = (h[size_t(i)] ^ bytes[i * width + b]) * 1099511628211ull;
  return h;
}
}  // namespace

void note_shared_rows(const DataSplit& split) {
  if (split.train.size() == 0) return;
  std::vector<const Dataset*> held;
  for (const Dataset* d : {&split.test, &split.val})
    if (d->size() > 0) held.push_back(d);
  if (held.empty()) return;
  const auto train = row_hashes(split.train.x);
  const std::unordered_set<uint64_t> seen(train.begin(), train.end());
  int64_t shared = 0, total = 0;
  for (const Dataset* d : held) {
    for (uint64_t h : row_hashes(d->x)) shared += seen.count(h) ? 1 : 0;
    total += d->size();
  }
  if (shared == 0 || 100 * shared < total) return;  // (under 1%: a few coincidences)
  // Vectors of coarse values (rounded to 2 decimals, whole units, a large
  // offset's float32 steps) coincide without any record repeated: every
  // column then holds far fewer distinct values than there are distinct
  // rows, while in repeated records a column's value repeats with its row.
  // (A probe's i.i.d. 2-d mixture saved with 2 decimals had 9% of its
  // held-out rows "copied", whole-unit heights and weights 96%, an offset of
  // 1e6 90%.)
  const auto& x = split.train.x;
  if (!split.train.pixels && x.dim() == 2 && x.size(0) >= 2) {
    if (2 * distinct_values(x).max().item<int64_t>() < int64_t(seen.size())) return;
  }
  notes() << "ebm: note: " << split.train.description << ": " << shared << " of the " << total << " held-out rows ("
          << std::lround(100.0 * double(shared) / double(total)) << "%, test" << (split.val.size() > 0 ? " and validation" : "")
          << ") are exact copies of training rows: if the data repeat records, held-out scores (test NLL, accuracy, "
             "train.keep_best's choice) measure memory more than generalisation; drop duplicate rows before training\n";
}

void note_discrete_columns(const DataSplit& split, const std::string& dequantize) {
  const auto& x = split.train.x;
  if (split.train.pixels || dequantize == "gaussian" || !x.defined() || x.dim() != 2 || x.size(0) < 100) return;
  // (distinct values per column: one sort down the rows; a column label-like
  // enough for note_label_columns is named there too)
  const auto distinct = distinct_values(x);
  const auto few = ((distinct >= 2) & (distinct <= 20)).nonzero().reshape({-1});
  if (few.numel() == 0) return;
  const std::string list =
      column_list(few, [&](int64_t j) { return c10::str(distinct[j].item<int64_t>(), " values"); });
  notes() << "ebm: note: " << split.train.description << ": column" << (few.numel() > 1 ? "s " : " ") << list
          << " take only a few distinct values in " << x.size(0) << " training rows: point masses, on which a "
          << "continuous energy sharpens without end (the NLL keeps falling as training goes on and means little); "
             "data.dequantize = \"gaussian\" smooths them (docs/own-data.md, 'Rounded values'), or leave such "
             "columns out\n";
}

void note_batch_size(const DataSplit& split, int64_t batch_size) {
  const int64_t n = split.train.size();
  if (n == 0 || batch_size < 2 * n) return;  // (a batch a little over the rows is a small data set's norm)
  notes() << "ebm: note: train.batch_size " << batch_size << " is more than the " << n
          << " training rows: drawn with replacement, each batch holds every row about " << std::llround(double(batch_size) / double(n))
          << " times over, for that many times the time and memory of the data itself\n";
}

void note_trajectory_offsets(const DataSplit& split, int64_t step_values) {
  const auto& x = split.train.x;
  if (step_values < 1 || !x.defined() || x.dim() != 2 || x.size(0) < 2 || x.size(1) % step_values != 0 ||
      x.size(1) < 2 * step_values)
    return;
  const int64_t f = step_values, t = x.size(1) / f;
  const auto steps = x.to(torch::kCPU, torch::kDouble).view({x.size(0), t, f});
  const auto first = steps.select(1, 0);                                                // [N, F]
  const auto moved = (steps - first.unsqueeze(1)).square().mean(at::IntArrayRef{0, 1}).sqrt();  // [F]
  // (a value fixed within each trajectory, a size or a kind, does not move:
  // no ratio for it)
  const auto ratio = torch::where(moved > 0, first.std(0) / moved.clamp_min(1e-300), torch::zeros_like(moved));
  const int64_t worst = ratio.argmax().item<int64_t>();
  const double r = ratio[worst].item<double>();
  if (!(r > 10)) return;
  notes() << "ebm: note: " << split.train.description << ": the trajectories' first steps spread " << std::lround(r)
          << "x wider than they move from them (value " << worst + 1 << " of a step): standardised by the spread of "
          << "positions, their motion is a small fraction of the model's units, and predictions suffer; train on each "
             "trajectory relative to its first step (subtract it from every step; add the past's back to what "
             "ebm predict returns) (docs/trajectories.md)\n";
}

void note_mirrored_classes(const DataSplit& split) {
  const Dataset& d = split.train;
  const auto shape = d.event_shape();
  if (!d.has_labels() || shape.size() != 3 || d.size() == 0) return;
  torch::NoGradGuard ng;
  const auto y = d.y.to(torch::kCPU, torch::kLong);
  if (y.min().item<int64_t>() < 0) return;
  const int64_t k = y.max().item<int64_t>() + 1;
  if (k < 2) return;
  const auto x = d.x.to(torch::kCPU, torch::kFloat).reshape({d.size(), -1});
  const auto counts = torch::bincount(y, {}, k).to(torch::kDouble);
  const auto means = (torch::zeros({k, x.size(1)}, torch::kFloat).index_add_(0, y, x).to(torch::kDouble) /
                      counts.clamp_min(1).unsqueeze(1));
  const auto mirrored = means.view({k, shape[0], shape[1], shape[2]}).flip({3}).reshape({k, -1});
  const auto dist = torch::cdist(mirrored, means).square();  // [i, j]: class i mirrored against class j
  const auto plain = torch::cdist(means, means).square();
  std::string pairs;
  int64_t found = 0;
  auto name = [&](int64_t c) {
    return c < int64_t(d.class_names.size()) ? "'" + d.class_names[size_t(c)] + "'" : std::to_string(c);
  };
  for (int64_t i = 0; i < k; ++i) {
    if (counts[i].item<double>() == 0) continue;
    int64_t best = -1;
    double best_d = 0;
    for (int64_t j = 0; j < k; ++j) {
      if (j == i || counts[j].item<double>() == 0) continue;
      const double dij = dist[i][j].item<double>();
      if (best < 0 || dij < best_d) best = j, best_d = dij;
    }
    // (mirrored, nearer the other class than to itself, and than it was:
    // Fashion-MNIST's ankle boots, mirrored, are nearer the bags' blob than
    // to themselves, but no nearer than before)
    if (best >= 0 && best_d < 0.5 * dist[i][i].item<double>() && best_d < 0.5 * plain[i][best].item<double>()) {
      if (found++ < 5) pairs += (pairs.empty() ? "" : ", ") + name(i) + " -> " + name(best);
    }
  }
  if (found == 0) return;
  notes() << "ebm: warning: " << d.description << ": data.flip mirrors half of every batch, but mirrored, "
          << (found == 1 ? "a class's mean image is" : std::to_string(found) + " classes' mean images are")
          << " nearer another class's than its own (" << pairs
          << "): classes told apart by their handedness become one under flips (a probe's left / right discs: "
             "accuracy 0.53 with flips, 1.00 without); set data.flip = false\n";
}

void note_label_columns(const DataSplit& split) {
  const Dataset& d = split.train;
  if (!d.has_labels() || d.event_shape().size() != 1 || d.size() < 10) return;
  torch::NoGradGuard ng;
  const auto y = d.y.to(torch::kCPU, torch::kLong);
  const int64_t k = std::get<0>(torch::_unique(y)).numel();
  if (k < 2 || y.min().item<int64_t>() < 0) return;
  const auto x = d.x.to(torch::kCPU, torch::kDouble);
  const int64_t span = y.max().item<int64_t>() + 1;  // (labels are class indices >= 0)
  std::string cols;
  int64_t found = 0;
  for (int64_t c = 0; c < x.size(1); ++c) {
    auto [values, inverse] = torch::_unique(x.select(1, c), false, true);
    const int64_t u = values.numel();
    if (u < 2 || u > 2 * k) continue;
    // (each value held by one class's rows only: as many (value, label) pairs as values)
    const auto pairs = inverse.to(torch::kLong) * span + y;
    if (std::get<0>(torch::_unique(pairs)).numel() != u) continue;
    if (found++ < 5) cols += (cols.empty() ? "" : ", ") + std::to_string(c + 1);
  }
  if (found == 0) return;
  notes() << "ebm: note: " << d.description << ": column" << (found == 1 ? " " : "s ") << cols
          << " (counting from 1) hold" << (found == 1 ? "s" : "") << " at most " << 2 * k
          << " distinct values, each only in one class's rows: the label itself, or a copy of it, left among the "
             "features? A classifier reads the answer from it\n";
}

}  // namespace ebm
