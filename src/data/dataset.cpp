// Datasets with shapes and labels, and the [data] section of a config.
#include "ebm/core/error.h"
#include "ebm/data/data.h"
#include "ebm/io/io.h"

namespace ebm {

Dataset Dataset::rows(const torch::Tensor& index) const {
  Dataset out{x.index_select(0, index), {}, description};
  if (y.defined()) out.y = y.index_select(0, index.to(y.device()));
  return out;
}

Dataset Dataset::to(const c10::Device& device) const {
  return {x.to(device), y.defined() ? y.to(device) : y, description};
}

DataSplit split_dataset(const Dataset& data, double test_fraction, at::Generator& gen) {
  // (split_rows of the row numbers: the same permutation for rows and labels)
  auto s = split_rows(torch::arange(data.size(), torch::kLong), test_fraction, gen);
  return {data.rows(s.train), data.rows(s.test)};
}

const DatasetRegistry& dataset_registry() {
  static const DatasetRegistry reg = [] {
    DatasetRegistry r("dataset", "data", "name", "8gaussians",
                      "built-in data set (used when data.path is empty)");
    for (const auto& name : toy2d_names())
      r.add({name, "2D toy set (FFJORD / VERA)",
             {{"n", int64_t(100000), "points generated for the toy set"}}},
            [name](const Config& c, at::Generator& gen) {
              const int64_t n = c.get_int("data.n");
              EBM_CHECK_CONFIG(n >= 2, "data.n must be >= 2, got ", n);
              return Dataset{toy2d(name, n, gen), {}, name};
            });
    return r;
  }();
  return reg;
}

Section data_section() {
  return {"data",
          {{"path", std::string(""), "training data file: CSV [N, D], NPY [N, ...] or IDX; used instead of data.name when set"},
           {"labels", std::string(""), "one integer label per row of data.path (CSV, NPY or IDX); empty = none"},
           {"shape", std::vector<int64_t>{}, "shape of one sample, e.g. [1, 28, 28] for rows of flattened images; empty = as read"},
           {"test_fraction", 0.1, "held-out fraction, written to test.csv"},
           {"standardize", std::string("auto"),
            "train on standardize_sd * (x - mean) / sd per column, the model file keeping the map so every "
            "command works in the data's units: on | off | auto (on for vector data)"},
           {"standardize_sd", 2.0,
            "standard deviation of each column in the model's units (2: the spread of the built-in 2D sets "
            "the recipes' step sizes and networks were tuned at)"}},
          {dataset_registry().group()}};
}

Dataset build_dataset(const Config& cfg, at::Generator& gen) {
  const std::string path = cfg.get_string("data.path"), labels = cfg.get_string("data.labels");
  Dataset d;
  if (path.empty()) {
    EBM_CHECK_CONFIG(labels.empty(), "data.labels needs data.path (the rows it labels)");
    d = dataset_registry().make(cfg, gen);
  } else {
    d = Dataset{read_array(path), {}, path};
    if (!labels.empty()) {
      auto y = read_matrix(labels);
      EBM_CHECK_DATA(y.size(1) == 1 && y.size(0) == d.size(), labels, ": want one label per row of ",
                     path, " (", d.size(), " rows), got ", y.size(0), " x ", y.size(1));
      EBM_CHECK_DATA(torch::equal(y, y.round()) && y.min().item<double>() >= 0, labels,
                     ": labels must be integers >= 0");
      d.y = y.squeeze(1).to(torch::kLong);
    }
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
  EBM_CHECK_DATA(d.size() >= 2, "data ", d.description, ": need at least 2 rows, got ", d.size());
  return d;
}

}  // namespace ebm
