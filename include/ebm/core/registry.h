// Components by name (DESIGN.md "Registry"): each registers its name, doc,
// config keys (type, default, doc) and a factory from a Config. The keys feed
// the Schema (and so `--help-config`); the factory builds the component the
// section's selector names. One table per kind of component.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ebm/core/config.h"
#include "ebm/core/error.h"

namespace ebm {

template <typename Product, typename... Args>
class ComponentRegistry {
 public:
  using Factory = std::function<Product(const Config&, Args...)>;

  // kind names it in messages; section.selector picks the component.
  ComponentRegistry(std::string kind, std::string section, std::string selector,
                    std::string default_choice, std::string doc)
      : group_{std::move(kind), std::move(selector), std::move(default_choice), std::move(doc), {}},
        section_(std::move(section)) {}

  ComponentRegistry& add(Component spec, Factory factory) {
    group_.choices.push_back(std::move(spec));
    factories_.push_back(std::move(factory));
    return *this;
  }

  const ComponentGroup& group() const { return group_; }
  const std::string& section() const { return section_; }
  std::string selector_key() const { return section_ + "." + group_.selector; }
  bool has(const std::string& name) const { return group_.find(name) != nullptr; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& c : group_.choices) out.push_back(c.name);
    return out;
  }
  std::string known() const {
    std::string out;
    for (const auto& c : group_.choices) out += (out.empty() ? "" : ", ") + c.name;
    return out;
  }

  // Builds the component that cfg's selector names; an unknown name is a
  // config error listing the known ones.
  Product make(const Config& cfg, Args... args) const {
    const std::string& name = cfg.get_string(selector_key());
    for (size_t i = 0; i < group_.choices.size(); ++i)
      if (group_.choices[i].name == name) return factories_[i](cfg, std::forward<Args>(args)...);
    fail(ExitCode::kBadConfig, "unknown ", selector_key(), " '", name, "' (known: ", known(), ")");
  }

 private:
  ComponentGroup group_;
  std::string section_;
  std::vector<Factory> factories_;
};

// A Config over the keys of one section and one component, from a spec
// string "name:alias=value,..." (e.g. --sampler "hmc:step=0.05,leapfrog=10"):
// each alias (or key name) is looked up among the component's keys, so the
// CLI and config files share names' types and defaults. An unknown key is an
// error listing the component's keys (exit 78).
Config config_from_spec(std::shared_ptr<const Schema> schema, const std::string& section,
                        const ComponentGroup& group, const std::string& what,
                        const std::string& spec);

}  // namespace ebm
