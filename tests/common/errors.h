// What a test action throws, for the bad-input tests of every module.
#pragma once

#include <functional>
#include <string>
#include <utility>

#include "ebm/core/error.h"

namespace ebm::test_helpers {

// The ebm::Error an action throws, as (exit code, message); (kOk, "") when it
// throws nothing.
inline std::pair<ExitCode, std::string> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.code(), e.what()};
  }
  return {ExitCode::kOk, ""};
}

// Its exit code alone, the message optionally.
inline ExitCode code_of(const std::function<void()>& f, std::string* message = nullptr) {
  auto [code, what] = error_of(f);
  if (message) *message = what;
  return code;
}

}  // namespace ebm::test_helpers
