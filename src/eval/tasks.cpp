#include "ebm/eval/tasks.h"

#include <cmath>
#include <numeric>
#include <filesystem>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/pixels.h"
#include "ebm/data/data.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"
#include "ebm/data/images.h"
#include "ebm/data/labels.h"
#include "ebm/model/input_units.h"
#include "ebm/eval/images.h"
#include "ebm/energy/script_energy.h"
#include "ebm/eval/calibration.h"
#include "ebm/eval/continual.h"
#include "ebm/eval/ood.h"
#include "ebm/eval/robustness.h"
#include "ebm/model/inputs.h"
#include "ebm/model/columns.h"
#include "ebm/sampling/tempering.h"
#include "ebm/train/train.h"

#include <c10/util/accumulate.h>

namespace ebm {
namespace {
// The test points of a 2D task: --data FILE, --n fresh points of --dataset,
// or else the run's own test split (as ais scores; nll2d asked for --data).
torch::Tensor test_points_2d(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  const std::string task = c.get_string("task.name"), data = c.get_string("task.data"),
                    dataset = c.get_string("task.dataset");
  EBM_CHECK_USAGE(c.get_float("task.tol") > 0, "--tol must be > 0, got ", c.get_float("task.tol"));
  torch::Tensor test;
  if (data.empty() && dataset.empty()) {
    std::string why;
    const auto split = info.data_toml.empty() ? std::nullopt : model_data_split(info, c.get_string("task.model"), &why);
    EBM_CHECK_USAGE(split && split->test.size() > 0, "eval: give --data FILE or --dataset NAME",
                    why.empty() ? std::string(" (the model keeps no test split of its run)") : " (" + why + ")");
    EBM_CHECK_DATA(split->test.x.dim() == 2 && split->test.x.size(1) == 2, task,
                   " needs a 2D model, got rows of ", c10::IntArrayRef(split->test.x.sizes()).slice(1));
    test = split->test.x.to(torch::kDouble);
    notes() << "ebm eval: " << task << " of the run's own test split (" << test.size(0) << " rows; --data FILE for "
            << "others)\n";
  } else if (!data.empty()) {
    check_csv_columns(data, info);  // (a header naming the model's columns in another order)
    test = read_matrix(data);
  } else {
    const int64_t n = c.get_int("task.n");
    EBM_CHECK_USAGE(n >= 2, "--n must be >= 2, got ", n);
    auto gen = make_generator(c.get_int("task.seed"), kStreamTestData);
    test = toy2d(dataset, n, gen);
  }
  EBM_CHECK_DATA(energy.event_shape() == std::vector<int64_t>{2}, task, " needs a 2D model, got event shape ",
                 c10::IntArrayRef(energy.event_shape()));
  EBM_CHECK_DATA(test.size(1) == 2, (data.empty() ? dataset : data), ": ", task, " needs 2 columns, got ",
                 test.size(1));
  return test;
}

// Exact test NLL of a 2D model (quadrature of Z).
EvalReport nll2d_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  const std::string dataset = c.get_string("task.dataset");
  const double tol = c.get_float("task.tol");
  auto test = test_points_2d(c, energy, info);
  auto r = nll2d(energy, test, tol);
  EvalReport out;
  out.json = {{"task", "nll2d"},       {"n", test.size(0)},
              {"mean_nll", r.mean_nll}, {"nll_se", r.nll_se},
              {"log_z", r.log_z},       {"log_z_error", r.log_z_error},
              {"grid", r.grid},         {"converged", r.converged},
              {"box", {r.box.lo[0], r.box.hi[0], r.box.lo[1], r.box.hi[1]}}};
  std::ostringstream os;
  os << "mean NLL " << r.mean_nll << " +- " << r.nll_se << " nats over " << test.size(0)
     << " points\nlog Z " << r.log_z << " +- " << r.log_z_error << " (grid " << r.grid << "^2, box ["
     << r.box.lo[0] << ", " << r.box.hi[0] << "] x [" << r.box.lo[1] << ", " << r.box.hi[1] << "]"
     << (r.converged ? "" : ", NOT converged") << ")\n";
  if (!r.converged)
    notes() << "ebm eval: warning: log Z did not converge to --tol " << tol << " on the finest grid (its last "
            << "change was " << r.log_z_error << " nats, which every row's NLL shares): a model with mass far "
               "from the test rows, or an energy too sharp for a " << r.grid << "^2 grid\n";
  if (!dataset.empty()) {
    const double h = toy2d_entropy(dataset);
    out.json["entropy"] = h;
    out.json["nll_minus_entropy"] = r.mean_nll - h;
    os << "data entropy " << h << " nats; NLL - entropy " << r.mean_nll - h << "\n";
  }
  out.text = os.str();
  return out;
}
// The model's mass around each cluster of the data against the data's share.
EvalReport modes_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  auto test = test_points_2d(c, energy, info);
  auto gen = make_generator(c.get_int("task.seed"), kStreamEval);
  auto r = mode_masses(energy, test, c.get_int("task.clusters"), c.get_float("task.z"),
                       c.get_float("task.min_diff"), gen, c.get_float("task.tol"));
  EvalReport out;
  out.json = mode_masses_json(r);
  out.json["task"] = "modes";
  out.json["n"] = test.size(0);
  std::ostringstream os;
  os << r.table();
  if (r.ok)
    os << "mode masses agree with the data within " << c.get_float("task.z") << " standard errors\n";
  else
    os << "warning: the model's mass differs from the data's in " << r.flagged.sum().item<int64_t>()
       << " cell(s): its density has the modes' shapes but not their weights (see docs/own-data.md, 'Mode masses')\n";
  out.text = os.str();
  return out;
}

