// Scratch directories for tests that write files.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace ebm::test_helpers {

// An empty path under the system's temp directory, unique to this process
// and `name` (whatever was there removed); the directory itself is not made.
inline std::string fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("ebm_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d.string();
}

}  // namespace ebm::test_helpers
