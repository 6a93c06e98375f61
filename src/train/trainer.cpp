// The training loop: train_step over the run's parts, metrics, checkpoints,
// exact resume and divergence rollbacks.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/data/tasks.h"
#include "ebm/data/trajectories.h"
#include "ebm/energy/grid2d.h"
#include "ebm/energy/registry.h"
#include "ebm/energy/standardized.h"
#include "ebm/io/file_bytes.h"
#include "ebm/io/io.h"
#include "ebm/model/columns.h"
#include "ebm/model/input_units.h"
#include "ebm/objectives/objective.h"
#include "ebm/sampling/registry.h"
#include "ebm/train/continual.h"
#include "ebm/train/data_notes.h"
#include "ebm/train/resume_checks.h"
#include "ebm/train/distributed.h"
#include "ebm/train/init_weights.h"
#include "ebm/train/train.h"

namespace fs = std::filesystem;

namespace ebm {

namespace {
// Trainer::run warns above this final gap (nats).
constexpr double kFarGap = 10.0;

// Values only a run consumes (the components check their own keys).
void check_run_config(const Config& c) {
  // (NUTS grows its trajectories to hundreds of leapfrog steps where the
  // step is small: a training step took a second and the run's sample grid
  // sat silent for many minutes)
  EBM_CHECK_CONFIG(c.get_string("sampler.name") != "nuts",
                   "sampler.name = nuts: a run's chains take langevin, ula, mh, mala, hmc, annealed or pt (NUTS "
                   "is for ebm sample --sampler nuts; its trajectories make every step slow)");
  const int64_t steps = c.get_int("train.steps");
  EBM_CHECK_CONFIG(steps >= 0, "train.steps must be >= 0, got ", steps);
  EBM_CHECK_CONFIG(c.get_int("train.batch_size") > 0, "train.batch_size must be > 0, got ",
                   c.get_int("train.batch_size"));
  const double lr = c.get_float("train.lr");
  EBM_CHECK_CONFIG(lr > 0 && std::isfinite(lr), "train.lr must be > 0, got ", lr);
  EBM_CHECK_CONFIG(c.get_int("train.log_every") > 0, "train.log_every must be > 0");
  EBM_CHECK_CONFIG(c.get_int("train.checkpoint_every") > 0, "train.checkpoint_every must be > 0");
  EBM_CHECK_CONFIG(c.get_int("train.snapshot_every") >= 0, "train.snapshot_every must be >= 0 (0 = auto)");
  EBM_CHECK_CONFIG(c.get_int("train.max_retries") >= 0, "train.max_retries must be >= 0");
  const double f = c.get_float("train.retry_lr_factor");
  EBM_CHECK_CONFIG(f > 0 && f < 1, "train.retry_lr_factor must be in (0, 1), got ", f);
  const double limit = c.get_float("train.energy_limit");
  EBM_CHECK_CONFIG(limit > 0, "train.energy_limit must be > 0 (inf: no limit), got ", limit);
  EBM_CHECK_CONFIG(c.get_int("eval.sample_chains") > 0, "eval.sample_chains must be > 0, got ",
                   c.get_int("eval.sample_chains"));
  EBM_CHECK_CONFIG(c.get_int("eval.sample_steps") >= 0, "eval.sample_steps must be >= 0, got ",
                   c.get_int("eval.sample_steps"));
  const std::string calibrate = c.get_string("train.calibrate");
  EBM_CHECK_CONFIG(calibrate == "auto" || calibrate == "temperature" || calibrate == "none",
                   "train.calibrate must be auto, temperature or none, got '", calibrate, "'");
  EBM_CHECK_CONFIG(calibrate != "temperature" || c.get_float("data.val_fraction") > 0,
                   "train.calibrate = \"temperature\" fits T on validation rows: set data.val_fraction (e.g. 0.1)");
  if (c.get_bool("train.keep_best")) {
    EBM_CHECK_CONFIG(c.get_float("data.val_fraction") > 0,
                     "train.keep_best picks weights on validation rows: set data.val_fraction (e.g. 0.1)");
    EBM_CHECK_CONFIG(c.get_float("train.ema") == 0,
                     "train.keep_best and train.ema both choose model.pt's weights: use one");
  }
}

// Drops metrics lines logged after `step` (they will be logged again), and
// the events of a run's end, which an interrupted run wrote too (the resumed
// run writes them at its own end).
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in.good()) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("step") && j["step"].get<int64_t>() > step) continue;
    if (j.contains("event") && (j["event"] == "keep_best" || j["event"] == "calibrate")) continue;
    kept += line + "\n";
  }
  in.close();
  atomic_write_text(path, kept);
}


// The contrastive-divergence chains of an objective (a JEM's p(x) chains), if any.
ContrastiveDivergence* cd_chains(Objective& objective) {
  auto* cd = dynamic_cast<ContrastiveDivergence*>(&objective);
  if (auto* jem = dynamic_cast<Jem*>(&objective)) cd = jem->px_chains();
  return cd;
}