// Reference images [N, ...]: a built-in set's split (a random n of it, from
// gen) or a file / folder; raw 0-255 pixels when `pixels`, else float values
// in the feature network's own range (a float NPY). With them, their labels
// in the model's numbering when the reference knows them and every one of
// its classes is one of the model's `classes` (a built-in set for a 10-class
// model; class sub-folders named as the model's classes); else y undefined.
struct ReferenceImages {
  torch::Tensor x, y;
};
ReferenceImages reference_images(const std::string& spec, const std::string& split, int64_t n, at::Generator& gen,
                                 bool pixels, const ImageReading& reading, const ModelInfo& model, int64_t classes) {
  Dataset d;
  std::error_code ec;
  const bool builtin = spec == "fashion_mnist" || spec == "mnist";
  if (builtin) {
    d = spec == "mnist" ? load_mnist(split) : load_fashion_mnist(split);
  } else {  // (image files and folders read as the model's training images were)
    d = std::filesystem::is_directory(spec, ec) || image_file_name(spec) ? load_data_path(spec, reading)
                                                                         : load_data_path(spec);
  }
  // (a float NPY for a model of pixels: values in the model's range, as
  // every command takes them (--samples too), rounded to its pixels)
  if (pixels && !d.pixels && model.pixels) {
    check_in_pixel_range(d.x, model.pixels->lo, model.pixels->hi, spec);
    d.x = model.pixels->to_pixels(d.x).to(torch::kFloat);
    d.pixels = true;
  }
  if (pixels)
    EBM_CHECK_DATA(d.pixels, spec, ": reference images must be raw 0-255 pixels (PNG, IDX or integer NPY), "
                   "as the feature network was trained on pixels");
  else
    EBM_CHECK_DATA(!d.pixels, spec, ": reference images must be float values (a float NPY), as the feature "
                   "network was trained on float images; these are 0-255 pixels");
  EBM_CHECK_DATA(d.size() >= n, spec, ": ", d.size(), " images, fewer than ", n,
                 split.empty() ? " (twice --n: --n as the reference and --n held out as the floor)" : " (--n)");
  torch::Tensor y;
  if (classes > 0 && d.has_labels()) {
    if (builtin) {
      if (classes == 10) y = d.y.to(torch::kLong);
    } else if (!d.class_names.empty()) {
      std::vector<int64_t> to_model;
      for (const auto& name : d.class_names)  // (numbered folders for a model of class indices: their numbers)
        to_model.push_back(model.class_names.empty() ? class_folder_number(name) : find_class_name(name, model.class_names));
      auto map = torch::tensor(to_model, torch::kLong);
      const auto mapped = map.index_select(0, d.y.to(torch::kLong));
      if ((mapped >= 0).all().item<bool>() && (mapped < classes).all().item<bool>()) y = mapped;
    }
  }
  const auto pick = torch::randperm(d.size(), gen, torch::kLong).narrow(0, 0, n);
  return {d.x.index_select(0, pick).to(torch::kFloat), y.defined() ? y.index_select(0, pick) : y};
}

