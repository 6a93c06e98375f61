// `ebm eval --task generator`: sample-based scores of a learned sampler's
// draws on the toy sets whose density is known in closed form (8gaussians,
// 25gaussians): the mean log-density of the draws under the true density
// (the data's own draws score -H, the negative entropy; a generator that
// collapses onto the modes' centres scores above it, one that spreads
// between them below), and mode coverage: a draw belongs to the nearest
// mode when within `radius` standard deviations of it, and a mode is covered
// when at least `min_share` of the draws belong to it.
#include <cmath>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/eval/images.h"
#include "ebm/eval/tasks.h"

namespace ebm {

std::vector<ConfigKey> generator_task_keys() {
  return {{"model", std::string(""), "the model file (set by --model)"},
          {"dataset", std::string(""), "8gaussians or 25gaussians; empty = the model's own data set"},
          {"n", int64_t(10000), "generator draws"},
          {"steps", int64_t(0), "sampler transitions refining each draw (0 = the generator's draws)"},
          {"sampler", std::string(""), "sampler spec for the refinement; empty = the model's training sampler"},
          {"radius", 3.0, "a draw belongs to a mode within this many of its standard deviations"},
          {"min_share", 0.01, "a mode is covered when at least this share of the draws belong to it"},
          {"seed", int64_t(0), "seed of the draws"}};
}

EvalReport generator_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  const std::string model = c.get_string("task.model");
  std::string dataset = c.get_string("task.dataset");
  const int64_t n = c.get_int("task.n"), steps = c.get_int("task.steps");
  const double radius = c.get_float("task.radius"), min_share = c.get_float("task.min_share");
  EBM_CHECK_USAGE(n >= 2, "--n must be >= 2, got ", n);
  EBM_CHECK_USAGE(steps >= 0, "--steps must be >= 0, got ", steps);
  EBM_CHECK_USAGE(radius > 0 && min_share > 0 && min_share < 1, "generator: radius must be > 0 and min_share in "
                  "(0, 1), got ", radius, " and ", min_share);
  if (dataset.empty() && !info.data_toml.empty()) {
    // (a run of a file: data.name is the unused default, not its data)
    const auto dc = data_config(info.data_toml, model);
    EBM_CHECK_DATA(dc.get_string("data.path").empty(), "generator: ", model, " was trained on ",
                   dc.get_string("data.path"), ", which has no closed-form density to score draws under (give "
                   "--dataset 8gaussians or 25gaussians for a model of one of those; compare the model with "
                   "--task ", info.event_shape == std::vector<int64_t>{2} ? "nll2d" : "ais", " instead)");
    dataset = dc.get_string("data.name");
  }
  auto mixture = toy2d_mixture(dataset);
  EBM_CHECK_DATA(mixture.has_value(), "generator: sample scores need a toy set with a closed-form density "
                 "(8gaussians, 25gaussians; --dataset), got '", dataset, "'");
  EBM_CHECK_DATA(info.event_shape == std::vector<int64_t>{2}, "generator: needs a 2D model, got event shape ",
                 c10::IntArrayRef(info.event_shape));
  auto gen = make_generator(c.get_int("task.seed"), kStreamEval);
  auto x = draw_generator_samples(model, energy, info, n, steps, c.get_string("task.sampler"), gen)
               .to(torch::kCPU, torch::kDouble);
  auto logp = mixture->log_density(x);
  const double mean_logp = logp.mean().item<double>(), se = logp.std().item<double>() / std::sqrt(double(n));
  auto d = torch::cdist(x, mixture->centers);  // [N, K]
  auto [dmin, nearest] = d.min(1);
  auto member = dmin <= radius * mixture->std;
  const int64_t k = mixture->centers.size(0);
  auto counts = torch::zeros({k}, torch::kLong).index_add_(0, nearest.masked_select(member),
                                                          torch::ones({member.sum().item<int64_t>()}, torch::kLong));
  const int64_t covered = (counts.to(torch::kDouble) >= min_share * double(n)).sum().item<int64_t>();
  const double in_mode = member.to(torch::kDouble).mean().item<double>();
  std::vector<int64_t> per_mode(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + k);
  EvalReport out;
  out.json = {{"task", "generator"},
              {"dataset", dataset},
              {"n", n},
              {"steps", steps},
              {"sample_log_density", mean_logp},
              {"sample_log_density_se", se},
              {"data_neg_entropy", -toy2d_entropy(dataset)},
              {"modes", k},
              {"modes_covered", covered},
              {"in_mode_fraction", in_mode},
              {"mode_counts", per_mode}};
  std::ostringstream os;
  os.precision(4);
  os << "generator draws (" << n << ", " << steps << " refining steps) under the true " << dataset << " density:\n"
     << "  mean log p(x)   " << mean_logp << " +- " << se << "  (the data's own: " << -toy2d_entropy(dataset)
     << ")\n"
     << "  modes covered   " << covered << " of " << k << "  (>= " << min_share * 100 << "% of draws within "
     << radius << " std)\n"
     << "  draws in a mode " << in_mode << "\n";
  out.text = os.str();
  return out;
}

}  // namespace ebm
