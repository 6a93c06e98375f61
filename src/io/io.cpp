// Readers and writers for the matrix formats of DESIGN.md "Data formats".
// Readers load the whole file, validate every byte they use, and report the
// first problem as one line naming the file and the CSV line (1-based) or the
// NPY/IDX byte offset. All writers go through atomic_write. Image decoding is
// stb_image's (Debian's libstb ships it compiled: no STB_IMAGE_IMPLEMENTATION).
#include "ebm/io/io.h"
#include "ebm/io/image_files.h"
#include "ebm/io/file_bytes.h"

#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "ebm/core/error.h"

namespace ebm {
namespace {

std::string basename_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Opening a directory succeeds on Linux and then reads as empty.
void check_readable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    fail(ExitCode::kMissingInput, path, ": cannot open for reading: ", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(ExitCode::kMissingInput, path, ": cannot open for reading: is a directory");
}

}  // namespace

std::string read_file_bytes(const std::string& path) {
  check_readable(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ExitCode::kMissingInput, path, ": cannot open for reading: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ExitCode::kMissingInput, path, ": read error: ", std::strerror(errno));
  return ss.str();
}

namespace {

// A write that fails (disk full, bad directory) is reported like an unreadable
// input: the exit-code set of DESIGN.md has no separate "cannot create".
[[noreturn]] void fail_write(const std::string& path, const std::string& what) {
  fail(ExitCode::kMissingInput, path, ": cannot write: ", what);
}

struct File {
  std::FILE* f = nullptr;
  std::string path;
  explicit File(const std::string& p) : path(p) {
    f = std::fopen(p.c_str(), "wb");
    if (!f) fail_write(p, std::strerror(errno));
  }
  void write(const void* data, size_t n) {
    if (n > 0 && std::fwrite(data, 1, n, f) != n) fail_write(path, std::strerror(errno));
  }
  void write(const std::string& s) { write(s.data(), s.size()); }
  void close() {
    std::FILE* g = f;
    f = nullptr;
    if (std::fclose(g) != 0) fail_write(path, std::strerror(errno));
  }
  ~File() {
    if (f) std::fclose(f);
  }
};

uint32_t load_be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

void byteswap_inplace(unsigned char* data, int64_t count, int64_t width) {
  for (int64_t i = 0; i < count; ++i) std::reverse(data + i * width, data + (i + 1) * width);
}

// --- NPY header: a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  bool has_descr = false, has_order = false, has_shape = false;
};

class DictParser {
 public:
  DictParser(const std::string& path, const std::string& text, size_t base)
      : path_(path), s_(text), base_(base) {}

  NpyHeader parse() {
    NpyHeader h;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const auto key = string_literal();
      expect(':');
      if (key == "descr") {
        h.descr = string_literal();
        h.has_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        h.has_order = true;
      } else if (key == "shape") {
        h.shape = tuple();
        h.has_shape = true;
      } else {
        bad("unexpected key '" + key + "' in header");
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != '}') {
        bad("expected ',' or '}' in header");
      }
    }
    if (!h.has_descr || !h.has_order || !h.has_shape)
      bad("header lacks one of 'descr', 'fortran_order', 'shape'");
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) {
    fail(ExitCode::kBadData, path_, ": byte offset ", base_ + i_, ": ", what);
  }
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  char peek() { return i_ < s_.size() ? s_[i_] : '\0'; }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(std::string("expected '") + c + "' in header");
    ++i_;
  }
  std::string string_literal() {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string in header");
    const auto end = s_.find(q, i_ + 1);
    if (end == std::string::npos) bad("unterminated string in header");
    auto out = s_.substr(i_ + 1, end - i_ - 1);
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_ws();
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    bad("expected True or False in header");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') {
        ++i_;
        return dims;
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) bad("expected a dimension in 'shape'");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) bad("dimension too large in 'shape'");
        v = v * 10 + (s_[i_++] - '0');
      }
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != ')') {
        bad("expected ',' or ')' in 'shape'");
      }
    }
  }

  const std::string& path_;
  const std::string& s_;
  size_t base_;
  size_t i_ = 0;
};

std::string shape_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

