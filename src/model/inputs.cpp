#include "ebm/model/inputs.h"

#include "ebm/model/columns.h"
#include "ebm/model/far_inputs.h"
#include "ebm/model/input_units.h"

#include <c10/util/accumulate.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "ebm/core/error.h"
#include "ebm/energy/standardized.h"
#include "ebm/core/progress.h"
#include "ebm/data/images.h"
#include "ebm/data/image_reading.h"
#include "ebm/data/integer_arrays.h"
#include "ebm/data/labels.h"
#include "ebm/data/pixels.h"
#include "ebm/io/image_files.h"
#include "ebm/io/io.h"
#include "ebm/train/train.h"

namespace ebm {

std::optional<std::pair<double, double>> image_range(const ModelInfo& info) {
  if (info.pixels) return std::make_pair(info.pixels->lo, info.pixels->hi);
  if (info.values) return std::make_pair(info.values->lo, info.values->hi);
  if (info.event_shape.size() != 3 || info.sampler_toml.empty()) return std::nullopt;
  Config sc = make_train_config();
  sc.load_string(info.sampler_toml, "model sampler_config");
  if (!sc.has_key("sampler.clamp_min") || !sc.has_key("sampler.clamp_max")) return std::nullopt;
  const double lo = sc.get_float("sampler.clamp_min"), hi = sc.get_float("sampler.clamp_max");
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo >= hi) return std::nullopt;
  return std::make_pair(lo, hi);
}

std::optional<std::pair<double, double>> start_range(const ModelInfo& info) {
  if (auto range = image_range(info)) return range;
  return info.start_box;
}

torch::Tensor chain_start(const ModelInfo& info, int64_t n, at::Generator& gen, const c10::Device& device) {
  const auto range = image_range(info);
  if (info.start.defined()) {
    // (clamped into the pixel range, as the chains are after every step)
    auto x = info.start.to(device).draw(n, gen);
    return range ? x.clamp_(range->first, range->second) : x;
  }
  std::vector<int64_t> shape = info.event_shape;
  shape.insert(shape.begin(), n);
  const auto opts = torch::TensorOptions(torch::kFloat).device(device);
  if (const auto box = start_range(info)) return at::empty(shape, opts).uniform_(box->first, box->second, gen);
  return at::normal(0.0, 1.0, shape, gen, opts);
}

namespace {
// A class folder's labels in the model's numbering: named sub-folders
// (not numbers) are labelled by their place among the folder's own names,
// which differ from the training folder's when some classes are missing, so
// they map by name to the model's labels; a name the model does not have is
// an error. Numbered folders are their numbers already.
torch::Tensor folder_labels_as_trained(const Dataset& raw, const ModelInfo& info, const std::string& spec) {
  const auto& names = raw.class_names;
  bool numbered = true;  // (folders 0/ 1/ ...: class indices, or a model's labels by value)
  for (const auto& n : names) numbered = numbered && class_folder_number(n) >= 0;
  const bool by_value = named_by_value(info.class_names);
  std::vector<int64_t> to_model(names.size(), -1);
  if (numbered && !by_value) {
    for (size_t k = 0; k < names.size(); ++k) to_model[k] = class_folder_number(names[k]);
    return torch::tensor(to_model, torch::kLong).index_select(0, raw.y);
  }
  // (a model trained on numbered labels has no names to match: the folders'
  // sorted places would be guesses, 0.23 accuracy for a probe's 0.82)
  EBM_CHECK_DATA(!info.class_names.empty(), spec, ": class sub-folders are named ('", names.empty() ? "" : names[0],
                 "', ...) but the model's classes have none (it was trained on numbered labels): name the "
                 "folders by the labels' numbers (0/ 1/ ...)");
  std::string known;
  for (size_t i = 0; i < info.class_names.size(); ++i) known += (i ? ", " : "") + info.class_names[i];
  auto counts = torch::bincount(raw.y, {}, int64_t(names.size()));
  for (size_t k = 0; k < names.size(); ++k) {
    auto it = std::find(info.class_names.begin(), info.class_names.end(), names[k]);
    EBM_CHECK_DATA(it != info.class_names.end() || counts[int64_t(k)].item<int64_t>() == 0, spec,
                   ": class sub-folder '", names[k], "' is not one of the model's classes (", known, ")");
    if (it != info.class_names.end()) to_model[k] = int64_t(it - info.class_names.begin());
  }
  return torch::tensor(to_model, torch::kLong).index_select(0, raw.y);
}

}  // namespace

