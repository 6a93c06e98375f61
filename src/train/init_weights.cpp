// train.init: start from a trained model's weights, in its units (train/init_weights.h).
#include "ebm/train/init_weights.h"

#include <algorithm>
#include <filesystem>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/data/labels.h"
#include "ebm/energy/standardized.h"
#include "ebm/io/file_bytes.h"
#include "ebm/io/io.h"
#include "ebm/model/generator_file.h"

namespace ebm {
namespace fs = std::filesystem;
namespace {

std::string shape_text(const std::vector<int64_t>& s) { return c10::str(c10::IntArrayRef(s)); }

// This run's labels as the model's classes: by name (words, folders, labels
// by value), else as indices (by value when the model's names are values);
// a model without names has indices 0 .. K-1, which integer names are.
void adopt_classes(const InitModel& m, DataSplit& data) {
  const auto& names = m.info.class_names;
  if (!data.train.has_labels()) return;
  const auto& own = data.train.class_names;
  bool indices = true;  // (no names, or "0", "1", ...: class indices)
  for (size_t k = 0; k < own.size(); ++k) indices = indices && own[k] == std::to_string(k);
  if (indices && !named_by_value(names)) {
    for (Dataset* d : {&data.train, &data.test, &data.val}) d->class_names = names;
    return;
  }
  const auto target = [&](const std::string& name) -> int64_t {
    if (!names.empty()) {
      const auto it = std::find(names.begin(), names.end(), name);
      return it == names.end() ? -1 : int64_t(it - names.begin());
    }
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(name, &used);
    } catch (const std::exception&) {
      return -1;
    }
    return used == name.size() && v >= 0 ? v : -1;
  };
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) list += (i ? ", " : "") + names[i];
  if (names.empty()) list = "it keeps no class names: its labels are class indices 0 .. K-1";
  const int64_t n_own = int64_t(own.size());
  std::vector<int64_t> to_model;
  for (Dataset* d : {&data.train, &data.test, &data.val}) {
    if (!d->y.defined() || d->y.numel() == 0) continue;
    const int64_t k_own = std::max<int64_t>(n_own, d->y.max().item<int64_t>() + 1);
    while (int64_t(to_model.size()) < k_own) {
      const int64_t c = int64_t(to_model.size());
      to_model.push_back(target(c < n_own ? own[size_t(c)] : std::to_string(c)));
    }
    auto y = d->y.to(torch::kCPU, torch::kLong);
    auto mapped = torch::tensor(to_model, torch::kLong).index_select(0, y);
    const auto missing = (mapped < 0).nonzero();
    if (missing.numel() > 0) {
      const int64_t c = y[missing[0][0].item<int64_t>()].item<int64_t>();
      fail(ExitCode::kBadData, d->description, ": label ", c < n_own ? own[size_t(c)] : std::to_string(c),
           " is not one of the classes of train.init ", m.path, " (", list, ")");
    }
    d->y = mapped.to(d->y.device());
    d->class_names = names;
  }
}

std::string init_copy_path(const std::string& run_dir) { return run_dir + "/init.pt"; }

}  // namespace