// FID of model samples against reference images, beside the real-data floor
// and a Gaussian fitted to the reference pixels.
EvalReport fid_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  const std::string features = c.get_string("task.features"), reference = c.get_string("task.reference"),
                    samples = c.get_string("task.samples");
  const int64_t n = c.get_int("task.n");
  int64_t steps = c.get_int("task.steps");
  // (an annealed sampler's transition is a whole sweep through its levels:
  // one, unless --steps says otherwise)
  if (!c.is_set("task.steps") && c.get_string("task.from") == "noise" && samples.empty() &&
      dynamic_cast<AnnealedLangevinSampler*>(model_sampler(info, c.get_string("task.sampler")).get()) != nullptr)
    steps = 1;
  EBM_CHECK_USAGE(!features.empty(), "fid: give --features C.pt (a classifier model: objective.name = \"ce\")");
  EBM_CHECK_USAGE(!reference.empty(), "fid: give --reference DATA (fashion_mnist, mnist, a PNG folder, IDX or NPY)");
  EBM_CHECK_USAGE(n >= 2, "--n must be >= 2, got ", n);
  EBM_CHECK_USAGE(steps >= 0, "--steps must be >= 0, got ", steps);
  ModelInfo finfo;
  Energy classifier = load_model(features, &finfo);
  {
    std::vector<int64_t> one = finfo.event_shape;
    one.insert(one.begin(), 1);
    torch::NoGradGuard ng;
    EBM_CHECK_DATA(classifier->features(torch::zeros(one)).defined(), features,
                   ": this energy has no penultimate features (use a conv or resnet classifier)");
  }
  // (an energy model's own features were trained to score a density, not to
  // tell images apart: a probe's model scored its own samples 0.0018 with
  // them, beside a baseline of 0.026)
  if (classifier->num_classes() == 0)
    notes() << "ebm eval: warning: fid: " << features << " is not a classifier (no classes): FID compares a "
            << "classifier's penultimate features; give a model trained with objective.name = \"ce\"\n";
  // Every image is compared in the feature network's data's units: raw
  // pixels for a network trained on pixels, float values as the user saved
  // them for one trained on float images (each network's value map, when it
  // has one, turns them into its own units); the model must have been
  // trained on the same kind.
  const bool pixels = finfo.pixels.has_value();
  EBM_CHECK_DATA(info.pixels.has_value() == pixels, features, ": the feature network was trained on ",
                 pixels ? "0-255 pixels" : "float values", " and the model on ",
                 info.pixels ? "0-255 pixels" : "float values", "; give a feature network trained on the model's kind of data");
  // Float images of other units (a model of [0, 1] images, features of 0-255
  // saved as floats) would be compared silently wrong: the two value maps'
  // training ranges must agree to a quarter of the features' width, and the
  // reference images must fill a tenth of it.
  const auto range_text = [](const ValueMap& v) { return "[" + c10::str(v.raw_lo) + ", " + c10::str(v.raw_hi) + "]"; };
  if (info.values && finfo.values) {
    const double w = finfo.values->raw_hi - finfo.values->raw_lo;
    EBM_CHECK_DATA(std::abs(info.values->raw_lo - finfo.values->raw_lo) <= 0.25 * w &&
                       std::abs(info.values->raw_hi - finfo.values->raw_hi) <= 0.25 * w,
                   features, ": the feature network was trained on float images spanning ", range_text(*finfo.values),
                   ", the model on ", range_text(*info.values),
                   "; give a feature network trained on images in the model's units");
  }
  // (a network on flattened images, event shape [H * W * C], reads the same
  // pixels flattened; so does an image network scoring a flat model's rows)
  const bool flat_rows = finfo.event_shape.size() == 1 || info.event_shape.size() == 1;
  EBM_CHECK_DATA(finfo.event_shape == info.event_shape ||
                     (flat_rows && c10::multiply_integers(finfo.event_shape) == c10::multiply_integers(info.event_shape)),
                 features, ": takes images ", c10::IntArrayRef(finfo.event_shape), ", the model draws ",
                 c10::IntArrayRef(info.event_shape));
  std::vector<int64_t> feature_shape = finfo.event_shape;
  feature_shape.insert(feature_shape.begin(), -1);
  auto gen = make_generator(c.get_int("task.seed"), kStreamEval);
  const bool builtin = reference == "fashion_mnist" || reference == "mnist";
  const auto reading = model_image_reading(info);
  const int64_t classes = energy.num_classes();
  auto drawn_ref = reference_images(reference, "test", n, gen, pixels, reading, info, classes);
  auto ref = drawn_ref.x;
  auto ref_labels = drawn_ref.y;
  auto drawn_held = builtin ? reference_images(reference, "train", n, gen, pixels, reading, info, classes)
                            : ReferenceImages();
  auto held = drawn_held.x;
  auto held_labels = drawn_held.y;
  if (!builtin) {  // (a file: two disjoint halves of 2n of its images)
    auto both = reference_images(reference, "", 2 * n, gen, pixels, reading, info, classes);
    ref = both.x.narrow(0, 0, n);
    held = both.x.narrow(0, n, n);
    ref_labels = both.y.defined() ? both.y.narrow(0, 0, n) : both.y;
    held_labels = both.y.defined() ? both.y.narrow(0, n, n) : both.y;
  }
  // (a model of data.image_size or data.channels: the reference made its
  // size and channels, as its own training images were)
  if (ref.dim() == 4 && (ref.size(1) == 1 || ref.size(1) == 3)) {
    ref = resize_images(with_channels(ref, reading.channels, pixels), reading, pixels);
    held = resize_images(with_channels(held, reading.channels, pixels), reading, pixels);
  }
  if (finfo.values) {
    const double lo = ref.min().item<double>(), hi = ref.max().item<double>(),
                 w = finfo.values->raw_hi - finfo.values->raw_lo;
    EBM_CHECK_DATA(hi - lo >= 0.1 * w && lo >= finfo.values->raw_lo - 0.5 * w && hi <= finfo.values->raw_hi + 0.5 * w,
                   reference, ": float images spanning [", lo, ", ", hi, "], for a feature network trained on ",
                   range_text(*finfo.values), "; give reference images in its units");
  }
  std::vector<int64_t> shape = info.event_shape;
  shape.insert(shape.begin(), -1);
  check_image_rows(ref, info.event_shape, reference);
  EBM_CHECK_DATA(ref[0].numel() == c10::multiply_integers(info.event_shape), reference, ": images of ",
                 ref[0].numel(), " values for a model of ", c10::IntArrayRef(info.event_shape));
  ref = ref.reshape(shape);
  held = held.reshape(shape);
  // Model samples as pixels (or float values): drawn, or given (--samples).
  torch::Tensor fake;
  std::string class_mix;  // (a conditional model's draws: whose class shares)
  const auto user_values = [&info](const torch::Tensor& x) {
    return (info.values ? info.values->to_user(x) : x).to(torch::kFloat);
  };
  if (!samples.empty()) {
    auto x = read_model_input(samples, info);
    EBM_CHECK_DATA(x.size(0) >= 2, samples, ": ", x.size(0), " image; FID compares covariances and needs at least 2");
    fake = pixels ? info.pixels->to_pixels(x).to(torch::kFloat) : user_values(x);
  } else {
    const std::string from = c.get_string("task.from");
    EBM_CHECK_USAGE(from == "noise" || from == "generator", "--from must be noise or generator, got '", from, "'");
    // (a conditional model's chains at the held-out real images' labels, so
    // all sides hold the classes in one mix, when the reference knows them;
    // else in the training classes' shares, or equal ones when the model
    // file cannot say. A 80/16/4 model against a balanced folder scored
    // 1031 in training shares, 5.2 in the reference's: the floor was 5.0.
    // Not the reference's own labels: those counts matched the reference
    // exactly, which no independent set does, and a probe's poor model
    // scored 2.1 to 4.2 against floors of 12.7 to 14.6.)
    std::string why;
    torch::Tensor shares;
    if (classes > 0 && from == "noise") {
      const bool known = held_labels.defined() && ref_labels.defined();
      shares = known ? held_labels : labels_in_class_shares(info, classes, n, &why);
      class_mix = known ? "held_out" : shares.defined() ? "training" : "equal";
    }
    auto x = from == "generator"
                 ? draw_generator_samples(c.get_string("task.model"), energy, info, n, steps, c.get_string("task.sampler"), gen)
                 : draw_model_samples(energy, info, n, steps, c.get_string("task.sampler"), gen, shares);
    fake = pixels ? info.pixels->to_pixels(x).to(torch::kFloat) : user_values(x);
  }
  // Gaussian baseline: draws of the reference images' mean and covariance,
  // clamped to the pixel range (float images: the reference's own range).
  // (its own stream: the same draws for one seed and reference, whatever
  // the model's sampling took from gen, so --steps 0 and 20 share it)
  constexpr uint64_t kStreamFidBaseline = 0x46494447;  // "FIDG"
  auto base_gen = make_generator(c.get_int("task.seed"), kStreamFidBaseline);
  auto gauss = gaussian_draws(ref, n, base_gen);
  gauss = (pixels ? gauss.clamp(0, 255) : gauss.clamp(ref.min().item<double>(), ref.max().item<double>())).to(torch::kFloat);
  auto feats = [&](const torch::Tensor& px) {
    const auto x = px.reshape(feature_shape);
    return batch_features(*classifier, pixels        ? finfo.pixels->to_model(x)
                                       : finfo.values ? finfo.values->to_model(x).to(torch::kFloat)
                                                      : x.to(torch::kFloat));
  };
  auto fr = feats(ref);
  const auto f_fake = feats(fake), f_held = feats(held), f_gauss = feats(gauss);
  const double model = frechet_distance(f_fake, fr), floor = frechet_distance(f_held, fr),
               gaussian = frechet_distance(f_gauss, fr);
  // (each distance's spread over bootstrap resamples of both image sets: at
  // a few hundred images two real sets of one distribution scored 0.6 to 26
  // by the seed alone in a probe, so a distance means little without it)
  constexpr uint64_t kStreamFidSpread = 0x46494453;  // "FIDS"
  auto spread_gen = make_generator(c.get_int("task.seed"), kStreamFidSpread);
  constexpr int kResamples = 20;
  auto spread = [&](const torch::Tensor& a) {
    std::vector<double> v;
    for (int b = 0; b < kResamples; ++b) {
      auto ia = torch::randint(a.size(0), {a.size(0)}, spread_gen, torch::kLong);
      auto ib = torch::randint(fr.size(0), {fr.size(0)}, spread_gen, torch::kLong);
      v.push_back(frechet_distance(a.index_select(0, ia), fr.index_select(0, ib)));
    }
    const double m = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
    double ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    return std::sqrt(ss / double(v.size() - 1));
  };
  const double se_model = spread(f_fake), se_floor = spread(f_held), se_gauss = spread(f_gauss);
  EvalReport out;
  out.json = {{"task", "fid"},     {"n", n},           {"features", features}, {"reference", reference},
              {"fid", model},      {"fid_real", floor}, {"fid_gaussian", gaussian},
              {"fid_sd", se_model}, {"fid_real_sd", se_floor}, {"fid_gaussian_sd", se_gauss},
              {"steps", samples.empty() ? steps : 0}, {"samples", samples.empty() ? "drawn" : samples},
              {"from", samples.empty() ? c.get_string("task.from") : "file"}};
  // (a Frechet distance of fewer images than features compares singular
  // covariances: biased upward, and by an amount that depends on N)
  const int64_t width = fr.size(1), fewest = std::min(n, fake.size(0));
  std::vector<std::string> warnings;
  if (fake.size(0) != n)
    warnings.push_back(std::to_string(fake.size(0)) + " model samples in " + samples + " against " +
                       std::to_string(n) + " reference images (--n): distances of unequal counts are not comparable");
  if (fewest < width)
    warnings.push_back(std::to_string(fewest) + " images for " + std::to_string(width) +
                       " features: the covariances are singular and every distance here is biased by an amount that "
                       "depends on the count; use --n of at least " + std::to_string(width) + " (twice that is better)");
  if (model < floor - 2 * std::hypot(se_model, se_floor))
    warnings.push_back("the model's samples score below the real-data floor by more than twice their spreads: at "
                       "this --n with these features the distance does not tell them from real images (more images, "
                       "or a feature network trained longer, resolve it)");
  // (a probe's own classifier's features at --n 200: floor 368 +- 469, and
  // real test images scored 69: no ranking of models holds at that)
  if (std::abs(gaussian - floor) < 2 * std::hypot(se_gauss, se_floor))
    warnings.push_back("the Gaussian baseline (" + c10::str(gaussian) + " +- " + c10::str(se_gauss) +
                       ") is within twice the spreads of the real-data floor (" + c10::str(floor) + " +- " +
                       c10::str(se_floor) + "): at this --n with these features the distance does not tell even "
                       "that baseline from real images, so no ranking of models by it holds (more images, or "
                       "features of a better classifier)");
  if (!warnings.empty()) out.json["warnings"] = warnings;
  out.json["n_samples"] = fake.size(0);
  if (!class_mix.empty()) out.json["class_shares"] = class_mix;
  std::ostringstream os;
  os << "FID (" << n << " images, features of " << features << ", against " << reference << "):\n"
     << "  model samples      " << model << " +- " << se_model
     << (fake.size(0) != n ? " (" + std::to_string(fake.size(0)) + " images)" : "")
     << (class_mix == "held_out"   ? "  (drawn at the held-out real images' labels)"
         : class_mix == "training" ? "  (drawn in the training classes' shares)"
         : class_mix == "equal"    ? "  (drawn in equal class shares)"
                                   : "")
     << "\n"
     << "  held-out real data " << floor << " +- " << se_floor << "  (the floor)\n"
     << "  Gaussian baseline  " << gaussian << " +- " << se_gauss << "  (a Gaussian fitted to the reference images)\n"
     << "  (+-: the sd over " << kResamples << " bootstrap resamples of both sets)\n";
  for (const auto& w : warnings) os << "  warning: " << w << "\n";
  out.text = os.str();
  return out;
}

