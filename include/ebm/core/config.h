// Run configuration: a flat set of dotted keys ("train.lr") read from TOML and
// overridden by `--set key=value`. Every key is declared in a schema with its
// type, default and one line of documentation; an undeclared key is an error
// naming it (exit 78), as is a value of the wrong type.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace ebm {

using ConfigValue = std::variant<int64_t, double, bool, std::string,
                                 std::vector<int64_t>, std::vector<double>>;

struct ConfigKey {
  std::string name;    // dotted: "section.key" or a top-level "key"
  ConfigValue value;   // the default; its alternative fixes the key's type
  std::string doc;     // one line, shown by `ebm train --help-config`
};

class Config {
 public:
  explicit Config(std::vector<ConfigKey> schema);

  // Reads a TOML file (errors carry line and column). Missing file: exit 66.
  void load_file(const std::string& path);
  // Parses TOML text; `origin` names it in error messages.
  void load_string(const std::string& text, const std::string& origin);
  // Applies "key=value"; the value is TOML ("0.1", "[64, 64]", "true",
  // "\"s\"") or, when it does not parse as TOML, a bare string.
  void set(const std::string& assignment);
  void set_value(const std::string& key, ConfigValue value);

  bool has_key(const std::string& key) const;
  // True when the key was given in a file or by --set (not just defaulted).
  bool is_set(const std::string& key) const;

  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<double> get_float_list(const std::string& key) const;

  // The resolved configuration as TOML (every key, defaults included).
  std::string to_toml() const;
  // One line per key: name, type, default, doc.
  std::string describe() const;
  // The keys (with values) under `section.` as a new TOML string.
  std::string section_toml(const std::string& section) const;

 private:
  const ConfigKey& spec(const std::string& key, const std::string& origin) const;
  ConfigValue coerce(const ConfigKey& spec, const ConfigValue& v,
                     const std::string& origin) const;

  std::vector<ConfigKey> schema_;
  std::map<std::string, ConfigValue> values_;
  std::map<std::string, bool> explicit_;
};

std::string config_type_name(const ConfigValue& v);

}  // namespace ebm
