// Run configuration: dotted keys ("train.lr") read from TOML and overridden by
// `--set key=value`, checked against a Schema built from the components that
// register themselves (DESIGN.md "Registry"). A section ([sampler]) holds
// keys common to it and groups of components chosen by a selector key
// (sampler.name = "hmc"); each component declares its own keys with type,
// default and doc. An undeclared key is an error naming it (exit 78), as is a
// value of the wrong type and, after validate(), a key that belongs to another
// component than the one selected (sampler.leapfrog with sampler.name =
// "langevin"). A key may hold a list of tables ([[energy.terms]]), each one a
// sub-configuration of a section.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace ebm {

class Config;
// [[section.key]] tables: each item is a Config over one section's keys
// (stored with the section prefix, so builders read item "energy.hidden").
struct TableList {
  std::string section;                         // the schema section each item follows
  std::vector<std::shared_ptr<Config>> items;  // in file order
};

using ConfigValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>,
                                 std::vector<double>, TableList, std::vector<std::string>>;

struct ConfigKey {
  std::string name;   // relative to its section in a Schema; dotted in a flat list
  ConfigValue value;  // the default; its alternative fixes the key's type
  std::string doc;    // one line, shown by `ebm train --help-config`
  std::string alias = "";  // short name in a spec string ("step" for step_size)
};

// One choice of a group ("hmc" of the samplers), with its own keys.
struct Component {
  std::string name, doc;
  std::vector<ConfigKey> keys;
};

// The choices that one selector key picks among (sampler.name).
struct ComponentGroup {
  std::string kind;            // "sampler", in messages
  std::string selector;        // key relative to the section: "name"
  std::string default_choice;  // the selector's default
  std::string doc;             // of the selector key
  std::vector<Component> choices;
  const Component* find(const std::string& name) const;
};

struct Section {
  std::string name;              // "" = top-level keys
  std::vector<ConfigKey> keys;   // common to every component of the section
  std::vector<ComponentGroup> groups;
};

class Schema {
 public:
  // Checks that no key is declared twice in a section (a key shared by
  // several components of one group must have one type) and that every
  // group's default choice exists; a violation is a bug (internal assert).
  Schema& add(Section section);
  const std::vector<Section>& sections() const { return sections_; }
  const Section* section(const std::string& name) const;
  // A flat schema from dotted names (sections with common keys only).
  static std::shared_ptr<const Schema> flat(const std::vector<ConfigKey>& keys);

  // Where a full key ("sampler.leapfrog") lives.
  struct Place {
    const Section* section = nullptr;
    const ComponentGroup* group = nullptr;   // null: a common key or a selector
    std::vector<const Component*> owners;    // the components that declare it
    const ConfigKey* spec = nullptr;         // (the first owner's, for the type)
    bool selector = false;
  };
  Place find(const std::string& key) const;

 private:
  std::vector<Section> sections_;
};

class Config {
 public:
  explicit Config(std::shared_ptr<const Schema> schema);
  // A flat schema: dotted names, no components (tests, small tools).
  explicit Config(std::vector<ConfigKey> flat_schema);

  // Reads a TOML file (errors carry line and column). Missing file: exit 66.
  void load_file(const std::string& path);
  // Parses TOML text; `origin` names it in error messages.
  void load_string(const std::string& text, const std::string& origin);
  // Applies "key=value"; the value is TOML ("0.1", "[64, 64]", "true",
  // "\"s\"") or, when it does not parse as TOML, a bare string.
  void set(const std::string& assignment);
  void set_value(const std::string& key, ConfigValue value);
  // Forgets a given value: the key reads its default again.
  void unset(const std::string& key);

  // Throws kBadConfig (one line naming the key, where it was given, its
  // component and the one selected) for a key given for a component other
  // than the selected one, or a selector naming no registered component.
  void validate() const;

  bool has_key(const std::string& key) const;
  // True for a key of the schema that the current selection reads: a common
  // key, or one of the component its group selects.
  bool applies(const std::string& key) const;
  // True when the key was given in a file or by --set (not just defaulted).
  bool is_set(const std::string& key) const;

  // Values; a key not given reads the default of the selected component.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<double> get_float_list(const std::string& key) const;
  // (a key whose default is a list of strings takes integers as their text)
  std::vector<std::string> get_string_list(const std::string& key) const;
  const TableList& get_tables(const std::string& key) const;

  // The resolved configuration as TOML: every key of the selected
  // components, defaults included.
  std::string to_toml() const;
  // The keys (with values) of one section, as a TOML string.
  std::string section_toml(const std::string& section) const;
  // Every key of the schema: name, type, default, component, doc.
  std::string describe() const;
  const Schema& schema() const { return *schema_; }
  std::shared_ptr<const Schema> schema_ptr() const { return schema_; }

 private:
  const ConfigValue& value(const std::string& key) const;
  Schema::Place place(const std::string& key, const std::string& origin) const;
  void assign(const std::string& key, ConfigValue v, const std::string& origin);
  bool selected(const Schema::Place& p, const Component** chosen) const;
  void write_section(std::ostream& os, const Section& s, const std::string& prefix) const;

  std::shared_ptr<const Schema> schema_;
  std::string only_section_;  // an item of a TableList: keys of this section only
  std::map<std::string, ConfigValue> values_;   // given values
  std::map<std::string, std::string> origins_;  // where each was given
  friend class ConfigLoader;
};

std::string config_type_name(const ConfigValue& v);
std::string format_config_value(const ConfigValue& v);

}  // namespace ebm
