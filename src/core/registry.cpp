#include "ebm/core/registry.h"

#include "ebm/core/spec.h"

namespace ebm {

Config config_from_spec(std::shared_ptr<const Schema> schema, const std::string& section,
                        const ComponentGroup& group, const std::string& what,
                        const std::string& text) {
  Spec spec(what, text);
  const Component* c = group.find(spec.name());
  if (c == nullptr) {
    std::string known;
    for (const auto& k : group.choices) known += (known.empty() ? "" : ", ") + k.name;
    fail(ExitCode::kBadConfig, "unknown ", what, " '", spec.name(), "' (known: ", known, ")");
  }
  Config cfg(std::move(schema));
  cfg.set_value(section + "." + group.selector, spec.name());
  // Values are read as the key's type with the spec's own rules (numbers as
  // strtod reads them, finite; booleans true/false/1/0).
  const auto items = spec.items();
  for (const auto& kv : items) {
    const std::string& key = kv.first;
    const ConfigKey* found = nullptr;
    for (const auto& k : c->keys)
      if (k.alias == key || k.name == key) found = &k;
    if (found == nullptr) {
      std::string known;
      for (const auto& k : c->keys)
        known += (known.empty() ? "" : ", ") + (k.alias.empty() ? k.name : k.alias);
      fail(ExitCode::kBadConfig, what, " spec '", text, "': unknown key '", key, "' for ",
           spec.name(), " (known: ", known.empty() ? "none" : known, ")");
    }
    const std::string full = section + "." + found->name;
    if (std::holds_alternative<double>(found->value))
      cfg.set_value(full, *spec.number(key));
    else if (std::holds_alternative<int64_t>(found->value))
      cfg.set_value(full, *spec.integer(key));
    else if (std::holds_alternative<bool>(found->value))
      cfg.set_value(full, *spec.boolean(key));
    else if (std::holds_alternative<std::string>(found->value))
      cfg.set_value(full, *spec.text(key));
    else
      fail(ExitCode::kBadConfig, what, " spec '", text, "': ", key, " is set in a config file, not a spec");
  }
  return cfg;
}

}  // namespace ebm