double model_standardize_sd(const ModelInfo& info) {
  return info.data_toml.empty() ? 2.0 : data_config(info.data_toml, "model").get_float("data.standardize_sd");
}

namespace {
// Rows x in training standard deviations from the training mean, [N, D]
// float64; undefined when the map does not apply (none, or another width).
// (the map's scale is the training sd / data.standardize_sd)
torch::Tensor in_training_sds(const AffineMap& map, const ModelInfo& info, const torch::Tensor& x) {
  if (!map.defined() || x.dim() < 1 || x.size(0) == 0 || x[0].numel() != map.scale.numel()) return {};
  return (x.detach().to(torch::kCPU, torch::kDouble).flatten(1) - map.shift) / (map.scale * model_standardize_sd(info));
}
}  // namespace

void warn_if_far_from_training(const AffineMap& map, const ModelInfo& info, const torch::Tensor& x,
                               const std::string& what) {
  const auto u = in_training_sds(map, info, x);
  if (!u.defined()) return;
  const double typical = std::get<0>(u.abs().max(1)).median().item<double>();
  if (typical > 10.0)
    notes() << "ebm: warning: " << what << ": values lie far outside the model's training data (the median row is "
            << std::lround(typical) << " training standard deviations from the mean in some column); are they "
               "in the training data's units?\n";
}

void warn_of_far_rows(const AffineMap& map, const ModelInfo& info, const torch::Tensor& x, const std::string& what,
                      const torch::Tensor& ignore) {
  auto u = in_training_sds(map, info, x);
  if (!u.defined()) return;
  if (ignore.defined()) u = torch::where(ignore.to(torch::kCPU).flatten(1).expand_as(u), torch::zeros_like(u), u);
  const auto far = std::get<0>(u.abs().max(1));  // [N]
  // (the median row far out is warn_if_far_from_training's)
  if (far.median().item<double>() > 10.0) return;
  const auto outliers = (far > 100.0).nonzero();
  if (outliers.size(0) == 0) return;
  const int64_t r = outliers[0][0].item<int64_t>();
  const int64_t c = u[r].abs().argmax().item<int64_t>();
  notes() << "ebm: warning: " << what << ": " << outliers.size(0) << " row(s) lie over 100 training standard "
          << "deviations from the mean in some column (the first: row " << r + 1 << " counting from 1, column "
          << c + 1 << ", " << std::setprecision(3) << far[r].item<double>() << std::setprecision(6)
          << " sds); the model knows nothing there\n";
}

void warn_if_far_from_training(EnergyImpl& energy, const ModelInfo& info, const torch::Tensor& x,
                               const std::string& what) {
  AffineMap units;
  sampling_view(energy, &units);
  warn_if_far_from_training(units, info, x, what);
}

std::optional<PixelMap> image_map(const std::optional<PixelMap>& pixels, const std::optional<ValueMap>& values) {
  if (pixels) return pixels;
  if (!values) return std::nullopt;
  PixelMap m;
  m.lo = values->lo;
  m.hi = values->hi;
  return m;
}

std::optional<PixelMap> display_map(const ModelInfo& info) { return image_map(info.pixels, info.values); }

namespace {
// (inputs may leave the range by twice its width: noisy images to denoise
// do, by a few noise sds; 0-255 pixels saved as floats still do not fit)
constexpr double kInputSlack = 2.0;
}  // namespace

