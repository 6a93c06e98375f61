#include "ebm/sampling/registry.h"

#include "ebm/core/error.h"
#include "ebm/energy/registry.h"
#include "ebm/sampling/tempering.h"

namespace ebm {
namespace {
ConfigKey step_key(double value, const std::string& doc, const std::string& alias = "step") {
  return {"step_size", value, doc, alias};
}
std::vector<ConfigKey> langevin_box_keys() {
  return {{"grad_clip", 0.0, "clamp each gradient element to +-grad_clip; 0 = off", "clip"},
          {"clamp_min", -INFINITY, "lower bound of the box the chains stay in; -inf = none", "min"},
          {"clamp_max", INFINITY, "upper bound of the box the chains stay in; inf = none", "max"}};
}
LangevinOptions langevin_options(const Config& c, bool exact) {
  return LangevinOptions(c.get_float("sampler.step_size"))
      .exact_noise(exact)
      .grad_clip(c.get_float("sampler.grad_clip"))
      .clamp_min(c.get_float("sampler.clamp_min"))
      .clamp_max(c.get_float("sampler.clamp_max"));
}
}  // namespace

const SamplerRegistry& sampler_registry() {
  static const SamplerRegistry reg = [] {
    SamplerRegistry r("sampler", "sampler", "name", "langevin", "MCMC sampler of the negatives / samples");
    auto langevin_keys = std::vector<ConfigKey>{
        step_key(0.01, "step eta of x' = x - eta grad E + noise N(0, I)"),
        {"noise", 0.005, "noise std, set independently of the step (ignored when exact_noise)"},
        {"exact_noise", false, "noise = sqrt(2 step_size): the discretised Langevin diffusion", "exact"}};
    for (auto& k : langevin_box_keys()) langevin_keys.push_back(k);
    r.add({"langevin", "unadjusted Langevin / SGLD with free noise (IGEBM)", langevin_keys},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            const bool exact = c.get_bool("sampler.exact_noise");
            auto o = langevin_options(c, exact);
            if (!exact) o.noise(c.get_float("sampler.noise"));
            return std::make_shared<LangevinSampler>(o);
          });
    auto ula_keys = std::vector<ConfigKey>{step_key(0.01, "step eta; noise sqrt(2 eta)")};
    for (auto& k : langevin_box_keys()) ula_keys.push_back(k);
    r.add({"ula", "unadjusted Langevin algorithm: langevin with noise sqrt(2 step)", ula_keys},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            return std::make_shared<LangevinSampler>(langevin_options(c, true));
          });
    r.add({"mh", "random-walk Metropolis", {step_key(0.1, "Gaussian proposal std")}},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            return std::make_shared<RandomWalkMH>(RandomWalkMHOptions(c.get_float("sampler.step_size")));
          });
    r.add({"mala", "Metropolis-adjusted Langevin", {step_key(0.01, "Langevin step eps")}},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            return std::make_shared<MALASampler>(MALAOptions(c.get_float("sampler.step_size")));
          });
    r.add({"hmc", "Hamiltonian Monte Carlo",
           {step_key(0.05, "leapfrog step eps"),
            {"leapfrog", int64_t(10), "leapfrog steps per transition"},
            // (0.5 by default: with a fixed step the adapted trajectory can
            // go near-periodic, neal100's min ESS 16 and R-hat 7.8 in 1,000
            // draws of 16 chains at jitter 0; 1,336 at 0.2, 7,216 at 0.5)
            {"jitter", 0.5, "step-size jitter fraction in [0, 1): each transition's step is eps x U(1 - j, 1 + j)"}}},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            return std::make_shared<HMCSampler>(HMCOptions(c.get_float("sampler.step_size"))
                                                    .n_leapfrog(c.get_int("sampler.leapfrog"))
                                                    .jitter(c.get_float("sampler.jitter")));
          });
    r.add({"nuts", "No-U-Turn sampler (multinomial)",
           {step_key(0.1, "leapfrog step eps"),
            {"max_depth", int64_t(10), "maximum tree depth (2^depth - 1 leapfrog steps at most)", "depth"}}},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            return std::make_shared<NUTSSampler>(NUTSOptions(c.get_float("sampler.step_size"))
                                                     .max_depth(c.get_int("sampler.max_depth")));
          });
    r.add({"annealed", "annealed Langevin over noise levels (NCSN) or temperatures; one transition sweeps all levels",
           {step_key(2e-5, "Langevin step eps at the last level (scaled by (s_i / s_L)^2 before)", "eps"),
            {"sigma_max", 1.0, "first (largest) level", "smax"},
            {"sigma_min", 0.01, "last (smallest) level; 1 ends on exp(-E) in temperature mode", "smin"},
            {"levels", int64_t(10), "levels L of the geometric ladder"},
            {"level_steps", int64_t(100), "Langevin steps T per level", "steps"},
            {"denoise", false, "final step x - sigma_min^2 grad E (noise-conditional energies)"},
            langevin_box_keys()[1], langevin_box_keys()[2]}},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            return std::make_shared<AnnealedLangevinSampler>(
                AnnealedLangevinOptions(c.get_float("sampler.step_size"))
                    .clamp_min(c.get_float("sampler.clamp_min"))
                    .clamp_max(c.get_float("sampler.clamp_max"))
                    .sigma_max(c.get_float("sampler.sigma_max"))
                    .sigma_min(c.get_float("sampler.sigma_min"))
                    .n_levels(c.get_int("sampler.levels"))
                    .steps_per_level(c.get_int("sampler.level_steps"))
                    .denoise(c.get_bool("sampler.denoise")));
          });
    r.add({"pt", "parallel tempering: MALA per temperature plus replica swaps",
           {step_key(0.05, "MALA step at T = 1 (scaled by sqrt(T) above)"),
            {"temps", int64_t(8), "temperatures K, geometric from 1 to tmax"},
            {"tmax", 10.0, "hottest temperature"}}},
          [](const Config& c) -> std::shared_ptr<Sampler> {
            return std::make_shared<ParallelTempering>(
                ParallelTemperingOptions(c.get_float("sampler.step_size"))
                    .n_temps(c.get_int("sampler.temps"))
                    .t_max(c.get_float("sampler.tmax")));
          });
    return r;
  }();
  return reg;
}

