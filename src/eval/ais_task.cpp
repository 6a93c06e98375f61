// `ebm eval --task ais`: log Z of a model or an analytic target by annealed
// importance sampling, optionally reversed or both, and the test
// log-likelihood of given points.
#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/far_energy.h"
#include "ebm/eval/images.h"
#include "ebm/eval/partition.h"
#include "ebm/eval/tasks.h"
#include "ebm/io/io.h"
#include "ebm/model/inputs.h"
#include "ebm/model/columns.h"
#include "ebm/train/distributed.h"
#include "ebm/train/train.h"

namespace ebm {

std::vector<ConfigKey> ais_task_keys() {
  return {{"temps", int64_t(1000), "intermediate distributions K"},
          {"chains", int64_t(100), "independent annealing runs"},
          {"schedule", std::string("sigmoid"), "linear, geometric or sigmoid"},
          {"transition", std::string("hmc"), "hmc or mala (step adapted per temperature)"},
          {"moves", int64_t(1), "transitions per temperature"},
          {"leapfrog", int64_t(10), "HMC leapfrog steps per transition"},
          {"step", 0.05, "the first step size"},
          {"spread", 1.0, "hmc: each chain's step times exp(U(-spread, spread)), state-independent (funnels)"},
          {"base", std::string("auto"),
           "gaussian, mixture (of Gaussians on the k-means cells of the rows), uniform or auto (images: the pixel "
           "box; else a mixture, one Gaussian under 100 rows)"},
          {"reverse", false, "also run reverse AIS from samples of the model (an estimate from above)"},
          {"model", std::string(""), "the model file (set by --model)"},
          {"data", std::string(""), "test points: their log-likelihood (default: the run's own test split, when model.pt can rebuild it)"},
          {"dataset", std::string(""), "test points: a built-in set (toy sets: --n fresh points)"},
          {"n", int64_t(10000), "points drawn for a toy --dataset"},
          {"steps", int64_t(200), "reverse: sampler transitions per model sample (not exact: the gap is a check)"},
          {"sampler", std::string(""), "reverse: sampler spec (default: the model's training sampler)"},
          {"seed", int64_t(0), "seed"},
          {"block", int64_t(0), "chains per block, each on a stream of its own (0 = one batch); set by --nproc, "
                                "whose ranks share the blocks: the result does not depend on their number"}};
}

namespace {
struct Points {
  torch::Tensor x;
  std::string name;
};

Points test_points(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  const std::string data = c.get_string("task.data"), dataset = c.get_string("task.dataset");
  Points p;
  if (!data.empty()) {
    p.name = data;
    const bool model_read = info.pixels || info.event_shape.size() == 3;  // (read_model_input checks a CSV's columns)
    if (!model_read) check_csv_columns(data, info);
    p.x = model_read ? read_model_input(data, info) : read_matrix(data);
  } else if (!dataset.empty()) {
    p.name = dataset;
    if (is_toy2d(dataset)) {
      auto gen = make_generator(c.get_int("task.seed"), kStreamTestData);
      p.x = toy2d(dataset, c.get_int("task.n"), gen);
    } else {
      p.x = read_model_data(dataset, info);
    }
  }
  if (p.x.defined())
    EBM_CHECK_DATA(p.x[0].numel() == c10::multiply_integers(energy.event_shape()), p.name, ": rows of ",
                   p.x[0].numel(), " values, the model's samples have ", c10::IntArrayRef(energy.event_shape()));
  return p;
}

// AIS over blocks of chains (forward, or reverse from samples(count, gen)):
// block b on stream (seed, kStreamEval + ((b + 1) << 32)), plus 1 << 16 for
// the reverse pass (its draws independent of the forward's), this rank's
// contiguous share of the blocks, the estimates gathered in block order.
PartitionEstimate blocked(const AisBase& base, AisOptions o, EnergyImpl& energy, int64_t block, uint64_t seed,
                          const std::function<torch::Tensor(int64_t, at::Generator&)>& samples, const char* label) {
  Collective* coll = process_group();
  const int64_t n = o.chains(), blocks = (n + block - 1) / block;
  const int64_t rank = coll ? coll->rank() : 0, world = coll ? coll->world() : 1;
  const int64_t first = blocks * rank / world, last = blocks * (rank + 1) / world;
  std::vector<PartitionEstimate> mine;
  for (int64_t b = first; b < last; ++b) {
    const int64_t count = std::min(block, n - b * block);
    auto gen = make_generator(seed, uint64_t(kStreamEval) + (uint64_t(b + 1) << 32) + (samples ? (1u << 16) : 0u));
    Progress progress(label, rank == 0 && b == first ? o.temps() : 0);
    AnnealedImportanceSampling ais(base, AisOptions(o).chains(count), [&](int64_t k, int64_t, double beta) {
      if (rank == 0 && b == first) progress.update(k, "beta " + std::to_string(beta) + " (block 1 of " +
                                                         std::to_string(last - first) + " here)");
    });
    mine.push_back(samples ? ais.reverse(energy, samples(count, gen), gen) : ais.estimate(energy, gen));
    progress.finish();
  }
  std::vector<PartitionEstimate> all = mine;
  if (coll != nullptr && world > 1) {
    torch::serialize::OutputArchive ar;
    ar.write("count", torch::tensor(int64_t(mine.size())));
    for (size_t i = 0; i < mine.size(); ++i) {
      ar.write("log_w." + std::to_string(i), mine[i].log_w);
      ar.write("stats." + std::to_string(i), torch::tensor({mine[i].accept, mine[i].final_step}, torch::kDouble));
    }
    std::ostringstream os;
    ar.save_to(os);
    all.clear();
    for (const auto& bytes : coll->all_gather(os.str())) {
      torch::serialize::InputArchive in;
      std::istringstream is(bytes);
      in.load_from(is);
      torch::Tensor count;
      in.read("count", count);
      for (int64_t i = 0; i < count.item<int64_t>(); ++i) {
        PartitionEstimate e;
        torch::Tensor st;
        in.read("log_w." + std::to_string(i), e.log_w);
        in.read("stats." + std::to_string(i), st);
        e.accept = st[0].item<double>();
        e.final_step = st[1].item<double>();
        all.push_back(e);
      }
    }
  }
  auto gen = make_generator(seed, kStreamEval);
  auto r = merge_estimates(all, samples != nullptr, o.bootstrap(), gen);
  if (!r.x.defined() || r.x.numel() == 0) {  // (gathered ranks: only its dtype is used, for the test energies)
    auto ps = energy.parameters();
    r.x = torch::empty({0}, ps.empty() ? torch::kDouble : ps[0].scalar_type());
  }
  return r;
}

// Besides the estimate, the per-chain stochastic bound (Grosse et al. 2015):
// E[log w] <= log Z for forward chains and E[-log w_rev] >= log Z for reverse
// chains from exact samples, each short of log Z by a KL divergence between
// the forward and reverse paths, so the two bracket log Z by more than their
// noise even where the log-mean-exp estimates agree within it.
nlohmann::json estimate_json(const PartitionEstimate& r, bool reverse = false) {
  auto lw = r.log_w.to(torch::kDouble);
  const int64_t n = lw.size(0);
  const double bound = (reverse ? -1.0 : 1.0) * lw.mean().item<double>();
  const double bound_se = n > 1 ? lw.std().item<double>() / std::sqrt(double(n)) : 0.0;
  return {{"log_z", r.log_z}, {"se", r.se}, {"se_bootstrap", r.se_bootstrap}, {"ess", r.ess},
          {"accept", r.accept}, {"final_step", r.final_step}, {"bound", bound}, {"bound_se", bound_se}};
}
}  // namespace

EvalReport ais_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto shape = energy.event_shape();
  const int64_t dim = c10::multiply_integers(shape);
  auto gen = make_generator(c.get_int("task.seed"), kStreamEval);
  auto* target = dynamic_cast<AnalyticEnergyImpl*>(&energy);
  Points test = test_points(c, energy, info);
  // The chains run in the model's own units (data.standardize), where its
  // sampler's steps were tuned and every column has the same spread: in the
  // user's units one step must suit columns 1e6 apart. Both have one Z (the
  // user's energy carries the map's Jacobian); test energies are the user's.
  AffineMap units;
  EnergyImpl& model = sampling_view(energy, &units);
  // The base: the pixel box of an image model; else a Gaussian fitted to a
  // target's exact draws, the model's own training rows or the test points.
  // (the +- is the chains' spread: one chain has none, and printed inf;
  // refused before the base's rows are rebuilt)
  EBM_CHECK_USAGE(c.get_int("task.chains") >= 2, "ais: --chains must be >= 2 (the error bar is their spread), got ",
                  c.get_int("task.chains"));
  std::string kind = c.get_string("task.base");
  EBM_CHECK_USAGE(kind == "auto" || kind == "gaussian" || kind == "mixture" || kind == "uniform",
                  "ais: --base must be auto, gaussian, mixture or uniform, got '", kind, "'");
  const auto box = display_map(info);  // (pixels, or float images' value map: data.scale)
  if (kind == "auto") kind = box ? "uniform" : "mixture";
  // (no --data or --dataset: the test NLL of the run's own held-out split,
  // as nll2d scores by default; it printed log Z alone)
  std::optional<DataSplit> split;
  std::string split_why;
  if (target == nullptr && !info.data_toml.empty()) {
    split = model_data_split(info, c.get_string("task.model"), &split_why);
    if (!test.x.defined() && split && split->test.size() > 0) {
      test.name = "the model's test split";
      test.x = split->test.x;
    }
  }
  AisBase base;
  torch::Tensor base_fit;  // (the base's rows in the model's units)
  std::string base_rows = "over the model's pixel range";
  if (box && kind == "uniform") {
    base = AisBase::uniform(torch::full({dim}, box->lo, torch::kDouble), torch::full({dim}, box->hi, torch::kDouble));
  } else {
    // (the rows a base is fitted to, log Z being the model's alone: a
    // target's exact draws, else the model's own training rows, rebuilt from
    // its file (not the data.name default that a run on data.path leaves in
    // its [data] table, nor test rows that may lie far from the model),
    // else the test points)
    torch::Tensor fit;
    std::string why;
    if (target != nullptr) {
      fit = target->sample(2000, gen);
      base_rows = "fitted to 2000 exact draws of the target";
    } else if (!info.data_toml.empty()) {
      why = split_why;
      if (split && split->train.size() >= 2) {
        fit = split->train.x;
        base_rows = "fitted to the model's " + std::to_string(fit.size(0)) + " training rows";
      }
    }
    if (!fit.defined() && test.x.defined()) {
      fit = test.x;
      base_rows = "fitted to the test points";
    }
    EBM_CHECK_USAGE(fit.defined(), "ais: give --data FILE or --dataset NAME to fit the base to (or --base uniform "
                    "for an image model)", why.empty() ? "" : "; " + why);
    base_fit = units.to_model(fit.to(torch::kDouble));
    base = AisBase::fit(kind, base_fit);
  }
  // (an energy that falls without bound has log Z = +inf: no number of
  // temperatures finds it, and a finite "estimate" is noise)
  if (!box && base_fit.defined() && target == nullptr && base_fit.dim() == 2) {
    const FarEnergy far = far_energy(model, base_fit);
    EBM_CHECK_DATA(!far.unbounded, "ais: ", far.describe(), ": exp(-E) has no normaliser, log Z is infinite (a "
                   "classifier trained by cross entropy alone, objective ce, models no p(x); in other models "
                   "energy.prior_std bounds E)");
  }
  EBM_CHECK_DATA(base.dim() == dim, "ais: a base of ", base.dim(), " dimensions for samples of ",
                 c10::IntArrayRef(shape));
  AisOptions o;
  o.temps(c.get_int("task.temps"))
      .chains(c.get_int("task.chains"))
      .schedule(c.get_string("task.schedule"))
      .transition(c.get_string("task.transition"))
      .moves(c.get_int("task.moves"))
      .leapfrog(c.get_int("task.leapfrog"))
      .step(c.get_float("task.step"))
      .spread(c.get_float("task.spread"));
  const int64_t block = c.get_int("task.block");
  EBM_CHECK_USAGE(block >= 0, "ais: block must be >= 0, got ", block);
  const uint64_t seed = uint64_t(c.get_int("task.seed"));
  PartitionEstimate fwd;
  if (block > 0) {
    fwd = blocked(base, o, model, block, seed, nullptr, "ais");
  } else {
    Progress progress("ais", o.temps());
    AnnealedImportanceSampling ais(base, o, [&](int64_t k, int64_t, double b) {
      progress.update(k, "beta " + std::to_string(b));
    });
    fwd = ais.estimate(model, gen);
    progress.finish();
  }
  EvalReport out;
  out.json = {{"task", "ais"},          {"base", base.kind()},           {"temps", o.temps()},
              {"base_from", base_rows},
              {"chains", o.chains()},   {"schedule", o.schedule()},     {"transition", o.transition()},
              {"forward", estimate_json(fwd)}, {"log_z", fwd.log_z},   {"se", fwd.se}};
  if (block > 0) out.json["block"] = block;
  std::ostringstream os;
  os << "AIS (" << o.temps() << " temperatures, " << o.chains() << " chains, " << o.schedule() << " schedule, "
     << o.transition() << ", " << base.kind()
     << (base.components() > 1 ? " base of " + std::to_string(base.components()) + " Gaussians " : " base ")
     << base_rows << "):\n"
     << "  log Z " << fwd.log_z << " +- " << fwd.se << " (bootstrap " << fwd.se_bootstrap << "), ESS " << fwd.ess
     << " of " << o.chains() << ", acceptance " << fwd.accept << "\n"
     << "  mean log w " << out.json["forward"]["bound"].get<double>()
     << " (a lower bound on log Z in expectation)\n";
  if (block > 0)
    os << "  (chains in blocks of " << block << ", each on its own stream"
       << (process_group() ? ", over " + std::to_string(process_group()->world()) + " ranks" : std::string()) << ")\n";
  // (a log-mean-exp that a few chains carry: its delta-method +- sees only
  // those chains' spread, not the log Z they all missed)
  std::vector<std::string> warnings;
  if (fwd.ess < std::max(2.0, 0.05 * double(o.chains())))
    warnings.push_back("ESS " + std::to_string(fwd.ess) + " of " + std::to_string(o.chains()) +
                       " chains: a few chains carry the estimate, which is then most likely too low (AIS "
                       "underestimates log Z where its chains miss the model's mass; the test NLL with it), and its "
                       "+- understates the error (bootstrap " + std::to_string(fwd.se_bootstrap) +
                       "); use more --temps");
  if (target != nullptr) {
    out.json["truth"] = target->log_z();
    os << "  exact log Z " << target->log_z() << " (error " << fwd.log_z - target->log_z() << ")\n";
  }
  if (c.get_bool("task.reverse")) {
    // Exact draws of a target; a model's from its sampler (approximate).
    auto samples = [&](int64_t count, at::Generator& g) {
      return target != nullptr ? target->sample(count, g)
                               : draw_model_samples(model, info, count, c.get_int("task.steps"),
                                                    c.get_string("task.sampler"), g);
    };
    PartitionEstimate r;
    std::string off_model;  // (set when the reverse run's samples are plainly not the model's)
    if (block > 0) {
      r = blocked(base, o, model, block, seed, samples, "reverse ais");
    } else {
      torch::Tensor x = samples(o.chains(), gen);
      if (target == nullptr && fwd.x.defined()) {
        // (the forward chains end near exp(-E): samples whose energies lie
        // far above theirs, or are not finite, came from a sampler that
        // blew up or never arrived, which no number of temperatures mends)
        torch::NoGradGuard ng;
        auto ef = model.energy(fwd.x).to(torch::kDouble), er = model.energy(x.to(fwd.x.scalar_type())).to(torch::kDouble);
        const double mf = ef.mean().item<double>(), sf = ef.numel() > 1 ? ef.std().item<double>() : 0.0;
        const double mr = er.mean().item<double>();
        if (!std::isfinite(mr) || mr > mf + 3.0 * sf + 1.0) {
          std::ostringstream w;
          w << "the reverse run's samples are not the model's (their mean energy " << mr << " against the forward "
            << "chains' " << mf << " +- " << sf << "): draw them with a sampler whose step suits the model's scale "
            << "(--sampler mala:step=S with a smaller S, and more --steps)";
          off_model = w.str();
        }
      }
      Progress rp("reverse ais", o.temps());
      AnnealedImportanceSampling rev(base, o, [&](int64_t k, int64_t, double b) {
        rp.update(k, "beta " + std::to_string(b));
      });
      r = rev.reverse(model, x, gen);
      rp.finish();
    }
    out.json["reverse"] = estimate_json(r, true);
    out.json["reverse"]["exact_samples"] = target != nullptr;
    os << "  reverse log Z " << r.log_z << " +- " << r.se << " (from " << (target ? "exact" : "the model's sampler's")
       << " samples; forward - reverse " << fwd.log_z - r.log_z << ")\n"
       << "  -mean log w_rev " << out.json["reverse"]["bound"].get<double>() << " (an upper bound on log Z in "
       << "expectation" << (target ? "" : " were the samples exact") << ")\n";
    if (!off_model.empty())
      warnings.push_back(off_model);
    else if (std::abs(fwd.log_z - r.log_z) > 1.0 + 3.0 * std::hypot(fwd.se, r.se))
      warnings.push_back("forward and reverse differ by " + std::to_string(fwd.log_z - r.log_z) +
                         " nats: the annealing has not converged (more --temps)");
  }
  if (!warnings.empty()) {
    out.json["warnings"] = warnings;
    for (const auto& w : warnings) os << "  warning: " << w << "\n";
  }
  if (test.x.defined()) {
    torch::NoGradGuard ng;
    auto e = energy.energy(test.x.to(torch::kFloat).to(fwd.x.scalar_type())).to(torch::kDouble);
    const int64_t n = e.size(0);
    // (float images under a value map: the density of the user's values,
    // the map's Jacobian, gain per pixel, included)
    const double nll = e.mean().item<double>() + fwd.log_z -
                       (info.values ? double(dim) * std::log(info.values->gain()) : 0.0);
    const double se = std::sqrt((n > 1 ? e.var().item<double>() / double(n) : 0.0) + fwd.se * fwd.se);
    out.json["test"] = {{"points", test.name}, {"n", n}, {"nll", nll}, {"nll_se", se}};
    os << "  test NLL " << nll << " +- " << se << " nats over " << n << " points of " << test.name;
    if (info.pixels) {
      // (8-bit pixels: the model's density over its range, per 1/256 bin)
      const double range = info.pixels->hi - info.pixels->lo;
      const double bpd = (nll + double(dim) * std::log(256.0 / range)) / (double(dim) * std::log(2.0));
      out.json["test"]["bits_per_dim"] = bpd;
      out.json["test"]["bits_per_dim_se"] = se / (double(dim) * std::log(2.0));
      os << " (" << bpd << " bits per dimension)";
    }
    os << "\n";
  }
  out.json["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.text = os.str();
  return out;
}

}  // namespace ebm