torch::Tensor into_model_units(const torch::Tensor& x, bool pixels, const ModelInfo& info, const std::string& path) {
  if (!pixels && info.values) {
    // (the user's units, as the training images were: checked against
    // their range, as other float images are against the model's)
    const auto& v = *info.values;
    check_in_pixel_range(x, v.raw_lo, v.raw_hi, path,
                         "float arrays are taken as in the units of the model's training images", kInputSlack);
    // (images in other units, [0, 1] for a model of 0-255 floats, fill a
    // sliver of its range and are read as near-black: say so)
    const double lo = x.min().item<double>(), hi = x.max().item<double>(), w = v.raw_hi - v.raw_lo;
    if (x.size(0) >= 2 && hi - lo < 0.1 * w)
      notes() << "ebm: warning: " << path << ": its values span [" << lo << ", " << hi << "], under a tenth of the "
              << "range the model's training images had [" << v.raw_lo << ", " << v.raw_hi
              << "]; float images are taken as in those units\n";
    // ([0, 1] images for a model of [-1, 1] ones: several images that all
    // keep to one side of the training range, over half of it missing)
    else if (x.size(0) >= 8 && hi - lo < 0.6 * w && (lo > v.raw_lo + 0.25 * w || hi < v.raw_hi - 0.25 * w))
      notes() << "ebm: warning: " << path << ": its values span [" << lo << ", " << hi << "], one side of the range "
              << "the model's training images had [" << v.raw_lo << ", " << v.raw_hi << "]; float images are taken "
              << "as in those units: if these are in others (say [0, 1] against [-1, 1]), map them first\n";
    return v.to_model(x);
  }
  if (!pixels) {
    if (auto range = image_range(info)) {
      check_in_pixel_range(x, range->first, range->second, path, "", kInputSlack);
      // ([0, 1] floats, the common convention, given to a model of 0-255
      // pixels mapped onto [-1, 1]: taken as its units, every image reads
      // as a bright half of the range; say so)
      const double lo = x.min().item<double>(), hi = x.max().item<double>();
      if (info.pixels && x.size(0) >= 2 && range->first < 0 && lo >= 0 && hi <= 1 && range->second >= 1)
        notes() << "ebm: warning: " << path << ": float images in [" << lo << ", " << hi << "] are taken as the "
                << "model's own units [" << range->first << ", " << range->second << "] (0 is mid-grey there); "
                   "if they are pixels / 255, give them as 0-255 integers (PNG, uint8 NPY) or mapped into that range\n";
    }
    return x;
  }
  EBM_CHECK_DATA(info.pixels.has_value(), path,
                 ": holds raw 0-255 pixels, but the model was not trained on pixels; give a float NPY in ",
                 info.values ? "its training images' units" : "the model's range");
  return info.pixels->to_model(x);
}

ImageReading model_image_reading(const ModelInfo& info) {
  ImageReading r;
  r.alpha = Alpha::kDrop;  // (model files before data.alpha: their training dropped it)
  if (info.event_shape.size() != 3 || info.data_toml.empty()) return r;
  const Config data = data_config(info.data_toml, "the model's [data] table");
  const auto given = image_reading_of(data);
  if (data.is_set("data.alpha")) r.alpha = given.alpha;
  if (given.resizes()) {
    r.height = info.event_shape[1];
    r.width = info.event_shape[2];
    r.crop = given.crop;
  }
  if (given.channels > 0) r.channels = info.event_shape[0];
  return r;
}