std::vector<ConfigKey> points_keys() {
  return {{"data", std::string(""), "test points (CSV/NPY); empty, without --dataset: the run's own test split"},
          {"dataset", std::string(""), "fresh points from a built-in toy set"},
          {"n", int64_t(10000), "points drawn for --dataset"},
          {"tol", 1e-3, "quadrature tolerance on log Z"},
          {"seed", int64_t(0), "seed of the drawn points (and of k-means)"}};
}
}  // namespace

std::vector<ConfigKey> labelled_data_keys() {
  return {{"data", std::string(""),
           "labelled rows: fashion_mnist or mnist (test split; NAME:train for the other), a file with "
           "task.labels, or a folder of class sub-folders; empty = the test split of the model's own data set (its held-out rows if it trained on that split)"},
          {"labels", std::string(""), "one integer label per row of task.data when it is a file"}};
}

std::vector<int64_t> model_trained_classes(const ModelInfo& info) {
  if (info.data_toml.empty()) return {};
  const Config d = data_config(info.data_toml, "the model's [data] table");
  return named_classes(d.get_string_list("data.classes"), info.class_names, "the model");
}

namespace {
// Which labels y [N] are among `classes` ([N] bool, on the CPU).
torch::Tensor in_classes(const torch::Tensor& y, const std::vector<int64_t>& classes) {
  auto in = torch::zeros(y.sizes(), torch::kBool);
  for (int64_t k : classes) in |= y.to(torch::kCPU) == k;
  return in;
}
}  // namespace

