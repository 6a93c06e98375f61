// ebm sample (--model model.pt | --energy-script f.pt | --target SPEC) --sampler SPEC
//            --n N --steps K [--warmup W] [--thin T] [--init FILE] [--nproc N --block B] --out FILE.{csv,npy,png}
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <c10/util/accumulate.h>

#include "chain_blocks.h"
#include "untried_step.h"
#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/energy/script_energy.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/cell_shares.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"
#include "ebm/sampling/diagnostics.h"
#include "ebm/sampling/jumps.h"
#include "ebm/sampling/tempering.h"
#include "ebm/model/compose.h"
#include "ebm/model/inputs.h"
#include "ebm/model/columns.h"
#include "ebm/model/model.h"
#include "ebm/objectives/learned.h"
#include "ebm/eval/images.h"
#include "ebm/train/distributed.h"
#include "ebm/train/train.h"

namespace ebm::cli {
namespace {
constexpr int64_t kSummaryDims = 10;   // rows of the summary table
constexpr int64_t kEssDims = 100;      // dimensions whose minimum ESS is reported

std::string fmt(double v, int precision = 4) {
  std::ostringstream os;
  os << std::setprecision(precision) << v;
  return os.str();
}

// The draws file: final states [n, D] (rows of the model's shape, which every
// command reads back), or with --thin every kept draw, chain-major
// [n * draws, D] with the chain (and draw) index beside them: as columns in
// CSV, as a sidecar FILE.chain.npy in NPY.
// (f64: draws of a float64 energy script, written in float64: in float32 a
// chain around 1e7 with sd 1 came out as 9 distinct values)
void write_draws(const std::string& out, const torch::Tensor& draws /* [n, k, ...event] */, bool indexed,
                 const ModelInfo& info, bool f64 = false) {
  const int64_t n = draws.size(0), k = draws.size(1), d = draws[0][0].numel();
  auto flat = draws.reshape({n * k, d}).to(f64 ? torch::kDouble : torch::kFloat);
  auto chain = torch::arange(n, flat.scalar_type()).repeat_interleave(k);
  if (file_extension(out) == ".csv") {
    // (a model trained on a CSV with a header: its column names)
    std::vector<std::string> header = model_column_names(info, d);
    if (indexed) {
      header.push_back("chain");
      header.push_back("draw");
      flat = torch::cat({flat, chain.unsqueeze(1), torch::arange(k, flat.scalar_type()).repeat(n).unsqueeze(1)}, 1);
    }
    write_csv(out, flat, header);
    return;
  }
  // (NPY keeps each draw's shape: [n * k, C, H, W] for images)
  auto shape = draws.sizes().slice(2).vec();
  shape.insert(shape.begin(), n * k);
  write_npy(out, flat.reshape(shape));
  if (indexed) write_npy(out.substr(0, out.size() - 4) + ".chain.npy", chain);
}
// The rows the jumps between modes propose from, in the sampled energy's
// units, shuffled (their first 256 are the proposal's centres): one model's
// training rows, rebuilt from model.pt's [data] and seed; for a composition
// each term's, 256 in all, in the mixture's weights for `or` (equal shares
// otherwise), mapped from the term's units into the composition's. Undefined
// (and `why` says so) when a term's rows cannot be rebuilt.
torch::Tensor jump_rows(const ComposedModel& terms, const std::vector<std::string>& models, const std::string& op,
                        const std::vector<double>& weights, const AffineMap& units, uint64_t seed,
                        std::string* why) {
  auto pick = make_generator(seed, kStreamData);
  auto shuffled = [&pick](const torch::Tensor& rows) {
    return rows.index_select(0, torch::randperm(rows.size(0), pick, torch::kLong));
  };
  if (models.size() == 1) {
    auto split = model_data_split(terms.term_info.at(0), models[0], why);
    if (!split || split->train.size() < 2) return {};
    return shuffled(split->model_train().x.to(torch::kFloat));
  }
  std::vector<double> share(models.size(), 1.0 / double(models.size()));
  if (op == "or" && weights.size() == models.size()) {
    double total = 0;
    for (double w : weights) total += w;
    for (size_t i = 0; i < models.size(); ++i) share[i] = total > 0 ? weights[i] / total : share[i];
  }
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < models.size(); ++i) {
    std::string term_why;
    auto split = model_data_split(terms.term_info.at(i), models[i], &term_why);
    if (!split || split->train.size() < 2) {
      *why = models[i] + (term_why.empty() ? "" : ": " + term_why);
      return {};
    }
    auto rows = split->model_train().x.to(torch::kDouble);
    if (terms.term_units.at(i).defined()) rows = terms.term_units[i].to_user(rows);
    rows = units.to_model(rows).to(torch::kFloat);
    const int64_t k = std::min<int64_t>(rows.size(0), std::max<int64_t>(1, std::llround(256 * share[i])));
    parts.push_back(shuffled(rows).narrow(0, 0, k));
  }
  return shuffled(torch::cat(parts));
}
}  // namespace

constexpr int64_t kImageSampleSteps = 200;  // default --steps of image models