Section sampler_section() {
  return {"sampler",
          {{"steps", int64_t(20), "sampler transitions per training iteration (k)"},
           {"adapt", false,
            "training: after each iteration scale the step by exp(0.05 (acceptance - target)), so the chains "
            "move as fast as the data's scale and dimension allow (mh, mala, hmc; kept in checkpoints, and "
            "model.pt keeps the final step)"},
           {"target_accept", 0.0, "the acceptance sampler.adapt aims at; 0 = the sampler's own (mala 0.57)"}},
          {sampler_registry().group()}};
}

Section buffer_section() {
  return {"buffer",
          {{"capacity", int64_t(10000), "replay buffer chains; 0 = short-run chains"},
           {"reinit_prob", 0.05, "probability a drawn chain restarts from the init distribution"},
           {"init", std::string("auto"),
            "auto (mixed for images, uniform for vectors and under objective.name = jem) | uniform (on [init_low, "
            "init_high]) | gaussian | data (uniform on the training data's box, 10% wider) | fit (a Gaussian with "
            "the training data's mean and its 256 leading principal components; model.pt keeps it and `ebm "
            "sample` starts from it) | mixed (fresh chains from fit, a share init_noise from uniform; model.pt keeps the "
            "fit)"},
           {"init_low", -4.0, "uniform init box low"},
           {"init_high", 4.0, "uniform init box high"},
           {"init_std", 1.0, "gaussian init std"},
           {"init_noise", 0.2,
            "mixed: the share of fresh chains drawn from uniform noise on [init_low, init_high], the rest from the fit"}},
          {}};
}

std::shared_ptr<Sampler> build_sampler(const Config& cfg) { return sampler_registry().make(cfg); }

std::shared_ptr<ReplayBuffer> build_buffer(const Config& cfg, std::vector<int64_t> shape,
                                           c10::Device device, int64_t classes) {
  // (a conditional energy's chains are kept per class)
  if (classes < 0)
    classes = energy_is_conditional(cfg) ? cfg.get_int("energy.classes") : 0;
  // auto under JEM: uniform noise, its published start. On Fashion-MNIST the
  // data's Gaussian gave the classifier worse calibration (ECE 0.034 against
  // 0.018) and robustness (PGD L-inf 0.03: 0.45 against 0.57; docs/jem.md).
  std::string init = cfg.get_string("buffer.init");
  if (init == "auto" && cfg.has_key("objective.name") && cfg.get_string("objective.name") == "jem") init = "uniform";
  // (init_noise, like init_std, is read only by the init that uses it: a
  // run's config.toml lists every buffer key whatever its init)
  return std::make_shared<ReplayBuffer>(ReplayBufferOptions(cfg.get_int("buffer.capacity"))
                                            .device(device)
                                            .reinit_prob(cfg.get_float("buffer.reinit_prob"))
                                            .init(init)
                                            .mixed_noise(cfg.get_float("buffer.init_noise"))
                                            .low(cfg.get_float("buffer.init_low"))
                                            .high(cfg.get_float("buffer.init_high"))
                                            .std(cfg.get_float("buffer.init_std"))
                                            .classes(classes),
                                        std::move(shape));
}

std::shared_ptr<Sampler> make_sampler(const std::string& spec) {
  static const auto schema = [] {
    auto s = std::make_shared<Schema>();
    s->add(sampler_section());
    return std::shared_ptr<const Schema>(s);
  }();
  return build_sampler(config_from_spec(schema, "sampler", sampler_registry().group(), "sampler", spec));
}

}  // namespace ebm