// Rows rank, rank + world, ... of `d`.
Dataset shard(const Dataset& d, int64_t rank, int64_t world) {
  EBM_CHECK_DATA(d.size() >= world, d.description, ": ", d.size(), " training rows cannot be shared by ", world,
                 " ranks");
  auto idx = torch::arange(rank, d.size(), world, torch::TensorOptions(torch::kLong).device(d.x.device()));
  Dataset s = d;
  s.x = d.x.index_select(0, idx);
  if (d.y.defined()) s.y = d.y.index_select(0, idx);
  return s;
}

// A data-parallel checkpoint: every rank's snapshot, in rank order.
std::string pack_ranks(const std::vector<std::string>& states) {
  torch::serialize::OutputArchive ar;
  ar.write("world_size", torch::tensor(int64_t(states.size())));
  for (size_t k = 0; k < states.size(); ++k) {
    auto t = torch::empty({int64_t(states[k].size())}, torch::kUInt8);
    std::memcpy(t.data_ptr<uint8_t>(), states[k].data(), states[k].size());
    ar.write("rank." + std::to_string(k), t);
  }
  std::ostringstream os;
  ar.save_to(os);
  return os.str();
}

// This rank's snapshot in a checkpoint's bytes (a single-process checkpoint
// is its own snapshot); kBadConfig when the world sizes differ.
std::string unpack_rank(const std::string& bytes, int64_t rank, int64_t world, const std::string& path) {
  torch::serialize::InputArchive ar;
  torch::Tensor ws;
  int64_t saved = 1;
  try {
    std::istringstream is(bytes);
    ar.load_from(is);
    if (ar.try_read("world_size", ws)) saved = ws.item<int64_t>();
  } catch (const c10::Error&) {
    return bytes;  // (restore names what is wrong with it)
  }
  EBM_CHECK_CONFIG(saved == world, "--resume: the checkpoint was written by ", saved, " rank", saved == 1 ? "" : "s",
                   ", this run has ", world, ": resume with the same number of processes");
  if (saved == 1 && !ws.defined()) return bytes;
  torch::Tensor t;
  ar.read("rank." + std::to_string(rank), t);
  return std::string(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), size_t(t.numel()));
}
}  // namespace