torch::Tensor as_matrix(const torch::Tensor& x, const char* fn) {
  TORCH_CHECK(x.dim() == 1 || x.dim() == 2, fn, ": want a [N, D] or [N] tensor, got ", x.sizes());
  return (x.dim() == 1 ? x.unsqueeze(1) : x).cpu().contiguous();
}

}  // namespace

std::string file_extension(const std::string& path) {
  const auto name = lower(basename_of(path));
  const bool gz = ends_with(name, ".gz");
  const auto stem = gz ? name.substr(0, name.size() - 3) : name;
  const auto dot = stem.find_last_of('.');
  const auto ext = dot == std::string::npos ? std::string() : stem.substr(dot);
  return gz ? ext + ".gz" : ext;
}

void check_finite_rows(const torch::Tensor& x, const std::string& what) {
  if (!x.is_floating_point() || x.numel() == 0) return;
  const auto flat = x.dim() == 0 ? x.reshape({1, 1}) : x.reshape({x.size(0), -1});  // [N, D]
  const auto bad = torch::logical_not(torch::isfinite(flat));
  if (!bad.any().item<bool>()) return;
  const auto idx = bad.reshape({-1}).nonzero()[0][0].item<int64_t>();
  const int64_t d = flat.size(1);
  const double v = flat.reshape({-1})[idx].item<double>();
  fail(ExitCode::kBadData, what, ": non-finite value ", v, " at row ", idx / d, ", column ", idx % d,
       " (0-based)");
}