std::optional<InitModel> adopt_init_model(const Config& cfg, DataSplit& data, const std::string& run_dir) {
  std::string path = cfg.get_string("train.init");
  if (path.empty()) return std::nullopt;
  std::error_code ec;
  if (!run_dir.empty() && !fs::exists(path, ec) && fs::is_regular_file(init_copy_path(run_dir), ec)) {
    path = init_copy_path(run_dir);  // (keep_init_copy says so on a resume, and refuses a fresh run)
  }
  InitModel m;
  m.path = path;
  const auto [energy, map] = sampling_view(load_model(path, &m.info));
  m.energy = energy;
  const bool pixels = data.pixels.has_value();
  const auto kind = [](bool px, bool values) { return px ? "0-255 pixels" : values ? "float images" : "vectors"; };
  EBM_CHECK_DATA(m.info.pixels.has_value() == pixels && m.info.values.has_value() == data.values.has_value(),
                 "train.init ", path, ": trained on ", kind(m.info.pixels.has_value(), m.info.values.has_value()),
                 ", this run's data (", data.train.description, ") are ", kind(pixels, data.values.has_value()));
  EBM_CHECK_DATA(m.info.event_shape == data.train.event_shape(), "train.init ", path, ": samples of ",
                 shape_text(m.info.event_shape), ", this run's data (", data.train.description, ") are ",
                 shape_text(data.train.event_shape()));
  // Vectors: the model's standardisation, not one fitted to these rows.
  EBM_CHECK_CONFIG(map.defined() == data.transform.defined(), "train.init ", path, ": trained ",
                   map.defined() ? "on standardised data; this run has data.standardize = off"
                                 : "without data.standardize; set data.standardize = off to start from it");
  if (map.defined()) data.transform = map;
  // Pixels: the same range; float images: the model's map of their values.
  if (pixels)
    EBM_CHECK_CONFIG(m.info.pixels->lo == data.pixels->lo && m.info.pixels->hi == data.pixels->hi, "train.init ",
                     path, ": trained on pixels mapped to [", m.info.pixels->lo, ", ", m.info.pixels->hi,
                     "]; this run's data.scale is [", data.pixels->lo, ", ", data.pixels->hi, "]");
  if (data.values) {
    const auto& v = *m.info.values;
    check_in_pixel_range(data.values->to_user(data.train.x), v.raw_lo, v.raw_hi, data.train.description,
                         "train.init " + path + " was trained on float images of that range, which it maps to " +
                             "its samplers' box; give images in its units");
    for (Dataset* d : {&data.train, &data.test, &data.val})
      if (d->x.defined() && d->x.numel() > 0) d->x = m.info.values->to_model(data.values->to_user(d->x)).to(torch::kFloat);
    data.values = m.info.values;
  }
  adopt_classes(m, data);
  return m;
}

namespace {
// Every parameter and buffer of `to` from the one of its name in `from`.
void copy_module(const torch::nn::Module& from, torch::nn::Module& to, const std::string& path, const char* table) {
  torch::NoGradGuard no_grad;
  const auto copy = [&](const torch::OrderedDict<std::string, torch::Tensor>& src_all,
                        const torch::OrderedDict<std::string, torch::Tensor>& dst_all, const char* what) {
    const std::string differ = std::string(" (this run's [") + table + "] settings differ from the model's; give its settings)";
    for (const auto& kv : dst_all) {
      const auto* src = src_all.find(kv.key());
      EBM_CHECK_CONFIG(src != nullptr && src->sizes() == kv.value().sizes(), "train.init ", path, ": ",
                       src == nullptr ? "has no " + std::string(what) + " '" + kv.key() + "'"
                                      : std::string(what) + " '" + kv.key() + "' is " + c10::str(src->sizes()) +
                                            ", this run's " + c10::str(kv.value().sizes()),
                       differ);
      kv.value().copy_(*src);
    }
    EBM_CHECK_CONFIG(src_all.size() == dst_all.size(), "train.init ", path, ": has ", src_all.size(), " ", what,
                     "s, this run's ", table, " ", dst_all.size(), differ);
  };
  copy(from.named_parameters(true), to.named_parameters(true), "weight");
  copy(from.named_buffers(true), to.named_buffers(true), "buffer");
}
}  // namespace

void copy_init_weights(const InitModel& init, EnergyImpl& energy) {
  copy_module(*init.energy, energy, init.path, "energy");
}

bool copy_init_generator(const InitModel& init, torch::nn::Module& generator) {
  if (!has_generator(init.path)) return false;
  copy_module(*load_generator(init.path), generator, init.path, "generator");
  return true;
}

void keep_init_copy(const Config& cfg, const std::string& run_dir, bool resume, bool lead) {
  const std::string path = cfg.get_string("train.init"), copy = init_copy_path(run_dir);
  if (path.empty()) return;
  std::error_code ec;
  const bool have = fs::exists(path, ec), kept = fs::is_regular_file(copy, ec);
  if (resume && !have && kept) {
    notes() << "ebm: note: train.init " << path << " is gone: its copy " << copy << ", kept by the run in "
            << run_dir << ", stands in for it\n";
    return;
  }
  EBM_CHECK_CODE(have, ExitCode::kMissingInput, "train.init ", path, ": no such file (", copy,
                 " serves a --resume of its run only)");
  const std::string bytes = read_file_bytes(path);
  if (resume && kept) {
    EBM_CHECK_CONFIG(read_file_bytes(copy) == bytes, "--resume: train.init ", path, " changed since the run in ",
                     run_dir, " started from it (its copy is ", copy, "): a checkpoint continues in the units ",
                     "it started in; put the file back or --set train.init=", copy);
    return;
  }
  if (lead) atomic_write_text(copy, bytes);
}

}  // namespace ebm
