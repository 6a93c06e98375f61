#include "ebm/model/compose.h"

#include "ebm/core/error.h"
#include "ebm/energy/compose.h"
#include "ebm/energy/standardized.h"

namespace ebm {

namespace {
bool same_map(const AffineMap& a, const AffineMap& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (torch::equal(a.shift, b.shift) && torch::equal(a.scale, b.scale));
}

Energy at_label(Energy e, int64_t label, const std::string& path) {
  if (label < 0) return e;
  const int64_t k = e->num_classes();
  EBM_CHECK_USAGE(k > 0, "--label ", label, ": ", path, " is not class-conditional (energy.conditional)");
  EBM_CHECK_USAGE(label < k, "--label ", label, ": ", path, " has classes 0 to ", k - 1);
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
    }
    auto [in, map] = sampling_view(e);
    user.push_back(at_label(e, terms[i].label, terms[i].path));
    inner.push_back(at_label(in, terms[i].label, terms[i].path));
    maps.push_back(map);
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
