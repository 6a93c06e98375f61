// The seal of model.pt and checkpoint.pt (file_bytes.h). LibTorch's archive
// reader checks no checksum of its own: a bit flipped in a weight loaded as a
// different model without a word.
#include <zlib.h>

#include <cstdint>
#include <cstring>

#include "ebm/core/error.h"
#include "ebm/io/file_bytes.h"

namespace ebm {
namespace {

constexpr char kMagic[8] = {'e', 'b', 'm', 's', 'e', 'a', 'l', '1'};
constexpr size_t kTrailer = 24;  // magic, length (8 bytes), CRC-32 (4), zeros (4)

uint32_t crc_of(const std::string& bytes, size_t n) {
  return uint32_t(crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), n));
}

void put_le(char* out, uint64_t v, int width) {
  for (int i = 0; i < width; ++i) out[i] = char((v >> (8 * i)) & 0xff);
}

uint64_t get_le(const char* in, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= uint64_t(uint8_t(in[i])) << (8 * i);
  return v;
}

}  // namespace

std::string seal(std::string bytes) {
  char t[kTrailer] = {};
  std::memcpy(t, kMagic, sizeof kMagic);
  put_le(t + 8, bytes.size(), 8);
  put_le(t + 16, crc_of(bytes, bytes.size()), 4);
  bytes.append(t, kTrailer);
  return bytes;
}

std::string unseal(std::string bytes, const std::string& path) {
  if (bytes.size() < kTrailer) return bytes;
  const char* t = bytes.data() + bytes.size() - kTrailer;
  if (std::memcmp(t, kMagic, sizeof kMagic) != 0) return bytes;
  const uint64_t n = get_le(t + 8, 8);
  EBM_CHECK_DATA(n == bytes.size() - kTrailer, path, ": corrupt file: ", bytes.size() - kTrailer,
                 " bytes before its seal, which says ", n, " (an incomplete or damaged copy)");
  EBM_CHECK_DATA(uint32_t(get_le(t + 16, 4)) == crc_of(bytes, n) && get_le(t + 20, 4) == 0, path,
                 ": corrupt file: its checksum differs from the one written with it (changed since it was "
                 "written: a damaged disk or copy)");
  bytes.resize(n);
  return bytes;
}

std::string read_sealed_file(const std::string& path) { return unseal(read_file_bytes(path), path); }

}  // namespace ebm
