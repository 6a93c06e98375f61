// A whole file's bytes: for the readers of io.cpp and image_files.cpp, and
// train.init's copy of its model (train/init_weights.cpp).
#pragma once

#include <string>

namespace ebm {

// kMissingInput naming `path` when it is missing, a directory or unreadable.
std::string read_file_bytes(const std::string& path);

}  // namespace ebm