torch::Tensor read_npy_array(const std::string& path) {
  const auto bytes = read_file_bytes(path);
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  static const char kMagic[] = "\x93NUMPY";
  if (size < 6 || std::memcmp(u, kMagic, 6) != 0)
    fail(ExitCode::kBadData, path, ": byte offset 0: not an NPY file (bad magic)");
  if (size < 8) fail(ExitCode::kBadData, path, ": byte offset ", size, ": truncated header");
  const int major = u[6];
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    if (size < 10) fail(ExitCode::kBadData, path, ": byte offset ", size, ": truncated header");
    header_len = size_t(u[8]) | (size_t(u[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) fail(ExitCode::kBadData, path, ": byte offset ", size, ": truncated header");
    header_len = size_t(u[8]) | (size_t(u[9]) << 8) | (size_t(u[10]) << 16) | (size_t(u[11]) << 24);
    header_start = 12;
  } else {
    fail(ExitCode::kBadData, path, ": byte offset 6: unsupported NPY version ", major, ".", int(u[7]),
         " (want 1.0, 2.0 or 3.0)");
  }
  if (size - header_start < header_len)
    fail(ExitCode::kBadData, path, ": byte offset ", size, ": truncated header (declares ", header_len,
         " bytes from offset ", header_start, ")");
  const std::string header = bytes.substr(header_start, header_len);
  const auto h = DictParser(path, header, header_start).parse();

  // descr is a byte order ('<', '>', '|' none, '=' native) then a kind and a
  // width. Unsigned integers wider than a byte are held in the next signed
  // type (uint64 must fit int64), float16 and booleans are read as float32:
  // a boolean array is numbers (0 and 1), never raw pixels.
  struct NpyType {
    torch::ScalarType file;  // the type of the bytes as stored
    bool is_unsigned;
  };
  static const std::map<std::string, NpyType> kKinds = {
      {"f2", {torch::kHalf, false}},  {"f4", {torch::kFloat32, false}}, {"f8", {torch::kFloat64, false}},
      {"u1", {torch::kUInt8, true}},  {"i1", {torch::kInt8, false}},    {"i2", {torch::kInt16, false}},
      {"i4", {torch::kInt32, false}}, {"i8", {torch::kInt64, false}},   {"u2", {torch::kInt16, true}},
      {"u4", {torch::kInt32, true}},  {"u8", {torch::kInt64, true}},    {"b1", {torch::kUInt8, false}}};
  const std::string& descr = h.descr;
  const char order = descr.empty() ? '?' : descr[0];
  const auto kind = descr.size() == 3 ? kKinds.find(descr.substr(1)) : kKinds.end();
  if ((order != '<' && order != '>' && order != '|' && order != '=') || kind == kKinds.end())
    fail(ExitCode::kBadData, path, ": unsupported dtype '", descr,
         "' (want a float f2/f4/f8, an integer i1/i2/i4/i8/u1/u2/u4/u8 or a boolean b1, either byte order)",
         descr.size() >= 2 && (descr[1] == 'U' || descr[1] == 'S' || descr[1] == 'O')
             ? "; text such as word labels goes in a .txt or .csv file, one per line"
             : "");
  const torch::ScalarType stored = kind->second.file;
  const int64_t width = c10::elementSize(stored);
  const bool big_endian = order == '>' || (order == '=' && !host_is_little_endian());
  if (h.shape.empty())
    fail(ExitCode::kBadData, path, ": unsupported shape () (want [N] or [N, ...])");
  const int64_t rows = h.shape[0];
  int64_t cols = 1;  // elements per row, bounded so the product cannot overflow
  for (size_t i = 1; i < h.shape.size(); ++i) {
    if (h.shape[i] == 0 || cols == 0) {
      cols = 0;
      continue;
    }
    if (h.shape[i] > (int64_t(1) << 40) / cols)
      fail(ExitCode::kBadData, path, ": shape ", shape_str(h.shape), " is too large");
    cols *= h.shape[i];
  }
  const size_t data_start = header_start + header_len;
  const size_t available = size - data_start;
  // Overflow-safe: compare element counts, not byte counts.
  const bool fits = cols == 0 || rows == 0 ||
                    (static_cast<uint64_t>(rows) <= available / width / static_cast<uint64_t>(cols));
  const uint64_t want = fits ? static_cast<uint64_t>(rows) * cols * width : 0;
  if (!fits || want > available)
    fail(ExitCode::kBadData, path, ": byte offset ", size, ": truncated data (shape ", shape_str(h.shape),
         " needs ", rows, "*", cols, "*", width, " bytes from offset ", data_start, ", file has ", available,
         ")");
  if (want < available)
    fail(ExitCode::kBadData, path, ": byte offset ", data_start + want, ": ", available - want,
         " trailing bytes after the data of shape ", shape_str(h.shape));

  auto out = torch::empty({rows, cols}, stored);
  if (want > 0) {
    auto* dst = static_cast<unsigned char*>(out.data_ptr());
    std::memcpy(dst, u + data_start, want);
    if (width > 1 && big_endian == host_is_little_endian()) byteswap_inplace(dst, rows * cols, width);
  }
  // Fortran order stores the transpose: the shape reversed, read in C order.
  std::vector<int64_t> stored_shape = h.shape;
  if (h.fortran_order) std::reverse(stored_shape.begin(), stored_shape.end());
  out = out.reshape(stored_shape);
  if (h.fortran_order && out.dim() > 1) {
    std::vector<int64_t> back(out.dim());
    for (int64_t i = 0; i < out.dim(); ++i) back[i] = out.dim() - 1 - i;
    out = out.permute(back).contiguous();
  }
  if (kind->second.is_unsigned && width > 1) {
    if (stored == torch::kInt64) {
      EBM_CHECK_DATA(out.numel() == 0 || out.min().item<int64_t>() >= 0, path,
                     ": uint64 values above 2^63 - 1 are not supported");
    } else {  // the bits as the next wider signed type
      const int64_t mask = (int64_t(1) << (8 * width)) - 1;
      out = out.to(stored == torch::kInt16 ? torch::kInt32 : torch::kInt64).bitwise_and(mask);
    }
  }
  if (kind->first == "b1") out = out.ne(0).to(torch::kFloat32);
  if (!out.is_floating_point()) return out;
  const auto flat = out.reshape({rows, cols});
  check_finite_rows(flat, path);
  out = out.to(torch::kFloat32);
  if (width == 8) check_finite_rows(out.reshape({rows, cols}), path + " (as float32)");
  return out;
}

torch::Tensor read_idx_array(const std::string& path) {
  unsigned char magic[2] = {0, 0};
  check_readable(path);
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(ExitCode::kMissingInput, path, ": cannot open for reading: ", std::strerror(errno));
    const size_t got = std::fread(magic, 1, 2, f);
    std::fclose(f);
    if (got < 2) magic[0] = magic[1] = 0;
  }
  const bool gz = magic[0] == 0x1f && magic[1] == 0x8b;
  const std::string where = gz ? " (decompressed)" : "";

  std::vector<unsigned char> data;
  {
    gzFile g = gzopen(path.c_str(), "rb");
    if (!g) fail(ExitCode::kMissingInput, path, ": cannot open for reading: ", std::strerror(errno));
    unsigned char buf[1 << 16];
    while (true) {
      const int n = gzread(g, buf, sizeof(buf));
      if (n < 0) {
        int errnum = 0;
        const std::string msg = gzerror(g, &errnum);
        gzclose(g);
        fail(ExitCode::kBadData, path, ": byte offset ", data.size(), where, ": gzip error: ", msg);
      }
      if (n == 0) break;
      data.insert(data.end(), buf, buf + n);
    }
    // A truncated gzip stream reads as EOF; gzclose reports it as an error.
    const int rc = gzclose(g);
    if (rc != Z_OK)
      fail(ExitCode::kBadData, path, ": byte offset ", data.size(), where,
           ": gzip stream is truncated or corrupt");
  }

  const size_t size = data.size();
  if (size < 4) fail(ExitCode::kBadData, path, ": byte offset ", size, where, ": truncated IDX header");
  if (data[0] != 0 || data[1] != 0)
    fail(ExitCode::kBadData, path, ": byte offset 0", where, ": not an IDX file (bad magic)");
  const int type = data[2];
  int64_t width = 0;
  if (type == 0x08) {
    width = 1;
  } else if (type == 0x0D) {
    width = 4;
  } else {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02X", type);
    fail(ExitCode::kBadData, path, ": byte offset 2", where, ": unsupported IDX type ", hex,
         " (want 0x08 ubyte or 0x0D float32)");
  }
  const int ndim = data[3];
  if (ndim < 1) fail(ExitCode::kBadData, path, ": byte offset 3", where, ": IDX with 0 dimensions");
  const size_t data_start = 4 + 4 * static_cast<size_t>(ndim);
  if (size < data_start)
    fail(ExitCode::kBadData, path, ": byte offset ", size, where, ": truncated IDX header (", ndim,
         " dimensions)");
  std::vector<int64_t> dims(ndim);
  for (int i = 0; i < ndim; ++i) dims[i] = load_be32(&data[4 + 4 * i]);
  const size_t available = size - data_start;
  // Overflow-safe element count bounded by what the file holds.
  uint64_t count = 1;
  bool fits = true;
  for (auto d : dims) {
    if (d == 0) {
      count = 0;
      break;
    }
    if (count > available / width / static_cast<uint64_t>(d)) fits = false;
    if (fits) count *= d;
  }
  if (!fits || count * width > available)
    fail(ExitCode::kBadData, path, ": byte offset ", size, where, ": truncated data (dims ", shape_str(dims),
         " of ", width, "-byte values from offset ", data_start, ", file has ", available, " bytes)");
  if (count * width < available)
    fail(ExitCode::kBadData, path, ": byte offset ", data_start + count * width, where, ": ",
         available - count * width, " trailing bytes after the data of dims ", shape_str(dims));

  const int64_t rows = dims[0];
  int64_t cols = 1;
  for (int i = 1; i < ndim; ++i) cols *= dims[i];
  const unsigned char* p = data.data() + data_start;
  if (width == 1)
    return torch::from_blob(const_cast<unsigned char*>(p), {rows, cols}, torch::kUInt8).clone().reshape(dims);
  auto out = torch::empty({rows, cols}, torch::kFloat32);
  auto* dst = out.data_ptr<float>();
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t bits = load_be32(p + 4 * i);
    std::memcpy(&dst[i], &bits, 4);
  }
  check_finite_rows(out, path);
  return out.reshape(dims);
}

