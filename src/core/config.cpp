#include "ebm/core/config.h"

#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <set>
#include <sstream>

#include "ebm/core/error.h"

namespace ebm {
namespace {

std::string where(const std::string& origin, const toml::source_region& src) {
  std::ostringstream os;
  os << origin;
  if (src.begin.line > 0) os << ":" << src.begin.line << ":" << src.begin.column;
  return os.str();
}

// Converts one TOML node to a ConfigValue of the natural type.
ConfigValue from_node(const toml::node& node, const std::string& key,
                      const std::string& at) {
  if (auto v = node.as_integer()) return static_cast<int64_t>(v->get());
  if (auto v = node.as_floating_point()) return v->get();
  if (auto v = node.as_boolean()) return v->get();
  if (auto v = node.as_string()) return v->get();
  if (auto arr = node.as_array()) {
    bool all_int = true;
    for (const auto& e : *arr) {
      if (e.is_integer()) continue;
      all_int = false;
      if (!e.is_floating_point())
        fail(ExitCode::kBadConfig, "config ", at, ": key '", key,
             "' must be a list of numbers");
    }
    if (all_int) {
      std::vector<int64_t> out;
      for (const auto& e : *arr) out.push_back(e.as_integer()->get());
      return out;
    }
    std::vector<double> out;
    for (const auto& e : *arr)
      out.push_back(e.is_integer() ? double(e.as_integer()->get())
                                   : e.as_floating_point()->get());
    return out;
  }
  fail(ExitCode::kBadConfig, "config ", at, ": key '", key,
       "' has an unsupported value type");
}

std::string format_double(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
    std::ostringstream os;
    os << static_cast<int64_t>(d) << ".0";
    return os.str();
  }
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Shortest of 15 or 17 significant digits that reads back to the same bits.
  for (int digits : {15, std::numeric_limits<double>::max_digits10}) {
    std::ostringstream os;
    os << std::setprecision(digits) << d;
    if (std::stod(os.str()) == d || digits > 15) {
      std::string t = os.str();
      if (t.find_first_of(".eE") == std::string::npos) t += ".0";
      return t;
    }
  }
  return "";
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string format_value(const ConfigValue& v) {
  struct Visitor {
    std::string operator()(int64_t x) const { return std::to_string(x); }
    std::string operator()(double x) const { return format_double(x); }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
    std::string operator()(const std::string& x) const { return quote(x); }
    std::string operator()(const std::vector<int64_t>& x) const {
      std::string s = "[";
      for (size_t i = 0; i < x.size(); ++i) s += (i ? ", " : "") + std::to_string(x[i]);
      return s + "]";
    }
    std::string operator()(const std::vector<double>& x) const {
      std::string s = "[";
      for (size_t i = 0; i < x.size(); ++i) s += (i ? ", " : "") + format_double(x[i]);
      return s + "]";
    }
  };
  return std::visit(Visitor{}, v);
}

}  // namespace

std::string config_type_name(const ConfigValue& v) {
  switch (v.index()) {
    case 0: return "integer";
    case 1: return "number";
    case 2: return "boolean";
    case 3: return "string";
    case 4: return "list of integers";
    default: return "list of numbers";
  }
}

Config::Config(std::vector<ConfigKey> schema) : schema_(std::move(schema)) {
  for (const auto& k : schema_) values_[k.name] = k.value;
}

const ConfigKey& Config::spec(const std::string& key, const std::string& origin) const {
  for (const auto& k : schema_)
    if (k.name == key) return k;
  fail(ExitCode::kBadConfig, "config ", origin, ": unknown key '", key, "'");
}

ConfigValue Config::coerce(const ConfigKey& s, const ConfigValue& v,
                           const std::string& origin) const {
  if (v.index() == s.value.index()) return v;
  // Widening conversions a user would expect: 1 for 1.0, [64] for [64.0].
  if (std::holds_alternative<double>(s.value) && std::holds_alternative<int64_t>(v))
    return static_cast<double>(std::get<int64_t>(v));
  if (std::holds_alternative<std::vector<double>>(s.value) &&
      std::holds_alternative<std::vector<int64_t>>(v)) {
    const auto& src = std::get<std::vector<int64_t>>(v);
    return std::vector<double>(src.begin(), src.end());
  }
  fail(ExitCode::kBadConfig, "config ", origin, ": key '", s.name, "' must be a ",
       config_type_name(s.value), ", got ", config_type_name(v), " ", format_value(v));
}

void Config::load_file(const std::string& path) {
  std::error_code ec;
  EBM_CHECK_CODE(!std::filesystem::is_directory(path, ec), ExitCode::kMissingInput, "config ",
                 path, ": is a directory, not a TOML file");
  std::ifstream in(path, std::ios::binary);
  EBM_CHECK_CODE(in.good(), ExitCode::kMissingInput, "config ", path,
                 ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  load_string(ss.str(), path);
}

void Config::load_string(const std::string& text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    fail(ExitCode::kBadConfig, "config ", where(origin, e.source()), ": ",
         std::string(e.description()));
  }
  // Walk nested tables; every leaf is a dotted key that must be declared.
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& t, const std::string& prefix) {
        for (const auto& [k, node] : t) {
          std::string key = prefix.empty() ? std::string(k.str())
                                           : prefix + "." + std::string(k.str());
          std::string at = where(origin, node.source());
          if (auto sub = node.as_table()) {
            walk(*sub, key);
            continue;
          }
          const ConfigKey& s = spec(key, at);
          values_[key] = coerce(s, from_node(node, key, at), at);
          explicit_[key] = true;
        }
      };
  walk(table, "");
}

