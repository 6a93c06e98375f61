// Config schema and the builders that turn a resolved Config into components.
#include "ebm/core/error.h"
#include "ebm/core/registry.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/io/io.h"
#include "ebm/objectives/score_matching.h"
#include "ebm/train/train.h"

#include <fstream>
#include <sstream>

namespace ebm {

std::vector<ConfigKey> train_schema() {
  using V = std::vector<int64_t>;
  using F = std::vector<double>;
  return {
      {"seed", int64_t(0), "seed of every random stream of the run"},
      {"data.name", std::string("8gaussians"), "built-in 2D toy set (used when data.path is empty)"},
      {"data.path", std::string(""), "N x D CSV or NPY file of training data"},
      {"data.n", int64_t(100000), "points generated for a toy set"},
      {"data.test_fraction", 0.1, "held-out fraction, written to test.csv"},
      {"energy.name", std::string("mlp"), "energy network: mlp | ncmlp (noise-conditional, for objective.form = ncsn)"},
      {"energy.hidden", V{128, 128}, "hidden layer widths"},
      {"energy.activation", std::string("swish"), "swish | softplus | elu | leaky_relu"},
      {"energy.spectral_norm", false, "spectral normalisation of every weight"},
      {"energy.prior_std", 0.0, "std of the Gaussian base term |x|^2/(2 s^2); 0 = none"},
      {"energy.noise_level", 0.0, "ncmlp: sigma at which E(x) is evaluated (sampling, eval); 0 = objective.sigma_min"},
      {"sampler.name", std::string("langevin"), "langevin | ula | mh | mala | hmc | nuts | annealed | pt"},
      {"sampler.steps", int64_t(20), "sampler transitions per training iteration"},
      {"sampler.step_size", 0.01, "Langevin step eta, or MH proposal std (annealed: eta at the last level; pt: MALA step at T = 1)"},
      {"sampler.noise", 0.005, "Langevin noise std (ignored when sampler.exact_noise)"},
      {"sampler.exact_noise", false, "Langevin noise = sqrt(2 step_size)"},
      {"sampler.grad_clip", 0.0, "clamp each gradient element to +-grad_clip; 0 = off"},
      {"sampler.clamp", F{}, "[min, max] box for the chains; empty = none"},
      {"sampler.leapfrog", int64_t(10), "HMC leapfrog steps per transition"},
      {"sampler.jitter", 0.0, "HMC step-size jitter fraction in [0, 1)"},
      {"sampler.max_depth", int64_t(10), "NUTS maximum tree depth (2^depth - 1 leapfrog steps at most)"},
      {"sampler.levels", int64_t(10), "annealed: noise levels / temperatures L (one transition sweeps all)"},
      {"sampler.level_steps", int64_t(100), "annealed: Langevin steps T per level"},
      {"sampler.sigma_max", 1.0, "annealed: first (largest) level"},
      {"sampler.sigma_min", 0.01, "annealed: last (smallest) level; 1 ends on exp(-E) in temperature mode"},
      {"sampler.denoise", false, "annealed: final denoising step x - sigma_min^2 grad E (noise-conditional energies)"},
      {"sampler.temps", int64_t(8), "pt: temperatures K (geometric from 1 to sampler.tmax)"},
      {"sampler.tmax", 10.0, "pt: hottest temperature"},
      {"buffer.capacity", int64_t(10000), "replay buffer chains; 0 = short-run chains"},
      {"buffer.reinit_prob", 0.05, "probability a drawn chain restarts from the init distribution"},
      {"buffer.init", std::string("uniform"), "uniform | gaussian"},
      {"buffer.init_low", -4.0, "uniform init box low"},
      {"buffer.init_high", 4.0, "uniform init box high"},
      {"buffer.init_std", 1.0, "gaussian init std"},
      {"objective.name", std::string("cd"),
       "cd (contrastive divergence) | esm (exact score matching) | ssm (sliced) | dsm (denoising) | mdsm (multi-scale denoising)"},
      {"objective.alpha", 0.1, "L2 energy penalty weight"},
      {"objective.data_noise", 0.0, "std of Gaussian noise added to data"},
      {"objective.chain_init", std::string("buffer"), "buffer (PCD / short-run) | data (CD-k)"},
      {"objective.sigma", 0.1, "dsm: noise std; mdsm form li: reference scale sigma_0"},
      {"objective.sigma_max", 1.0, "mdsm: largest noise level"},
      {"objective.sigma_min", 0.01, "mdsm: smallest noise level"},
      {"objective.levels", int64_t(10), "mdsm: levels of the geometric ladder sigma_max .. sigma_min"},
      {"objective.form", std::string("ncsn"), "mdsm: ncsn (noise-conditional energy, weight sigma^2) | li (one energy, Li et al. 2019)"},
      {"objective.projections", int64_t(1), "ssm: projections per sample"},
      {"objective.projection", std::string("gaussian"), "ssm: gaussian | rademacher"},
      {"objective.variance_reduced", false, "ssm: SSM-VR, 1/2 |grad E|^2 in closed form (gaussian only)"},
      {"objective.analytic", true, "score matching: hand-derived MLP derivatives; false = autograd double backward"},
      {"train.steps", int64_t(10000), "training iterations"},
      {"train.batch_size", int64_t(256), "data points (and chains) per iteration"},
      {"train.lr", 1e-4, "learning rate"},
      {"train.optimizer", std::string("adam"), "adam | sgd"},
      {"train.beta1", 0.0, "Adam beta1 (0 is the EBM norm)"},
      {"train.beta2", 0.999, "Adam beta2"},
      {"train.momentum", 0.0, "SGD momentum"},
      {"train.weight_decay", 0.0, "L2 weight decay"},
      {"train.grad_clip", 0.0, "clip the parameter gradient norm; 0 = off"},
      {"train.schedule", std::string("constant"), "constant | step | cosine"},
      {"train.warmup", int64_t(0), "linear learning-rate warm-up steps"},
      {"train.decay_every", int64_t(1000), "step schedule: decay period"},
      {"train.decay", 0.5, "step schedule: factor per period"},
      {"train.lr_min", 0.0, "cosine schedule: final learning rate"},
      {"train.log_every", int64_t(100), "metrics.jsonl line period"},
      {"train.checkpoint_every", int64_t(1000), "checkpoint period"},
      {"train.max_retries", int64_t(3), "divergence rollbacks before giving up"},
      {"train.retry_lr_factor", 0.5, "learning-rate factor per rollback"},
      {"train.energy_limit", 1e6, "|mean energy| above this counts as divergence"},
      {"eval.sample_chains", int64_t(2000), "chains drawn for the sample plot"},
      {"eval.sample_steps", int64_t(500), "sampler steps for the sample plot"},
  };
}

Config make_train_config() { return Config(train_schema()); }

namespace {
const Registry<Energy, const Config&, int64_t>& energy_registry() {
  static const auto reg = [] {
    Registry<Energy, const Config&, int64_t> r("energy");
    r.add("mlp", [](const Config& c, int64_t d) -> Energy {
      return MLPEnergy(MLPEnergyOptions(d, c.get_int_list("energy.hidden"))
                           .activation(c.get_string("energy.activation"))
                           .spectral_norm(c.get_bool("energy.spectral_norm"))
                           .prior_std(c.get_float("energy.prior_std")))
          .ptr();
    });
    r.add("ncmlp", [](const Config& c, int64_t d) -> Energy {
      double level = c.get_float("energy.noise_level");
      if (level == 0) level = c.get_float("objective.sigma_min");
      return NoiseConditionalMLP(NoiseConditionalMLPOptions(d, c.get_int_list("energy.hidden"))
                                     .activation(c.get_string("energy.activation"))
                                     .spectral_norm(c.get_bool("energy.spectral_norm"))
                                     .prior_std(c.get_float("energy.prior_std"))
                                     .noise_level(level))
          .ptr();
    });
    return r;
  }();
  return reg;
}

std::string number(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}
}  // namespace

Energy build_energy(const Config& cfg, int64_t in_dim) {
  return energy_registry().make(cfg.get_string("energy.name"), cfg, in_dim);
}

std::shared_ptr<Sampler> build_sampler(const Config& cfg) {
  const std::string name = cfg.get_string("sampler.name");
  std::string spec = name + (name == "annealed" ? ":eps=" : ":step=") +
                     number(cfg.get_float("sampler.step_size"));
  if (name == "langevin" || name == "ula" || name == "sgld") {
    spec += ",noise=" + number(cfg.get_float("sampler.noise"));
    if (name != "ula") spec += std::string(",exact=") + (cfg.get_bool("sampler.exact_noise") ? "true" : "false");
    spec += ",clip=" + number(cfg.get_float("sampler.grad_clip"));
    auto box = cfg.get_float_list("sampler.clamp");
    EBM_CHECK_CONFIG(box.empty() || box.size() == 2,
                     "sampler.clamp must be [] or [min, max], got ", box.size(), " values");
    if (box.size() == 2) spec += ",min=" + number(box[0]) + ",max=" + number(box[1]);
  } else if (name == "hmc") {
    spec += ",leapfrog=" + std::to_string(cfg.get_int("sampler.leapfrog")) +
            ",jitter=" + number(cfg.get_float("sampler.jitter"));
  } else if (name == "nuts") {
    spec += ",depth=" + std::to_string(cfg.get_int("sampler.max_depth"));
  } else if (name == "annealed") {
    spec += ",smax=" + number(cfg.get_float("sampler.sigma_max")) +
            ",smin=" + number(cfg.get_float("sampler.sigma_min")) +
            ",levels=" + std::to_string(cfg.get_int("sampler.levels")) +
            ",steps=" + std::to_string(cfg.get_int("sampler.level_steps")) +
            ",denoise=" + (cfg.get_bool("sampler.denoise") ? "true" : "false");
  } else if (name == "pt") {
    spec += ",temps=" + std::to_string(cfg.get_int("sampler.temps")) +
            ",tmax=" + number(cfg.get_float("sampler.tmax"));
  }
  return make_sampler(spec);
}

std::shared_ptr<ReplayBuffer> build_buffer(const Config& cfg, std::vector<int64_t> shape) {
  return std::make_shared<ReplayBuffer>(
      ReplayBufferOptions(cfg.get_int("buffer.capacity"))
          .reinit_prob(cfg.get_float("buffer.reinit_prob"))
          .init(cfg.get_string("buffer.init"))
          .low(cfg.get_float("buffer.init_low"))
          .high(cfg.get_float("buffer.init_high"))
          .std(cfg.get_float("buffer.init_std")),
      std::move(shape));
}

std::shared_ptr<Objective> build_objective(const Config& cfg, std::vector<int64_t> shape) {
  const std::string name = cfg.get_string("objective.name");
  const bool analytic = cfg.get_bool("objective.analytic");
  if (name == "esm") {
    int64_t dim = 1;
    for (auto s : shape) dim *= s;
    return std::make_shared<ExactScoreMatching>(ExactScoreMatchingOptions(dim).analytic(analytic));
  }
  if (name == "ssm")
    return std::make_shared<SlicedScoreMatching>(
        SlicedScoreMatchingOptions()
            .projections(cfg.get_int("objective.projections"))
            .projection(cfg.get_string("objective.projection"))
            .variance_reduced(cfg.get_bool("objective.variance_reduced"))
            .analytic(analytic));
  if (name == "dsm")
    return std::make_shared<DenoisingScoreMatching>(
        DenoisingScoreMatchingOptions(cfg.get_float("objective.sigma")).analytic(analytic));
  if (name == "mdsm")
    return std::make_shared<MultiscaleScoreMatching>(
        MultiscaleScoreMatchingOptions()
            .sigma_max(cfg.get_float("objective.sigma_max"))
            .sigma_min(cfg.get_float("objective.sigma_min"))
            .levels(cfg.get_int("objective.levels"))
            .form(cfg.get_string("objective.form"))
            .sigma_ref(cfg.get_float("objective.sigma"))
            .analytic(analytic));
  EBM_CHECK_CONFIG(name == "cd", "unknown objective.name '", name,
                   "' (known: cd, esm, ssm, dsm, mdsm)");
  return std::make_shared<ContrastiveDivergence>(
      ContrastiveDivergenceOptions(cfg.get_int("sampler.steps"))
          .alpha(cfg.get_float("objective.alpha"))
          .data_noise(cfg.get_float("objective.data_noise"))
          .chain_init(cfg.get_string("objective.chain_init")),
      build_sampler(cfg), build_buffer(cfg, std::move(shape)));
}

RunData build_data(const Config& cfg) {
  RunData d;
  auto gen = make_generator(cfg.get_int("seed"), kStreamData);
  torch::Tensor all;
  const std::string path = cfg.get_string("data.path");
  if (!path.empty()) {
    all = read_matrix(path);
    d.description = path;
  } else {
    const int64_t n = cfg.get_int("data.n");
    EBM_CHECK_CONFIG(n >= 2, "data.n must be >= 2, got ", n);
    all = toy2d(cfg.get_string("data.name"), n, gen);
    d.description = cfg.get_string("data.name");
  }
  EBM_CHECK_DATA(all.size(0) >= 2, "data ", d.description, ": need at least 2 rows, got ",
                 all.size(0));
  auto s = split_rows(all, cfg.get_float("data.test_fraction"), gen);
  d.train = s.train;
  d.test = s.test;
  return d;
}

// ----- model.pt -------------------------------------------------------------
void save_model(const std::string& path, EnergyImpl& energy, const Config& cfg, int64_t in_dim) {
  torch::serialize::OutputArchive ar, weights;
  energy.save(weights);
  ar.write("weights", weights);
  // A noise-conditional energy keeps the level it evaluates at, resolved.
  Config resolved = cfg;
  if (auto* nc = dynamic_cast<NoiseConditionalEnergyImpl*>(&energy))
    resolved.set_value("energy.noise_level", nc->noise_level());
  ar.write("energy_config", c10::IValue(resolved.section_toml("energy")));
  ar.write("in_dim", torch::tensor(in_dim));
  ar.write("format", c10::IValue(std::string("ebm-model-1")));
  atomic_write(path, [&](const std::string& tmp) { ar.save_to(tmp); });
}

void load_weights(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                  const std::string& file) {
  struct Slot {
    std::string name;
    std::vector<int64_t> shape;
    torch::ScalarType dtype;
  };
  auto slots = [&] {
    std::vector<Slot> out;
    for (const auto& items : {module.named_parameters(), module.named_buffers()})
      for (const auto& t : items)
        out.push_back({t.key(), t.value().sizes().vec(), t.value().scalar_type()});
    return out;
  };
  const auto want = slots();
  module.load(archive);
  const auto got = slots();
  for (size_t i = 0; i < want.size(); ++i)
    EBM_CHECK_DATA(got[i].shape == want[i].shape && got[i].dtype == want[i].dtype, file, ": ",
                   want[i].name, " is ", c10::IntArrayRef(got[i].shape), " (",
                   c10::toString(got[i].dtype), ") there but ", c10::IntArrayRef(want[i].shape),
                   " (", c10::toString(want[i].dtype), ") in this config");
}

Energy load_model(const std::string& path) {
  {
    std::ifstream probe(path, std::ios::binary);
    EBM_CHECK_CODE(probe.good(), ExitCode::kMissingInput, path, ": cannot open model file");
  }
  torch::serialize::InputArchive ar;
  c10::IValue cfg_text, format;
  torch::Tensor in_dim;
  try {
    ar.load_from(path);
    ar.read("format", format);
    ar.read("energy_config", cfg_text);
    ar.read("in_dim", in_dim);
  } catch (const std::exception&) {  // (a checkpoint or a TorchScript module: no such fields)
    fail(ExitCode::kBadData, path, ": not an ebm model file (expected model.pt from ebm train)");
  }
  EBM_CHECK_DATA(format.isString() && format.toStringRef() == "ebm-model-1", path,
                 ": unsupported model format");
  Config cfg = make_train_config();
  cfg.load_string(cfg_text.toStringRef(), path + "[energy_config]");
  Energy energy = build_energy(cfg, in_dim.item<int64_t>());
  torch::serialize::InputArchive weights;
  try {
    ar.read("weights", weights);
    load_weights(*energy, weights, path);
  } catch (const c10::Error&) {
    fail(ExitCode::kBadData, path, ": weights do not match the stored energy config");
  }
  energy->eval();
  return energy;
}

}  // namespace ebm