namespace {
// [N] -> [N, 1]; [N, ...] -> [N, prod(...)].
torch::Tensor as_rows(const torch::Tensor& x) {
  return x.dim() == 1 ? x.unsqueeze(1) : x.reshape({x.size(0), -1});
}
}  // namespace

torch::Tensor read_npy(const std::string& path) { return as_rows(read_npy_array(path)).to(torch::kFloat32); }
torch::Tensor read_idx(const std::string& path) { return as_rows(read_idx_array(path)).to(torch::kFloat32); }


namespace {
// The rows of a file with their own shape (CSV: [N, D]), by extension.
torch::Tensor read_shaped(const std::string& path) {
  const auto ext = file_extension(path);
  const auto name = lower(basename_of(path));
  torch::Tensor x;
  if (ext == ".csv" || ext == ".tsv" || ext == ".txt")  // (text rows: comma, tab, ';' or spaces)
    x = read_csv(path);
  else if (ext == ".npy")
    x = read_npy_array(path);
  else if (ext == ".idx" || ext == ".idx.gz" || ends_with(name, "-ubyte") || ends_with(name, "-ubyte.gz"))
    x = read_idx_array(path);
  else if (image_file_name(path))
    x = read_image(path).unsqueeze(0);  // one image: one row
  else
    fail(ExitCode::kUsage, path, ": unknown file format '", ext,
         "' (want .csv, .tsv, .txt, .npy, .idx, .idx.gz, *-ubyte, *-ubyte.gz, .png, .jpg, .jpeg or .bmp)");
  EBM_CHECK_DATA(x.dim() == 0 || x.size(0) > 0, path, ": no data rows (shape ", x.sizes(), ")");
  return x;
}
}  // namespace

