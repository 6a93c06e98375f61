// Name -> factory tables, so a config key or CLI flag can build any component.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ebm/core/error.h"

namespace ebm {

template <typename Product, typename... Args>
class Registry {
 public:
  using Factory = std::function<Product(Args...)>;
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}
  Registry& add(const std::string& name, Factory f) {
    table_[name] = std::move(f);
    return *this;
  }
  bool has(const std::string& name) const { return table_.count(name) > 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : table_) out.push_back(kv.first);
    return out;
  }
  // Unknown names are a config error listing the known ones.
  Product make(const std::string& name, Args... args) const {
    auto it = table_.find(name);
    if (it == table_.end()) {
      std::string known;
      for (const auto& kv : table_) known += (known.empty() ? "" : ", ") + kv.first;
      fail(ExitCode::kBadConfig, "unknown ", kind_, " '", name, "' (known: ", known, ")");
    }
    return it->second(std::forward<Args>(args)...);
  }

 private:
  std::string kind_;
  std::map<std::string, Factory> table_;
};

}  // namespace ebm