Trainer::Trainer(Config cfg, std::string out_dir, c10::Device device)
    : cfg_(std::move(cfg)), out_(std::move(out_dir)), device_(device) {
  cfg_.validate();
  check_run_config(cfg_);
  data_ = build_data(cfg_);
  // (a CSV header's names, kept so later files are read in this order)
  if (const std::string path = cfg_.get_string("data.path"); !path.empty()) {
    if (cfg_.get_string_list("data.columns").empty()) {
      const auto names = csv_header(path);
      if (!names.empty() && data_.train.size() > 0 && int64_t(names.size()) == data_.train.x[0].numel())
        cfg_.set_value("data.columns", names);
    } else {
      check_csv_columns(path, cfg_.get_string_list("data.columns"));
    }
  }
  const auto init = adopt_init_model(cfg_, data_, out_);  // (train.init: its units and classes)
  if (init && energy_is_conditional(cfg_) && cfg_.get_int("energy.classes") == 0)
    cfg_.set_value("energy.classes", init->energy->num_classes());
  default_pixel_box();
  resolve_energy_base(cfg_, data_.train.event_shape());
  resolve_buffer_capacity(cfg_, data_.train.event_shape());
  // (auto resolved into the config that config.toml and model.pt keep: what
  // this run did, whatever a later version's auto does)
  if (cfg_.get_string("data.standardize") == "auto")
    cfg_.set_value("data.standardize", std::string(data_.transform.defined() || data_.values ? "on" : "off"));
  // A conditional energy without a class count takes the labels' (max + 1),
  // resolved into the config that model.pt and config.toml keep.
  // A given count is checked against every training label up front.
  if (energy_is_conditional(cfg_)) {
    const auto& y = data_.train.y;
    EBM_CHECK_DATA(y.defined(), data_.train.description, ": a class-conditional energy needs labelled data");
    const int64_t k = cfg_.get_int("energy.classes");
    if (k == 0) {
      // (named classes all count, and so do labels the split put only in
      // the validation or test rows: a rare class must not vanish with the seed)
      int64_t count = std::max(y.max().item<int64_t>() + 1, int64_t(data_.train.class_names.size()));
      for (const Dataset* d : {&data_.val, &data_.test})
        if (d->size() > 0 && d->has_labels()) count = std::max(count, d->y.max().item<int64_t>() + 1);
      cfg_.set_value("energy.classes", count);
    } else {
      const int64_t lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
      EBM_CHECK_DATA(lo >= 0 && hi < k, data_.train.description, ": label ", lo < 0 ? lo : hi,
                     " outside the model's ", k, " classes (energy.classes; 0 takes the labels' count)");
    }
  }
  parts_ = build_parts(cfg_, data_.model_train(), device_, data_.pixels);
  if (init) {
    copy_init_weights(*init, *parts_.energy);
    for (auto& m : parts_.learners)  // (a learned sampler's network too, when the model keeps one)
      if (m.name == "generator" && !copy_init_generator(*init, *m.module))
        notes() << "ebm: note: train.init " << init->path << " keeps no generator: this run's starts fresh\n";
  }
  // (buffer.init = auto likewise: the start this run's chains had, mixed for
  // images, uniform for vectors and JEM, whatever a later version's auto is)
  if (auto* cd = cd_chains(*parts_.objective); cd != nullptr && cfg_.get_string("buffer.init") == "auto")
    cfg_.set_value("buffer.init", cd->buffer().options().init());
  // Validation (data.val_fraction) on the held-out training rows, in the
  // model's units: p(y | x) of a classifying energy, or the exact NLL of a
  // 2D model (quadrature on a grid over the training rows' box).
  const int64_t k = parts_.energy->num_classes();
  if (data_.val.size() > 0 && data_.val.has_labels() && k > 0) {
    val_ = data_.val;
    const int64_t lo = val_.y.min().item<int64_t>(), hi = val_.y.max().item<int64_t>();
    EBM_CHECK_DATA(lo >= 0 && hi < k, data_.val.description, ": validation label ", lo < 0 ? lo : hi,
                   " outside the model's ", k, " classes (energy.classes)");
    val_kind_ = ValKind::kClasses;
  } else if (data_.val.size() > 0 && k == 0 && data_.val.event_shape() == std::vector<int64_t>{2}) {
    val_ = data_.val;
    val_kind_ = ValKind::kDensity2d;
    // (margin 1: a box three times the data's extent, where nll2d's
    // refinement starts from twice; less the farthest 0.2% of rows a side:
    // one row at 500 sd among 6,000 stretched the box so that the 256-point
    // grid's cells were 6 sds wide, and the validation NLL swung from 7.6 to
    // -1.26, 2.3 nats under the data's entropy, which keep_best then kept)
    val_box_ = trimmed_bounding_box(data_.model_train().x, 1.0);
    // (the NLL in the data's units: log |d model / d data| = -sum log scale)
    if (data_.transform.defined()) val_log_jacobian_ = data_.transform.scale.log().sum().item<double>();
  }
  if (val_kind_ != ValKind::kNone && data_.transform.defined()) val_.x = data_.transform.to_model(val_.x);
  if (cfg_.get_float("data.val_fraction") > 0 && data_.val.size() == 0) {
    notes() << "ebm: warning: data.val_fraction = " << cfg_.get_float("data.val_fraction") << " of "
             << data_.train.size() << " training rows is less than one row: no validation"
             << (cfg_.get_bool("train.keep_best") ? " (train.keep_best keeps the last weights)" : "") << "\n";
  } else {
    if (data_.val.size() > 0 && val_kind_ == ValKind::kNone && !cfg_.get_bool("train.keep_best"))
      notes() << "ebm: note: data.val_fraction holds " << data_.val.size() << " rows out of training, but this model "
              << "has no validation score (classifiers on labelled rows and 2D models have one): they go unused\n";
    EBM_CHECK_CONFIG(!cfg_.get_bool("train.keep_best") || val_kind_ != ValKind::kNone,
                     "train.keep_best needs validation it can score: a classifying energy (energy.classes > 0: "
                     "jem, or a ce classifier) on labelled data, or a 2D model (the exact NLL by quadrature)");
    EBM_CHECK_CONFIG(cfg_.get_string("train.calibrate") != "temperature" || val_kind_ == ValKind::kClasses,
                     "train.calibrate = \"temperature\" scales p(y | x): it needs a classifying energy "
                     "(energy.classes > 0) and labelled data");
  }
}

void Trainer::distribute(std::shared_ptr<Collective> collective) {
  coll_ = std::move(collective);
  if (!coll_ || coll_->world() == 1) return;
  const int64_t rank = coll_->rank(), world = coll_->world();
  coll_->check_same_layout(cfg_.to_toml(), parts_.learners);
  parts_.gen = run_generator(cfg_, kStreamTrain, rank, device_);
  parts_.data = shard(parts_.data, rank, world);
  for (auto& t : parts_.tasks) t = shard(t, rank, world);
  coll_->broadcast_parameters(parts_.learners);
}

bool Trainer::lead() const { return !coll_ || coll_->rank() == 0; }

Energy Trainer::user_energy() {
  if (!data_.transform.defined()) return parts_.energy;
  return std::make_shared<StandardizedEnergyImpl>(parts_.energy, data_.transform);
}