torch::Tensor read_matrix(const std::string& path) { return as_rows(read_shaped(path)).to(torch::kFloat32); }

torch::Tensor read_array_raw(const std::string& path) {
  auto x = read_shaped(path);
  if (x.dim() == 1 || x.dim() == 3) return x.unsqueeze(1);  // [N] -> [N, 1]; [N, H, W]: one channel
  return x;
}

torch::Tensor read_array(const std::string& path) { return read_array_raw(path).to(torch::kFloat32); }

void write_matrix(const std::string& path, const torch::Tensor& x, const std::vector<std::string>& header) {
  const auto ext = file_extension(path);
  if (ext == ".csv") return write_csv(path, x, header);
  // NPY has no place for column names; they are dropped.
  if (ext == ".npy") return write_npy(path, x);
  fail(ExitCode::kUsage, path, ": cannot write format '", ext, "' (want .csv or .npy)");
}

void write_csv(const std::string& path, const torch::Tensor& x, const std::vector<std::string>& header) {
  const auto m = as_matrix(x, "write_csv").to(torch::kFloat64);  // [N, D]
  const int64_t rows = m.size(0), cols = m.size(1);
  TORCH_CHECK(header.empty() || static_cast<int64_t>(header.size()) == cols, "write_csv: ", header.size(),
              " header names for ", cols, " columns");
  std::string head;
  for (size_t i = 0; i < header.size(); ++i) {
    TORCH_CHECK(header[i].find_first_of(",\r\n") == std::string::npos, "write_csv: header name '", header[i],
                "' contains a comma or newline");
    head += (i ? "," : "") + header[i];
  }
  const double* v = m.data_ptr<double>();
  atomic_write(path, [&](const std::string& tmp) {
    File f(tmp);
    if (!header.empty()) f.write(head + "\n");
    std::string buf;
    char num[40];
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int len = std::snprintf(num, sizeof(num), "%.9g", v[r * cols + c]);
        if (c) buf += ',';
        buf.append(num, len);
      }
      buf += '\n';
      if (buf.size() > (1 << 16)) {
        f.write(buf);
        buf.clear();
      }
    }
    f.write(buf);
    f.close();
  });
}

void write_npy(const std::string& path, const torch::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1, "write_npy: want a [N, ...] tensor, got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64,
              "write_npy: want float32 or float64, got ", x.scalar_type());
  const auto t = x.cpu().contiguous();
  const int64_t width = t.element_size();
  std::string dict = std::string("{'descr': '") + (width == 4 ? "<f4" : "<f8") +
                     "', 'fortran_order': False, 'shape': " + shape_str(t.sizes().vec()) + ", }";
  // Version 1.0: magic(6) + version(2) + len(2) + header, padded with spaces
  // and ended by '\n' so the data starts on a 64-byte boundary.
  size_t total = 10 + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  TORCH_CHECK(dict.size() <= 65535, "write_npy: header too long");
  std::string pre = "\x93NUMPY";
  pre += '\x01';
  pre += '\x00';
  pre += static_cast<char>(dict.size() & 0xff);
  pre += static_cast<char>((dict.size() >> 8) & 0xff);
  std::vector<unsigned char> payload(t.numel() * width);
  if (!payload.empty()) std::memcpy(payload.data(), t.data_ptr(), payload.size());
  if (!host_is_little_endian()) byteswap_inplace(payload.data(), t.numel(), width);
  atomic_write(path, [&](const std::string& tmp) {
    File f(tmp);
    f.write(pre + dict);
    f.write(payload.data(), payload.size());
    f.close();
  });
}

