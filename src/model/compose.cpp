#include "ebm/model/compose.h"

#include <algorithm>

#include "ebm/core/error.h"
#include "ebm/data/labels.h"
#include "ebm/energy/compose.h"
#include "ebm/energy/standardized.h"

namespace ebm {

namespace {
bool same_map(const AffineMap& a, const AffineMap& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (torch::equal(a.shift, b.shift) && torch::equal(a.scale, b.scale));
}

std::string class_list(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + names[i] + "=" + std::to_string(i);
  return s;
}

// The class index a --label value names: a number, or one of the model's
// class names (a name that is also a number is taken as the number, except
// for a model trained on labels by value, -1 / 1, whose names are numbers).
int64_t label_index(const std::string& text, const ModelInfo& info, int64_t k, const std::string& path) {
  if (text.empty() || text == "none") return -1;
  // (a model trained on labels by value, -1 / 1: --label is one of them)
  if (const int64_t c = class_by_value(text, info.class_names); c >= 0) return c;
  if (text == "-1") return -1;
  EBM_CHECK_USAGE(k > 0, "--label ", text, ": ", path, " is not class-conditional (energy.conditional)");
  EBM_CHECK_USAGE(!named_by_value(info.class_names), "--label ", text, ": ", path,
                  " was trained on labels by value and has no label ", text, " (its labels: ",
                  c10::Join(", ", info.class_names), ")");
  int64_t label = -1;
  size_t used = 0;
  try {
    label = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == text.size()) {
    EBM_CHECK_USAGE(label >= 0, "--label ", text, ": labels are >= 0 (-1: none)");
    EBM_CHECK_USAGE(label < k, "--label ", text, ": ", path, " has classes 0 to ", k - 1,
                    info.class_names.empty() ? "" : " (" + class_list(info.class_names) + ")");
    return label;
  }
  // (an exact name, else the one that differs only in case, as data.classes takes them)
  const auto& names = info.class_names;
  const int64_t found = find_class_name(text, names);
  EBM_CHECK_USAGE(found >= 0, "--label ", text, ": ", path,
                  names.empty() ? " keeps no class names; give a class index 0 to " + std::to_string(k - 1)
                                : " has no class of that name (" + class_list(names) + ")");
  return found;
}

Energy at_label(Energy e, int64_t label) {
  if (label < 0) return e;
  auto labelled = std::make_shared<LabelledEnergyImpl>(e);
  labelled->set_labels(torch::tensor({label}, torch::kLong));
  return labelled;
}
}  // namespace

ComposedModel load_composed(const std::vector<ModelTerm>& terms, const std::string& op,
                            const std::vector<double>& weights) {
  EBM_CHECK_USAGE(!terms.empty(), "no --model given");
  EBM_CHECK_USAGE(terms.size() == 1 || !op.empty(), terms.size(),
                  " models given: say how to combine them with --compose and|or|not");
  std::vector<Energy> user, inner;
  std::vector<AffineMap> maps;
  ComposedModel out;
  for (size_t i = 0; i < terms.size(); ++i) {
    ModelInfo info;
    Energy e = load_model(terms[i].path, &info);
    if (i == 0) {
      out.info = info;
    } else {
      EBM_CHECK_USAGE(info.event_shape == out.info.event_shape, "--compose: ", terms[i].path, " models samples of event shape ",
                      c10::IntArrayRef(info.event_shape), ", ", terms[0].path, " of ",
                      c10::IntArrayRef(out.info.event_shape));
      EBM_CHECK_USAGE(info.pixels.has_value() == out.info.pixels.has_value() &&
                          (!info.pixels || (info.pixels->lo == out.info.pixels->lo &&
                                            info.pixels->hi == out.info.pixels->hi)),
                      "--compose: ", terms[i].path, " and ", terms[0].path, " do not share a pixel range (data.scale)");
      const auto &v = info.values, &v0 = out.info.values;
      EBM_CHECK_USAGE(v.has_value() == v0.has_value() &&
                          (!v || (v->raw_lo == v0->raw_lo && v->raw_hi == v0->raw_hi && v->lo == v0->lo &&
                                  v->hi == v0->hi)),
                      "--compose: ", terms[i].path, " and ", terms[0].path,
                      " do not map float images alike (their training images' range onto data.scale)");
    }
    auto [in, map] = sampling_view(e);
    const int64_t label = label_index(terms[i].label, info, e->num_classes(), terms[i].path);
    user.push_back(at_label(e, label));
    inner.push_back(at_label(in, label));
    maps.push_back(map);
    out.term_info.push_back(info);
    out.term_units.push_back(map);
  }
  bool shared = true;
  for (const auto& m : maps) shared = shared && same_map(m, maps.front());
  // Models of other units: each term's energy in the user's units, viewed in
  // the first model's units (u -> x = shift + scale u), where its sampler's
  // step was tuned; without a first map, the user's units.
  std::vector<Energy> parts = shared ? inner : user;
  out.units = shared ? maps.front() : AffineMap();
  if (!shared && maps.front().defined()) {
    const AffineMap& m = maps.front();
    AffineMap to_first;  // (to_model(u) = m.to_user(u))
    to_first.scale = 1.0 / m.scale;
    to_first.shift = -m.shift / m.scale;
    for (auto& p : parts) p = std::make_shared<StandardizedEnergyImpl>(p, to_first);
    out.units = m;
  }
  out.energy = parts.size() == 1 && op.empty() ? parts.front()
                                               : std::make_shared<ComposedEnergyImpl>(parts, op, weights);
  return out;
}

}  // namespace ebm