int64_t rows_outside_classes(const torch::Tensor& y, const std::vector<int64_t>& classes) {
  if (classes.empty() || !y.defined()) return 0;
  return y.numel() - in_classes(y, classes).sum().item<int64_t>();
}

Dataset labelled_task_data(const Config& c, const ModelInfo& info, const std::string& task, std::string* spec,
                           std::optional<DataSplit>* rebuilt) {
  *spec = c.get_string("task.data");
  // (class indices, as the model's data.classes names them)
  const std::vector<int64_t> keep = model_trained_classes(info);
  if (!info.data_toml.empty()) {
    const Config d = data_config(info.data_toml, "the model's [data] table");
    // (a run on a built-in set's test split trained on those images: its own
    // held-out rows, below, are the ones it never saw)
    if (spec->empty() && d.get_string("data.path").empty() && d.get_string("data.split") != "test")
      *spec = d.get_string("data.name") + ":test";
  }
  Dataset data;
  if (spec->empty()) {
    // (a run on a file: its own held-out rows, the split rebuilt)
    std::string why = "the model file does not say what it was trained on";
    if (auto split = model_data_split(info, "the model", &why)) {
      EBM_CHECK_DATA(split->test.has_labels(), task, ": the run's held-out rows have no labels (give --data and --labels)");
      EBM_CHECK_DATA(split->test.size() > 0, task, ": the run held out no rows (data.test_fraction = 0): give --data");
      *spec = "the run's held-out split";
      Dataset test = split->test;
      if (rebuilt != nullptr) *rebuilt = std::move(split);
      return test;
    }
    fail(ExitCode::kUsage, task, ": give --data (", why, ")");
  }
  const std::string toy = spec->substr(0, spec->rfind(':'));
  if (is_toy2d(toy) && !std::filesystem::exists(*spec)) {
    // A labelled 2D toy set (moons, circles): 10,000 fresh points, drawn as
    // --dataset draws them (seed 0 of the held-out stream).
    EBM_CHECK_USAGE(c.get_string("task.labels").empty(), *spec, ": a built-in set has its own labels");
    constexpr int64_t kPoints = 10000;
    auto gen = make_generator(0, kStreamTestData);
    auto again = gen.clone();
    data.x = toy2d(toy, kPoints, gen);
    data.y = toy2d_labels(toy, kPoints, again);
    EBM_CHECK_DATA(data.y.defined(), toy, ": a toy set without labels (labelled: moons, circles)");
    data.description = *spec = toy;
    return data;
  }
  data = read_model_dataset(*spec, info, "test", c.get_string("task.labels"));
  // (a file without --labels is a missing option, 64; a set that should
  // have brought its own, 65)
  if (c.get_string("task.labels").empty())
    EBM_CHECK_USAGE(data.has_labels(), *spec, ": no labels (give --labels)");
  EBM_CHECK_DATA(data.has_labels(), *spec, ": no labels (give --labels)");
  if (!keep.empty()) {
    const auto in = in_classes(data.y, keep);
    if (const int64_t out = data.size() - in.sum().item<int64_t>(); out > 0)
      notes() << "ebm eval: note: " << *spec << ": " << out << " of " << data.size() << " rows belong to classes "
              << "the model was not trained on (its data.classes) and are left out: the scores are over the other "
              << data.size() - out << "\n";
    data = data.rows(in.nonzero().view({-1}));
  }
  return data;
}

