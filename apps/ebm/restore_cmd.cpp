// ebm inpaint --model M --input DATA --mask SPEC [--steps K --chains C --init I --truth DATA] --out FILE
// ebm denoise --model M --input DATA [--corrupt gaussian:S|salt:P] [--method M --noise-std S --steps K --init I
//              --truth DATA] --out FILE
// Restoration by sampling the energy: the masked pixels given the rest (from
// the training mean by default), or every pixel by a short run of the
// model's sampler from the lightly blurred input (optionally under the
// posterior energy with the noise's likelihood), or, for vectors, the
// posterior mode given the noise's std; scored against the truth
// beside the baselines a user would otherwise reach for. The defaults (60
// steps from the mean; 10 steps from a blur of 0.7 pixels) were chosen on
// Fashion-MNIST training images with the IGEBM recipe's sampler: longer runs
// of a short-run-trained energy drift away from the truth.
#include <c10/util/accumulate.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iomanip>
#include <sstream>

#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/images.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/images.h"
#include "ebm/eval/restoration.h"
#include "ebm/io/io.h"
#include "ebm/io/missing.h"
#include "ebm/model/columns.h"
#include "ebm/model/input_units.h"
#include "ebm/model/inputs.h"
#include "ebm/train/train.h"
#include "ebm/model/model.h"
#include "ebm/sampling/conditional.h"
#include "ebm/sampling/free_coordinates.h"
#include "ebm/sampling/jumps.h"
#include "chain_blocks.h"
#include "untried_step.h"