torch::Tensor read_model_input(const std::string& path, const ModelInfo& info) {
  check_csv_columns(path, info);
  const auto& shape = info.event_shape;
  const ImageReading reading = model_image_reading(info);
  const auto as_read = [&](const torch::Tensor& x, bool pixels) {  // (images of an array: channels and size)
    if (x.dim() != 4 || (x.size(1) != 1 && x.size(1) != 3)) return x;
    return resize_images(with_channels(x, reading.channels, pixels), reading, pixels);
  };
  // (PNG and IDX bytes are pixels; an integer NPY follows the model: raw
  // pixels for a model trained on them, numbers in the data's units else)
  torch::Tensor x;
  bool pixels = false;
  std::error_code ec;
  if (file_extension(path) == ".npy" && !std::filesystem::is_directory(path, ec)) {
    const auto raw = channels_first(read_array_raw(path), path);  // (as training read them)
    pixels = !raw.is_floating_point() && info.pixels.has_value();
    if (pixels) check_pixel_range(raw, path);
    // (8-bit pixels for a model of float images in other units: its values
    // are the images' own units, not 0-255)
    if (!raw.is_floating_point() && info.values && integer_array_is_pixels(raw)) {
      const int64_t top = raw.max().item<int64_t>();
      const auto& v = *info.values;
      EBM_CHECK_DATA(double(top) <= v.raw_hi + 0.5 * (v.raw_hi - v.raw_lo), path, ": holds integer pixels (up to ",
                     top, "), but the model was trained on float images with values in [", v.raw_lo, ", ", v.raw_hi,
                     "]: give these in those units (a float NPY)");
    }
    x = raw.to(torch::kFloat32);
    x = as_read(x, pixels);
  } else {
    // (image files and folders: their alpha too, as training read them)
    const bool images = std::filesystem::is_directory(path, ec) || image_file_name(path);
    Dataset in = images ? load_data_path(path, reading) : load_data_path(path);
    x = images ? in.x : as_read(in.x, in.pixels);
    pixels = in.pixels;
  }
  // (grey images stored as RGB, a JPEG's way, for a model of grey images;
  // grey images, a folder of them read as grey too, for a colour model)
  if (pixels && shape.size() == 3 && shape[0] == 1 && x.dim() == 4 && x.size(1) == 3)
    if (const auto grey = grey_of_rgb(x); grey.defined()) x = grey;
  if (pixels && shape.size() == 3 && shape[0] == 3 && x.dim() == 4 && x.size(1) == 1 &&
      x.sizes().slice(2) == c10::IntArrayRef(shape).slice(1))
    x = x.expand({-1, 3, -1, -1}).contiguous();
  const int64_t d = c10::multiply_integers(shape);
  // (colour images for a model of grey ones: name the way out)
  const bool colour_for_grey = shape.size() == 3 && shape[0] == 1 && x.dim() == 4 && x.size(1) == 3 &&
                               x.sizes().slice(2) == c10::IntArrayRef(shape).slice(1);
  EBM_CHECK_DATA(x.dim() >= 1 && x.size(0) >= 1 && x[0].numel() == d, path, ": rows of ",
                 x.dim() >= 1 && x.size(0) >= 1 ? x[0].numel() : 0, " values (", x.sizes(),
                 ") for a model whose samples are ", c10::IntArrayRef(shape), " (", d, " values)",
                 colour_for_grey ? ": colour images for a model of grey ones (convert them to grey, or train on "
                                   "colour with data.channels = 3)"
                                 : "");
  check_image_rows(x, shape, path);
  x = into_model_units(x, pixels, info, path);
  auto full = shape;
  full.insert(full.begin(), x.size(0));
  return x.reshape(full).to(torch::kFloat);
}