void Config::set(const std::string& assignment) {
  auto eq = assignment.find('=');
  EBM_CHECK_USAGE(eq != std::string::npos && eq > 0, "--set '", assignment,
                  "': expected key=value");
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  const ConfigKey& s = spec(key, "--set");
  ConfigValue v;
  bool parsed = false;
  try {
    toml::table t = toml::parse("v = " + text);
    if (auto node = t.get("v")) {
      v = from_node(*node, key, "--set");
      parsed = true;
    }
  } catch (const toml::parse_error&) {
  }
  if (!parsed) v = text;  // bare word: a string
  values_[key] = coerce(s, v, "--set");
  explicit_[key] = true;
}

void Config::set_value(const std::string& key, ConfigValue value) {
  const ConfigKey& s = spec(key, "set_value");
  values_[key] = coerce(s, value, "set_value");
  explicit_[key] = true;
}

bool Config::has_key(const std::string& key) const { return values_.count(key) > 0; }

bool Config::is_set(const std::string& key) const {
  auto it = explicit_.find(key);
  return it != explicit_.end() && it->second;
}

namespace {
template <typename T>
const T& get_as(const std::map<std::string, ConfigValue>& values, const std::string& key) {
  auto it = values.find(key);
  TORCH_INTERNAL_ASSERT(it != values.end(), "config key not in schema: ", key);
  const T* p = std::get_if<T>(&it->second);
  TORCH_INTERNAL_ASSERT(p, "config key '", key, "' read with the wrong type");
  return *p;
}
}  // namespace

int64_t Config::get_int(const std::string& key) const { return get_as<int64_t>(values_, key); }
double Config::get_float(const std::string& key) const { return get_as<double>(values_, key); }
bool Config::get_bool(const std::string& key) const { return get_as<bool>(values_, key); }
const std::string& Config::get_string(const std::string& key) const {
  return get_as<std::string>(values_, key);
}
std::vector<int64_t> Config::get_int_list(const std::string& key) const {
  return get_as<std::vector<int64_t>>(values_, key);
}
std::vector<double> Config::get_float_list(const std::string& key) const {
  return get_as<std::vector<double>>(values_, key);
}

std::string Config::to_toml() const {
  // Top-level keys first (TOML requires them before any [section]).
  std::ostringstream os;
  std::vector<std::string> sections;
  for (const auto& k : schema_) {
    auto dot = k.name.find('.');
    if (dot == std::string::npos) {
      os << k.name << " = " << format_value(values_.at(k.name)) << "\n";
    } else {
      std::string sec = k.name.substr(0, dot);
      if (std::find(sections.begin(), sections.end(), sec) == sections.end())
        sections.push_back(sec);
    }
  }
  for (const auto& sec : sections) os << "\n" << section_toml(sec);
  return os.str();
}

std::string Config::section_toml(const std::string& section) const {
  std::ostringstream os;
  os << "[" << section << "]\n";
  for (const auto& k : schema_) {
    if (k.name.rfind(section + ".", 0) != 0) continue;
    os << k.name.substr(section.size() + 1) << " = " << format_value(values_.at(k.name))
       << "\n";
  }
  return os.str();
}

std::string Config::describe() const {
  std::ostringstream os;
  for (const auto& k : schema_) {
    os << std::left << std::setw(24) << k.name << " " << std::setw(17)
       << config_type_name(k.value) << " default " << format_value(k.value) << "\n      "
       << k.doc << "\n";
  }
  return os.str();
}

}  // namespace ebm
