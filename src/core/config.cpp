#include "ebm/core/config.h"

#include <toml++/toml.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
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

// One TOML scalar or list of numbers as a ConfigValue of the natural type.
ConfigValue from_node(const toml::node& node, const std::string& key, const std::string& at) {
  if (auto v = node.as_integer()) return static_cast<int64_t>(v->get());
  if (auto v = node.as_floating_point()) return v->get();
  if (auto v = node.as_boolean()) return v->get();
  if (auto v = node.as_string()) return v->get();
  if (auto arr = node.as_array()) {
    bool all_int = true, any_string = false;
    for (const auto& e : *arr) {
      any_string = any_string || e.is_string();
      if (e.is_integer()) continue;
      all_int = false;
      if (!e.is_floating_point() && !e.is_string())
        fail(ExitCode::kBadConfig, "config ", at, ": key '", key, "' must be a list of numbers or of names");
    }
    if (any_string) {  // names, and integers among them as their text (data.classes = ["boot", 5])
      std::vector<std::string> out;
      for (const auto& e : *arr) {
        EBM_CHECK_CONFIG(!e.is_floating_point(), "config ", at, ": key '", key,
                         "' mixes names and a fractional number");
        out.push_back(e.is_string() ? e.as_string()->get() : std::to_string(e.as_integer()->get()));
      }
      return out;
    }
    if (all_int) {
      std::vector<int64_t> out;
      for (const auto& e : *arr) out.push_back(e.as_integer()->get());
      return out;
    }
    std::vector<double> out;
    for (const auto& e : *arr)
      out.push_back(e.is_integer() ? double(e.as_integer()->get()) : e.as_floating_point()->get());
    return out;
  }
  fail(ExitCode::kBadConfig, "config ", at, ": key '", key, "' has an unsupported value type");
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

std::pair<std::string, std::string> split_key(const std::string& key) {
  auto dot = key.find('.');
  if (dot == std::string::npos) return {"", key};
  return {key.substr(0, dot), key.substr(dot + 1)};
}

std::string full_name(const std::string& section, const std::string& rel) {
  return section.empty() ? rel : section + "." + rel;
}

template <typename T>
const T& get_as(const ConfigValue& v, const std::string& key) {
  const T* p = std::get_if<T>(&v);
  TORCH_INTERNAL_ASSERT(p, "config key '", key, "' read with the wrong type");
  return *p;
}
}  // namespace

std::string format_config_value(const ConfigValue& v) {
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
    std::string operator()(const TableList& x) const {
      return "[" + std::to_string(x.items.size()) + " [" + x.section + "] tables]";
    }
    std::string operator()(const std::vector<std::string>& x) const {
      std::string s = "[";
      for (size_t i = 0; i < x.size(); ++i) s += (i ? ", " : "") + quote(x[i]);
      return s + "]";
    }
  };
  return std::visit(Visitor{}, v);
}

// "a number", "an integer": the type's name after its article.
std::string with_article(const std::string& name) {
  return (name.empty() || std::string("aeiou").find(name[0]) == std::string::npos ? "a " : "an ") + name;
}

std::string config_type_name(const ConfigValue& v) {
  switch (v.index()) {
    case 0: return "integer";
    case 1: return "number";
    case 2: return "boolean";
    case 3: return "string";
    case 4: return "list of integers";
    case 5: return "list of numbers";
    case 7: return "list of names";
    default: return "list of [" + std::get<TableList>(v).section + "] tables";
  }
}

// ----- Schema -----------------------------------------------------------------
const Component* ComponentGroup::find(const std::string& name) const {
  for (const auto& c : choices)
    if (c.name == name) return &c;
  return nullptr;
}