// E_a - w E_b need not be normalisable: where E_b grows faster than E_a / w
// the difference falls without bound and the chains drift off (a probe's two
// Gaussians composed so: draws 40 to 360 times too wide, no other sign than
// R-hat). Rays from the first term's centre, at 10, 20 and 40 of its model
// units (its data have sd 2 there): E falling along all three steps of any
// of 64 directions draws a warning.
static void warn_if_improper(const ComposedModel& c, int64_t seed) {
  const auto shape = c.info.event_shape;
  if (shape.size() != 1) return;
  const int64_t d = shape[0], k = 64;
  auto gen = make_generator(seed, kStreamEval);
  auto dir = at::normal(0.0, 1.0, {k, d}, gen, torch::TensorOptions(torch::kDouble));
  dir = dir / dir.norm(2, 1, true) * std::sqrt(double(d));  // (about 1 per coordinate)
  std::vector<torch::Tensor> e;
  torch::NoGradGuard ng;
  for (double r : {10.0, 20.0, 40.0}) {
    auto u = (r * dir).to(torch::kFloat);
    // (the composition's space: the shared model space, else the user's)
    if (!c.units.defined() && !c.term_units.empty() && c.term_units[0].defined()) u = c.term_units[0].to_user(u);
    e.push_back(c.energy->energy(u).to(torch::kDouble));
  }
  const auto falling = (e[1] < e[0]) & (e[2] < e[1]);
  if (falling.any().item<bool>())
    notes() << "ebm sample: warning: the composition E_a - w E_b falls outward along " << falling.sum().item<int64_t>()
            << " of " << k << " directions from the first model's centre: exp(-E) may not be normalisable there "
               "and the chains drift off; a smaller --weights w keeps E_a ahead\n";
}