namespace {
// The model's range of image data read as pixels, or of float images mapped
// by their range (data.standardize): both are data.scale.
std::optional<PixelMap> mapped_range(const DataSplit& data) { return image_map(data.pixels, data.values); }
}  // namespace

// Pixel data: the chains' start box (buffer.init_low, init_high) and the
// sampler's clamp box, when the config leaves them out, are the pixel range
// (data.scale) rather than the vector defaults ([-4, 4] and no box), so a
// user's own image config, or JEM's uniform start, begins and stays where
// images lie; so are float images' mapped onto data.scale (data.standardize).
// Float images taken as they are (data.standardize = off) get their own
// range as the start box (not the clamp: their range is no pixel box).
// Resolved into the config that config.toml and model.pt keep.
void Trainer::default_pixel_box() {
  const auto box = mapped_range(data_);
  const bool float_images = !box && data_.train.event_shape().size() == 3 && data_.train.size() > 0;
  if (float_images && cfg_.applies("buffer.init_low") && !cfg_.is_set("buffer.init_low") &&
      !cfg_.is_set("buffer.init_high")) {
    const double lo = data_.train.x.min().item<double>(), hi = data_.train.x.max().item<double>();
    if (lo < hi) {
      cfg_.set_value("buffer.init_low", lo);
      cfg_.set_value("buffer.init_high", hi);
    }
  }
  if (!box) return;
  const double lo = box->lo, hi = box->hi;
  if (cfg_.applies("buffer.init_low") && !cfg_.is_set("buffer.init_low") && !cfg_.is_set("buffer.init_high")) {
    cfg_.set_value("buffer.init_low", lo);
    cfg_.set_value("buffer.init_high", hi);
  }
  if (cfg_.applies("sampler.clamp_min") && cfg_.applies("sampler.clamp_max") && !cfg_.is_set("sampler.clamp_min") &&
      !cfg_.is_set("sampler.clamp_max")) {
    cfg_.set_value("sampler.clamp_min", lo);
    cfg_.set_value("sampler.clamp_max", hi);
  }
}

// Float image arrays (not read as pixels) are taken as in the model's units:
// their grids span the training images' own range (as the end report's), not
// a pixel map's. Filling half or less of the box the chains are clamped to
// (images in [0, 1] under a recipe's [-1, 1]) still trains, but the chains
// start and roam where no data are: a note names the keys that match them.
// Pixel data are mapped onto data.scale; a sampler box other than that range
// (data.scale = [0, 1] under a recipe's [-1, 1] clamp) lets chains roam where
// no image lies, or cuts part of the images' range off: a note names the keys.
void Trainer::note_image_range() {
  const auto box = mapped_range(data_);
  grid_map_ = box.value_or(PixelMap());
  const bool float_images = !box && data_.train.event_shape().size() == 3 && data_.train.size() > 0;
  double lo = grid_map_.lo, hi = grid_map_.hi;
  if (const auto& v = data_.values; v && (std::abs(v->raw_lo - v->lo) > 1e-6 * (v->hi - v->lo) ||
                                          std::abs(v->raw_hi - v->hi) > 1e-6 * (v->hi - v->lo)))
    notes() << "ebm: note: " << data_.train.description << ": float images spanning [" << v->raw_lo << ", "
            << v->raw_hi << "], mapped onto data.scale = [" << v->lo << ", " << v->hi
            << "] for training (data.standardize); model.pt keeps the map, so every command reads and writes "
               "float images in these units\n";
  if (float_images) {
    lo = data_.train.x.min().item<double>();
    hi = data_.train.x.max().item<double>();
    grid_map_.lo = lo;
    grid_map_.hi = hi > lo ? hi : lo + 1;
  }
  // A sampler's step, gradient clip and noise are in the model's units, and
  // the image recipes tune them for a range of width 2 ([-1, 1]): float
  // images far wider or narrower than that are barely moved, or swamped.
  if (float_images && cfg_.applies("sampler.step_size") && (hi - lo > 8.0 || hi - lo < 0.25))
    notes() << "ebm: note: " << data_.train.description << ": float images spanning [" << lo << ", " << hi
            << "]; the sampler's step_size, grad_clip and noise are in these units, and the image recipes tune "
               "them for images in [-1, 1]: data.standardize = auto maps the images' range onto data.scale\n";
  if (!cfg_.has_key("sampler.clamp_min") || !cfg_.has_key("sampler.clamp_max")) return;
  const double a = cfg_.get_float("sampler.clamp_min"), b = cfg_.get_float("sampler.clamp_max");
  if (!std::isfinite(a) || !std::isfinite(b)) return;
  if (box) {
    const double tol = 1e-6 * (hi - lo);
    if (std::abs(a - lo) > tol || std::abs(b - hi) > tol)
      notes() << "ebm: note: " << data_.train.description << ": " << (data_.pixels ? "pixels" : "float images")
              << " are mapped onto data.scale = [" << lo << ", "
              << hi << "] but the chains are clamped to [" << a << ", " << b
              << "]; set sampler.clamp_min, clamp_max (and buffer.init_low, init_high) to data.scale\n";
  } else if (float_images && a < b && hi - lo <= 0.55 * (b - a)) {
    notes() << "ebm: note: " << data_.train.description << ": float images spanning [" << lo << ", " << hi
            << "], half or less of the box the chains are clamped to, [" << a << ", " << b
            << "] (with data.standardize = off float arrays are taken as in the model's units); set "
               "sampler.clamp_min, clamp_max and buffer.init_low, init_high to the images' range, or let "
               "data.standardize = auto map them onto data.scale\n";
  }
}