Schema& Schema::add(Section s) {
  TORCH_INTERNAL_ASSERT(section(s.name) == nullptr, "schema: section '", s.name, "' added twice");
  std::map<std::string, size_t> type_of;  // relative key -> alternative index
  std::map<std::string, const void*> owner_group;
  auto claim = [&](const ConfigKey& k, const void* group) {
    auto it = type_of.find(k.name);
    if (it == type_of.end()) {
      type_of[k.name] = k.value.index();
      owner_group[k.name] = group;
      return;
    }
    TORCH_INTERNAL_ASSERT(group != nullptr && owner_group[k.name] == group,
                          "schema: key ", full_name(s.name, k.name), " declared twice");
    TORCH_INTERNAL_ASSERT(it->second == k.value.index(), "schema: key ",
                          full_name(s.name, k.name), " has two types");
  };
  for (auto& g : s.groups) {
    TORCH_INTERNAL_ASSERT(g.find(g.default_choice) != nullptr, "schema: ", g.kind,
                          " default '", g.default_choice, "' is not registered");
    s.keys.push_back({g.selector, g.default_choice, g.doc});
  }
  for (const auto& k : s.keys) claim(k, nullptr);
  for (const auto& g : s.groups)
    for (const auto& c : g.choices)
      for (const auto& k : c.keys) claim(k, &g);
  sections_.push_back(std::move(s));
  return *this;
}

const Section* Schema::section(const std::string& name) const {
  for (const auto& s : sections_)
    if (s.name == name) return &s;
  return nullptr;
}

std::shared_ptr<const Schema> Schema::flat(const std::vector<ConfigKey>& keys) {
  auto schema = std::make_shared<Schema>();
  std::vector<Section> sections;
  for (const auto& k : keys) {
    auto [sec, rel] = split_key(k.name);
    auto it = std::find_if(sections.begin(), sections.end(),
                           [&](const Section& s) { return s.name == sec; });
    if (it == sections.end()) {
      sections.push_back({sec, {}, {}});
      it = sections.end() - 1;
    }
    it->keys.push_back({rel, k.value, k.doc, k.alias});
  }
  for (auto& s : sections) schema->add(std::move(s));
  return schema;
}

Schema::Place Schema::find(const std::string& key) const {
  Place p;
  auto [sec, rel] = split_key(key);
  p.section = section(sec);
  if (p.section == nullptr) {  // "a.b" may still be a top-level key of that name
    p.section = section("");
    rel = key;
    if (p.section == nullptr) return p;
  }
  for (const auto& k : p.section->keys)
    if (k.name == rel) {
      p.spec = &k;
      for (const auto& g : p.section->groups) p.selector = p.selector || g.selector == rel;
      return p;
    }
  for (const auto& g : p.section->groups)
    for (const auto& c : g.choices)
      for (const auto& k : c.keys)
        if (k.name == rel) {
          p.group = &g;
          p.owners.push_back(&c);
          if (p.spec == nullptr) p.spec = &k;
        }
  return p;
}

// ----- Config -------------------------------------------------------------------
Config::Config(std::shared_ptr<const Schema> schema) : schema_(std::move(schema)) {}

Config::Config(std::vector<ConfigKey> flat_schema) : schema_(Schema::flat(flat_schema)) {}

Schema::Place Config::place(const std::string& key, const std::string& origin) const {
  auto p = schema_->find(key);
  if (p.spec == nullptr || (!only_section_.empty() && p.section->name != only_section_))
    fail(ExitCode::kBadConfig, "config ", origin, ": unknown key '", key, "'");
  return p;
}

// Coerces to the key's type (widening 1 to 1.0 and [64] to [64.0]) and stores.
void Config::assign(const std::string& key, ConfigValue v, const std::string& origin) {
  const auto p = place(key, origin);
  const ConfigValue& want = p.spec->value;
  if (v.index() != want.index()) {
    if (std::holds_alternative<double>(want) && std::holds_alternative<int64_t>(v)) {
      v = static_cast<double>(std::get<int64_t>(v));
    } else if (std::holds_alternative<std::vector<double>>(want) &&
               std::holds_alternative<std::vector<int64_t>>(v)) {
      const auto& src = std::get<std::vector<int64_t>>(v);
      v = std::vector<double>(src.begin(), src.end());
    } else if (std::holds_alternative<std::vector<int64_t>>(want) &&
               std::holds_alternative<std::vector<double>>(v) &&
               std::get<std::vector<double>>(v).empty()) {
      v = std::vector<int64_t>{};
    } else if (std::holds_alternative<std::vector<std::string>>(want) &&
               (std::holds_alternative<std::vector<int64_t>>(v) || std::holds_alternative<int64_t>(v) ||
                std::holds_alternative<std::string>(v) ||
                (std::holds_alternative<std::vector<double>>(v) && std::get<std::vector<double>>(v).empty()))) {
      // (integers as their text; one name or number is a list of one)
      std::vector<std::string> names;
      if (const auto* ints = std::get_if<std::vector<int64_t>>(&v))
        for (auto i : *ints) names.push_back(std::to_string(i));
      if (const auto* i = std::get_if<int64_t>(&v)) names.push_back(std::to_string(*i));
      if (const auto* one = std::get_if<std::string>(&v)) names.push_back(*one);
      v = std::move(names);
    } else {
      fail(ExitCode::kBadConfig, "config ", origin, ": key '", key, "' must be ",
           with_article(config_type_name(want)), ", got ", config_type_name(v), " ", format_config_value(v));
    }
  }
  values_[key] = std::move(v);
  origins_[key] = origin;
}

