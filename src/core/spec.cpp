#include "ebm/core/spec.h"

#include <cmath>
#include <sstream>

#include "ebm/core/error.h"

namespace ebm {

Spec::Spec(std::string what, const std::string& text) : what_(std::move(what)), text_(text) {
  auto colon = text.find(':');
  name_ = text.substr(0, colon);
  EBM_CHECK_CONFIG(!name_.empty(), what_, " spec '", text, "': empty name");
  if (colon == std::string::npos) return;
  std::stringstream ss(text.substr(colon + 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    EBM_CHECK_CONFIG(eq != std::string::npos && eq > 0, what_, " spec '", text, "': item '", item,
                     "' is not key=value");
    const std::string key = item.substr(0, eq);
    EBM_CHECK_CONFIG(!kv_.count(key), what_, " spec '", text, "': ", key, " given twice");
    kv_[key] = item.substr(eq + 1);
  }
}

std::optional<std::string> Spec::text(const std::string& key) {
  auto it = kv_.find(key);
  if (it == kv_.end()) return std::nullopt;
  std::string v = it->second;
  kv_.erase(it);
  return v;
}

std::optional<double> Spec::number(const std::string& key) {
  auto v = text(key);
  if (!v) return std::nullopt;
  size_t used = 0;
  double d = 0;
  try {
    d = std::stod(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  EBM_CHECK_CONFIG(used == v->size() && !v->empty(), what_, " spec '", text_, "': ", key, "='",
                   *v, "' is not a number");
  EBM_CHECK_CONFIG(std::isfinite(d), what_, " spec '", text_, "': ", key, "='", *v,
                   "' is not a finite number");
  return d;
}

std::optional<int64_t> Spec::integer(const std::string& key) {
  auto v = text(key);
  if (!v) return std::nullopt;
  size_t used = 0;
  long long i = 0;
  try {
    i = std::stoll(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  EBM_CHECK_CONFIG(used == v->size() && !v->empty(), what_, " spec '", text_, "': ", key, "='",
                   *v, "' is not an integer");
  return int64_t(i);
}

std::optional<bool> Spec::boolean(const std::string& key) {
  auto v = text(key);
  if (!v) return std::nullopt;
  if (*v == "true" || *v == "1") return true;
  if (*v == "false" || *v == "0") return false;
  fail(ExitCode::kBadConfig, what_, " spec '", text_, "': ", key, "='", *v,
       "' is not true or false");
}

void Spec::finish() const {
  EBM_CHECK_CONFIG(kv_.empty(), what_, " spec '", text_, "': unknown key '",
                   kv_.empty() ? "" : kv_.begin()->first, "' for ", name_);
}

}  // namespace ebm
