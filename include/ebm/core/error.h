// Errors and exit codes (DESIGN.md "CLI contract"): user mistakes are thrown as
// ebm::Error carrying the exit code the CLI returns; our own bugs are internal
// asserts (TORCH_INTERNAL_ASSERT) and surface as exit code 70.
#pragma once

#include <c10/util/StringUtil.h>

#include <stdexcept>
#include <string>

namespace ebm {

enum class ExitCode : int {
  kOk = 0,
  kUsage = 64,         // bad command line
  kBadData = 65,       // malformed or non-finite input data
  kMissingInput = 66,  // a file that does not exist or cannot be read
  kInternal = 70,      // a bug, or a run that failed after bounded retries
  kBadConfig = 78,     // unknown config key, bad option value
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

template <typename... Args>
[[noreturn]] void fail(ExitCode code, const Args&... args) {
  throw Error(code, c10::str(args...));
}

}  // namespace ebm

// User-facing checks: the message names the field or file and the bad value.
#define EBM_CHECK_CODE(cond, code, ...)                     \
  do {                                                      \
    if (!(cond)) ::ebm::fail((code), __VA_ARGS__);          \
  } while (0)
#define EBM_CHECK_CONFIG(cond, ...) \
  EBM_CHECK_CODE(cond, ::ebm::ExitCode::kBadConfig, __VA_ARGS__)
#define EBM_CHECK_DATA(cond, ...) \
  EBM_CHECK_CODE(cond, ::ebm::ExitCode::kBadData, __VA_ARGS__)
#define EBM_CHECK_USAGE(cond, ...) \
  EBM_CHECK_CODE(cond, ::ebm::ExitCode::kUsage, __VA_ARGS__)