void Config::load_file(const std::string& path) {
  std::error_code ec;
  EBM_CHECK_CODE(!std::filesystem::is_directory(path, ec), ExitCode::kMissingInput, "config ",
                 path, ": is a directory, not a TOML file");
  std::ifstream in(path, std::ios::binary);
  EBM_CHECK_CODE(in.good(), ExitCode::kMissingInput, "config ", path, ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  load_string(ss.str(), path);
}

class ConfigLoader {
 public:
  ConfigLoader(Config& cfg, std::string origin) : cfg_(cfg), origin_(std::move(origin)) {}

  // Every leaf is a dotted key that must be declared; an array of tables
  // fills a TableList key, each table an item over that list's section.
  void walk(const toml::table& t, const std::string& prefix) {
    for (const auto& [k, node] : t) {
      const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      const std::string at = where(origin_, node.source());
      if (auto sub = node.as_table()) {
        walk(*sub, key);
        continue;
      }
      const auto* arr = node.as_array();
      if (arr != nullptr && !arr->empty() && arr->is_array_of_tables()) {
        const auto p = cfg_.place(key, at);
        const auto* want = std::get_if<TableList>(&p.spec->value);
        EBM_CHECK_CONFIG(want != nullptr, "config ", at, ": key '", key, "' must be ",
                         with_article(config_type_name(p.spec->value)), ", got a list of tables");
        TableList list{want->section, {}};
        for (const auto& item : *arr) {
          auto c = std::make_shared<Config>(cfg_.schema_);
          c->only_section_ = want->section;
          ConfigLoader(*c, origin_).walk(*item.as_table(), want->section);
          list.items.push_back(std::move(c));
        }
        cfg_.assign(key, std::move(list), at);
        continue;
      }
      cfg_.assign(key, from_node(node, key, at), at);
    }
  }

 private:
  Config& cfg_;
  std::string origin_;
};

void Config::load_string(const std::string& text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    fail(ExitCode::kBadConfig, "config ", where(origin, e.source()), ": ",
         std::string(e.description()));
  }
  ConfigLoader(*this, origin).walk(table, only_section_);
}