namespace {
// The Gaussian the chains start from (buffer.init = "fit", "mixed"), for model.pt.
const LowRankGaussian* fitted_start(Objective& objective) {
  auto* cd = cd_chains(objective);
  return cd != nullptr && cd->buffer().fitted().defined() ? &cd->buffer().fitted() : nullptr;
}
}  // namespace

void Trainer::write_sample_grids(int64_t step) {
  auto* cd = cd_chains(*parts_.objective);
  const auto shape = data_.train.event_shape();
  const bool image = shape.size() == 3 && (shape[0] == 1 || shape[0] == 3);
  GeneratorImpl* generator = nullptr;
  for (auto& m : parts_.objective->learned_modules())
    if (m.name == "generator") generator = dynamic_cast<GeneratorImpl*>(m.module.get());
  if ((cd == nullptr && generator == nullptr) || !image) return;
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  const std::string dir = out_ + "/samples/";
  fs::create_directories(dir);
  const PixelMap map = mapped_range(data_).value_or(PixelMap());
  // Fresh chains from where `ebm sample` starts them (the buffer's init
  // distribution, its fitted Gaussian under init = mixed), run
  // eval.sample_steps transitions, on a stream of their own (the run's
  // stream, and so resume, is untouched); a conditional model's columns are
  // its classes.
  EnergyImpl& energy = *parts_.energy;
  const int64_t k = energy.num_classes(), cols = k > 0 ? std::min<int64_t>(k, 10) : 8, n = cols * (k > 0 ? 10 : 8);
  auto gen = make_generator(cfg_.get_int("seed") + uint64_t(step), kStreamEval, device_);
  std::vector<int64_t> grid_shape = shape;
  grid_shape.insert(grid_shape.begin(), n);
  const bool fitted = cd && cd->buffer().fitted().defined();
  ChainState chains(fitted ? cd->buffer().fitted().draw(n, gen)  // (on the buffer's device, the run's)
                    : cd   ? cd->buffer().init_samples(n, gen)
                       : at::empty(grid_shape, torch::TensorOptions(torch::kFloat).device(device_))
                             .uniform_(map.lo, map.hi, gen));
  Energy target =
      at_labels(energy, k > 0 ? torch::arange(n, torch::kLong).remainder(cols).to(device_) : torch::Tensor());
  {
    FreezeParameters frozen(energy);
    const bool was_training = energy.is_training();
    energy.eval();
    // (a sampler of their own: one with state, parallel tempering's hot
    // replicas, must not carry the grid's chains into training)
    build_sampler(cfg_)->run(*target, chains, cfg_.get_int("eval.sample_steps"), gen);
    energy.train(was_training);
  }
  write_image_grid(dir + name + ".png", chains.x.detach().cpu(), grid_map_.lo, grid_map_.hi, cols);
  if (generator != nullptr) {  // the learned sampler's draws, one pass each
    const bool was_training = generator->is_training();
    generator->eval();
    auto x = generator->draw(generator->latent(n, gen).to(device_), gen).clamp(map.lo, map.hi);
    generator->train(was_training);
    write_image_grid(dir + name + "-generator.png", x.cpu(), grid_map_.lo, grid_map_.hi, cols);
  }
  if (cd != nullptr && cd->buffer().filled()) {
    const auto& b = cd->buffer().data();
    write_image_grid(dir + name + "-buffer.png", b.narrow(0, 0, std::min<int64_t>(n, b.size(0))).cpu(), grid_map_.lo,
                     grid_map_.hi, cols);
  }
}

