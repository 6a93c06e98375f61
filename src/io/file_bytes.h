// Inside the io module: a whole file's bytes, for the readers of io.cpp and
// image_files.cpp.
#pragma once

#include <string>

namespace ebm {

// kMissingInput naming `path` when it is missing, a directory or unreadable.
std::string read_file_bytes(const std::string& path);

}  // namespace ebm