void write_png(const std::string& path, const torch::Tensor& image) {
  TORCH_CHECK(image.scalar_type() == torch::kUInt8, "write_png: want uint8, got ", image.scalar_type());
  TORCH_CHECK(image.dim() == 2 || (image.dim() == 3 && image.size(2) == 3),
              "write_png: want [H, W] or [H, W, 3], got ", image.sizes());
  TORCH_CHECK(image.size(0) > 0 && image.size(1) > 0, "write_png: empty image ", image.sizes());
  const auto img = image.cpu().contiguous();
  const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1));
  const int comp = img.dim() == 2 ? 1 : 3;
  // (encoded in memory, then written by File, which checks every write:
  // stbi_write_png's own file writer ignores fwrite's result, and on a full
  // disk left a truncated PNG behind an exit of 0)
  std::string bytes;
  const auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
  };
  if (!stbi_write_png_to_func(append, &bytes, w, h, comp, img.data_ptr<uint8_t>(), w * comp))
    fail(ExitCode::kInternal, path, ": PNG encoding failed");
  atomic_write(path, [&](const std::string& tmp) {
    File f(tmp);
    f.write(bytes);
    f.close();
  });
}

void write_image_grid(const std::string& path, const torch::Tensor& images, double lo, double hi,
                      int64_t cols) {
  TORCH_CHECK(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3) && images.size(0) > 0,
              "write_image_grid: want [N, 1 or 3, H, W] images, got ", images.sizes());
  TORCH_CHECK(hi > lo, "write_image_grid: want hi > lo, got [", lo, ", ", hi, "]");
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  if (cols <= 0) cols = std::max<int64_t>(1, int64_t(std::ceil(std::sqrt(double(n)))));
  const int64_t rows = (n + cols - 1) / cols;
  auto px = ((images.detach().to(torch::kCPU, torch::kDouble) - lo) * (255.0 / (hi - lo)))
                .clamp(0, 255)
                .round()
                .to(torch::kUInt8);
  auto grid = torch::zeros({rows * (h + 1) + 1, cols * (w + 1) + 1, c}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, q = i % cols;
    grid.narrow(0, 1 + r * (h + 1), h).narrow(1, 1 + q * (w + 1), w).copy_(px[i].permute({1, 2, 0}));
  }
  write_png(path, c == 1 ? grid.squeeze(2) : grid);
}

void check_writable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    fail(ExitCode::kMissingInput, path, ": cannot write: is a directory");
  // (the folder it goes in: there, a folder, and writable; the file itself is
  // replaced by a rename, so only the folder's permission counts)
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0)
    fail(ExitCode::kMissingInput, path, ": cannot write: no such directory ", dir);
  if (!S_ISDIR(st.st_mode)) fail(ExitCode::kMissingInput, path, ": cannot write: ", dir, " is not a directory");
  if (::access(dir.c_str(), W_OK) != 0)
    fail(ExitCode::kMissingInput, path, ": cannot write: ", dir, ": ", std::strerror(errno));
}

void atomic_write(const std::string& path, const std::function<void(const std::string&)>& write_tmp) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write_tmp(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) fail_write(path, std::strerror(errno));
  } catch (const Error& e) {  // naming the user's file, not the temporary one
    std::remove(tmp.c_str());
    std::string msg = e.what();
    if (msg.rfind(tmp, 0) == 0) msg = path + msg.substr(tmp.size());
    throw Error(e.code(), msg);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

void atomic_write_text(const std::string& path, const std::string& text) {
  atomic_write(path, [&](const std::string& tmp) {
    File f(tmp);
    f.write(text);
    f.close();
  });
}

}  // namespace ebm
