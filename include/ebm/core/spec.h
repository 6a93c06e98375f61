// Component specs on the command line: "name:key=value,key=value" (e.g.
// --sampler "hmc:step=0.05,leapfrog=10", --target "gaussian:dim=100,cond=100").
// Values are taken by key with a type; finish() rejects keys nobody took, so a
// typo is an error naming it (exit 78), never silently ignored.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace ebm {

class Spec {
 public:
  // `what` names the kind in messages ("sampler", "target").
  Spec(std::string what, const std::string& text);
  const std::string& name() const { return name_; }
  std::optional<double> number(const std::string& key);
  std::optional<int64_t> integer(const std::string& key);
  std::optional<bool> boolean(const std::string& key);
  std::optional<std::string> text(const std::string& key);
  // Throws kBadConfig naming the first key that no take consumed.
  void finish() const;
  const std::string& text() const { return text_; }
  // The key=value items not taken yet.
  const std::map<std::string, std::string>& items() const { return kv_; }

 private:
  std::string what_, text_, name_;
  std::map<std::string, std::string> kv_;
};

}  // namespace ebm
