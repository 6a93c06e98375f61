#include "ebm/model/model.h"
#include "ebm/model/generator_file.h"

#include <c10/util/accumulate.h>
#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/data/data.h"
#include "ebm/energy/registry.h"
#include "ebm/energy/standardized.h"
#include "ebm/io/file_bytes.h"
#include "ebm/io/io.h"

namespace ebm {
namespace {

// A model file's archive, its seal checked (file_bytes.h).
void read_archive(torch::serialize::InputArchive& ar, const std::string& path) {
  std::istringstream is(read_sealed_file(path));
  ar.load_from(is);
}

constexpr const char* kFormat = "ebm-model-3";     // + the change of units, when there is one
constexpr const char* kFormatV2 = "ebm-model-2";   // event_shape: int64 [rank]
constexpr const char* kFormatV1 = "ebm-model-1";   // in_dim: a scalar

// Only the [energy] table, without keys of unselected components (earlier
// versions wrote every key of their flat schema).
std::string selected_energy_keys(const std::string& text, const std::string& origin) {
  toml::table t;
  try {
    t = toml::parse(text, origin);
  } catch (const toml::parse_error&) {
    return text;  // (load_string reports it)
  }
  toml::table out;
  auto* energy = t["energy"].as_table();
  if (energy == nullptr) return "";
  const auto& group = energy_registry().group();
  const std::string name = energy->get_as<std::string>("name") ? energy->get_as<std::string>("name")->get()
                                                               : group.default_choice;
  const Component* chosen = group.find(name);
  if (chosen != nullptr) {
    std::vector<std::string> drop;
    for (const auto& [k, v] : *energy) {
      const std::string key(k.str());
      if (key == group.selector) continue;
      bool mine = false;
      for (const auto& ck : chosen->keys) mine = mine || ck.name == key;
      if (!mine) drop.push_back(key);
    }
    for (const auto& k : drop) energy->erase(k);
  }
  out.insert("energy", *energy);
  std::ostringstream os;
  os << out;
  return os.str();
}
}  // namespace

void save_model(const std::string& path, EnergyImpl& energy, const Config& cfg,
                const std::vector<int64_t>& event_shape, const AffineMap& transform,
                const std::optional<PixelMap>& pixels, GeneratorImpl* generator,
                const std::vector<std::string>& class_names, const LowRankGaussian* start,
                const std::optional<ValueMap>& values, bool sampler_ran, std::optional<double> temperature) {
  torch::serialize::OutputArchive ar, weights;
  // (weights are written from the CPU, so a model trained on a GPU loads anywhere)
  const auto params = energy.parameters();
  const c10::Device device = params.empty() ? c10::Device(c10::kCPU) : params[0].device();
  if (!device.is_cpu()) energy.to(c10::kCPU);
  energy.save(weights);
  if (!device.is_cpu()) energy.to(device);
  ar.write("weights", weights);
  Config resolved(energy_schema());
  resolved.load_string(cfg.section_toml("energy"), "energy config");
  // A noise-conditional energy keeps the level it evaluates at, resolved.
  if (auto* nc = energy.noise_conditional())
    resolved.set_value("energy.noise_level", nc->noise_level());
  ar.write("energy_config", c10::IValue(resolved.section_toml("energy")));
  ar.write("event_shape", torch::tensor(event_shape, torch::kLong));
  if (transform.defined()) {
    ar.write("transform_shift", transform.shift.to(torch::kCPU, torch::kDouble));
    ar.write("transform_scale", transform.scale.to(torch::kCPU, torch::kDouble));
  }
  if (pixels) ar.write("pixel_map", pixels->to_tensor());
  if (values) ar.write("value_map", values->to_tensor());
  // (float images: the uniform start's box, which no pixel range gives)
  if (event_shape.size() == 3 && !pixels && cfg.has_key("buffer.init_low") && cfg.has_key("buffer.init_high"))
    ar.write("start_box",
             torch::tensor({cfg.get_float("buffer.init_low"), cfg.get_float("buffer.init_high")}, torch::kDouble));
  if (cfg.schema().section("sampler") != nullptr)
    ar.write("sampler_config", c10::IValue(cfg.section_toml("sampler")));
  if (!sampler_ran) ar.write("sampler_untried", c10::IValue(true));
  if (temperature) ar.write("temperature", c10::IValue(*temperature));
  if (cfg.schema().section("data") != nullptr) {
    // (data.path and data.labels made absolute: the commands that rebuild the
    // run's rows from here run in other directories, where a relative path
    // found nothing, or another file of that name)
    Config data = cfg;
    for (const char* key : {"data.path", "data.labels"})
      if (data.has_key(key))
        if (const std::string p = data.get_string(key); !p.empty() && std::filesystem::path(p).is_relative())
          data.set_value(key, std::filesystem::absolute(p).lexically_normal().string());
    ar.write("data_config", c10::IValue(data.section_toml("data")));
  }
  if (generator != nullptr && cfg.schema().section("generator") != nullptr) {
    torch::serialize::OutputArchive gw;
    const c10::Device gd = generator->parameters().front().device();
    if (!gd.is_cpu()) generator->to(c10::kCPU);
    generator->save(gw);
    if (!gd.is_cpu()) generator->to(gd);
    ar.write("generator_weights", gw);
    ar.write("generator_config", c10::IValue(cfg.section_toml("generator")));
  }
  if (cfg.has_key("seed")) ar.write("seed", c10::IValue(cfg.get_int("seed")));
  if (!class_names.empty()) {
    std::string joined;
    for (const auto& n : class_names) joined += n + "\n";
    ar.write("class_names", c10::IValue(joined));
  }
  if (start != nullptr && start->defined()) {
    ar.write("start_mean", start->mean.to(torch::kCPU));
    ar.write("start_basis", start->basis.to(torch::kCPU));
  }
  ar.write("format", c10::IValue(std::string(kFormat)));
  std::ostringstream os;
  ar.save_to(os);
  atomic_write_text(path, seal(os.str()));  // (checked when read: read_archive)
}

bool has_generator(const std::string& path) {
  load_model(path);  // (checks the file)
  torch::serialize::InputArchive ar;
  read_archive(ar, path);
  c10::IValue text;
  return ar.try_read("generator_config", text) && text.isString();
}

Generator load_generator(const std::string& path) {
  ModelInfo info;
  load_model(path, &info);  // (checks the file and reads the shape)
  torch::serialize::InputArchive ar;
  read_archive(ar, path);
  c10::IValue text;
  EBM_CHECK_DATA(ar.try_read("generator_config", text) && text.isString(), path,
                 ": the model has no generator (train one with objective.name = \"vera\")");
  static const auto schema = [] {
    auto s = std::make_shared<Schema>();
    s->add(generator_section());
    return std::shared_ptr<const Schema>(s);
  }();
  Config cfg(schema);
  cfg.load_string(text.toStringRef(), path + "[generator_config]");
  Generator g = build_generator(cfg, info.event_shape);
  EBM_CHECK_DATA(g != nullptr, path, ": the stored generator table names none");
  torch::serialize::InputArchive weights;
  try {
    ar.read("generator_weights", weights);
    load_weights(*g, weights, path);
  } catch (const c10::Error&) {
    fail(ExitCode::kBadData, path, ": generator weights do not match the stored generator config");
  }
  g->eval();
  return g;
}

Config energy_config(const std::string& toml_text, const std::string& origin) {
  Config cfg(energy_schema());
  cfg.load_string(selected_energy_keys(toml_text, origin), origin);
  cfg.validate();
  return cfg;
}

Config data_config(const std::string& toml_text, const std::string& origin) {
  static const auto schema = [] {
    auto s = std::make_shared<Schema>();
    s->add(data_section());
    return std::shared_ptr<const Schema>(s);
  }();
  Config cfg(schema);
  try {
    cfg.load_string(toml_text, origin);
    cfg.validate();
  } catch (const Error& e) {
    fail(ExitCode::kBadData, origin, ": unreadable [data] table (", e.what(), ")");
  }
  return cfg;
}

void load_weights(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                  const std::string& file) {
  struct Slot {
    std::string name;
    std::vector<int64_t> shape;
    torch::ScalarType dtype;
  };
  auto slots = [&] {
    std::vector<Slot> out;
    for (const auto& items : {module.named_parameters(), module.named_buffers()})
      for (const auto& t : items) out.push_back({t.key(), t.value().sizes().vec(), t.value().scalar_type()});
    return out;
  };
  const auto want = slots();
  module.load(archive);
  const auto got = slots();
  for (size_t i = 0; i < want.size(); ++i)
    EBM_CHECK_DATA(got[i].shape == want[i].shape && got[i].dtype == want[i].dtype, file, ": ",
                   want[i].name, " is ", c10::IntArrayRef(got[i].shape), " (",
                   c10::toString(got[i].dtype), ") there but ", c10::IntArrayRef(want[i].shape),
                   " (", c10::toString(want[i].dtype), ") in this config");
}

Energy load_model(const std::string& path, ModelInfo* info) {
  {
    std::ifstream probe(path, std::ios::binary);
    EBM_CHECK_CODE(probe.good(), ExitCode::kMissingInput, path, ": cannot open model file");
  }
  torch::serialize::InputArchive ar;
  c10::IValue cfg_text, format;
  torch::Tensor shape;
  std::istringstream sealed(read_sealed_file(path));  // (kBadData when damaged since it was written)
  try {
    ar.load_from(sealed);
    ar.read("format", format);
    ar.read("energy_config", cfg_text);
  } catch (const std::exception&) {  // (a checkpoint or a TorchScript module: no such fields)
    fail(ExitCode::kBadData, path, ": not an ebm model file (expected model.pt from ebm train)");
  }
  const std::string fmt = format.isString() ? format.toStringRef() : "";
  const bool v1 = fmt == kFormatV1;
  EBM_CHECK_DATA(v1 || fmt == kFormatV2 || fmt == kFormat, path, ": unsupported model format",
                 fmt.empty() ? "" : " '" + fmt + "' (written by a later version?)");
  try {
    ar.read(v1 ? "in_dim" : "event_shape", shape);
  } catch (const std::exception&) {
    fail(ExitCode::kBadData, path, ": model file without its input shape");
  }
  std::vector<int64_t> event_shape;
  if (v1) {
    event_shape = {shape.item<int64_t>()};
  } else {
    auto s = shape.to(torch::kLong).contiguous();
    event_shape.assign(s.data_ptr<int64_t>(), s.data_ptr<int64_t>() + s.numel());
  }
  Config cfg = energy_config(cfg_text.toStringRef(), path + "[energy_config]");
  Energy energy = build_energy(cfg, event_shape);
  torch::serialize::InputArchive weights;
  try {
    ar.read("weights", weights);
    load_weights(*energy, weights, path);
  } catch (const c10::Error&) {
    fail(ExitCode::kBadData, path, ": weights do not match the stored energy config");
  }
  // (NaN weights made every energy NaN, and `ebm energy` blamed the input)
  for (const auto& items : {energy->named_parameters(), energy->named_buffers()})
    for (const auto& t : items)
      if (t.value().is_floating_point())
        EBM_CHECK_DATA(torch::isfinite(t.value()).all().item<bool>(), path, ": ", t.key(),
                       " holds non-finite values: the weights are no model (written by a run that diverged?)");
  energy->to(c10::kCPU);
  energy->eval();
  if (info != nullptr) {
    *info = ModelInfo{};
    info->event_shape = event_shape;
    torch::Tensor pm;
    if (ar.try_read("pixel_map", pm)) {
      EBM_CHECK_DATA(pm.numel() == 3, path, ": pixel_map must hold 3 numbers, got ", pm.numel());
      info->pixels = PixelMap::from_tensor(pm);
    }
    torch::Tensor vm;
    if (ar.try_read("value_map", vm)) {
      EBM_CHECK_DATA(vm.numel() == 4, path, ": value_map must hold 4 numbers, got ", vm.numel());
      const ValueMap m = ValueMap::from_tensor(vm);
      EBM_CHECK_DATA(std::isfinite(m.raw_lo) && std::isfinite(m.raw_hi) && m.raw_lo < m.raw_hi &&
                         std::isfinite(m.lo) && std::isfinite(m.hi) && m.lo < m.hi,
                     path, ": value_map [", m.raw_lo, ", ", m.raw_hi, "] -> [", m.lo, ", ", m.hi, "] is not a map");
      info->values = m;
    }
    torch::Tensor box;
    if (ar.try_read("start_box", box)) {
      EBM_CHECK_DATA(box.numel() == 2, path, ": start_box must hold 2 numbers, got ", box.numel());
      const double lo = box[0].item<double>(), hi = box[1].item<double>();
      EBM_CHECK_DATA(std::isfinite(lo) && std::isfinite(hi) && lo < hi, path, ": start_box [", lo, ", ", hi,
                     "] is not a box");
      info->start_box = std::make_pair(lo, hi);
    }
    c10::IValue sampler;
    if (ar.try_read("sampler_config", sampler) && sampler.isString()) info->sampler_toml = sampler.toStringRef();
    c10::IValue untried;
    info->sampler_ran = !(ar.try_read("sampler_untried", untried) && untried.isBool() && untried.toBool());
    c10::IValue temp;
    if (ar.try_read("temperature", temp)) {
      EBM_CHECK_DATA(temp.isDouble() && std::isfinite(temp.toDouble()) && temp.toDouble() > 0, path,
                     ": temperature must be a number > 0");
      info->temperature = temp.toDouble();
    }
    c10::IValue data;
    if (ar.try_read("data_config", data) && data.isString()) info->data_toml = data.toStringRef();
    c10::IValue seed;
    if (ar.try_read("seed", seed) && seed.isInt()) info->seed = seed.toInt();
    c10::IValue names;
    if (ar.try_read("class_names", names) && names.isString()) {
      std::istringstream is(names.toStringRef());
      for (std::string line; std::getline(is, line);) info->class_names.push_back(line);
    }
    LowRankGaussian start;
    if (ar.try_read("start_mean", start.mean)) {
      const int64_t d = c10::multiply_integers(event_shape);
      EBM_CHECK_DATA(ar.try_read("start_basis", start.basis) && start.mean.numel() == d &&
                         start.basis.dim() == 2 && start.basis.size(0) == d && start.basis.size(1) >= 1,
                     path, ": its chains' start (start_mean, start_basis) does not match the event shape ",
                     c10::IntArrayRef(event_shape));
      start.mean = start.mean.to(torch::kFloat).reshape(event_shape).contiguous();
      start.basis = start.basis.to(torch::kFloat).contiguous();
      info->start = start;
    }
  }
  AffineMap map;
  if (fmt == kFormat && ar.try_read("transform_shift", map.shift)) {
    EBM_CHECK_DATA(ar.try_read("transform_scale", map.scale), path, ": model file with a shift but no scale");
    map.shift = map.shift.to(torch::kDouble).contiguous();
    map.scale = map.scale.to(torch::kDouble).contiguous();
    return std::make_shared<StandardizedEnergyImpl>(energy, map);
  }
  return energy;
}

}  // namespace ebm