void Config::set(const std::string& assignment) {
  auto eq = assignment.find('=');
  EBM_CHECK_USAGE(eq != std::string::npos && eq > 0, "--set '", assignment, "': expected key=value");
  // (spaces around the key and the value are no part of them: 'train.steps = 5')
  auto trim = [](const std::string& t) {
    const auto b = t.find_first_not_of(" \t"), e = t.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
  };
  const std::string key = trim(assignment.substr(0, eq)), text = trim(assignment.substr(eq + 1));
  EBM_CHECK_USAGE(!key.empty(), "--set '", assignment, "': expected key=value");
  const auto p = place(key, "--set");
  EBM_CHECK_CONFIG(!std::holds_alternative<TableList>(p.spec->value), "--set ", key,
                   ": a list of tables is written in the config file ([[", key, "]])");
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
  if (!parsed && std::holds_alternative<std::vector<std::string>>(p.spec->value)) {
    // Bare names: "[boot, sandal]" or "boot,sandal" (quotes optional).
    std::string inner = text;
    if (inner.size() >= 2 && inner.front() == '[' && inner.back() == ']') inner = inner.substr(1, inner.size() - 2);
    std::vector<std::string> names;
    std::stringstream ss(inner);
    for (std::string item; std::getline(ss, item, ',');) {
      const auto b = item.find_first_not_of(" \t\"'"), e = item.find_last_not_of(" \t\"'");
      EBM_CHECK_CONFIG(b != std::string::npos, "--set ", key, "=", text, ": an empty name in the list");
      names.push_back(item.substr(b, e - b + 1));
    }
    v = std::move(names);
    parsed = true;
  }
  if (!parsed && (std::holds_alternative<double>(p.spec->value) || std::holds_alternative<int64_t>(p.spec->value))) {
    // (numbers TOML does not write: ".001", "5.", or integers past int64)
    char* end = nullptr;
    const double d = std::strtod(text.c_str(), &end);
    if (!text.empty() && end == text.c_str() + text.size()) {
      if (std::holds_alternative<double>(p.spec->value)) {
        v = d;
      } else {
        EBM_CHECK_CONFIG(std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9.2e18, "--set ", key, "=", text,
                         ": must be an integer from -9.2e18 to 9.2e18");
        v = int64_t(d);
      }
      parsed = true;
    }
  }
  if (!parsed) v = text;  // bare word: a string
  // (train.steps=1e5: a whole number written as a float)
  if (const auto* d = std::get_if<double>(&v); d != nullptr && std::holds_alternative<int64_t>(p.spec->value) &&
                                               *d == std::floor(*d) && std::abs(*d) < 9.2e18)
    v = int64_t(*d);
  assign(key, std::move(v), "--set");
}

void Config::set_value(const std::string& key, ConfigValue value) {
  assign(key, std::move(value), "set_value");
}

void Config::unset(const std::string& key) {
  values_.erase(key);
  origins_.erase(key);
}

bool Config::has_key(const std::string& key) const { return schema_->find(key).spec != nullptr; }

bool Config::applies(const std::string& key) const {
  const auto p = schema_->find(key);
  if (p.spec == nullptr) return false;
  if (p.group == nullptr) return true;
  const Component* chosen = nullptr;
  return selected(p, &chosen) && std::find(p.owners.begin(), p.owners.end(), chosen) != p.owners.end();
}

bool Config::is_set(const std::string& key) const { return values_.count(key) > 0; }

// The component chosen by p's group; false when the selector names none.
bool Config::selected(const Schema::Place& p, const Component** chosen) const {
  const std::string sel = full_name(p.section->name, p.group->selector);
  *chosen = p.group->find(get_string(sel));
  return *chosen != nullptr;
}

const ConfigValue& Config::value(const std::string& key) const {
  auto it = values_.find(key);
  if (it != values_.end()) return it->second;
  const auto p = schema_->find(key);
  TORCH_INTERNAL_ASSERT(p.spec != nullptr, "config key not in schema: ", key);
  if (p.group != nullptr) {
    const Component* chosen = nullptr;
    if (selected(p, &chosen))
      for (const auto& k : chosen->keys)
        if (full_name(p.section->name, k.name) == key) return k.value;
  }
  return p.spec->value;
}

void Config::validate() const {
  for (const auto& [key, v] : values_) {
    const auto p = schema_->find(key);
    const std::string& at = origins_.at(key);
    if (auto* list = std::get_if<TableList>(&v))
      for (const auto& item : list->items) item->validate();
    if (p.group == nullptr) continue;
    const Component* chosen = nullptr;
    const std::string sel = full_name(p.section->name, p.group->selector);
    if (!selected(p, &chosen)) continue;  // reported below, once
    if (std::find(p.owners.begin(), p.owners.end(), chosen) != p.owners.end()) continue;
    std::string owners;
    for (const auto* c : p.owners) owners += (owners.empty() ? "" : ", ") + c->name;
    fail(ExitCode::kBadConfig, "config ", at, ": key '", key, "' belongs to ", p.group->kind, " ",
         owners, ", not to ", sel, " = \"", chosen->name, "\"");
  }
  for (const auto& s : schema_->sections()) {
    if (!only_section_.empty() && s.name != only_section_) continue;
    for (const auto& g : s.groups) {
      const std::string sel = full_name(s.name, g.selector);
      const std::string& name = get_string(sel);
      if (g.find(name) != nullptr) continue;
      std::string known;
      for (const auto& c : g.choices) known += (known.empty() ? "" : ", ") + c.name;
      auto it = origins_.find(sel);
      fail(ExitCode::kBadConfig, "config ", it == origins_.end() ? "default" : it->second,
           ": unknown ", sel, " '", name, "' (known: ", known, ")");
    }
  }
}

