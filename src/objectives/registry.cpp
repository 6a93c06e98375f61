#include "ebm/objectives/registry.h"

#include "ebm/core/error.h"
#include "ebm/energy/generator.h"
#include "ebm/objectives/learned.h"
#include "ebm/objectives/score_matching.h"
#include "ebm/sampling/registry.h"

namespace ebm {
namespace {
using Shape = std::vector<int64_t>;

ConfigKey analytic_key() {
  return {"analytic", true, "hand-derived MLP derivatives where they apply; false = autograd double backward"};
}

std::vector<ConfigKey> mass_keys() {
  return {{"mass_weight", 0.0,
           "weight of a likelihood term (log Z by importance sampling from a kernel density of the data) that "
           "learns the relative mass of separated modes, which scores do not carry; 0 = off"},
          {"mass_samples", int64_t(512), "importance samples per step of that term"}};
}
std::vector<ConfigKey> plus(std::vector<ConfigKey> a, const std::vector<ConfigKey>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
// The objective, with the mass term when objective.mass_weight > 0.
std::shared_ptr<Objective> with_mass(const Config& c, std::shared_ptr<Objective> o) {
  const double w = c.get_float("objective.mass_weight");
  if (w == 0) return o;
  return std::make_shared<WithMassTerm>(std::move(o),
                                        MassTermOptions().weight(w).samples(c.get_int("objective.mass_samples")));
}

// What cd and jem share: the chains' steps and step adaptation ([sampler]),
// the L2 penalty and the jumps between modes.
ContrastiveDivergenceOptions chain_options(const Config& c) {
  const JumpSettings j = jump_settings(c);
  return ContrastiveDivergenceOptions(c.get_int("sampler.steps"))
      .adapt_step(c.get_bool("sampler.adapt"))
      .target_accept(c.get_float("sampler.target_accept"))
      .alpha(c.get_float("objective.alpha"))
      .jumps(j.moves)
      .jump_proposal(j.proposal);
}

ConfigKey sigma_floor_key() {
  return {"sigma_floor", std::string("none"),
          "none | spacing: objective.sigma is raised to the training rows' nearest-neighbour spacing per "
          "dimension (median distance / sqrt(D)) when below it, so that the noise reaches neighbouring rows "
          "(docs/own-data.md: better OOD ranking on 128-d features at sigma 0.03, 10 nats worse likelihood on a "
          "10-d mixture)"};
}
DenoisingScoreMatchingOptions dsm_options(const Config& c) {
  const std::string floor = c.get_string("objective.sigma_floor");
  EBM_CHECK_CONFIG(floor == "spacing" || floor == "none", "objective.sigma_floor must be spacing or none, got '",
                   floor, "'");
  return DenoisingScoreMatchingOptions(c.get_float("objective.sigma")).spacing_floor(floor == "spacing");
}

// Exact score matching (D backward passes) is for rows of vectors.
int64_t vector_dim(const Shape& shape, const std::string& name) {
  EBM_CHECK_CONFIG(shape.size() == 1, "objective.name = \"", name,
                   "\" takes vectors [D]; the data have event shape ", c10::IntArrayRef(shape),
                   " (images: objective.name = \"ssm\", \"dsm\", \"mdsm\" or \"cd\")");
  return shape[0];
}
}  // namespace

JumpSettings jump_settings(const Config& c) {
  const std::string name = c.get_string("objective.name");
  if (name != "cd" && name != "jem") return {};
  return {c.get_int("objective.jumps"), DataProposalOptions()
                                            .centers(c.get_int("objective.jump_centers"))
                                            .neighbours(c.get_int("objective.jump_neighbours"))
                                            .broad(c.get_float("objective.jump_broad"))};
}

const ObjectiveRegistry& objective_registry() {
  static const ObjectiveRegistry reg = [] {
    ObjectiveRegistry r("objective", "objective", "name", "cd", "training objective");
    r.add({"cd", "contrastive divergence with MCMC negatives ([sampler], [buffer]): PCD, short-run, CD-k",
           {{"alpha", 0.1, "L2 energy penalty weight (mean E(x+)^2 + mean E(x-)^2)"},
            {"data_noise", 0.0, "std of Gaussian noise added to data"},
            {"chain_init", std::string("buffer"), "buffer (PCD / short-run) | data (CD-k)"},
            {"jumps", int64_t(0),
             "independence Metropolis moves between modes per chain and step, proposed from a kernel density "
             "of the data (vectors); lets the chains carry each mode's mass; 0 = none"},
            {"jump_centers", int64_t(256), "data rows the jump proposal is centred on"},
            {"jump_neighbours", int64_t(3), "each centre's width: the distance to its k-th nearest centre (small: a mode with few rows keeps kernels of its own width)"},
            {"jump_broad", 0.1, "weight of the proposal's uniform part over the data's box"}}},
          [](const Config& c, const Shape& shape, c10::Device device) -> std::shared_ptr<Objective> {
            return std::make_shared<ContrastiveDivergence>(chain_options(c)
                                                               .data_noise(c.get_float("objective.data_noise"))
                                                               .chain_init(c.get_string("objective.chain_init")),
                                                           build_sampler(c), build_buffer(c, shape, device));
          });
    r.add({"jem",
           "JEM (Grathwohl et al. 2020): cross entropy of p(y | x) plus PCD on the marginal E(x) = -logsumexp_y "
           "-E(x, y) ([sampler], [buffer]), optionally on E(x, y) too (energy.conditional = true)",
           {{"ce_weight", 1.0, "weight of the cross entropy (log p(y | x))"},
            {"px_weight", 1.0, "weight of the contrastive divergence on E(x) (log p(x))"},
            {"pxy_weight", 0.0, "weight of the contrastive divergence on E(x, y) at the batch's labels (log p(x | y), "
                                "a per-class buffer); 0 = off"},
            {"warmup", int64_t(0), "steps over which the generative weights ramp linearly from 0; 0 = none"},
            {"ce_steps", int64_t(0),
             "first steps on the cross entropy alone (no chains, a fast classifier warm start); the generative "
             "terms and their warm-up start after them"},
            {"px_every", int64_t(1),
             "after ce_steps, the generative terms run on every k-th step; the steps between train the cross "
             "entropy alone (k - 1 cheap classifier steps per sampling step)"},
            {"px", std::string("auto"),
             "how log p(x) is trained: cd (PCD on E(x), JEM's own) | dsm (denoising score matching on E(x), no "
             "chains: vectors) | auto (cd for images, for vectors of up to 16 dimensions and with pxy_weight > 0, dsm otherwise: on 128-d "
             "ReLU features the chains ended ~100 nats above the data and E(x) was no density)"},
            {"sigma", 0.1, "px = dsm: noise std in the model's units"},
            sigma_floor_key(),
            {"alpha", 0.0, "L2 energy penalty weight of each CD term"},
            {"jumps", int64_t(0),
             "independence Metropolis moves between modes per chain and step (vectors; as objective.name = \"cd\")"},
            {"jump_centers", int64_t(256), "data rows the jump proposal is centred on"},
            {"jump_neighbours", int64_t(3), "each centre's width: the distance to its k-th nearest centre"},
            {"jump_broad", 0.1, "weight of the proposal's uniform part over the data's box"}}},
          [](const Config& c, const Shape& shape, c10::Device device) -> std::shared_ptr<Objective> {
            auto cd = [&](bool marginal) {
              EBM_CHECK_CONFIG(c.get_float("objective.alpha") >= 0, "objective.alpha must be >= 0, got ",
                               c.get_float("objective.alpha"));
              return std::make_shared<ContrastiveDivergence>(chain_options(c).marginal(marginal), build_sampler(c),
                                                             build_buffer(c, shape, device, marginal ? 0 : -1));
            };
            const double wxy = c.get_float("objective.pxy_weight");
            const JemOptions o = JemOptions()
                                     .ce_weight(c.get_float("objective.ce_weight"))
                                     .px_weight(c.get_float("objective.px_weight"))
                                     .pxy_weight(wxy)
                                     .warmup(c.get_int("objective.warmup"))
                                     .ce_steps(c.get_int("objective.ce_steps"))
                                     .px_every(c.get_int("objective.px_every"));
            std::string px = c.get_string("objective.px");
            EBM_CHECK_CONFIG(px == "auto" || px == "cd" || px == "dsm", "objective.px must be auto, cd or dsm, got '",
                             px, "'");
            // (log p(x | y), pxy_weight > 0, needs chains: auto keeps them)
            if (px == "auto") px = shape.size() == 1 && shape[0] > kJemCdMaxDim && wxy == 0 ? "dsm" : "cd";
            if (px == "cd") return std::make_shared<Jem>(o, cd(true), wxy > 0 ? cd(false) : nullptr);
            EBM_CHECK_CONFIG(shape.size() == 1, "objective.px = \"dsm\" takes vectors [D]; the data have event shape ",
                             c10::IntArrayRef(shape), " (images: objective.px = \"cd\")");
            return std::make_shared<Jem>(o, std::make_shared<DenoisingScoreMatching>(dsm_options(c)));
          });
    r.add({"vera",
           "VERA (Grathwohl et al. 2021): negatives from a generator ([generator]) trained to minimise E plus "
           "its entropy, estimated by importance-sampled posterior latents; no MCMC",
           {{"entropy_weight", 1.0, "weight of the generator's entropy"},
            {"posterior_samples", int64_t(20), "importance samples of z given x per negative"},
            {"sigma_min", 0.01, "lower clamp of the generator's noise std"},
            {"sigma_max", 0.3, "upper clamp of the generator's noise std"},
            {"post_lr", 0.02, "Adam learning rate of the posterior proposal's scale"},
            {"init_post_sigma", 0.1, "the posterior proposal's scale at the start"},
            {"alpha", 0.0, "L2 energy penalty weight (mean E(x+)^2 + mean E(x-)^2)"},
            {"grad_penalty", 0.0, "weight of 1/2 mean |dE/dx|^2 at the data"},
            {"ce_weight", 0.0, "> 0: VERA's JEM variant, this weight x the cross entropy of p(y | x) (energy.name = jem)"},
            mass_keys()[0], mass_keys()[1]}},
          [](const Config& c, const Shape& shape, c10::Device device) -> std::shared_ptr<Objective> {
            auto g = build_generator(c, shape);
            EBM_CHECK_CONFIG(g != nullptr, "objective.name = \"vera\" needs a generator: set generator.name "
                             "(mlp for vectors, deconv for images)");
            return with_mass(c, std::make_shared<Vera>(VeraOptions()
                                              .entropy_weight(c.get_float("objective.entropy_weight"))
                                              .posterior_samples(c.get_int("objective.posterior_samples"))
                                              .sigma_min(c.get_float("objective.sigma_min"))
                                              .sigma_max(c.get_float("objective.sigma_max"))
                                              .post_lr(c.get_float("objective.post_lr"))
                                              .init_post_sigma(c.get_float("objective.init_post_sigma"))
                                              .alpha(c.get_float("objective.alpha"))
                                              .grad_penalty(c.get_float("objective.grad_penalty"))
                                              .ce_weight(c.get_float("objective.ce_weight")),
                                          g));
          });
    r.add({"kim_bengio",
           "Kim & Bengio (2016): negatives from a generator ([generator], batch_norm = true) trained to minimise E "
           "minus its entropy, read from its batch-norm scales; no MCMC",
           {{"entropy_weight", 1.0, "weight of the generator's entropy"},
            {"alpha", 0.0, "L2 energy penalty weight (mean E(x+)^2 + mean E(x-)^2)"},
            {"grad_penalty", 0.0, "weight of 1/2 mean |dE/dx|^2 at the data"},
            mass_keys()[0], mass_keys()[1]}},
          [](const Config& c, const Shape& shape, c10::Device) -> std::shared_ptr<Objective> {
            auto g = build_generator(c, shape);
            EBM_CHECK_CONFIG(g != nullptr, "objective.name = \"kim_bengio\" needs a generator: set generator.name "
                             "(mlp for vectors, deconv for images) and generator.batch_norm = true");
            return with_mass(c, std::make_shared<KimBengio>(KimBengioOptions()
                                                   .entropy_weight(c.get_float("objective.entropy_weight"))
                                                   .alpha(c.get_float("objective.alpha"))
                                                   .grad_penalty(c.get_float("objective.grad_penalty")),
                                               g));
          });
    r.add({"meg",
           "MEG (Kumar et al. 2019): negatives from a generator ([generator]) trained to minimise E minus the "
           "mutual information of z and x, estimated by a statistics network (JSD bound); optional latent MALA",
           {{"entropy_weight", 1.0, "weight of the mutual-information (entropy) term"},
            {"alpha", 0.0, "L2 energy penalty weight (mean E(x+)^2 + mean E(x-)^2)"},
            {"grad_penalty", 0.0, "weight of 1/2 mean |dE/dx|^2 at the data"},
            {"stats_hidden", std::vector<int64_t>{256, 256}, "widths of the statistics network T(x, z)"},
            {"stats_lr", 0.0, "the statistics network's learning rate; 0 = train.lr"},
            {"mala_steps", int64_t(0), "latent MALA steps refining the energy's negatives (0 = none)"},
            {"mala_step", 0.01, "the latent MALA step at the start (adapted toward 0.574 acceptance)"},
            mass_keys()[0], mass_keys()[1]}},
          [](const Config& c, const Shape& shape, c10::Device) -> std::shared_ptr<Objective> {
            auto g = build_generator(c, shape);
            EBM_CHECK_CONFIG(g != nullptr, "objective.name = \"meg\" needs a generator: set generator.name "
                             "(mlp for vectors, deconv for images)");
            return with_mass(c, std::make_shared<Meg>(MegOptions()
                                             .entropy_weight(c.get_float("objective.entropy_weight"))
                                             .alpha(c.get_float("objective.alpha"))
                                             .grad_penalty(c.get_float("objective.grad_penalty"))
                                             .stats_hidden(c.get_int_list("objective.stats_hidden"))
                                             .stats_lr(c.get_float("objective.stats_lr"))
                                             .mala_steps(c.get_int("objective.mala_steps"))
                                             .mala_step(c.get_float("objective.mala_step")),
                                         g));
          });
    r.add({"ce", "cross entropy of p(y | x) = softmax(-E(x, y)): a classifier (energy.conditional = true)",
           {{"normalize", std::string("all"),
             "the classes p(y | x) normalises over: all (the softmax classifier) | batch (only the labels present "
             "in the batch: the energy-based continual-learning objective of Li et al. 2020, which leaves the "
             "energies of absent classes out of the contrast)"}}},
          [](const Config& c, const Shape&, c10::Device) -> std::shared_ptr<Objective> {
            const std::string n = c.get_string("objective.normalize");
            EBM_CHECK_CONFIG(n == "all" || n == "batch", "objective.normalize must be all or batch, got '", n, "'");
            return std::make_shared<CrossEntropy>(n == "batch");
          });
    r.add({"esm", "exact score matching (D extra backward passes per step)", plus({analytic_key()}, mass_keys())},
          [](const Config& c, const Shape& shape, c10::Device device) -> std::shared_ptr<Objective> {
            return with_mass(c, std::make_shared<ExactScoreMatching>(
                ExactScoreMatchingOptions(vector_dim(shape, "esm")).analytic(c.get_bool("objective.analytic"))));
          });
    r.add({"ssm", "sliced score matching",
           {{"projections", int64_t(1), "projections per sample"},
            {"projection", std::string("gaussian"), "gaussian | rademacher"},
            {"variance_reduced", false, "SSM-VR, 1/2 |grad E|^2 in closed form (gaussian only)"},
            analytic_key(), mass_keys()[0], mass_keys()[1]}},
          [](const Config& c, const Shape&, c10::Device device) -> std::shared_ptr<Objective> {
            return with_mass(c, std::make_shared<SlicedScoreMatching>(
                SlicedScoreMatchingOptions()
                    .projections(c.get_int("objective.projections"))
                    .projection(c.get_string("objective.projection"))
                    .variance_reduced(c.get_bool("objective.variance_reduced"))
                    .analytic(c.get_bool("objective.analytic"))));
          });
    r.add({"dsm", "denoising score matching",
           {{"sigma", 0.1, "noise std (in the model's units: standardised vectors have sd data.standardize_sd)"},
            sigma_floor_key(), analytic_key(), mass_keys()[0], mass_keys()[1]}},
          [](const Config& c, const Shape&, c10::Device device) -> std::shared_ptr<Objective> {
            return with_mass(c, std::make_shared<DenoisingScoreMatching>(
                dsm_options(c).analytic(c.get_bool("objective.analytic"))));
          });
    r.add({"mdsm", "multi-scale denoising score matching over a geometric noise ladder",
           {{"sigma_max", 1.0, "largest noise level"},
            {"sigma_min", 0.01, "smallest noise level"},
            {"levels", int64_t(10), "levels of the geometric ladder sigma_max .. sigma_min"},
            {"form", std::string("ncsn"),
             "ncsn (noise-conditional energy, weight sigma^2) | li (one energy, Li et al. 2019)"},
            {"sigma", 0.1, "form li: reference scale sigma_0"},
            analytic_key(), mass_keys()[0], mass_keys()[1]}},
          [](const Config& c, const Shape& shape, c10::Device device) -> std::shared_ptr<Objective> {
            const bool scaled = c.applies("energy.noise_conditional") && c.get_bool("energy.noise_conditional");
            EBM_CHECK_CONFIG(shape.size() == 1 || c.get_string("objective.form") == "li" || scaled,
                             "objective.form = \"", c.get_string("objective.form"),
                             "\" needs a noise-conditional energy; the data have event shape ", c10::IntArrayRef(shape),
                             " (images: energy.noise_conditional = true, or objective.form = \"li\", one energy for "
                             "every level)");
            return with_mass(c, std::make_shared<MultiscaleScoreMatching>(
                MultiscaleScoreMatchingOptions()
                    .sigma_max(c.get_float("objective.sigma_max"))
                    .sigma_min(c.get_float("objective.sigma_min"))
                    .levels(c.get_int("objective.levels"))
                    .form(c.get_string("objective.form"))
                    .sigma_ref(c.get_float("objective.sigma"))
                    .analytic(c.get_bool("objective.analytic"))));
          });
    return r;
  }();
  return reg;
}

Section objective_section() { return {"objective", {}, {objective_registry().group()}}; }

std::shared_ptr<Objective> build_objective(const Config& cfg, const std::vector<int64_t>& event_shape,
                                           c10::Device device) {
  return objective_registry().make(cfg, event_shape, device);
}

}  // namespace ebm