void Trainer::end_task(int64_t k, std::ostream& metrics) {
  const bool was_training = parts_.energy->is_training();
  parts_.energy->eval();
  save_model(out_ + "/model-task-" + std::to_string(k + 1) + ".pt", *parts_.energy, cfg_, data_.train.event_shape(),
             data_.transform, data_.pixels, nullptr, data_.train.class_names, fitted_start(*parts_.objective),
             data_.values, parts_.objective->runs_sampler());
  nlohmann::json j = {{"event", "task_end"}, {"task", k + 1}, {"step", parts_.step}};
  // (the forgetting matrix's row: every task's held-out accuracy now)
  if (parts_.energy->num_classes() > 0 && data_.test.has_labels() && data_.test.size() > 0) {
    std::vector<std::vector<int64_t>> groups;
    groups = task_classes(data_.train.y, int64_t(parts_.tasks.size()));  // (all rows: a rank holds a shard)
    Energy user = user_energy();
    Dataset test = data_.test;
    bool complete = true;
    for (const auto& g : groups) {
      int64_t n = 0;
      for (int64_t c : g) n += (test.y == c).sum().item<int64_t>();
      complete = complete && n > 0;
    }
    if (complete) {
      auto r = continual_accuracy(*user, test, groups, k + 1);
      j["test_accuracy"] = r.json()["accuracy"];  // (null for tasks not yet learned)
      j["test_average"] = r.average;
    }
  }
  metrics << j.dump() << "\n" << std::flush;
  parts_.energy->train(was_training);
}

void Trainer::save_checkpoint(const std::string& path) {
  std::string bytes = snapshot(parts_);
  if (coll_ && coll_->world() > 1) {
    auto all = coll_->gather(bytes);  // (to rank 0, which alone writes)
    if (!lead()) return;
    bytes = pack_ranks(all);
  }
  atomic_write_text(path, seal(std::move(bytes)));  // (every write checked: a full disk is exit 66 with its reason)
}

void Trainer::load_checkpoint(const std::string& path) {
  // (rank 0 reads it and hands it to the others: their file systems need not
  // hold the run directory)
  std::string bytes;
  if (lead()) {
    std::ifstream in(path, std::ios::binary);
    EBM_CHECK_CODE(in.good(), ExitCode::kMissingInput, path, ": cannot open checkpoint (nothing to resume)");
    bytes = read_sealed_file(path);  // (kBadData when damaged since it was written)
  }
  if (coll_) bytes = coll_->broadcast(bytes);
  try {
    restore(parts_, unpack_rank(bytes, coll_ ? coll_->rank() : 0, coll_ ? coll_->world() : 1, path));
  } catch (const Error& e) {
    fail(e.code(), path, ": ", e.what());
  } catch (const c10::Error&) {
    fail(ExitCode::kBadData, path, ": checkpoint does not match this config");
  }
}

