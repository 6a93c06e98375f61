// A whole file's bytes: for the readers of io.cpp and image_files.cpp, and
// train.init's copy of its model (train/init_weights.cpp); and the seal that
// model.pt and checkpoint.pt carry (io/sealed.cpp).
#pragma once

#include <string>

namespace ebm {

// kMissingInput naming `path` when it is missing, a directory or unreadable.
std::string read_file_bytes(const std::string& path);

// `bytes` with a 24-byte trailer appended: a magic word, the length of
// `bytes` and their CRC-32. Zip readers (LibTorch's archives) skip nothing
// at the end, so sealed bytes are unsealed before they are read.
std::string seal(std::string bytes);

// The bytes a seal covers, checked: kBadData naming `path` when the length or
// CRC-32 differ (a flipped bit, a copy cut short and padded). Bytes without a
// seal (files written before seals) are returned as they are.
std::string unseal(std::string bytes, const std::string& path);

// read_file_bytes, then unseal.
std::string read_sealed_file(const std::string& path);

}  // namespace ebm