Runner add_sample(CLI::App& app) {
  struct Args {
    Common common;
    std::vector<std::string> models, labels;
    std::vector<double> weights;
    std::string script, target, sampler, init, out, compose, from = "noise";
    int64_t n = 1000, steps = 1000, warmup = 0, thin = 0, dim = 0, nproc = 1, block = 64, jumps = -1;
    double target_accept = 0;
    bool no_adapt_mass = false, no_adapt = false, latent = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("sample", "draw samples from a model, a TorchScript energy or a built-in target");
  auto* m = cmd->add_option("--model", a->models,
                            "model.pt from ebm train; give several with --compose to sample their composition");
  auto* s = cmd->add_option("--energy-script", a->script,
                            "TorchScript module whose forward maps [B, D] to [B] energies");
  auto* t = cmd->add_option("--target", a->target,
                            "built-in energy spec: gaussian[:dim=,cond=|rho=], neal100, "
                            "funnel[:dim=], banana, mixture, double_well[:dim=,barrier=]");
  m->excludes(t)->excludes(s);
  s->excludes(t);
  cmd->add_option("--dim", a->dim, "dimension of --target / --energy-script (0 = its default)")
      ->capture_default_str();
  cmd->add_option("--sampler", a->sampler,
                  "spec, e.g. \"nuts\", \"hmc:step=0.05,leapfrog=10\", \"langevin:step=0.01,noise=0.005\"; "
                  "default: a model's training sampler, else MALA from step 0.01 with --warmup min(max(--steps, 100), 500) "
                  "adapting it (--no-adapt: ula:step=0.01)");
  cmd->add_option("--label", a->labels,
                  "class of a conditional model, an index or a name the model keeps (a class sub-folder's, "
                  "\"Trouser\"; a model trained on labels by value, -1 / 1 or 1 .. K, takes those values): draw from "
                  "p(x | y = LABEL); with several --model, one per model in order (none or -1: that model's "
                  "marginal); without --label one model draws class by class in its training classes' shares");
  cmd->add_option("--compose", a->compose,
                  "combine several --model energies: and (sum: product of experts), or (-logsumexp(log pi - E): "
                  "mixture), not (E_a - w E_b)");
  cmd->add_option("--weights", a->weights,
                  "composition weights (comma-separated): and w_i (default 1), or pi_i (default equal), not w "
                  "(default 1)")
      ->delimiter(',');
  auto* n_opt = cmd->add_option("--n", a->n, "number of chains (with --init and without --n: its rows)")
                   ->capture_default_str();
  cmd->add_option("--jumps", a->jumps,
                  "a vector model's moves between modes: independence Metropolis jumps proposed from its training "
                  "rows (rebuilt from model.pt; every model's, for --compose), this many every sampler.steps transitions, so that the draws hold "
                  "each mode's mass (-1, the default: 2 when the rows can be rebuilt; 0: none)")
      ->capture_default_str();
  auto* warmup_opt = cmd->add_option("--warmup", a->warmup,
                                     "warm-up transitions, discarded; they adapt the step size (and a diagonal "
                                     "mass matrix) of mh, mala, hmc and nuts (default 0; a vector model trained "
                                     "without chains, by score matching: MALA with 100 to 500, as many as --steps)")
                         ->capture_default_str();
  auto* steps_opt =
      cmd->add_option("--steps", a->steps,
                      "transitions per chain after warm-up (image models: default 200, as eval --task fid draws; "
                      "--from generator: default 0; annealed: default 1, one sweep through its levels)")
          ->capture_default_str();
  cmd->add_option("--thin", a->thin,
                  "write every T-th draw of each chain (with its chain index); 0 = final states only")
      ->capture_default_str();
  cmd->add_option("--target-accept", a->target_accept,
                  "acceptance the warm-up aims at (default: mh 0.234, mala 0.57, hmc 0.65, nuts 0.8)");
  cmd->add_flag("--no-adapt-mass", a->no_adapt_mass, "adapt the step size only");
  cmd->add_flag("--no-adapt", a->no_adapt, "warm-up is plain burn-in: nothing is adapted");
  cmd->add_option("--init", a->init,
                  "initial states, n rows (CSV/NPY; images also PNG, a folder of PNGs, IDX); default N(0, I), "
                  "for image models uniform noise over the pixel range");
  cmd->add_option("--from", a->from,
                  "where chains start: noise (default) or generator (a model trained with a generator, e.g. "
                  "objective.name = vera: its draws in one pass, refined by --steps, default 0)");
  cmd->add_flag("--latent", a->latent,
                "--from generator: refine in the generator's latent space instead (MALA on E(g(z)) + |z|^2 / 2, "
                "--warmup steps adapting its step, then --steps)");
  cmd->add_option("--out", a->out, "draws: .csv, .npy or .png (final states: 2D scatter or image grid); .idx for images")
      ->required();
  auto* nproc_opt = cmd->add_option("--nproc", a->nproc,
                                    "run the chains in blocks of --block over N local ranks (or torchrun's RANK, "
                                    "WORLD_SIZE, ...); the output does not depend on N");
  cmd->add_option("--block", a->block, "--nproc: chains per block (each with its own stream and adaptation)")
      ->capture_default_str();
  add_common(cmd, a->common);
  auto* block_opt = cmd->get_option("--block");
  return [a, steps_opt, nproc_opt, block_opt, warmup_opt, n_opt]() -> int {
    EBM_CHECK_USAGE(a->nproc >= 1 && a->nproc <= 256, "--nproc must be in 1 .. 256, got ", a->nproc);
    EBM_CHECK_USAGE(a->block >= 1, "--block must be >= 1, got ", a->block);
    const DistConfig dist = dist_config_from_env();
    set_notes(dist.rank == 0);  // (rank 0 says the notes)
    EBM_CHECK_USAGE(a->nproc == 1 || std::getenv("WORLD_SIZE") == nullptr || a->nproc == dist.world, "--nproc ",
                    a->nproc, " disagrees with WORLD_SIZE=", dist.world);
    const bool blocked = nproc_opt->count() > 0 || block_opt->count() > 0 || dist.world > 1;
    const c10::Device device = apply_common(a->common);
    EBM_CHECK_USAGE(!a->models.empty() || !a->target.empty() || !a->script.empty(),
                    "sample: give --model FILE, --energy-script FILE or --target NAME");
    EBM_CHECK_USAGE(a->n >= 1, "--n must be >= 1, got ", a->n);
    EBM_CHECK_USAGE(a->from == "noise" || a->from == "generator", "--from must be noise or generator, got '",
                    a->from, "'");
    EBM_CHECK_USAGE(a->from == "noise" || (a->models.size() == 1 && a->init.empty()),
                    "--from generator needs one --model (and no --init)");
    if (a->from == "generator" && steps_opt->count() == 0) a->steps = 0;
    EBM_CHECK_USAGE(!a->latent || a->from == "generator", "--latent refines a generator's draws: add --from generator");
    EBM_CHECK_USAGE(a->steps >= 0, "--steps must be >= 0, got ", a->steps);
    EBM_CHECK_USAGE(a->warmup >= 0, "--warmup must be >= 0, got ", a->warmup);
    EBM_CHECK_USAGE(a->jumps >= -1, "--jumps must be >= 0 (or -1: auto), got ", a->jumps);
    EBM_CHECK_USAGE(a->jumps <= 0 || !blocked, "--jumps ", a->jumps,
                    ": not with --nproc or --block (the jumps move one batch of chains)");
    EBM_CHECK_USAGE(a->thin >= 0, "--thin must be >= 0, got ", a->thin);
    EBM_CHECK_USAGE(a->dim >= 0, "--dim must be >= 0, got ", a->dim);
    EBM_CHECK_USAGE(a->target_accept == 0 || (a->target_accept > 0 && a->target_accept < 1),
                    "--target-accept must be in (0, 1), got ", a->target_accept);
    const std::string ext = file_extension(a->out);
    EBM_CHECK_USAGE(ext == ".csv" || ext == ".npy" || ext == ".png" || ext == ".idx", "--out ", a->out,
                    ": extension must be .csv, .npy, .png or .idx");
    EBM_CHECK_USAGE(a->labels.empty() || !a->models.empty(), "--label needs --model (a class-conditional model)");
    EBM_CHECK_USAGE(a->labels.size() <= 1 || a->labels.size() == a->models.size(), a->labels.size(),
                    " --label values for ", a->models.size(), " --model files: give one per model (-1 for none)");
    EBM_CHECK_USAGE(a->compose.empty() || !a->models.empty(), "--compose needs --model files");
    EBM_CHECK_USAGE(a->weights.empty() || !a->compose.empty(), "--weights needs --compose");
    EBM_CHECK_USAGE(a->thin == 0 || ext != ".png", "--thin: a PNG shows final states only");
    // Both files of an NPY pair checked before either is written, so a
    // failure leaves what the user had.
    check_writable(a->out);
    if (ext == ".npy" && a->thin > 0) check_writable(a->out.substr(0, a->out.size() - 4) + ".chain.npy");
    Energy energy;
    AnalyticEnergy target;
    // (a model trained on standardised data is sampled in its own units, the
    // draws reported in the data's)
    AffineMap units;
    ModelInfo info;
    ComposedModel terms_of;
    if (!a->models.empty()) {
      std::vector<ModelTerm> terms;
      for (size_t i = 0; i < a->models.size(); ++i)
        terms.push_back({a->models[i], a->labels.empty() ? std::string() : a->labels[a->labels.size() == 1 ? 0 : i]});
      auto composed = load_composed(terms, a->compose, a->weights);
      terms_of = composed;
      energy = composed.energy;
      units = composed.units;
      info = composed.info;
      if (a->compose == "not") warn_if_improper(composed, a->common.seed);
    } else if (!a->script.empty()) {
      energy = std::make_shared<ScriptEnergyImpl>(a->script, a->dim);
    } else {
      target = make_target(a->target, a->dim);
      energy = target;
    }
    const auto shape = energy->event_shape();
    const int64_t dim = c10::multiply_integers(shape);
    const bool image = shape.size() == 3 && (shape[0] == 1 || shape[0] == 3);
    EBM_CHECK_USAGE(ext != ".idx" || image, "--out ", a->out, ": IDX holds images; this energy's samples are ",
                    c10::IntArrayRef(shape));
    EBM_CHECK_USAGE(ext != ".idx" || a->thin == 0, "--thin: write .npy or .csv (IDX holds final states only)");
    EBM_CHECK_USAGE(ext != ".png" || dim == 2 || image, "--out ", a->out,
                    ": PNG needs a 2D energy or an image energy [1 or 3, H, W], got event shape ",
                    c10::IntArrayRef(shape));
    energy->to(device);
    // (a model sampled as it was trained, unless told otherwise; a vector
    // model trained without chains keeps a [sampler] step nobody tried on
    // it, 0.01 by default: with it 300 MALA steps left R-hat at 2.2 on a
    // 48-d JEM model, so a warm-up adapts that step first, by MALA where the
    // sampler has no acceptance to adapt to)
    // (a composition too, when any of its models was trained without chains:
    // a probe's product of two DSM class models, sampled with the recipe's
    // step untried, drew a spread 0.04 times the product's)
    bool chains_tried = info.sampler_ran;
    for (const auto& term : terms_of.term_info) chains_tried = chains_tried && term.sampler_ran;
    std::string spec = a->sampler;
    // (whatever the chains start from, and with a --warmup of the user's: a
    // probe's VERA model, whose recipe's Langevin noise 0.005 is far below
    // sqrt(2 step), drew a test NLL of 8.30 (truth 9.09) from its generator's
    // draws refined by that sampler, 9.63 by MALA)
    // (a target or an energy script, no --sampler: MALA whose step a warm-up
    // adapts, unless --no-adapt; the old default, ULA of step 0.01 without a
    // warm-up, is biased and slow: `--target gaussian` warned R-hat 1.25)
    if (spec.empty() && info.sampler_toml.empty() && a->models.empty() && !a->no_adapt && a->steps > 0) {
      spec = "mala:step=0.01";
      if (warmup_opt->count() == 0) a->warmup = std::clamp<int64_t>(a->steps, 100, 500);
    }
    std::string untried_note;  // (said once the inputs are read: a bad --init is its one line)
    if (spec.empty() && !chains_tried && !image && !a->latent && !a->no_adapt && a->steps > 0) {
      if (const UntriedStep u = untried_step(info, a->steps); u.step > 0) {
        const bool to_mala = !u.spec.empty();
        spec = u.spec;
        const bool own_warmup = warmup_opt->count() > 0;
        if (!own_warmup) a->warmup = u.warmup;
        const std::string who = a->models.size() > 1 ? "a model of the composition" : "the model";
        if (!own_warmup || (to_mala && a->warmup > 0))
          untried_note = "ebm sample: " + who + " was trained without chains, so its sampler's step (" + fmt(u.step) +
                         ") was never tried on it: " + std::to_string(a->warmup) + " warm-up transitions of " +
                         u.sampler + " adapt it first (--sampler to choose another)\n";
        else if (to_mala)
          untried_note = "ebm sample: " + who + " was trained without chains: MALA at its sampler's step (" +
                         fmt(u.step) + ") samples it, in place of the trained sampler (--sampler to choose another)\n";
      }
    }
    auto sampler = model_sampler(info, spec);
    if (auto* annealed = dynamic_cast<AnnealedLangevinSampler*>(sampler.get())) {
      // (one transition is a whole sweep through the levels: one by default)
      if (steps_opt->count() == 0 && a->from == "noise") a->steps = 1;
      const double last = annealed->levels().back();
      if (!dynamic_cast<NoiseConditionalEnergyImpl*>(energy.get()) && last != 1.0)
        notes() << "ebm sample: warning: with an energy that has no noise levels the annealed "
                 << "sampler's levels are temperatures and it ends on exp(-E / " << last
                 << "), not exp(-E); use smin=1 (and smax > 1) to end on the model\n";
    }
    // (image models: 200 transitions from noise, as eval --task fid draws and
    // the image recipes were tuned for; 1,000 saturated a probe's shapes
    // model, FID 28 -> 133)
    if (image && steps_opt->count() == 0 && a->from == "noise" &&
        !dynamic_cast<AnnealedLangevinSampler*>(sampler.get()))
      a->steps = kImageSampleSteps;
    if (a->from == "noise" && a->steps == 0 && a->warmup == 0)
      notes() << "ebm sample: note: --steps 0: the chains' starts are written and summarised, not draws of the "
                 "energy\n";
    // (after the sampler, whose kind sets the default --steps)
    EBM_CHECK_USAGE(a->thin == 0 || a->steps >= a->thin, "--thin ", a->thin, " keeps no draw of ", a->steps,
                    " steps");
    // (the ranks start once everything above is known good: an error is said once)
    if (a->nproc > 1 && std::getenv("WORLD_SIZE") == nullptr) return launch_local(a->nproc, 20.0);
    auto gen = make_generator(a->common.seed, kStreamSample, device);
    torch::Tensor x0;
    std::vector<int64_t> batch_shape = shape;
    batch_shape.insert(batch_shape.begin(), a->n);
    if (!a->init.empty()) {
      ModelInfo as = info;
      as.event_shape = shape;
      if (!info.pixels && !image) check_csv_columns(a->init, info);  // (read_model_input checks its own)
      x0 = info.pixels || image ? read_model_input(a->init, as) : read_array(a->init);
      // (a --thin text file of an earlier run, chain and draw columns beside the
      // values: each chain resumes from its last kept draw)
      if (!info.pixels && !image && x0.dim() == 2 && x0.size(1) == dim + 2) {
        const auto header = csv_header(a->init);
        if (header.size() == size_t(dim + 2) && header[dim] == "chain" && header[dim + 1] == "draw") {
          const auto chain = x0.select(1, dim), draw = x0.select(1, dim + 1);
          // (the row of each chain's largest draw index, in chain order)
          const auto key = chain.to(torch::kDouble) * (draw.max().item<double>() + 1) + draw.to(torch::kDouble);
          const auto order = key.argsort();
          const auto sorted_chain = chain.index_select(0, order);
          const auto last = torch::cat({sorted_chain.narrow(0, 1, sorted_chain.size(0) - 1) !=
                                            sorted_chain.narrow(0, 0, sorted_chain.size(0) - 1),
                                        torch::ones({1}, torch::kBool)});
          x0 = x0.index_select(0, order.masked_select(last)).narrow(1, 0, dim).contiguous();
          notes() << "ebm sample: note: " << a->init << " holds draws of " << x0.size(0)
                  << " chains (chain and draw columns): each chain starts from its last draw\n";
        }
      }
      // (no --n: a chain from every row; --n below the rows: the first n)
      if (n_opt->count() == 0) a->n = batch_shape[0] = x0.size(0);
      if (x0.size(0) > a->n && x0[0].numel() == dim) {
        notes() << "ebm sample: note: " << a->init << " holds " << x0.size(0) << " rows: the chains start from the "
                << "first " << a->n << " (--n)\n";
        x0 = x0.narrow(0, 0, a->n);
      }
      EBM_CHECK_DATA(x0.size(0) == a->n && x0[0].numel() == dim, a->init, ": expected ", a->n,
                     " rows of ", c10::IntArrayRef(shape), " (", dim, " values), got ", x0.sizes());
      x0 = units.to_model(x0.reshape(batch_shape)).to(device);
    } else if (a->from == "generator") {
      Generator g = load_generator(a->models[0]);
      g->to(device);
      auto z = g->latent(a->n, gen).to(device);
      if (a->latent) {  // (then no steps in data space)
        auto r = refine_latents(*energy, *g, z, a->warmup, a->steps, 0.01, gen);
        std::cerr << "latent MALA: " << a->warmup << " warm-up and " << a->steps << " steps of " << fmt(r.step)
                  << ", acceptance " << fmt(r.accept, 3) << "\n";
        z = r.z;
        a->steps = a->warmup = 0;
      }
      x0 = g->draw(z, gen).reshape(batch_shape).to(device);
    } else {  // (the run's fitted start, or noise over an image model's range, or N(0, I))
      ModelInfo as = info;
      as.event_shape = shape;  // (a script's or target's info is empty)
      x0 = chain_start(as, a->n, gen, device);
    }
    // (targets, and energy scripts whose parameters are float64, run their
    // chains in float64: a script's Gaussian of sd 1e-3 around 1e5 drew sd 0
    // in float32)
    const auto* script = dynamic_cast<const ScriptEnergyImpl*>(energy.get());
    const bool script_f64 = script != nullptr && script->dtype() == torch::kDouble;
    if (target || script_f64) x0 = x0.to(torch::kDouble);
    x0 = x0.to(device);
    notes() << untried_note;

    // Warm-up (adapted where the sampler can be, plain burn-in otherwise),
    // then sampling: the first dimensions of every draw feed the summary;
    // --thin keeps all dimensions of every T-th draw for the output file.
    // (images: no per-pixel table; the pictures say more)
    const int64_t shown = std::min(dim, kSummaryDims), tracked = std::min(dim, kEssDims);
    ChainRunOptions ro;
    ro.warmup = a->warmup;
    ro.steps = a->steps;
    ro.thin = a->thin;
    ro.tracked = a->steps >= 4 && !image ? tracked : 0;
    // (and the split-half moments of the dimensions past them: a 500-d
    // Gaussian of condition number 1e4 left dims 400-499 at R-hat 23.6
    // while the first 100 passed)
    ro.split_all = a->steps >= 4 && !image && dim > tracked;
    ro.target_accept = a->target_accept;
    ro.adapt = !a->no_adapt;
    ro.adapt_mass = !a->no_adapt_mass;
    // (a float-image model's draws in its training images' units: ModelInfo::values)
    const std::optional<ValueMap> values = info.values;
    ro.to_user = [&units, &values](const torch::Tensor& t) {
      auto u = units.to_user(t);
      return values ? values->to_user(u) : u;
    };
    // A conditional model without --label: its chains at labels in its
    // training classes' shares, p(x) = sum_y p(y) p(x | y); the marginal
    // exp(-E(x)) holds each class's share only where training fixed the
    // classes' offsets (JEM), not for p(x | y) by contrastive divergence.
    Energy labelled;
    if (!blocked && a->labels.empty() && a->models.size() == 1 && a->compose.empty() && energy->num_classes() > 0) {
      std::string why;
      const auto shares = labels_in_class_shares(info, energy->num_classes(), a->n, &why);
      if (shares.defined()) {
        labelled = at_labels(*energy, shares.to(device));
        notes() << "ebm sample: no --label: chains drawn class by class in the training classes' shares "
                   "(--label -1: the marginal)\n";
      }
    }
    EnergyImpl& drawn = labelled ? *labelled : *energy;
    // Jumps between modes (docs/own-data.md): Langevin and HMC chains do not
    // cross between separated modes, so without them the draws hold each
    // mode's basin's share, not its mass.
    std::optional<DataProposal> proposal;
    torch::Tensor train_rows;  // (model units: the jumps' rows and the generator's check)
    std::string jumps_why;
    if (a->jumps != 0 && !blocked && shape.size() == 1 && !a->models.empty()) {
      if (auto rows = jump_rows(terms_of, a->models, a->compose, a->weights, units, a->common.seed, &jumps_why);
          rows.defined()) {
        const auto shuffled = rows.to(device);
        train_rows = rows;
        const auto [lo, hi] = data_box(shuffled);
        proposal.emplace(sampling_jump_options(), shuffled, lo, hi);
        Config sc = make_train_config();
        if (!info.sampler_toml.empty()) sc.load_string(info.sampler_toml, "model sampler_config");
        ro.jump_every = std::max<int64_t>(1, sc.get_int("sampler.steps"));
        const int64_t moves = a->jumps > 0 ? a->jumps : 2;
        ro.jump = [&proposal, &drawn, moves](torch::Tensor& x, at::Generator& g) {
          return proposal->jump(drawn, x, moves, g);
        };
      }
    }
    EBM_CHECK_USAGE(a->jumps <= 0 || proposal.has_value(), "--jumps ", a->jumps,
                    ": needs vector models whose training rows model.pt can rebuild",
                    jumps_why.empty() ? std::string() : " (" + jumps_why + ")");
    ChainRun run;
    if (blocked) {
      EBM_CHECK_USAGE(!dynamic_cast<ParallelTempering*>(sampler.get()),
                      "--nproc: parallel tempering's swap statistics are one run's; sample it without --nproc");
      std::shared_ptr<Collective> coll;
      if (dist.world > 1) coll = std::make_shared<Collective>(dist);
      run = run_chain_blocks(*energy, [&]() { return model_sampler(info, spec); }, x0, a->common.seed,
                             a->block, coll.get(), ro);
      if (coll && coll->rank() != 0) return 0;  // (rank 0 writes and reports)
    } else {
      run = run_chains(drawn, *sampler, x0, gen, ro);
    }

    // A generator that dropped modes its energy keeps (docs/learned-samplers.md,
    // 'Dropped modes'): its draws' shares of the training rows' cells.
    if (a->from == "generator" && train_rows.defined()) {
      auto cgen = make_generator(a->common.seed, kStreamEval);
      const CellShares s = cell_shares(run.x, train_rows, 8, 4.0, 0.02, 2.0, cgen);
      if (s.flagged_count() > 0) {
        notes() << "ebm sample: warning: " << (a->steps > 0 ? "after " + std::to_string(a->steps) + " steps " : "")
                << "the generator's draws differ from its training rows' shares in " << s.flagged_count() << " of "
                << s.centers.size(0) << " cells (" << s.worst() << "): "
                << (a->steps > 0 ? "give them more --steps, or check the energy's own masses (ebm eval --task modes)"
                                 : "--steps 300 moves them by the energy's sampler, with jumps between modes")
                << "\n";
      }
    }
    // The energy's own draws of one unlabelled model against its training
    // rows' shares of their k-means cells, in any dimension (a probe's 20-d
    // PCD model drew 0.002 of a mode that holds 0.1 of the data, silently:
    // the 2D mode check had nothing above two dimensions).
    if (a->from == "noise" && a->steps > 0 && a->init.empty() && train_rows.defined() && a->models.size() == 1 &&
        a->labels.empty() && !labelled) {
      auto cgen = make_generator(a->common.seed, kStreamEval);
      const CellShares s = cell_shares(run.x, train_rows, 8, 4.0, 0.02, 2.0, cgen);
      if (s.flagged_count() > 0)
        notes() << "ebm sample: warning: the draws differ from the training rows' shares in " << s.flagged_count()
                << " of " << s.centers.size(0) << " cells (" << s.worst()
                << "): the model misweights its modes, or the chains have not reached them (more --steps tells "
                   "which; docs/own-data.md, 'Mode masses')\n";
    }
    // (chains that left for infinity are no draws: a step of 1e9 wrote
    // rows of -inf, inf with exit 0, which every reader then refused)
    {
      // (as written: in 32-bit floats, where 1e157 is inf; every kept draw
      // of a chain, --thin, as well as its last)
      auto finite = torch::isfinite(units.to_user(run.x.detach()).to(torch::kFloat).flatten(1)).all(1);
      if (run.kept.defined() && run.kept.dim() >= 2 && run.kept.size(0) == finite.size(0))
        finite = finite & torch::isfinite(run.kept.to(torch::kFloat).flatten(1)).all(1).to(finite.device());
      const int64_t bad = finite.numel() - finite.sum().item<int64_t>();
      EBM_CHECK_CODE(bad == 0, ExitCode::kInternal, "sample: ", bad, " of ", a->n,
                     " chains went to non-finite values (the sampler diverged: ", run.divergent, " of ",
                     a->n * (a->steps + a->warmup),
                     " transitions met a non-finite energy or gradient); nothing written: use a step that suits the "
                     "energy's scale (--sampler mala:step=S with a smaller S), or --warmup 200 with mala or hmc");
    }
    // (an energy finite nowhere the chains went, NaN everywhere: the chains
    // never moved and their starts were written as draws, exit 0)
    {
      torch::NoGradGuard ng;
      const auto e = drawn.energy(run.x.narrow(0, 0, std::min<int64_t>(run.x.size(0), 4096)));
      EBM_CHECK_DATA(torch::isfinite(e).any().item<bool>(), "sample: the energy is not finite at any chain's state (E = ",
                     e[0].item<double>(), "): nothing to sample and nothing written; check the energy");
    }
    auto x = units.to_user(run.x).to(torch::kCPU, torch::kFloat);
    const auto shown_as = display_map(info);
    if (shown_as && (ext == ".png" || ext == ".idx" || (ext == ".npy" && a->thin == 0))) {
      const int64_t k = energy->num_classes();
      // (columns are classes where the chains' labels cycle through them;
      // draws in the classes' shares come class by class, in reading order
      // on a square grid)
      write_images(a->out, x, *shown_as, k > 0 && !labelled ? std::min<int64_t>(k, 10) : 0, values);
    } else if (ext == ".idx") {
      // (float images: their range as 0-255, the start box model.pt keeps
      // or the clamp box; [-1, 1] when neither is known)
      PixelMap map;
      if (const auto box = start_range(info)) std::tie(map.lo, map.hi) = *box;
      write_images(a->out, x, map);
    } else if (ext == ".png" && image) {
      // (the grid spans the samples' own range, whatever the data's scale,
      // less the 1% tails a few stray pixels would otherwise stretch)
      auto q = torch::quantile(x.flatten().to(torch::kDouble), torch::tensor({0.01, 0.99}, torch::kDouble));
      const double lo = q[0].item<double>(), hi = q[1].item<double>();
      write_image_grid(a->out, x, lo, hi > lo ? hi : lo + 1);
    } else if (ext == ".png") {
      torch::Tensor backdrop;
      if (target) {
        // (targets draw exactly on the CPU)
        auto cpu_gen = device.is_cpu() ? gen : make_generator(a->common.seed, kStreamEval);
        backdrop = target->sample(5000, cpu_gen);
      }
      scatter_png(a->out, x, backdrop, bounding_box(backdrop.defined() ? backdrop : x, 0.1));
    } else {
      write_draws(a->out, run.kept.defined() ? run.kept : ro.to_user(run.x).to(torch::kCPU, torch::kDouble).unsqueeze(1),
                  run.kept.defined(), info, script_f64);
    }

    // Summary: sampler statistics, then mean, sd, MCSE, ESS and R-hat of the
    // first dimensions (from all post-warm-up draws of all chains).
    auto& os = std::cout;
    os << "sampler " << sampler->name() << ": " << a->n << " chains, " << a->warmup
       << " warm-up + " << a->steps << " steps; step_size " << fmt(run.step_size)
       << ", accept_rate " << fmt(run.accept, 3)
       << ", divergent " << run.divergent << " (warm-up " << run.warm_divergent << ")"
       << (sampler->name() == "mh" ? ", energy evaluations/chain " : ", gradients/chain ") << fmt(run.n_grad, 6)
       << "\n";
    if (proposal && run.jump_rounds > 0)
      os << "jumps between modes: " << (a->jumps > 0 ? a->jumps : 2) << " every " << ro.jump_every
         << " transitions, from the training rows, accept_rate " << fmt(run.jump_accept, 3) << " (--jumps 0: none)\n";
    if (blocked)
      os << "(in " << (a->n + a->block - 1) / a->block << " blocks of up to " << a->block
         << " chains, each adapted on its own stream, over " << dist.world << " rank" << (dist.world > 1 ? "s" : "")
         << "; the step size is their chain-weighted mean)\n";
    if (auto* pt = dynamic_cast<ParallelTempering*>(sampler.get())) {
      os << "swap acceptance per adjacent temperature pair:";
      for (double r : pt->swap_rates()) os << " " << fmt(r, 3);
      os << "\n";
    }
    std::vector<SummaryRow> rows;
    double min_ess = INFINITY;
    const bool summary = run.summary.defined();
    if (summary) {
      auto draws = run.summary;
      rows = summarize(draws.narrow(2, 0, shown), shown);
      auto e = ess_bulk(draws);
      e = e.masked_select(torch::isfinite(e));
      if (e.numel()) min_ess = e.min().item<double>();
    }
    if (image) {
      torch::NoGradGuard ng;
      auto e = energy->energy(run.x).to(torch::kCPU, torch::kDouble);
      os << a->n << " images " << c10::IntArrayRef(shape) << " written to " << a->out << "; energy mean "
         << fmt(e.mean().item<double>()) << ", sd " << fmt(a->n > 1 ? e.std().item<double>() : 0.0) << "\n";
      return 0;
    }
    const int w = 11;
    os << std::setw(5) << "dim" << std::setw(w) << "mean" << std::setw(w) << "sd";
    if (summary) os << std::setw(w) << "mcse" << std::setw(w) << "ess_bulk" << std::setw(w) << "ess_tail" << std::setw(w) << "rhat";
    if (target) os << std::setw(w) << "true_mean" << std::setw(w) << "true_sd";
    os << "\n";
    auto xd = units.to_user(run.x).to(torch::kCPU, torch::kDouble).flatten(1);
    for (int64_t i = 0; i < shown; ++i) {
      os << std::setw(5) << i;
      if (summary) {
        const auto& r = rows[i];
        // (the mean to the digit its MCSE reaches: 4 digits of 1000.123
        // beside an MCSE of 0.002 hid the estimate's precision)
        int digits = 4;
        if (std::isfinite(r.mean) && r.mean != 0 && std::isfinite(r.mcse) && r.mcse > 0)
          digits = int(std::clamp(std::floor(std::log10(std::abs(r.mean))) - std::floor(std::log10(r.mcse)) + 1,
                                  4.0, 9.0));
        std::string mean = fmt(r.mean, digits);
        while (digits > 4 && int(mean.size()) >= w) mean = fmt(r.mean, --digits);  // (a space between columns)
        os << std::setw(w) << mean << std::setw(w) << fmt(r.sd) << std::setw(w) << fmt(r.mcse, 3)
           << std::setw(w) << fmt(r.ess_bulk, 5) << std::setw(w) << fmt(r.ess_tail, 5)
           << std::setw(w) << fmt(r.rhat, 4);
      } else {
        auto c = xd.select(1, i);
        os << std::setw(w) << fmt(c.mean().item<double>()) << std::setw(w)
           << fmt(a->n > 1 ? c.std().item<double>() : 0.0);
      }
      if (target)
        os << std::setw(w) << fmt(target->mean()[i].item<double>()) << std::setw(w)
           << fmt(std::sqrt(target->covariance()[i][i].item<double>()));
      os << "\n";
    }
    if (summary && std::isfinite(min_ess) && run.n_grad > 0)
      os << "min ess_bulk " << fmt(min_ess, 5) << " over " << (tracked < dim ? "the first " : "all ")
         << tracked << " dims; per " << (sampler->name() == "mh" ? "energy" : "gradient") << " evaluation " << fmt(min_ess / (run.n_grad * a->n), 3) << "\n";
    // Chains that still differ from each other are not yet draws of the
    // energy (R-hat over 1.1 by Vehtari et al.'s looser bound): say so
    // rather than leave it to a table column.
    if (summary) {
      auto r = rhat(run.summary);
      if (run.halves.defined())  // (past the tracked dimensions: the classic split R-hat of the raw draws)
        r = torch::cat({r, split_rhat(run.halves, a->steps / 2).narrow(0, tracked, dim - tracked)});
      // (an R-hat of inf or NaN: chains whose draws never changed, each at
      // its own value or all at one; it was set to 0, and frozen chains
      // passed without a word)
      const auto frozen = (~torch::isfinite(r)).nonzero();
      if (frozen.size(0) > 0)
        notes() << "ebm sample: warning: the chains did not move in " << frozen.size(0) << " of " << r.numel()
                << " dimension(s) (the first: " << frozen[0][0].item<int64_t>()
                << "; R-hat undefined): these are not draws of the energy; a step that suits its scale "
                   "(--warmup 200 to adapt one, or --sampler nuts), or float64 rows for values far from zero\n";
      r = r.masked_fill(torch::isfinite(r).logical_not(), 0.0);
      const int64_t at = r.argmax().item<int64_t>();
      if (const double worst = r[at].item<double>(); frozen.size(0) == 0 && worst > 1.1)
        notes() << "ebm sample: warning: the chains have not mixed (R-hat " << fmt(worst, 4) << " in dimension " << at
                << ", over 1.1): the draws still depend on where the chains started; run more --steps, a --warmup "
                   "that adapts the step size, or another --sampler\n";
    }
    // (a step too large for the energy's scale: the chains leave for where
    // E or its gradient overflows, and the draws are no longer the model's)
    if (const int64_t moves = a->n * a->steps; moves > 0 && run.divergent > moves / 100)
      notes() << "ebm sample: warning: " << run.divergent << " of " << moves << " transitions diverged (a non-finite "
              << "energy or gradient, or an energy error over 1000 nats in a trajectory): a step too large for the "
                 "energy's scale leaves the draws unreliable (or the energy has regions of zero density); use a smaller "
                 "step (--sampler mala:step=S), or --warmup 200 with mala or hmc to adapt it\n";
    if (proposal && run.jump_rounds > 0 && run.jump_accept < 0.01)
      notes() << "ebm sample: note: jumps between modes were accepted at a rate of " << fmt(run.jump_accept, 3)
              << ": in " << dim << " dimensions the proposal seldom lands where the model has mass, so the draws' "
                 "shares of the modes follow the chains' starts (docs/own-data.md, 'Mode masses')\n";
    return 0;
  };
}

}  // namespace ebm::cli