int64_t Trainer::run(bool resume) {
  const std::string ckpt = out_ + "/checkpoint.pt", metrics_path = out_ + "/metrics.jsonl";
  const int64_t steps = cfg_.get_int("train.steps");
  // (resuming creates nothing until the checkpoint is found)
  // (in a data-parallel run rank 0 alone touches the run directory)
  const bool lead = this->lead();
  EBM_CHECK_CODE(!lead || !resume || fs::exists(ckpt), ExitCode::kMissingInput, ckpt,
                 ": cannot open checkpoint (nothing to resume)");
  if (lead) {
    std::error_code ec;  // (an unwritable --out: one line, exit 66, not an internal error)
    fs::create_directories(out_, ec);
    EBM_CHECK_CODE(!ec, ExitCode::kMissingInput, out_, ": cannot create the run directory: ", ec.message());
  }
  keep_init_copy(cfg_, out_, resume, lead);  // (train.init: a resume reads the run's copy when the file is gone)
  if (lead) {  // (the temporary files of writes a killed run left half done: checkpoint.pt.tmp.PID, ...)
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(out_, ec)) {
      const std::string name = e.path().filename().string();
      const auto at = name.rfind(".tmp.");
      if (at != std::string::npos && at + 5 < name.size() && e.is_regular_file(ec) &&
          name.find_first_not_of("0123456789", at + 5) == std::string::npos)
        fs::remove(e.path(), ec);
    }
  }
  if (resume) {
    if (lead) {
      check_resume_matches(cfg_, data_, out_);
    }
    load_checkpoint(ckpt);
    EBM_CHECK_CONFIG(steps >= parts_.step, "train.steps = ", steps, " is below the step the checkpoint ",
                     ckpt, " reached (", parts_.step, "): nothing to resume");
    if (lead) truncate_metrics(metrics_path, parts_.step);
  } else if (lead) {
    atomic_write_text(metrics_path, "");
  }
  // (once the run is known good: a bad config or resume gets its one line alone)
  note_image_range();
  note_far_values(data_);
  note_constant_columns(data_);
  note_shared_rows(data_);
  note_batch_size(data_, cfg_.get_int("train.batch_size"));
  if (cfg_.get_string("objective.name") != "ce") {  // (a classifier fits no density of its features)
    note_discrete_columns(data_, cfg_.get_string("data.dequantize"));
    // (trajectories follow their dynamics exactly or nearly in some
    // columns: known, and their recipes' sigma is chosen for reach)
    if (trajectory_step_dim(cfg_) == 0) {
      note_collinear_columns(data_);
      if (cfg_.get_string("objective.name") == "dsm") note_thin_direction(data_, cfg_.get_float("objective.sigma"));
    }
  }
  if (cfg_.has_key("data.step_values")) note_trajectory_offsets(data_, cfg_.get_int("data.step_values"));
  if (cfg_.get_bool("data.flip")) note_mirrored_classes(data_);
  note_label_columns(data_);
  if (lead) {
    atomic_write_text(out_ + "/config.toml", cfg_.to_toml());
    // (a fresh run writes its own split over whatever test.csv was there;
    // images are re-read from their set, data.split and the seed)
    if (data_.test.event_shape().size() == 1 && (!resume || !fs::exists(out_ + "/test.csv")))
      write_csv(out_ + "/test.csv", data_.test.x.flatten(1));  // (flatten: a split of no rows, data.test_fraction = 0)
  }
  const int64_t sample_every = lead ? cfg_.get_int("train.sample_every") : 0;

  std::ofstream metrics;
  if (lead) metrics.open(metrics_path, std::ios::app);
  const int64_t log_every = cfg_.get_int("train.log_every");
  const bool keep_best = cfg_.get_bool("train.keep_best");
  // (train.keep_best: the starting weights are a candidate too where a
  // fitted base makes them a model, energy.base = "classes", not a random
  // network's; before the first snapshot, which a rollback restores the
  // best from)
  if (keep_best && parts_.step == 0 && val_.size() > 0 && cfg_.has_key("energy.base") &&
      cfg_.get_string("energy.base") == "classes")
    validate_step(0, true);
  // Rollback points: `good`, copied every snapshot_every steps, and
  // `ckpt_good`, the last checkpoint's, for a divergence that comes back
  // before the next copy (the copy itself may hold its seeds). A run resumed
  // from a periodic checkpoint starts from a copy of both kinds: it rolls
  // back where the uninterrupted run would (from a checkpoint written at a
  // stop, Ctrl-C, it rolls back to that step instead).
  const int64_t ckpt_every = cfg_.get_int("train.checkpoint_every");
  const int64_t snap_every = cfg_.get_int("train.snapshot_every") > 0 ? cfg_.get_int("train.snapshot_every")
                                                                       : std::max<int64_t>(1, ckpt_every / 10);
  std::string good = snapshot(parts_), ckpt_good = good;
  bool back_again = false;  // (the last rollback went to `good`, and no copy since)
  const auto options = StepOptions(cfg_.get_int("train.batch_size"))
                           .energy_limit(cfg_.get_float("train.energy_limit"))
                           .collective(coll_.get());
  Progress progress("train", lead ? steps : 0, parts_.step);
  auto t0 = std::chrono::steady_clock::now();
  // (data-parallel runs log the share of the period spent in collectives)
  double comm0 = coll_ ? coll_->seconds() : 0.0, wall0 = 0.0;
  // metrics averaged over the log period, each over the steps that reported it
  // (an objective's metrics may change between phases, e.g. JEM's ce_steps;
  // in checkpoints, TrainParts::window)
  auto& acc = parts_.window;
  double last_gap = 0;  // (the last log period's mean e_neg - e_pos, when reported)

  while (parts_.step < steps) {
    const int64_t at_step = parts_.step;
    StepResult r = train_step(parts_, options);
    const double lr = parts_.learners[0].optimizer->param_groups()[0].options().get_lr();
    const Output& out = r.output;
    auto metric = [&](const char* k) {
      auto it = out.metrics.find(k);
      return it == out.metrics.end() ? 0.0 : it->second;
    };
    if (r.diverged) {
      const int64_t tries = parts_.retries + 1, max = cfg_.get_int("train.max_retries");
      const double scale = parts_.lr_scale * cfg_.get_float("train.retry_lr_factor");
      nlohmann::json ev = {{"event", "divergence"}, {"step", at_step}, {"loss", r.loss},
                           {"e_pos", metric("e_pos")}, {"e_neg", metric("e_neg")},
                           {"retry", tries}, {"lr_scale", scale}};
      metrics << ev.dump() << "\n" << std::flush;
      progress.finish();
      EBM_CHECK_CODE(tries <= max, ExitCode::kInternal, "training diverged at step ", at_step,
                     " (loss ", r.loss, ") after ", max,
                     " rollbacks with smaller learning rates; see ", metrics_path);
      if (back_again) good = ckpt_good;
      restore(parts_, good);
      back_again = true;
      acc.clear();  // (the next metrics line averages the steps after the rollback only)
      parts_.retries = tries;
      parts_.lr_scale = scale;
      if (lead)
        std::cerr << "ebm: divergence at step " << at_step << " (loss " << r.loss
                << "); rolled back to step " << parts_.step << ", learning rate x" << scale << "\n";
      continue;
    }
    const int64_t step = parts_.step;
    auto add = [&](const std::string& k, double v) {
      auto& [sum, n] = acc[k];
      sum += v;
      ++n;
    };
    add("loss", r.loss);
    for (const auto& [k, v] : out.metrics) add(k, v);
    if (step % log_every == 0 || step == steps) {
      nlohmann::json j;
      j["step"] = step;
      for (const auto& [k, v] : acc) j[k] = v.first / double(v.second);
      if (acc.count("e_pos") && acc.count("e_neg")) last_gap = j["e_neg"].get<double>() - j["e_pos"].get<double>();
      j["lr"] = lr;
      if (val_.size() > 0)
        for (const auto& [k, v] : validate_step(step, keep_best)) j[k] = v;
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      j["time"] = wall;
      if (coll_ && coll_->world() > 1) {
        j["ranks"] = coll_->world();
        j["comm_share"] = (coll_->seconds() - comm0) / std::max(1e-9, wall - wall0);
        comm0 = coll_->seconds();
        wall0 = wall;
      }
      metrics << j.dump() << "\n" << std::flush;
      acc.clear();
    }
    if (step % ckpt_every == 0 || step == steps) {
      save_checkpoint(ckpt);
      ckpt_good = good = snapshot(parts_);
      back_again = false;
    } else if (step % snap_every == 0) {
      good = snapshot(parts_);
      back_again = false;
    }
    if (sample_every > 0 && (step % sample_every == 0 || step == steps)) write_sample_grids(step);
    if (!parts_.tasks.empty() && lead) {
      const int64_t k = task_at_step(step - 1, steps, int64_t(parts_.tasks.size()));
      if (step == task_end(k, steps, int64_t(parts_.tasks.size()))) end_task(k, metrics);
    }
    std::ostringstream extra;
    extra.precision(4);
    extra << "loss " << r.loss;
    if (out.metrics.count("e_pos")) extra << "  E+ " << metric("e_pos") << "  E- " << metric("e_neg");
    if (lead) progress.update(step, extra.str());
    // (a data-parallel run stops where every rank's callback is asked: the
    // ranks must stop together; they agree every 10 steps, one small
    // collective then rather than at every step)
    bool stop = false;
    if (callback_) {
      auto m = out.metrics;
      m["loss"] = r.loss;
      stop = callback_(step, m);
    }
    if (coll_ && callback_) stop = step % 10 == 0 || step == steps ? coll_->any(stop) : false;
    if (stop) {  // (a checkpoint at the step it stopped at: --resume goes on from there)
      if (step % ckpt_every != 0 && step != steps) save_checkpoint(ckpt);
      break;
    }
  }
  progress.finish();
  if (steps == 0) save_checkpoint(ckpt);
  use_averages(parts_.learners);  // (train.ema: model.pt takes the moving averages)
  if (keep_best && parts_.best.step >= 0) {  // (train.keep_best: the best validation weights)
    load_module_state(*parts_.energy, parts_.best.state);
    if (lead) {
      nlohmann::json j = {{"event", "keep_best"}, {"step", parts_.best.step},
                          {validates_px() ? "val_objective" : "val_nll", parts_.best.score}};
      metrics << j.dump() << "\n" << std::flush;
    }
  }
  parts_.energy->eval();
  if (!lead) return parts_.retries;
  calibrate(metrics);
  // Negatives whose energy ends far above the data's never reached it: the
  // energy separates data from chains but is no fitted density (working
  // runs end within a nat or two; 128-d features with five MALA steps
  // ended at 98, pinned by the L2 penalty).
  if (last_gap > kFarGap) {
    // (vectors can do without chains: score matching)
    const bool vectors = data_.train.event_shape().size() == 1;
    const bool jem = dynamic_cast<Jem*>(parts_.objective.get()) != nullptr;
    std::cerr << "ebm: warning: the negatives' energy ended " << last_gap
              << " above the data's (metrics e_neg - e_pos): the sampler does not reach the data, so exp(-E) is not a "
                 "fitted density; give the chains more sampler.steps or a larger step"
              << (!vectors ? ""
                  : jem    ? ", or train p(x) without chains (objective.px = \"dsm\")"
                           : ", or train without chains (objective.name = \"dsm\")")
              << " (docs/jem.md)\n";
  }
  GeneratorImpl* generator = nullptr;
  for (auto& m : parts_.objective->learned_modules())
    if (m.name == "generator") generator = dynamic_cast<GeneratorImpl*>(m.module.get());
  // (sampler.adapt: model.pt's sampler takes the step the chains ended at)
  if (parts_.objective->adapted_step() > 0 && cfg_.has_key("sampler.step_size"))
    cfg_.set_value("sampler.step_size", parts_.objective->adapted_step());
  save_model(out_ + "/model.pt", *parts_.energy, cfg_, data_.train.event_shape(), data_.transform, data_.pixels,
             generator, data_.train.class_names, fitted_start(*parts_.objective), data_.values,
             parts_.objective->runs_sampler(), calibrated_.t);
  return parts_.retries;
}

}  // namespace ebm