namespace {
// A built-in set's labels in a model's classes: its own indices for a model
// of the same names (or of none: plain indices), else each class by its name
// among the model's (case aside: "bag" for "Bag"); a class the model lacks,
// or names that are none of the model's, is kBadData naming both lists, not
// an accuracy of unrelated indices.
torch::Tensor builtin_labels_as_trained(const Dataset& d, const ModelInfo& info, const std::string& spec) {
  const auto& want = info.class_names;
  if (want.empty() || want == d.class_names) return d.y;
  std::vector<int64_t> to_model(d.class_names.size(), -1);
  for (size_t c = 0; c < d.class_names.size(); ++c)
    to_model[c] = named_by_value(want) ? class_by_value(d.class_names[c], want) : find_class_name(d.class_names[c], want);
  const auto present = std::get<0>(torch::_unique(d.y));
  for (int64_t i = 0; i < present.numel(); ++i) {
    const int64_t c = present[i].item<int64_t>();
    EBM_CHECK_DATA(to_model[size_t(c)] >= 0, spec, ": its class '", d.class_names[size_t(c)],
                   "' is none of the model's classes (", c10::Join(", ", want),
                   "), so its labels cannot be compared with the model's; give the rows with a labels file "
                   "in the model's names (--labels)");
  }
  return torch::tensor(to_model, torch::kLong).index_select(0, d.y);
}

Dataset model_dataset(const std::string& spec, const ModelInfo& info, const std::string& split,
                      const std::string& labels, bool with_labels) {
  std::string name = spec, part = split;
  const auto colon = spec.rfind(':');
  if (colon != std::string::npos && (spec.substr(colon + 1) == "train" || spec.substr(colon + 1) == "test")) {
    name = spec.substr(0, colon);
    part = spec.substr(colon + 1);
  }
  Dataset d;
  if (name != "fashion_mnist" && name != "mnist") {
    d.x = read_model_input(spec, info);
    d.description = spec;
    if (!labels.empty()) {
      const auto file = read_label_file(labels, d.size(), info.class_names);  // (one per row of spec)
      d.y = labels_as_trained(file, info.class_names, 0, labels);
    } else {
      std::error_code ec;  // (a folder's sub-folders label it; its images read as for the model)
      Dataset raw = std::filesystem::is_directory(spec, ec) ? load_data_path(spec, model_image_reading(info))
                                                            : load_data_path(spec);
      if (raw.has_labels()) d.y = folder_labels_as_trained(raw, info, spec);
    }
    return d;
  }
  EBM_CHECK_USAGE(labels.empty(), spec, ": a built-in set has its own labels; drop the labels file ", labels);
  EBM_CHECK_USAGE(info.pixels.has_value(), spec, ": a built-in image set, but the model was not trained on pixels");
  d = name == "mnist" ? load_mnist(part) : load_fashion_mnist(part);
  if (with_labels) d.y = builtin_labels_as_trained(d, info, spec);
  {
    const auto r = model_image_reading(info);
    d.x = resize_images(with_channels(d.x, r.channels, true), r, true);
  }
  EBM_CHECK_DATA(d.x[0].numel() == c10::multiply_integers(info.event_shape), spec, ": images of ",
                 d.x[0].sizes(), " for a model whose samples are ", c10::IntArrayRef(info.event_shape));
  auto full = info.event_shape;
  full.insert(full.begin(), d.size());
  d.x = info.pixels->to_model(d.x).reshape(full).to(torch::kFloat);
  d.pixels = false;
  return d;
}
}  // namespace

Dataset read_model_dataset(const std::string& spec, const ModelInfo& info, const std::string& split,
                           const std::string& labels) {
  return model_dataset(spec, info, split, labels, true);
}

torch::Tensor read_model_data(const std::string& spec, const ModelInfo& info, const std::string& split) {
  const auto colon = spec.rfind(':');
  const std::string name = colon == std::string::npos ? spec : spec.substr(0, colon);
  if (name != "fashion_mnist" && name != "mnist") return read_model_input(spec, info);
  return model_dataset(spec, info, split, "", false).x;  // (images only: any model may read them)
}

namespace {
// IDX (LeCun et al.): magic 0x00000800 | type 0x08 (ubyte) | rank, then each
// dimension as a big-endian int32, then the bytes.
void write_idx_bytes(const std::string& path, const torch::Tensor& px /* uint8 */) {
  std::string bytes = {0, 0, 0x08, static_cast<char>(px.dim())};
  for (int64_t s : px.sizes()) {
    const uint32_t v = uint32_t(s);
    for (int shift : {24, 16, 8, 0}) bytes.push_back(static_cast<char>((v >> shift) & 0xff));
  }
  auto c = px.contiguous();
  bytes.append(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), size_t(c.numel()));
  atomic_write_text(path, bytes);  // (every write checked: a full disk is exit 66 with its reason)
}
}  // namespace

void write_images(const std::string& path, const torch::Tensor& x, const PixelMap& map, int64_t cols,
                  const std::optional<ValueMap>& values) {
  const std::string ext = file_extension(path);
  auto cpu = x.detach().to(torch::kCPU, torch::kFloat);
  if (ext == ".png") {
    write_image_grid(path, cpu, map.lo, map.hi, cols);
  } else if (ext == ".npy") {
    write_npy(path, values ? values->to_user(cpu) : cpu);
  } else if (ext == ".idx") {
    // (one channel: [N, H, W] as MNIST's files; colour keeps [N, C, H, W])
    auto px = map.to_pixels(cpu);
    write_idx_bytes(path, px.size(1) == 1 ? px.squeeze(1) : px);
  } else {
    fail(ExitCode::kUsage, path, ": images are written as .png, .npy or .idx");
  }
}

}  // namespace ebm