namespace ebm::cli {
namespace {

constexpr int64_t kGridImages = 32;  // images shown in a PNG grid (each with its companions)
constexpr int64_t kBlock = 64;       // images restored per batch of chains

// What the restoration commands share: the model in its sampling units,
// the inputs and the sampler.
struct Setup {
  Energy energy;  // in model units
  AffineMap units;
  ModelInfo info;
  bool image = false;
  PixelMap map;  // the pixel map ([-1, 1] for vector models: scores then in those units / 2)
  std::string model;
  // What "0-1 units" are (scores, --corrupt and --noise-std of images)
  std::string units_name = "the data's";
  // The run's own train/test split, rebuilt from model.pt once (run_split)
  std::optional<DataSplit> split;
  std::string split_why;
  bool split_tried = false;
};

// The run's own split (none, with the reason in *why, when model.pt cannot
// rebuild it), loaded at most once per command.
// Rows of the user's units in the model's (its standardisation, when it has one).
torch::Tensor to_model(const Setup& s, const torch::Tensor& x) {
  return s.units.defined() ? s.units.to_model(x.flatten(1)).reshape(x.sizes()) : x;
}

const std::optional<DataSplit>& run_split(Setup& s, std::string* why = nullptr) {
  if (!s.split_tried) s.split = model_data_split(s.info, s.model, &s.split_why);
  s.split_tried = true;
  if (why != nullptr) *why = s.split_why;
  return s.split;
}

// What 0-1 units are for float images: their range [lo, hi] (`whose`) as [0, 1].
std::string range_units(double lo, double hi, const std::string& whose) {
  std::ostringstream os;
  os << "the images' range [" << lo << ", " << hi << "] (" << whose << ") as [0, 1]";
  return os.str();
}

Setup load(const std::string& model) {
  Setup s;
  std::tie(s.energy, s.units) = sampling_view(load_model(model, &s.info));
  s.model = model;
  s.image = s.info.event_shape.size() == 3;
  if (const auto shown = display_map(s.info)) s.map = *shown;
  if (s.image) s.units_name = "pixels in [0, 1]";
  if (s.image && s.info.values) s.units_name = range_units(s.info.values->raw_lo, s.info.values->raw_hi, "the training images'");
  return s;
}

// Float images taken as they were (a model trained on float arrays with
// data.standardize = off) are values in the data's own units: their scores,
// noise and grids take the images' range as [0, 1], the training images' min
// and max as the training grids do (the run's split rebuilt from model.pt),
// or else those of `rows`. (A value map, ModelInfo::values, says its range.)
void set_value_range(Setup& s, const torch::Tensor& rows) {
  if (!s.image || s.info.pixels || s.info.values) return;
  const auto& split = run_split(s);
  const auto& ref = split ? split->train.x : rows;
  const double lo = ref.min().item<double>(), hi = ref.max().item<double>();
  s.map.lo = lo;
  s.map.hi = hi > lo ? hi : lo + 1;
  s.map.dequantize = false;
  s.units_name = range_units(s.map.lo, s.map.hi, split ? "the training images'" : "the inputs'");
}

// A standardised vector model's data variance in its own units
// (data.standardize_sd squared, 2 by default): the scale of its energy's
// curvature, which the restorations' preconditioners weigh against the
// noise's; undefined for other models.
torch::Tensor model_data_var(const Setup& s) {
  if (s.image || !s.units.defined()) return {};
  const double sd = model_standardize_sd(s.info);
  return torch::tensor(sd * sd, torch::kDouble);
}

// The model's energy of every row (in model units) must be finite: a row far
// out (a value of 1e30 among values of 1e4) has none, its descent never
// moved and it was written back unchanged, exit 0, where ebm energy refused
// it.
// `restored`: rows the command made (their energies finite at the start):
// one that is not has been moved there by a sampler that diverged, exit 70.
void check_finite_energy(const Setup& s, const torch::Tensor& done, const std::string& input, bool restored = false) {
  torch::NoGradGuard ng;
  for (int64_t i = 0; i < done.size(0); i += kBlock) {
    const int64_t m = std::min(kBlock, done.size(0) - i);
    const auto bad = (~torch::isfinite(s.energy->energy(done.narrow(0, i, m)))).nonzero();
    if (bad.size(0) == 0) continue;
    const int64_t row = i + bad[0][0].item<int64_t>() + 1;
    if (restored)
      fail(ExitCode::kInternal, input, ": row ", row, " (counting from 1): the model's energy of the restored row is "
           "not finite: the sampler diverged; nothing written (a smaller step: --sampler mala:step=S)");
    fail(ExitCode::kBadData, input, ": row ", row, " (counting from 1): the model's energy of it is not finite; its "
         "values lie too far from the training data for the model");
  }
}

// `noise_std` (the data's units, vectors): rows said to carry Gaussian noise
// of that std, whose spread the warning of rows far from the training data
// allows for (a probe's noisy rows, noise 0.5 on a column of sd 0.01, drew
// it for the very noise they were given to remove).
// `energy_finite`: rows the model must have a finite energy of (rows to
// denoise: checked before the warnings on their values).
torch::Tensor read_rows(const std::string& spec, const Setup& s, int64_t n, const std::string& what,
                        double noise_std = 0, bool energy_finite = false) {
  auto x = read_model_data(spec, s.info, "test");
  if (n > 0) x = x.narrow(0, 0, std::min(n, x.size(0)));
  EBM_CHECK_DATA(x.size(0) >= 1, spec, ": no ", what, " rows");
  if (energy_finite)
    check_finite_energy(s, to_model(s, x), spec);
  AffineMap spread = s.units;
  if (spread.defined() && !s.image && noise_std > 0) {
    const double v = model_data_var(s).item<double>();  // (the map's scale is the data's sd / sqrt(v))
    spread.scale = (spread.scale.square() + noise_std * noise_std / v).sqrt();
  }
  warn_if_far_from_training(spread, s.info, x, spec);
  if (energy_finite && !s.image) warn_of_far_rows(spread, s.info, x, spec);
  return to_model(s, x);
}

torch::Tensor to_user(const Setup& s, const torch::Tensor& x) {
  return s.units.defined() ? s.units.to_user(x.flatten(1)).reshape(x.sizes()) : x;
}

// Runs `complete` over blocks of rows with progress.
// rows(i, m) -> the restored rows i .. i + m of `like`, over blocks of
// `block` rows with progress.
torch::Tensor by_blocks(const torch::Tensor& like, int64_t block, const std::string& label,
                        const std::function<torch::Tensor(int64_t, int64_t)>& rows) {
  const int64_t n = like.size(0);
  auto out = like.clone();
  Progress progress(label, n);
  for (int64_t i = 0; i < n; i += block) {
    const int64_t m = std::min(block, n - i);
    out.narrow(0, i, m).copy_(rows(i, m));
    progress.update(i + m);
  }
  progress.finish();
  return out;
}

torch::Tensor restore(Setup& s, Sampler& sampler, const torch::Tensor& known, const torch::Tensor& free,
                      const torch::Tensor& init /* [n * chains] */, const CompletionOptions& opt,
                      at::Generator& gen, const std::string& label) {
  // (measured on the conditional Fashion-MNIST recipe, 6,500 steps each:
  // centre inpainting MSE 0.121 from the fit against 0.083 from noise, the
  // mean image 0.103; denoising 16.8 dB against 18.2: docs/applications.md;
  // with one chain in five from noise, mixed, the unconditional recipe
  // denoised 1.1 dB better than from the fit: docs/images.md)
  if (s.image && s.info.start.defined())
    notes() << "ebm: note: " << s.model
            << ": its training chains started from the data's Gaussian (buffer.init = fit, or four in five under "
               "mixed, the images' auto); from the fit alone models restored worse than from noise: if this one "
               "does, for inpainting and denoising train with --set buffer.init=uniform\n";
  const int64_t k = opt.chains();
  return by_blocks(known, kBlock, label, [&](int64_t i, int64_t m) {
    auto f = free.size(0) == 1 ? free : free.narrow(0, i, m);
    return complete(*s.energy, sampler, known.narrow(0, i, m), f, init.narrow(0, i * k, m * k), opt, gen).x;
  });
}

// Vectors by sampling (ebm inpaint --method sample): chains on each mask
// pattern's conditional, as ebm sample's on the whole model: a model trained
// without chains has its untried step adapted by a MALA warm-up first, and
// independence jumps proposed from the training rows' masked columns move
// the chains between the conditional's modes. (A probe's masked coordinate
// whose conditional holds 10% in a second mode: 60 steps from the mean drew
// 0.2% there from a DSM model, 4.6% from a PCD one.) Chains are [n * chains]
// rows, row i's at i * chains ..; the lowest-energy chain of each row is kept.
// Denoising's draws (ebm denoise --method sample) are the same chains on the
// posterior: every coordinate free, anchored to the observation by `anchor`.
struct VectorChainOptions {
  std::string command = "inpaint";
  double anchor_std = 0;                               // > 0: the observation's noise std (CompletionOptions)
  torch::Tensor anchor_scale;                          // [D] or undefined
  std::function<void(Sampler&, bool chosen)> configure;  // (chosen: the sampler is the one --sampler named)
};

torch::Tensor sample_vector_fill(Setup& s, const std::string& sampler_spec, const torch::Tensor& x,
                                 const torch::Tensor& mask, const torch::Tensor& init, int64_t steps, int64_t chains,
                                 const torch::Tensor& ref, at::Generator& gen,
                                 const VectorChainOptions& vo = VectorChainOptions()) {
  std::string spec = sampler_spec;
  int64_t warmup = 0;
  if (spec.empty() && !s.info.sampler_ran && steps > 0) {
    if (const UntriedStep u = untried_step(s.info, steps); u.step > 0) {
      spec = u.spec;
      warmup = u.warmup;
      notes() << "ebm " << vo.command << ": the model was trained without chains, so its sampler's step (" << u.step
              << ") was never tried on it: " << warmup << " warm-up transitions of " << u.sampler
              << " adapt it first (--sampler to choose)\n";
    }
  }
  const int64_t n = x.size(0), d = x.size(1);
  auto patterns_of = mask.expand({n, d}).to(torch::kLong);
  auto [patterns, inverse, counts] = torch::unique_dim(patterns_of, 0, true, true, true);
  // One batch of chains over every row, each with its own mask (the warm-up
  // adapts one step for all: a chain per mask pattern, in turn, took 5.8 s
  // for 183 patterns of 300 rows against 0.69 s for one); the jumps move the
  // rows of the 8 commonest patterns (each its proposal over its columns).
  const auto free_rows = patterns_of.to(torch::kBool).repeat_interleave(chains, 0);
  const auto known = x.repeat_interleave(chains, 0);
  ClampedEnergyImpl clamped(s.energy, known, free_rows, vo.anchor_std > 0 ? known : torch::Tensor(), vo.anchor_std,
                            vo.anchor_scale);
  auto sampler = model_sampler(s.info, spec);
  if (vo.configure) vo.configure(*sampler, !sampler_spec.empty());
  ChainRunOptions ro;
  ro.warmup = warmup;
  ro.steps = steps;
  ro.adapt_mass = false;  // (the held coordinates have no spread to adapt to)
  struct PatternJumps {
    torch::Tensor chain_rows, index;
    std::unique_ptr<ClampedEnergyImpl> clamped;
    std::unique_ptr<FreeCoordinatesEnergyImpl> free_energy;
    std::unique_ptr<DataProposal> proposal;
  };
  std::vector<PatternJumps> jumps;
  if (ref.defined() && ref.size(0) >= 16) {
    const auto order = std::get<1>(counts.sort(0, /*descending=*/true));
    for (int64_t q = 0; q < std::min<int64_t>(8, order.numel()); ++q) {
      const int64_t p = order[q].item<int64_t>();
      const auto index = patterns[p].to(torch::kBool).nonzero().squeeze(1);
      if (index.numel() == 0) continue;  // (rows with nothing to fill)
      PatternJumps j;
      const auto rows = (inverse == p).nonzero().squeeze(1);
      j.chain_rows = (rows.unsqueeze(1) * chains + torch::arange(chains, rows.options()).unsqueeze(0)).flatten();
      j.index = index;
      const auto kept = known.index_select(0, j.chain_rows);
      j.clamped = std::make_unique<ClampedEnergyImpl>(s.energy, kept, free_rows.index_select(0, j.chain_rows),
                                                      vo.anchor_std > 0 ? kept : torch::Tensor(), vo.anchor_std,
                                                      vo.anchor_scale);
      j.free_energy = std::make_unique<FreeCoordinatesEnergyImpl>(*j.clamped, kept, index);
      auto pick = make_generator(uint64_t(q), kStreamData);
      auto cols = ref.flatten(1).index_select(1, index.to(ref.device()));
      cols = cols.index_select(0, torch::randperm(cols.size(0), pick, torch::kLong)).to(torch::kFloat);
      const auto [lo, hi] = data_box(cols);
      j.proposal = std::make_unique<DataProposal>(sampling_jump_options(), cols, lo, hi);
      jumps.push_back(std::move(j));
    }
  }
  if (!jumps.empty()) {
    Config sc = make_train_config();
    if (!s.info.sampler_toml.empty()) sc.load_string(s.info.sampler_toml, "model sampler_config");
    ro.jump_every = std::max<int64_t>(1, sc.get_int("sampler.steps"));
    ro.jump = [&jumps](torch::Tensor& chains_x, at::Generator& g) {
      double rate = 0;
      for (auto& j : jumps) {
        auto xs = chains_x.index_select(0, j.chain_rows);
        auto xf = xs.index_select(1, j.index).contiguous();
        rate += j.proposal->jump(*j.free_energy, xf, 2, g) / double(jumps.size());
        xs = xs.index_copy(1, j.index, xf.to(xs.scalar_type()));
        chains_x = chains_x.index_copy(0, j.chain_rows, xs);
      }
      return rate;
    };
  }
  auto run = run_chains(clamped, *sampler, clamped.fill(init), gen, ro);
  auto filled = clamped.fill(run.x);
  torch::Tensor e;
  {
    torch::NoGradGuard ng;
    e = s.energy->energy(filled).detach();
  }
  // (per row, the chain of lowest energy; a non-finite chain never wins)
  auto best = torch::nan_to_num(e, INFINITY, INFINITY, INFINITY).view({-1, chains}).argmin(1);
  return filled.index_select(0, torch::arange(n, best.options()) * chains + best);
}

void write_output(const std::string& path, const Setup& s, const std::vector<torch::Tensor>& panels) {
  const auto& result = panels.back();
  const std::string ext = file_extension(path);
  if (ext == ".png") {
    EBM_CHECK_USAGE(s.image, "--out ", path, ": PNG grids are for image models; write .csv or .npy");
    // (each image beside its companions: original | input | result)
    const int64_t m = std::min<int64_t>(kGridImages, result.size(0)), p = int64_t(panels.size());
    std::vector<torch::Tensor> cols;
    for (const auto& t : panels) cols.push_back(t.narrow(0, 0, m));
    auto grid = torch::stack(cols, 1).flatten(0, 1);
    write_images(path, grid, s.map, p * std::min<int64_t>(m, 8));
    if (m < result.size(0))
      notes() << "ebm: note: " << path << " shows the first " << m << " of the " << result.size(0)
              << " images (with their companions); .npy or .idx output holds them all\n";
  } else if (s.image) {
    write_images(path, result, s.map, 0, s.info.values);
  } else if (ext == ".csv") {
    // (a model trained on a CSV with a header: its column names, so the rows
    // read back by name; none otherwise, as the input had)
    const int64_t d = result[0].numel();
    auto names = model_column_names(s.info, d);
    bool named = false;
    for (int64_t j = 0; j < d; ++j) named = named || names[size_t(j)] != "x" + std::to_string(j);
    write_csv(path, to_user(s, result).flatten(1).to(torch::kDouble), named ? names : std::vector<std::string>{});
  } else {
    write_npy(path, to_user(s, result).to(torch::kFloat));
  }
}

// MSE against the truth (over `where`'s values when given): images in 0-1
// pixel units with their PSNR; vectors in the data's own units, without a
// PSNR (vectors have no peak value).
nlohmann::json scored(const Setup& s, const torch::Tensor& x, const torch::Tensor& truth,
                      const torch::Tensor& where = {}) {
  if (s.image) {
    auto r = restoration_score(x, truth, s.map, where);
    return {{"mse", r.mse}, {"psnr", r.psnr}};
  }
  PixelMap unit;
  unit.lo = 0;
  unit.hi = 1;
  return {{"mse", restoration_score(to_user(s, x), to_user(s, truth), unit, where).mse}};
}

// A report's baselines that restore better than the model (lower MSE): one
// note naming them, beside the JSON (a probe's denoising at 17.53 dB against
// the blur's 17.57 said nothing).
void note_better_baselines(const nlohmann::json& j, const std::string& command) {
  if (!j.contains("ebm") || !j["ebm"].contains("mse")) return;
  const double model = j["ebm"]["mse"].get<double>();
  std::ostringstream better;
  better.precision(4);
  for (const char* k : {"mean_image", "mean", "nearest", "gaussian", "blur", "corrupted"})
    // (by over 2%: a model at the baseline's MSE, within noise, is not behind it)
    if (j.contains(k) && j[k].is_object() && j[k].contains("mse") && j[k]["mse"].get<double>() < 0.98 * model)
      better << (better.tellp() > 0 ? ", " : "") << k << " " << j[k]["mse"].get<double>();
  if (better.tellp() > 0)
    notes() << "ebm " << command << ": note: baselines with an MSE over 2% below the model's " << std::setprecision(4)
            << model << ": " << better.str() << "\n";
}

void check_out(const std::string& out) {
  const std::string ext = file_extension(out);
  EBM_CHECK_USAGE(ext == ".png" || ext == ".npy" || ext == ".idx" || ext == ".csv", "--out ", out,
                  ": extension must be .png, .npy, .idx or .csv");
  check_writable(out);
}
// (once the model is known, before any work)
void check_out_for(const std::string& out, const Setup& s) {
  const std::string ext = file_extension(out);
  EBM_CHECK_USAGE(s.image || (ext != ".png" && ext != ".idx"), "--out ", out, ": ", ext.substr(1),
                  " files hold images; this model's rows are vectors: write .csv or .npy");
  EBM_CHECK_USAGE(!s.image || ext != ".csv", "--out ", out, ": an image model's rows go in .png, .npy or .idx");
}

// The truth's rows: as many as the inputs (with --n, its first N).
torch::Tensor read_truth(const std::string& spec, const Setup& s, int64_t n_option, int64_t n) {
  auto truth = read_rows(spec, s, n_option, "truth");
  EBM_CHECK_DATA(truth.size(0) == n, spec, ": ", truth.size(0), " rows for ", n, " inputs",
                 n_option > 0 ? "" : " (--n N takes the first N of each)");
  return truth;
}

}  // namespace

Runner add_inpaint(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, input, mask, out, truth, reference, sampler, init = "auto", method = "auto";
    int64_t steps = 60, chains = 4, n = 0;
    CLI::Option *steps_option = nullptr, *chains_option = nullptr;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("inpaint", "fill masked pixels (or coordinates) by sampling them given the rest");
  cmd->add_option("--model", a->model, "model.pt from ebm train")->required();
  cmd->add_option("--input", a->input,
                  "images: PNG, JPEG, BMP, a folder of them, IDX, NPY, or fashion_mnist / mnist (test split); vectors: CSV/NPY; "
                  "masked values are never read")
      ->required();
  cmd->add_option("--mask", a->mask,
                  "center:K, random:P, left-half, right-half, top-half, bottom-half, dims:i,j (vectors; random:P too), missing "
                  "(vectors: the CSV's empty or NA cells), or a file of 1 or N masks (nonzero = missing)")
      ->required();
  cmd->add_option("--out", a->out, "completed rows: .png (original | masked | completed), .npy, .idx, .csv")->required();
  cmd->add_option("--method", a->method,
                  "mode: the most likely values given the rest (a descent; for a Gaussian the conditional mean, "
                  "the least squared error) | sample: a draw from the model given the rest | auto (default: sample "
                  "for images and when --sampler or --chains is given, else mode)")
      ->capture_default_str();
  a->steps_option = cmd->add_option("--steps", a->steps,
                                    "sampler transitions per chain (default 60), or descent iterations (mode, "
                                    "default 200)");
  a->chains_option = cmd->add_option("--chains", a->chains,
                                     "sample: chains per row, the one of lowest energy kept (default: 4 for images; "
                                     "1 for vectors, whose draws are then the conditional's: more chains favour its "
                                     "mode and narrow the draws)");
  cmd->add_option("--sampler", a->sampler, "sample: sampler spec (default: the model's training sampler)");
  cmd->add_option("--init", a->init,
                  "where the masked values start: noise (uniform over the pixel range; N(0, 1) for vectors), mean "
                  "(the reference's mean), nearest (the reference row nearest on the known values), or auto (mean "
                  "when the training rows are known, else noise)")
      ->capture_default_str();
  cmd->add_option("--n", a->n, "restore the first N input rows (0 = all)")->capture_default_str();
  cmd->add_option("--truth", a->truth,
                  "the true rows (may be --input itself): print JSON with MSE and PSNR over the masked values, "
                  "for the model and for the mean-image and nearest-neighbour baselines");
  cmd->add_option("--reference", a->reference,
                  "training rows for the baselines (default: the run's own training split, rebuilt from the [data] table "
                  "and seed model.pt keeps)");
  add_common(cmd, a->common);
  return [a]() -> int {
    apply_common(a->common);
    EBM_CHECK_USAGE(a->steps >= 0, "--steps must be >= 0, got ", a->steps);
    EBM_CHECK_USAGE(a->chains >= 1, "--chains must be >= 1, got ", a->chains);
    EBM_CHECK_USAGE(a->n >= 0, "--n must be >= 0, got ", a->n);
    EBM_CHECK_USAGE(a->method == "auto" || a->method == "mode" || a->method == "sample",
                    "--method must be mode, sample or auto, got '", a->method, "'");
    check_out(a->out);
    Setup s = load(a->model);
    check_out_for(a->out, s);
    // (auto: sample for images, and for vectors given a sampler or chains)
    const bool sampling_asked = !a->sampler.empty() || a->chains_option->count() > 0;
    const std::string method = a->method != "auto" ? a->method : s.image || sampling_asked ? "sample" : "mode";
    EBM_CHECK_USAGE(method == "sample" || (a->sampler.empty() && a->chains_option->count() == 0),
                    a->sampler.empty() ? "--chains" : "--sampler",
                    ": --method mode descends from one start per row (--method sample draws)");
    const int64_t steps = a->steps_option->count() > 0 ? a->steps : method == "mode" ? 200 : 60;
    const int64_t chains = method == "mode" ? 1 : a->chains_option->count() > 0 ? a->chains : s.image ? 4 : 1;
    auto gen = make_generator(a->common.seed, kStreamSample);
    // --mask missing: a CSV's own missing cells (empty, NA, NaN, ...) are
    // the mask, as real data arrive; they hold the training mean until filled
    const bool missing = a->mask == "missing";
    torch::Tensor missing_mask;
    torch::Tensor x;
    if (missing) {
      EBM_CHECK_USAGE(!s.image && file_extension(a->input) == ".csv", "--mask missing: fills the empty or NA cells "
                      "of a CSV of vector rows; give --input FILE.csv for a vector model");
      auto raw = read_csv_missing(a->input);
      const int64_t d = c10::multiply_integers(s.info.event_shape);
      EBM_CHECK_DATA(raw.size(1) == d, a->input, ": rows of ", raw.size(1), " values for a model of ", d);
      if (a->n > 0) raw = raw.narrow(0, 0, std::min(a->n, raw.size(0)));
      missing_mask = torch::isnan(raw);
      EBM_CHECK_DATA(missing_mask.any().item<bool>(), a->input, ": no missing cells to fill (empty, NA, NaN, null, "
                     "None or ?) for --mask missing");
      const auto mean = s.units.defined() ? s.units.shift.to(torch::kFloat).unsqueeze(0) : torch::zeros({1, d});
      raw = torch::where(missing_mask, mean.expand_as(raw), raw);
      warn_if_far_from_training(s.units, s.info, raw, a->input);
      x = to_model(s, raw);
    } else {
      x = read_rows(a->input, s, a->n, "input");
    }
    const int64_t n = x.size(0);
    torch::Tensor truth;
    if (!a->truth.empty()) truth = read_truth(a->truth, s, a->n, n);
    set_value_range(s, truth.defined() ? truth : x);
    // (the baselines' reference read before any work: a missing one fails early)
    EBM_CHECK_USAGE(a->init == "auto" || a->init == "noise" || a->init == "mean" || a->init == "nearest",
                    "--init must be auto, noise, mean or nearest, got '", a->init, "'");
    torch::Tensor mask;
    if (missing) {
      mask = missing_mask;
    } else if (is_named_mask(a->mask)) {
      mask = named_mask(a->mask, s.info.event_shape, n, gen);
    } else {
      if (!std::filesystem::exists(a->mask)) {
        const std::string ext = file_extension(a->mask);
        const bool file_like = ext == ".csv" || ext == ".npy" || ext == ".png" || ext == ".idx" || ext == ".gz" ||
                               a->mask.find('/') != std::string::npos;
        fail(file_like ? ExitCode::kMissingInput : ExitCode::kUsage, "--mask ", a->mask,
             ": no such file, and not a named mask (center:K, random:P, left-half, right-half, top-half, "
             "bottom-half, dims:i,j)");
      }
      Dataset m = load_data_path(a->mask);
      // (a mask image of another size for a model of data.image_size: made
      // its size as its images are, then masked where at least half is)
      const auto reading = model_image_reading(s.info);
      if (reading.resizes() && m.x.dim() == 4 && m.x.sizes().slice(2) != c10::IntArrayRef(s.info.event_shape).slice(1))
        m.x = resize_images((m.x != 0).to(torch::kFloat), reading, false).ge(0.5).to(torch::kFloat);
      mask = mask_from_values(m.x, s.info.event_shape, n, a->mask);
    }
    EBM_CHECK_DATA(mask.any().item<bool>(), a->mask, ": masks nothing");
    // (the training rows, for the baselines and the mean / nearest starts)
    // (by default the run's own training split, rebuilt: its held-out rows
    // are not there for the nearest-neighbour baseline to find)
    std::string why, ref_spec = a->reference;
    static const std::optional<DataSplit> kNone;
    const auto& split = ref_spec.empty() ? run_split(s, &why) : kNone;
    if (split) ref_spec = "the run's training split";
    const std::string init_mode = a->init != "auto" ? a->init : (ref_spec.empty() ? "noise" : "mean");
    torch::Tensor ref;
    if (truth.defined() || init_mode != "noise") {
      EBM_CHECK_USAGE(!ref_spec.empty(), truth.defined() ? "the baselines" : "--init " + init_mode,
                      " need training rows: give --reference DATA (", why, ")");
      ref = split ? split->train.x : read_model_data(ref_spec, s.info, "train");
      ref = to_model(s, ref);
    }
    auto init = init_mode == "noise" ? chain_start(s.info, n * chains, gen)
                : (init_mode == "mean" ? mean_fill(x, mask, ref.mean(0)) : nearest_fill(x, mask, ref))
                      .repeat_interleave(chains, 0);
    // (rows the model has no finite energy of, their masked values as they
    // start, refused before any work; then a warning of rows far out on the
    // values they keep)
    if (!s.image) {
      check_finite_energy(
          s, torch::where(mask, init.index_select(0, torch::arange(n, torch::kLong) * chains), x), a->input);
      warn_of_far_rows(s.units, s.info, to_user(s, x), a->input, mask);
    }
    torch::Tensor done;
    if (method == "mode") {
      // (the masked values descend E with the rest clamped, as ebm predict's
      // mode; the data's variance sets the descent's scale)
      auto var = model_data_var(s);
      if (!var.defined())
        var = ref.defined() ? ref.flatten(1).to(torch::kDouble).var(0).mean().clamp_min(1e-12)
                            : torch::tensor(4.0, torch::kDouble);
      done = by_blocks(x, s.image ? kBlock : 4096, "inpaint", [&](int64_t i, int64_t m) {
        return conditional_mode(*s.energy, x.narrow(0, i, m), mask.size(0) == 1 ? mask : mask.narrow(0, i, m),
                                init.narrow(0, i, m), steps, var);
      });
    } else if (!s.image) {
      // (the training rows, for the jumps, wherever they can be had)
      torch::Tensor rows = ref;
      if (!rows.defined() && split) rows = to_model(s, split->train.x);
      done = sample_vector_fill(s, a->sampler, x, mask, init, steps, chains, rows, gen);
    } else {
      auto sampler = model_sampler(s.info, a->sampler);
      done = restore(s, *sampler, x, mask, init, CompletionOptions(steps).chains(chains), gen, "inpaint");
    }
    check_finite_energy(s, done, a->input, true);
    auto shown = torch::where(mask, torch::full_like(x, 0.5 * (s.map.lo + s.map.hi)), x);
    write_output(a->out, s, {truth.defined() ? truth : x, shown, done});
    if (truth.defined()) {
      nlohmann::json j = {{"n", n},          {"mask", a->mask},       {"method", method},
                          {"steps", steps},  {"init", init_mode},     {"ebm", scored(s, done, truth, mask)}};
      if (method == "sample") j["chains"] = chains;
      j[s.image ? "mean_image" : "mean"] = scored(s, mean_fill(x, mask, ref.mean(0)), truth, mask);
      j["nearest"] = scored(s, nearest_fill(x, mask, ref), truth, mask);
      // (vectors: the conditional mean under a Gaussian fitted to the reference)
      if (!s.image && c10::multiply_integers(s.info.event_shape) <= 4096)
        j["gaussian"] = scored(s, gaussian_fill(x, mask, ref), truth, mask);
      j["units"] = s.units_name;
      j["reference"] = ref_spec;
      std::cout << j.dump() << "\n";
      note_better_baselines(j, "inpaint");
    }
    return 0;
  };
}

Runner add_denoise(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, input, out, truth, corrupt, sampler, init = "auto", method = "auto";
    int64_t steps = 10, n = 0;
    double noise_std = 0, blur = 0.7;
    CLI::Option* steps_option = nullptr;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("denoise", "restore corrupted images by descending the (posterior) energy");
  cmd->add_option("--model", a->model, "model.pt from ebm train")->required();
  cmd->add_option("--input", a->input,
                  "corrupted images (PNG, folder, IDX, NPY), or clean ones with --corrupt (also fashion_mnist / "
                  "mnist: test split)")
      ->required();
  cmd->add_option("--out", a->out, "restored rows: .png (clean | corrupted | restored), .npy, .idx, .csv")->required();
  cmd->add_option("--corrupt", a->corrupt,
                  "corrupt the (clean) inputs first, which are then the truth: gaussian:STD (STD in 0-1 pixel units, "
                  "for float images in 0-1 units of their range; for vector models in the data's units) or "
                  "salt:FRACTION (images)");
  cmd->add_option("--noise-std", a->noise_std,
                  "the noise's std (images: 0-1 pixel units; vectors: the data's units); with --corrupt gaussian:S "
                  "it is S. --method mode needs it; --method sample then samples the posterior exp(-E(x)) "
                  "N(input; x, std^2) instead of E alone, only for energies on the likelihood's scale (short-run "
                  "CD energies are not: the term then pulls the chains back onto the noise)")
      ->capture_default_str();
  cmd->add_option("--method", a->method,
                  "mode: the posterior mode argmin E(x) + |x - input|^2 / (2 std^2) by descent (needs the noise's "
                  "std); sample: a short run of the sampler from --init; auto: mode for vectors, sample for images")
      ->capture_default_str();
  a->steps_option = cmd->add_option("--steps", a->steps,
                                    "sampler transitions (--method sample), or descent steps (mode; default 200)")
                        ->capture_default_str();
  cmd->add_option("--sampler", a->sampler, "sampler spec (default: the model's training sampler)");
  cmd->add_option("--init", a->init,
                  "where the chains start: corrupted (the input) or blur (the input blurred by --blur); auto: blur "
                  "for images, corrupted for vectors")
      ->capture_default_str();
  cmd->add_option("--n", a->n, "restore the first N input rows (0 = all)")->capture_default_str();
  cmd->add_option("--truth", a->truth,
                  "the clean rows: print JSON with MSE and PSNR before, after and for a Gaussian blur (images; "
                  "vectors: MSE in the data's units)");
  cmd->add_option("--blur", a->blur, "the blur baseline's sigma in pixels")->capture_default_str();
  add_common(cmd, a->common);
  return [a]() -> int {
    apply_common(a->common);
    EBM_CHECK_USAGE(a->steps >= 0, "--steps must be >= 0, got ", a->steps);
    EBM_CHECK_USAGE(a->n >= 0, "--n must be >= 0, got ", a->n);
    EBM_CHECK_USAGE(a->noise_std >= 0, "--noise-std must be >= 0, got ", a->noise_std);
    EBM_CHECK_USAGE(a->truth.empty() || a->corrupt.empty(),
                    "--truth with --corrupt: the inputs are the truth, give one or the other");
    EBM_CHECK_USAGE(a->blur > 0, "--blur must be > 0, got ", a->blur);
    EBM_CHECK_USAGE(a->init == "auto" || a->init == "corrupted" || a->init == "blur",
                    "--init must be auto, corrupted or blur, got '", a->init, "'");
    EBM_CHECK_USAGE(a->method == "auto" || a->method == "mode" || a->method == "sample",
                    "--method must be auto, mode or sample, got '", a->method, "'");
    check_out(a->out);
    Setup s = load(a->model);
    check_out_for(a->out, s);
    auto gen = make_generator(a->common.seed, kStreamSample);
    auto x = read_rows(a->input, s, a->n, "input", a->corrupt.empty() ? a->noise_std : 0.0, true);
    const int64_t n = x.size(0);
    torch::Tensor truth, noisy = x;
    if (!a->truth.empty()) truth = read_truth(a->truth, s, a->n, n);
    set_value_range(s, truth.defined() ? truth : x);
    // the noise's std in the user's units (0-1 pixels, or the data's), 0 = unknown
    double noise_std = a->noise_std;
    if (!a->corrupt.empty()) {
      truth = x;
      double added = 0;  // (the corruption's Gaussian std; 0 for salt)
      if (s.image) {
        noisy = corrupt(x, a->corrupt, s.map, gen, &added);
        added /= s.map.hi - s.map.lo;  // (into 0-1 pixel units)
      } else {
        // (vectors: the noise in the data's own units)
        auto user = corrupt_values(to_user(s, x).to(torch::kDouble), a->corrupt, gen, &added);
        noisy = to_model(s, user).reshape(x.sizes()).to(x.scalar_type());
      }
      EBM_CHECK_USAGE(noise_std == 0 || added == 0 || std::abs(noise_std - added) <= 1e-9 * added,
                      "--noise-std ", noise_std, " with --corrupt ", a->corrupt,
                      ": the corruption's std is the noise's; give one of them");
      if (noise_std == 0) noise_std = added;
    }
    const std::string method = a->method != "auto" ? a->method : (s.image ? "sample" : "mode");
    const std::string init =
        method == "mode" ? "corrupted" : a->init != "auto" ? a->init : (s.image ? "blur" : "corrupted");
    EBM_CHECK_USAGE(method == "sample" || a->init == "auto" || a->init == "corrupted",
                    "--init ", a->init, ": --method mode starts from the corrupted rows");
    EBM_CHECK_USAGE(init == "corrupted" || s.image, "--init blur is for image models; use --init corrupted");
    torch::Tensor done;
    int64_t steps = a->steps;
    if (method == "mode") {
      EBM_CHECK_USAGE(noise_std > 0, "--method mode needs the noise's std: --noise-std S (",
                      s.image ? "0-1 pixel units" : "the data's units", ") or --corrupt gaussian:S",
                      s.image ? "" : " (--method sample samples the model instead)");
      if (a->steps_option->count() == 0) steps = 200;
      // (the std in the model's units: per column for standardised vectors)
      torch::Tensor sigma = torch::tensor(s.image ? noise_std * (s.map.hi - s.map.lo) : noise_std, torch::kDouble);
      if (!s.image && s.units.defined()) sigma = noise_std / s.units.scale;
      {
        const auto f32 = sigma.to(torch::kFloat);
        EBM_CHECK_USAGE((f32 > 0).all().item<bool>() && torch::isfinite(f32).all().item<bool>() &&
                            torch::isfinite(f32.square().reciprocal()).all().item<bool>(),
                        "--noise-std ", noise_std, ": out of float32's range in the model's units (std ",
                        sigma.min().item<double>(), " .. ", sigma.max().item<double>(), ")");
      }
      const auto prior_var = model_data_var(s);
      done = by_blocks(noisy, s.image ? kBlock : 4096, "denoise", [&](int64_t i, int64_t m) {
        return posterior_mode(*s.energy, noisy.narrow(0, i, m), sigma, steps, prior_var);
      });
    } else {
      // The likelihood's std in the model's units: images' 0-1 units times
      // the pixel range; vectors' data units, per column of a standardised
      // model (it was taken as 2 x the std in the model's units, whatever
      // the columns' scales).
      // (vectors: the std of --corrupt's noise too; without one, 0, the
      // chains are not anchored to the rows at all)
      const double anchor = s.image ? a->noise_std * (s.map.hi - s.map.lo) : noise_std;
      CompletionOptions opt(steps);
      opt.anchor_std(anchor);
      if (!s.image && s.units.defined() && anchor > 0)
        opt.anchor_scale((1.0 / s.units.scale).to(torch::kFloat).reshape(s.info.event_shape));
      // (a standardised model's columns under one noise std in the data's
      // units: the likelihood's curvature 1 / s_j^2 can be 1e8 times the
      // energy's in one column and nothing beside it in another, and a step
      // fitted to the model then rejects every move (a probe's rows came
      // back unchanged); a diagonal inverse mass 1 / (1 + v / s_j^2), v the
      // data's variance, gives every column the model's own curvature)
      auto configure = [&](Sampler& sampler, bool chosen) {
        if (const auto v = model_data_var(s); v.defined() && anchor > 0 && sampler.has_mass() && !chosen) {
          const auto s2 = (anchor / s.units.scale).square();
          sampler.set_inv_mass((1.0 / (1.0 + v / s2)).to(noisy.scalar_type()));
        }
      };
      auto all = torch::ones_like(noisy.narrow(0, 0, 1), torch::kBool);
      auto start = init == "blur" ? gaussian_blur(noisy, a->blur) : noisy.clone();
      if (!s.image && anchor > 0) {
        // (vectors: as inpainting's draws, a warm-up for an untried step and
        // jumps from the training rows; a DSM model's posterior draws spread
        // 0.68 to 1.18 times the posterior's without. Not without a noise
        // std: unanchored, those chains forget the rows, where a few steps
        // from them only move them a little)
        VectorChainOptions vo;
        vo.command = "denoise";
        vo.anchor_std = anchor;
        if (opt.anchor_scale().defined()) vo.anchor_scale = opt.anchor_scale();
        vo.configure = configure;
        torch::Tensor rows;
        if (const auto& split = run_split(s); split)
          rows = to_model(s, split->train.x);
        done = sample_vector_fill(s, a->sampler, noisy, all, start, steps, 1, rows, gen, vo);
      } else {
        auto sampler = model_sampler(s.info, a->sampler);
        configure(*sampler, !a->sampler.empty());
        done = restore(s, *sampler, noisy, all, start, opt, gen, "denoise");
      }
    }
    check_finite_energy(s, done, a->input, true);
    if (truth.defined())
      write_output(a->out, s, {truth, noisy, done});
    else
      write_output(a->out, s, {noisy, done});
    if (truth.defined()) {
      nlohmann::json j = {{"n", n}, {"steps", steps}, {"init", init}, {"method", method}, {"noise_std", noise_std},
                          {"corrupted", scored(s, noisy, truth)},
                          {"ebm", scored(s, done, truth)},
                          {"units", s.units_name}};
      if (!a->corrupt.empty()) j["corrupt"] = a->corrupt;
      if (method == "sample") j["anchor_std"] = a->noise_std;
      if (s.image) {
        j["blur"] = scored(s, gaussian_blur(noisy, a->blur), truth);
        j["blur_sigma"] = a->blur;
      } else if (noise_std > 0 && c10::multiply_integers(s.info.event_shape) <= 4096) {
        // (vectors: the posterior mean under a Gaussian fitted to the run's
        // training split, in the data's units)
        std::string why;
        if (const auto& split = run_split(s, &why)) {
          auto g = gaussian_denoise(to_user(s, noisy), split->train.x, noise_std).to(noisy.scalar_type());
          j["gaussian"] = scored(s, to_model(s, g), truth);
          j["reference"] = "the run's training split";
        } else {
          j["gaussian"] = {{"none", why}};
        }
      }
      std::cout << j.dump() << "\n";
      note_better_baselines(j, "denoise");
    }
    return 0;
  };
}

}  // namespace ebm::cli