const EvalTaskRegistry& eval_task_registry() {
  static const EvalTaskRegistry reg = [] {
    EvalTaskRegistry r("eval task", "task", "name", "nll2d", "what ebm eval measures");
    r.add({"nll2d", "exact test NLL of a 2D model: log Z by quadrature, refined to --tol", points_keys()},
          nll2d_task);
    auto mode_keys = points_keys();
    mode_keys.push_back({"clusters", int64_t(8), "k-means cells the masses are compared in"});
    mode_keys.push_back({"z", 4.0, "flag a cell whose mass is more than z standard errors from the data's share"});
    mode_keys.push_back({"min_diff", 0.02, "... and more than this apart (absolute)"});
    r.add({"modes", "the model's mass in the cells of the data's clusters against the data's shares (2D, exact)",
           mode_keys},
          modes_task);
    r.add({"fid", "Frechet distance of model samples' classifier features to reference images'",
           {{"features", std::string(""), "classifier model whose penultimate features are compared"},
            {"reference", std::string(""), "reference images: fashion_mnist, mnist (test split), PNG folder, IDX, NPY"},
            {"samples", std::string(""), "score these images instead of drawing the model's"},
            {"n", int64_t(1000), "images on each side"},
            {"steps", int64_t(200), "sampler transitions from noise per drawn sample"},
            {"sampler", std::string(""), "sampler spec; empty = the model's training sampler"},
            {"from", std::string("noise"), "where drawn samples start: noise | generator (the model's learned sampler)"},
            {"model", std::string(""), "the model file (set by --model)"},
            {"seed", int64_t(0), "seed of the draws"}}},
          fid_task);
    r.add({"ais", "log Z and the test log-likelihood of any model or target by annealed importance sampling "
                  "(--reverse: also from the model's samples)", ais_task_keys()},
          ais_task);
    r.add({"generator", "a learned sampler's draws under the true density of 8gaussians or 25gaussians: mean log p, "
           "mode coverage", generator_task_keys()},
          generator_task);
    r.add({"ood", "out-of-distribution detection: AUROC, AUPR and FPR at 95% TPR of scores of in vs OOD sets",
           ood_task_keys()},
          ood_task);
    r.add({"classify", "a classifier's accuracy and negative log-likelihood of the labels", classify_task_keys()},
          classify_task);
    r.add({"calibration", "a classifier's calibration: ECE and MCE over confidence bins, accuracy, NLL",
           calibration_task_keys()},
          calibration_task);
    r.add({"robustness", "a classifier's accuracy under PGD attacks (L-inf, L2) at each radius, optionally purified",
           robustness_task_keys()},
          robustness_task);
    r.add({"continual", "class-incremental learning: accuracy per task and averaged, classifying over all classes",
           continual_task_keys()},
          continual_task);
    return r;
  }();
  return reg;
}

std::shared_ptr<const Schema> eval_task_schema() {
  static const auto schema = [] {
    auto s = std::make_shared<Schema>();
    s->add({"task", {}, {eval_task_registry().group()}});
    return std::shared_ptr<const Schema>(s);
  }();
  return schema;
}

Energy eval_energy(const std::string& model, const std::string& target, const std::string& script, int64_t dim,
                   ModelInfo& info) {
  Energy energy;
  if (!target.empty()) {
    energy = make_target(target, dim);
  } else if (!script.empty()) {
    energy = std::make_shared<ScriptEnergyImpl>(script, dim);
  } else {
    return load_model(model, &info);
  }
  info.event_shape = energy->event_shape();
  return energy;
}

bool task_reads_model_path(const std::string& task) {
  return task == "continual" || task == "generator" || task == "fid" || task == "ais" || task == "ood";
}

}  // namespace ebm