int64_t Config::get_int(const std::string& key) const { return get_as<int64_t>(value(key), key); }
double Config::get_float(const std::string& key) const { return get_as<double>(value(key), key); }
bool Config::get_bool(const std::string& key) const { return get_as<bool>(value(key), key); }
const std::string& Config::get_string(const std::string& key) const {
  return get_as<std::string>(value(key), key);
}
std::vector<int64_t> Config::get_int_list(const std::string& key) const {
  return get_as<std::vector<int64_t>>(value(key), key);
}
std::vector<double> Config::get_float_list(const std::string& key) const {
  return get_as<std::vector<double>>(value(key), key);
}
std::vector<std::string> Config::get_string_list(const std::string& key) const {
  return get_as<std::vector<std::string>>(value(key), key);
}
const TableList& Config::get_tables(const std::string& key) const {
  return get_as<TableList>(value(key), key);
}

// Scalars as `key = value` lines; a section's table lists as [[...]] blocks
// after them (TOML wants a table's own keys first).
void Config::write_section(std::ostream& os, const Section& s, const std::string& header) const {
  std::vector<std::string> keys;
  for (const auto& k : s.keys) keys.push_back(k.name);
  for (const auto& g : s.groups) {
    const Component* chosen = g.find(get_string(full_name(s.name, g.selector)));
    if (chosen == nullptr) continue;
    for (const auto& k : chosen->keys) keys.push_back(k.name);
  }
  if (!header.empty()) os << header << "\n";
  std::vector<std::pair<std::string, const TableList*>> lists;
  for (const auto& rel : keys) {
    const std::string key = full_name(s.name, rel);
    const ConfigValue& v = value(key);
    if (auto* list = std::get_if<TableList>(&v)) {
      lists.emplace_back(key, list);
      continue;
    }
    os << rel << " = " << format_config_value(v) << "\n";
  }
  for (const auto& [key, list] : lists)
    for (const auto& item : list->items) {
      os << "\n";
      item->write_section(os, *schema_->section(list->section), "[[" + key + "]]");
    }
}

std::string Config::to_toml() const {
  std::ostringstream os;
  if (const auto* top = schema_->section("")) write_section(os, *top, "");
  for (const auto& s : schema_->sections()) {
    if (s.name.empty()) continue;
    os << "\n";
    write_section(os, s, "[" + s.name + "]");
  }
  return os.str();
}

std::string Config::section_toml(const std::string& section) const {
  std::ostringstream os;
  const Section* s = schema_->section(section);
  TORCH_INTERNAL_ASSERT(s != nullptr, "config: no section ", section);
  write_section(os, *s, "[" + section + "]");
  return os.str();
}

std::string Config::describe() const {
  std::ostringstream os;
  auto line = [&](const std::string& key, const ConfigValue& v, const std::string& owner,
                  const std::string& doc) {
    os << std::left << std::setw(26) << key << " " << std::setw(17) << config_type_name(v)
       << " default " << format_config_value(v);
    if (!owner.empty()) os << "  (" << owner << ")";
    os << "\n      " << doc << "\n";
  };
  for (const auto& s : schema_->sections()) {
    for (const auto& k : s.keys) {
      std::string owner;
      for (const auto& g : s.groups)
        if (g.selector == k.name) {
          owner = "selects the " + g.kind + ":";
          for (const auto& c : g.choices) owner += " " + c.name;
        }
      line(full_name(s.name, k.name), k.value, owner, k.doc);
    }
    for (const auto& g : s.groups)
      for (const auto& c : g.choices) {
        os << "  " << full_name(s.name, g.selector) << " = \"" << c.name << "\": " << c.doc << "\n";
        for (const auto& k : c.keys)
          line(full_name(s.name, k.name), k.value, g.kind + " " + c.name, k.doc);
      }
  }
  return os.str();
}

}  // namespace ebm
