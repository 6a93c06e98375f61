// io: round trips for every format and one test per error path; each error
// must carry the right exit code and a one-line message naming the file and
// the row or byte offset.
#include <dirent.h>
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/io/file_bytes.h"
#include "ebm/io/image_files.h"
#include "ebm/io/io.h"
#include "ebm/io/missing.h"

namespace {

class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/ebm_io_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& f : list_dir()) std::remove((dir_ + "/" + f).c_str());
    ::rmdir(dir_.c_str());
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string write_bytes(const std::string& name, const std::string& bytes) const {
    const auto p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  std::vector<std::string> list_dir() const {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(dir_.c_str())) {
      while (auto* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      ::closedir(d);
    }
    return out;
  }
  std::string dir_;
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <typename F>
ebm::Error error_of(F&& f) {
  try {
    f();
  } catch (const ebm::Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ebm::Error, got: " << e.what();
    return ebm::Error(ebm::ExitCode::kOk, "");
  }
  ADD_FAILURE() << "expected ebm::Error, nothing thrown";
  return ebm::Error(ebm::ExitCode::kOk, "");
}

// The error has `code`, one line, and every one of `parts`.
void expect_error(const ebm::Error& e, ebm::ExitCode code, const std::vector<std::string>& parts) {
  const std::string msg = e.what();
  EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

torch::Tensor randn(int64_t n, int64_t d, uint64_t seed = 1) {
  auto g = ebm::make_generator(seed, ebm::kStreamTestData);
  return at::normal(0.0, 1.0, {n, d}, g, torch::kFloat32) * 1e3;
}

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// NPY v1.0 with the given header dict, padded to 64 bytes.
std::string npy_bytes(const std::string& dict, const std::string& payload) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  return out + h + payload;
}

TEST_F(IoTest, CsvRoundTripFloat32WithoutHeader) {
  const auto x = randn(7, 3);
  const auto p = path("a.csv");
  ebm::write_csv(p, x);
  EXPECT_TRUE(torch::equal(ebm::read_csv(p), x));  // %.9g round-trips float32
  EXPECT_TRUE(torch::equal(ebm::read_matrix(p), x));
}

TEST_F(IoTest, CsvRoundTripWithHeaderAndFloat64) {
  const auto x = randn(5, 2).to(torch::kFloat64);  // float32-representable values
  const auto p = path("b.csv");
  ebm::write_matrix(p, x, {"u", "v"});
  EXPECT_EQ(slurp(p).substr(0, 4), "u,v\n");
  const auto y = ebm::read_matrix(p);
  EXPECT_EQ(y.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(y, x.to(torch::kFloat32)));
}

TEST_F(IoTest, CsvWritesOneColumnForVectors) {
  const auto p = path("v.csv");
  ebm::write_csv(p, torch::tensor({1.5f, -2.0f, 3.25f}));
  EXPECT_EQ(slurp(p), "1.5\n-2\n3.25\n");
  EXPECT_EQ(ebm::read_csv(p).sizes(), (std::vector<int64_t>{3, 1}));
}

TEST_F(IoTest, CsvAcceptsSpacesCrlfAndTrailingBlankLines) {
  const auto p = write_bytes("c.csv", "x, y\r\n1, 2\r\n 3 ,+4e0\r\n\r\n\n");
  const auto y = ebm::read_csv(p);
  EXPECT_TRUE(torch::equal(y, torch::tensor({{1.f, 2.f}, {3.f, 4.f}})));
  // (classic Mac line endings, CR alone, read "2\r3" as one cell)
  const auto mac = ebm::read_csv(write_bytes("mac.csv", "1,2\r3,4\r"));
  EXPECT_TRUE(torch::equal(mac, torch::tensor({{1.f, 2.f}, {3.f, 4.f}})));
}

TEST_F(IoTest, CsvNonNumericCell) {
  const auto p = write_bytes("bad.csv", "a,b\n1,2\n3,oops\n");
  expect_error(error_of([&] { ebm::read_csv(p); }), ebm::ExitCode::kBadData,
               {"bad.csv:3:", "'oops'", "column 2"});
}

TEST_F(IoTest, CsvRaggedRow) {
  const auto p = write_bytes("ragged.csv", "1,2\n3,4\n5,6\n7,8,9\n");
  expect_error(error_of([&] { ebm::read_csv(p); }), ebm::ExitCode::kBadData,
               {"ragged.csv:4:", "expected 2 columns, got 3"});
}

TEST_F(IoTest, CsvRowShorterThanHeader) {
  const auto p = write_bytes("short.csv", "a,b,c\n1,2,3\n4,5\n");
  expect_error(error_of([&] { ebm::read_csv(p); }), ebm::ExitCode::kBadData,
               {"short.csv:3:", "expected 3 columns, got 2"});
}

TEST_F(IoTest, CsvNonFinite) {
  for (const std::string v : {"nan", "inf", "-inf", "1e999"}) {
    const auto p = write_bytes("nf.csv", "1,2\n3,4\n5," + v + "\n");
    expect_error(error_of([&] { ebm::read_csv(p); }), ebm::ExitCode::kBadData,
                 {"nf.csv:3:", "'" + v + "'", "column 2"});
  }
}

// read_csv_missing: every spelling of a missing value is NaN (the header and
// the rest read as read_csv reads them); infinite values stay errors, and
// read_csv itself still refuses a missing value.
TEST_F(IoTest, CsvMissingValuesAreNaN) {
  const auto p = write_bytes("m.csv", "a,b,c\n1,,3\nNA,n/a,NaN\nnull,None,?\n7,8,9\n");
  auto x = ebm::read_csv_missing(p);
  ASSERT_EQ(x.sizes(), (c10::IntArrayRef{4, 3}));
  EXPECT_EQ(torch::isnan(x).sum().item<int64_t>(), 7);
  EXPECT_EQ(x[0][0].item<float>(), 1.0f);
  EXPECT_EQ(x[3][2].item<float>(), 9.0f);
  expect_error(error_of([&] { ebm::read_csv_missing(write_bytes("i.csv", "1,inf\n")); }), ebm::ExitCode::kBadData,
               {"i.csv:1:", "'inf'"});
  expect_error(error_of([&] { ebm::read_csv(p); }), ebm::ExitCode::kBadData, {"m.csv:2:"});
}

TEST_F(IoTest, CsvEmptyHeaderOnlyAndInnerBlankLine) {
  expect_error(error_of([&] { ebm::read_csv(write_bytes("e.csv", "")); }), ebm::ExitCode::kBadData,
               {"e.csv", "empty"});
  expect_error(error_of([&] { ebm::read_csv(write_bytes("blank.csv", "\n \n")); }), ebm::ExitCode::kBadData,
               {"blank.csv", "empty"});
  expect_error(error_of([&] { ebm::read_csv(write_bytes("h.csv", "a,b\n")); }), ebm::ExitCode::kBadData,
               {"h.csv", "no data rows"});
  expect_error(error_of([&] { ebm::read_csv(write_bytes("gap.csv", "1,2\n\n3,4\n")); }),
               ebm::ExitCode::kBadData, {"gap.csv:2:", "blank line"});
}

// pandas' to_csv (",a,b" then "0,1.5,2") and R's write.csv ("","a","b" then
// "1",1.5,2) write a row index or names first: not data, dropped. Quoted
// numbers read as numbers.
TEST_F(IoTest, CsvRowIndexColumnOfPandasAndRIsDropped) {
  const auto want = torch::tensor({{1.5f, 2.f}, {-3.f, 4.f}});
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("pd.csv", ",a,b\n0,1.5,2\n1,-3,4\n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("shuf.csv", ",a,b\n17,1.5,2\nx9,-3,4\n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("r.csv", "\"\",\"a\",\"b\"\n\"1\",1.5,2\n\"2\",-3,\"4\"\n")),
                           want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("y.csv", ",label\n0,3\n1,1\n")), torch::tensor({{3.f}, {1.f}})));
  // (without the empty first name the first column is data)
  EXPECT_EQ(ebm::read_csv(write_bytes("ab.csv", "i,a,b\n0,1.5,2\n")).size(1), 3);
  // A header one name short of the rows: R's write.table with row names
  // (spaces by default, quoted names that may hold spaces; or sep = ",").
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("wt.txt", "\"a\" \"b\"\n\"1\" 1.5 2\n\"2\" -3 4\n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("mt.txt", "\"a\" \"b\"\n\"Mazda RX4\" 1.5 2\n\"Fiat 128\" -3 4\n")),
                           want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("wc.csv", "\"a\",\"b\"\n\"1\",1.5,2\n\"2\",-3,4\n")), want));
  // (row names of a subset, 3 and 7; but fractions, or a number twice, are
  // data under a header that lacks a name: an error, not a dropped column)
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("sub.csv", "a,b\n3,1.5,2\n7,-3,4\n")), want));
  expect_error(error_of([&] { ebm::read_csv(write_bytes("short.csv", "a,b\n0.25,1.5,2\n0.5,-3,4\n")); }),
               ebm::ExitCode::kBadData, {"short.csv", "header names 2 columns but the rows have 3"});
  expect_error(error_of([&] { ebm::read_csv(write_bytes("twice.csv", "a,b\n1,1.5,2\n1,-3,4\n")); }),
               ebm::ExitCode::kBadData, {"twice.csv", "not row names"});
  expect_error(error_of([&] { ebm::read_csv(write_bytes("bad.csv", "a,b\n1,1.5,2\n-3,4\n")); }), ebm::ExitCode::kBadData,
               {"bad.csv:3", "expected 3 columns, got 2"});
  expect_error(error_of([&] { ebm::read_csv(write_bytes("e.csv", ",,b\n0,1,2\n")); }), ebm::ExitCode::kBadData,
               {"e.csv:1", "non-numeric"});
}

// Rows separated by tabs, semicolons or spaces (numpy's savetxt default,
// whatever the extension) read as comma-separated ones; .tsv and .txt too;
// leading "# ..." lines (savetxt's header) are comments.
TEST_F(IoTest, CsvOtherFieldSeparators) {
  const auto want = torch::tensor({{1.5f, 2.f}, {-3.f, 4.f}});
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("t.csv", "a\tb\n1.5\t2\n-3\t4\n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("s.csv", "1.5;2\n-3;4\n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("np.csv", "1.500000000000000000e+00 2.0e+00\n-3  4 \n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_matrix(write_bytes("x.tsv", "1.5\t2\n-3\t4\n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_matrix(write_bytes("x.txt", "# a b\n1.5 2\n-3 4\n")), want));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("one.csv", "3\n-1\n")), torch::tensor({{3.f}, {-1.f}})));
  EXPECT_TRUE(torch::equal(ebm::read_csv(write_bytes("c.csv", "# made by np.savetxt\n# x,y\nx,y\n1.5,2\n-3,4\n")), want));
  expect_error(error_of([&] { ebm::read_csv(write_bytes("cc.csv", "# only\n#\n")); }), ebm::ExitCode::kBadData,
               {"cc.csv", "only comment lines"});
  expect_error(error_of([&] { ebm::read_csv(write_bytes("r.csv", "1 2\n3 4 5\n")); }), ebm::ExitCode::kBadData,
               {"r.csv:2", "expected 2 columns, got 3"});
}

TEST_F(IoTest, NpyRoundTripFloat32AndFloat64) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const auto x = randn(9, 4, 2).to(dtype);
    const auto p = path("m.npy");
    ebm::write_matrix(p, x);
    const auto bytes = slurp(p);
    ASSERT_EQ((bytes.size() - x.numel() * x.element_size()) % 64, 0u);  // header padded to 64
    EXPECT_NE(bytes.find(dtype == torch::kFloat32 ? "'<f4'" : "'<f8'"), std::string::npos);
    EXPECT_NE(bytes.find("'shape': (9, 4)"), std::string::npos);
    EXPECT_TRUE(torch::equal(ebm::read_npy(p), x.to(torch::kFloat32)));
    EXPECT_TRUE(torch::equal(ebm::read_matrix(p), x.to(torch::kFloat32)));
  }
}

TEST_F(IoTest, NpyOneDimensionalReadsAsColumn) {
  const auto x = torch::tensor({1.0, 2.0, -3.0}, torch::kFloat64);
  const auto p = path("v.npy");
  ebm::write_npy(p, x);
  EXPECT_NE(slurp(p).find("'shape': (3,)"), std::string::npos);
  EXPECT_TRUE(torch::equal(ebm::read_npy(p), x.to(torch::kFloat32).unsqueeze(1)));
}

TEST_F(IoTest, NpyHandWrittenVersion2) {
  float v[2] = {1.0f, 2.0f};
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)}";
  std::string bytes = std::string("\x93NUMPY\x02\x00", 8) + char(dict.size()) + std::string(3, '\0') + dict;
  bytes += std::string(reinterpret_cast<char*>(v), 8);
  EXPECT_TRUE(torch::equal(ebm::read_npy(write_bytes("v2.npy", bytes)), torch::tensor({{1.f, 2.f}})));
}

TEST_F(IoTest, NpyWrongDtype) {
  for (const std::string descr : {"<c8", "<U5", "|O", "<f3", "u2"}) {
    const auto p = write_bytes("i.npy", npy_bytes("{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2,), }",
                                                  std::string(16, '\0')));
    std::vector<std::string> want = {"i.npy", "unsupported dtype '" + descr + "'"};
    if (descr == "<U5" || descr == "|O") want.push_back("word labels goes in a .txt or .csv file");  // (np.save of words)
    expect_error(error_of([&] { ebm::read_npy(p); }), ebm::ExitCode::kBadData, want);
  }
}

// What numpy writes besides little-endian f4/f8 and signed integers: the
// other byte order, half floats, unsigned integers of every width (held in
// the next signed type), booleans (read as 0.0 and 1.0), Fortran order
// (`np.save(p, x.T)`).
TEST_F(IoTest, NpyOtherDtypesByteOrdersAndFortranOrder) {
  auto npy = [&](const std::string& descr, const std::string& shape, const std::string& data, bool fortran = false) {
    return write_bytes("d.npy", npy_bytes("{'descr': '" + descr + "', 'fortran_order': " +
                                              (fortran ? "True" : "False") + ", 'shape': " + shape + ", }",
                                          data));
  };
  auto bytes_of = [](const auto& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
  };
  auto reversed_each = [](std::string b, size_t w) {
    for (size_t i = 0; i < b.size(); i += w) std::reverse(b.begin() + i, b.begin() + i + w);
    return b;
  };
  const std::vector<float> f = {1.5f, -2.f, 1e30f};
  EXPECT_TRUE(torch::equal(ebm::read_npy_array(npy(">f4", "(3,)", reversed_each(bytes_of(f), 4))),
                           torch::tensor(f)));
  const std::vector<double> g = {0.25, -7.0};
  EXPECT_TRUE(torch::equal(ebm::read_npy_array(npy(">f8", "(2,)", reversed_each(bytes_of(g), 8))),
                           torch::tensor({0.25f, -7.f})));
  const std::vector<int32_t> be = {-5, 70000};
  const auto bi = ebm::read_npy_array(npy(">i4", "(2,)", reversed_each(bytes_of(be), 4)));
  EXPECT_EQ(bi.scalar_type(), torch::kInt32);
  EXPECT_TRUE(torch::equal(bi, torch::tensor(be)));
  // float16: 1.0 = 0x3C00, -0.5 = 0xB800, 65504 = 0x7BFF
  const std::vector<uint16_t> h = {0x3C00, 0xB800, 0x7BFF};
  const auto hf = ebm::read_npy_array(npy("<f2", "(3,)", bytes_of(h)));
  EXPECT_EQ(hf.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(hf, torch::tensor({1.f, -0.5f, 65504.f})));
  const std::vector<uint16_t> inf = {0x7C00};
  expect_error(error_of([&] { ebm::read_npy(npy("<f2", "(1,)", bytes_of(inf))); }), ebm::ExitCode::kBadData,
               {"d.npy", "non-finite"});
  const std::vector<uint16_t> u2 = {0, 300, 65535};
  const auto a2 = ebm::read_npy_array(npy("<u2", "(3,)", bytes_of(u2)));
  EXPECT_EQ(a2.scalar_type(), torch::kInt32);
  EXPECT_TRUE(torch::equal(a2, torch::tensor({0, 300, 65535}, torch::kInt)));
  EXPECT_TRUE(torch::equal(ebm::read_npy_array(npy(">u2", "(3,)", reversed_each(bytes_of(u2), 2))), a2));
  const std::vector<uint32_t> u4 = {4294967295u, 1u};
  EXPECT_TRUE(torch::equal(ebm::read_npy_array(npy("<u4", "(2,)", bytes_of(u4))),
                           torch::tensor({int64_t(4294967295), int64_t(1)}, torch::kLong)));
  const std::vector<uint64_t> u8 = {uint64_t(1) << 62, 3};
  EXPECT_TRUE(torch::equal(ebm::read_npy_array(npy("<u8", "(2,)", bytes_of(u8))),
                           torch::tensor({int64_t(1) << 62, int64_t(3)}, torch::kLong)));
  const std::vector<uint64_t> huge = {uint64_t(1) << 63};
  expect_error(error_of([&] { ebm::read_npy(npy("<u8", "(1,)", bytes_of(huge))); }), ebm::ExitCode::kBadData,
               {"d.npy", "uint64"});
  const auto b = ebm::read_npy_array(npy("|b1", "(2, 2)", std::string("\x01\x00\x00\x01", 4)));
  EXPECT_EQ(b.scalar_type(), torch::kFloat32);  // numbers, never pixels
  EXPECT_TRUE(torch::equal(b, torch::tensor({{1.f, 0.f}, {0.f, 1.f}})));
  // Fortran order: x = [[1, 2, 3], [4, 5, 6]] stored column by column.
  const std::vector<float> col = {1, 4, 2, 5, 3, 6};
  EXPECT_TRUE(torch::equal(ebm::read_npy_array(npy("<f4", "(2, 3)", bytes_of(col), true)),
                           torch::tensor({{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}})));
  // ... and [2, 1, 2, 2] images: element [n, 0, i, j] at n + 2 * (2 * j + i) (the first index fastest)
  std::vector<uint8_t> img(8);
  for (int n = 0; n < 2; ++n)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) img[n + 2 * (i + 2 * j)] = uint8_t(10 * n + 2 * i + j);
  const auto fi = ebm::read_array_raw(npy("|u1", "(2, 1, 2, 2)", bytes_of(img), true));
  EXPECT_EQ(fi.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(fi, torch::tensor({0, 1, 2, 3, 10, 11, 12, 13}, torch::kUInt8).reshape({2, 1, 2, 2})));
}

// Integer NPY keeps its type in read_npy_array / read_array_raw (pixels, for
// the data module) and reads as float32 everywhere else.
TEST_F(IoTest, NpyIntegers) {
  const std::string u8 = {0, 1, 2, 3, 4, 5, 6, char(255)};
  const auto p = write_bytes("u.npy", npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), }", u8));
  const auto a = ebm::read_npy_array(p);
  EXPECT_EQ(a.scalar_type(), torch::kUInt8);
  EXPECT_EQ(a.sizes(), (c10::IntArrayRef{2, 2, 2}));
  EXPECT_EQ(a[1][1][1].item<int64_t>(), 255);
  const auto raw = ebm::read_array_raw(p);
  EXPECT_EQ(raw.scalar_type(), torch::kUInt8);
  EXPECT_EQ(raw.sizes(), (c10::IntArrayRef{2, 1, 2, 2}));  // [N, H, W]: one channel
  const auto f = ebm::read_array(p);
  EXPECT_EQ(f.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(f, raw.to(torch::kFloat32)));
  EXPECT_EQ(ebm::read_matrix(p).sizes(), (c10::IntArrayRef{2, 4}));

  const std::vector<int64_t> v = {-3, 7, int64_t(1) << 40};
  const auto p8 = write_bytes("i8.npy", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                                                  std::string(reinterpret_cast<const char*>(v.data()), 24)));
  EXPECT_EQ(ebm::read_npy_array(p8).scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(ebm::read_npy_array(p8), torch::tensor(v, torch::kLong)));
  const std::vector<int32_t> w = {-1, 300};
  const auto p4 = write_bytes("i4.npy", npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
                                                  std::string(reinterpret_cast<const char*>(w.data()), 8)));
  EXPECT_EQ(ebm::read_npy_array(p4).scalar_type(), torch::kInt32);
  EXPECT_TRUE(torch::equal(ebm::read_npy(p4), torch::tensor({{-1.f}, {300.f}})));
  // (a cut integer file is as much an error as a cut float one)
  const auto cut = write_bytes("cut.npy", npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
                                                    std::string(7, '\0')));
  expect_error(error_of([&] { ebm::read_npy(cut); }), ebm::ExitCode::kBadData, {"cut.npy", "truncated data"});
}

TEST_F(IoTest, NpyBadMagicAndBadHeader) {
  expect_error(error_of([&] { ebm::read_npy(write_bytes("m.npy", "PK\x03\x04 not numpy")); }),
               ebm::ExitCode::kBadData, {"m.npy", "byte offset 0", "magic"});
  expect_error(error_of([&] {
                 ebm::read_npy(write_bytes("h.npy", npy_bytes("{'descr': '<f4', 'shape': (2,), ", "")));
               }),
               ebm::ExitCode::kBadData, {"h.npy", "byte offset"});
  // Rows of any shape read (issue 15: event shapes); a 0-d array has no rows.
  const auto cube = write_bytes(
      "s.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), }", std::string(4, '\0')));
  EXPECT_EQ(ebm::read_npy_array(cube).sizes(), (c10::IntArrayRef{1, 1, 1}));
  EXPECT_EQ(ebm::read_array(cube).sizes(), (c10::IntArrayRef{1, 1, 1, 1}));  // [N, H, W]: one channel
  EXPECT_EQ(ebm::read_npy(cube).sizes(), (c10::IntArrayRef{1, 1}));
  expect_error(error_of([&] {
                 ebm::read_npy(write_bytes(
                     "z.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                                        std::string(4, '\0'))));
               }),
               ebm::ExitCode::kBadData, {"z.npy", "shape ()"});
  // Header length pointing past the end of the file.
  expect_error(
      error_of([&] { ebm::read_npy(write_bytes("t.npy", std::string("\x93NUMPY\x01\x00\xff\x00{", 11))); }),
      ebm::ExitCode::kBadData, {"t.npy", "byte offset 11", "truncated header"});
}

TEST_F(IoTest, NpyTruncatedAndTrailingData) {
  const auto p = path("t.npy");
  ebm::write_npy(p, randn(4, 3));
  const auto full = slurp(p);
  const auto cut = write_bytes("cut.npy", full.substr(0, full.size() - 5));
  expect_error(error_of([&] { ebm::read_npy(cut); }), ebm::ExitCode::kBadData,
               {"cut.npy", "byte offset " + std::to_string(full.size() - 5), "truncated data"});
  const auto extra = write_bytes("extra.npy", full + "xyz");
  expect_error(error_of([&] { ebm::read_npy(extra); }), ebm::ExitCode::kBadData,
               {"extra.npy", "byte offset " + std::to_string(full.size()), "trailing"});
}

TEST_F(IoTest, NpyNonFiniteNamesRow) {
  auto x = randn(5, 2).to(torch::kFloat64);
  x[3][1] = std::numeric_limits<double>::quiet_NaN();
  const auto p = path("nan.npy");
  ebm::write_npy(p, x);
  expect_error(error_of([&] { ebm::read_npy(p); }), ebm::ExitCode::kBadData,
               {"nan.npy", "non-finite", "row 3", "column 1"});
  // Finite in float64 but not representable in float32.
  auto big = torch::ones({2, 1}, torch::kFloat64);
  big[1][0] = 1e300;
  ebm::write_npy(p, big);
  expect_error(error_of([&] { ebm::read_npy(p); }), ebm::ExitCode::kBadData, {"nan.npy", "row 1"});
}

TEST_F(IoTest, MissingFile) {
  for (const std::string name : {"none.csv", "none.npy", "none-ubyte", "none.idx.gz"}) {
    const auto p = path(name);
    expect_error(error_of([&] { ebm::read_matrix(p); }), ebm::ExitCode::kMissingInput, {p});
  }
  expect_error(error_of([&] { ebm::read_idx(path("x.idx")); }), ebm::ExitCode::kMissingInput, {"x.idx"});
  const auto d = path("dir.csv");
  ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
  expect_error(error_of([&] { ebm::read_matrix(d); }), ebm::ExitCode::kMissingInput,
               {"dir.csv", "directory"});
  ::rmdir(d.c_str());
}

TEST_F(IoTest, UnknownExtension) {
  expect_error(error_of([&] { ebm::read_matrix(path("a.dat")); }), ebm::ExitCode::kUsage, {"a.dat", "unknown file format"});
  expect_error(error_of([&] {
                 ebm::write_matrix(path("a.txt"), torch::ones({1, 1}));
               }),
               ebm::ExitCode::kUsage, {"a.txt"});
}

std::string idx_ubyte() {  // dims 2 x 3 x 2, values 0..11 plus 250
  std::string b = std::string("\0\0\x08\x03", 4) + be32(2) + be32(3) + be32(2);
  for (int i = 0; i < 12; ++i) b += char(i == 11 ? 250 : i);
  return b;
}

TEST_F(IoTest, IdxUbyteFlattensToRows) {
  const auto p = write_bytes("img-idx3-ubyte", idx_ubyte());
  auto want = torch::arange(12, torch::kFloat32);
  want[11] = 250;
  EXPECT_TRUE(torch::equal(ebm::read_matrix(p), want.reshape({2, 6})));
  // Bytes stay bytes where the type is kept.
  EXPECT_EQ(ebm::read_idx_array(p).scalar_type(), torch::kUInt8);
  EXPECT_EQ(ebm::read_array_raw(p).sizes(), (c10::IntArrayRef{2, 1, 3, 2}));
  EXPECT_TRUE(torch::equal(ebm::read_array(p), want.reshape({2, 1, 3, 2})));
}

TEST_F(IoTest, IdxLabelsAndFloat) {
  const auto labels =
      write_bytes("l.idx", std::string("\0\0\x08\x01", 4) + be32(3) + std::string("\x07\x00\x09", 3));
  EXPECT_TRUE(torch::equal(ebm::read_idx(labels), torch::tensor({{7.f}, {0.f}, {9.f}})));
  std::string f = std::string("\0\0\x0D\x02", 4) + be32(1) + be32(2);
  for (float v : {1.5f, -2.0f}) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    f += be32(bits);
  }
  EXPECT_TRUE(torch::equal(ebm::read_idx(write_bytes("f.idx", f)), torch::tensor({{1.5f, -2.0f}})));
}

TEST_F(IoTest, IdxGzip) {
  const auto raw = idx_ubyte();
  for (const std::string name : {"g.idx.gz", "t10k-images-idx3-ubyte.gz", "gz-without-suffix.idx"}) {
    const auto p = path(name);
    gzFile g = gzopen(p.c_str(), "wb");
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(gzwrite(g, raw.data(), raw.size()), static_cast<int>(raw.size()));
    ASSERT_EQ(gzclose(g), Z_OK);
    ASSERT_EQ(static_cast<unsigned char>(slurp(p)[0]), 0x1f);
    EXPECT_TRUE(torch::equal(ebm::read_matrix(p), ebm::read_idx(write_bytes("plain-ubyte", raw)))) << name;
  }
  // A cut gzip stream is an error, never a short dataset.
  const auto full = slurp(path("g.idx.gz"));
  const auto cut = write_bytes("cut.idx.gz", full.substr(0, full.size() / 2));
  expect_error(error_of([&] { ebm::read_idx(cut); }), ebm::ExitCode::kBadData, {"cut.idx.gz"});
}

TEST_F(IoTest, IdxErrors) {
  const auto raw = idx_ubyte();
  expect_error(error_of([&] { ebm::read_idx(write_bytes("cut.idx", raw.substr(0, raw.size() - 1))); }),
               ebm::ExitCode::kBadData,
               {"cut.idx", "byte offset " + std::to_string(raw.size() - 1), "truncated"});
  expect_error(error_of([&] { ebm::read_idx(write_bytes("hdr.idx", raw.substr(0, 9))); }),
               ebm::ExitCode::kBadData, {"hdr.idx", "byte offset 9", "truncated IDX header"});
  expect_error(error_of([&] { ebm::read_idx(write_bytes("more.idx", raw + "z")); }), ebm::ExitCode::kBadData,
               {"more.idx", "byte offset " + std::to_string(raw.size()), "trailing"});
  auto typed = raw;
  typed[2] = 0x0B;
  expect_error(error_of([&] { ebm::read_idx(write_bytes("type.idx", typed)); }), ebm::ExitCode::kBadData,
               {"type.idx", "byte offset 2", "0x0B"});
  auto magic = raw;
  magic[0] = 1;
  expect_error(error_of([&] { ebm::read_idx(write_bytes("magic.idx", magic)); }), ebm::ExitCode::kBadData,
               {"magic.idx", "byte offset 0"});
}

TEST_F(IoTest, AtomicWriteKeepsOldFileWhenWriterThrows) {
  const auto p = path("out.csv");
  ebm::atomic_write_text(p, "old\n");
  EXPECT_THROW(ebm::atomic_write(p,
                                 [](const std::string& tmp) {
                                   std::ofstream(tmp) << "half-written";
                                   throw std::runtime_error("disk on fire");
                                 }),
               std::runtime_error);
  EXPECT_EQ(slurp(p), "old\n");
  EXPECT_EQ(list_dir(), std::vector<std::string>{"out.csv"});  // no temp file left
  ebm::atomic_write_text(p, "new\n");
  EXPECT_EQ(slurp(p), "new\n");
  EXPECT_EQ(list_dir().size(), 1u);
}

TEST_F(IoTest, WriteIntoMissingDirectoryFails) {
  const auto p = path("no/such/dir/x.npy");
  expect_error(error_of([&] {
                 ebm::write_npy(p, torch::ones({1, 1}));
               }),
               ebm::ExitCode::kMissingInput, {"no/such/dir"});
}

TEST_F(IoTest, WritePng) {
  const auto gray = torch::arange(12, torch::kUInt8).reshape({3, 4});
  const auto rgb = torch::zeros({2, 5, 3}, torch::kUInt8);
  for (const auto& img : {gray, rgb}) {
    const auto p = path("i.png");
    ebm::write_png(p, img);
    EXPECT_EQ(slurp(p).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  }
  EXPECT_ANY_THROW(ebm::write_png(path("bad.png"), torch::zeros({2, 2}, torch::kFloat32)));
  EXPECT_EQ(list_dir(), std::vector<std::string>{"i.png"});
}

// JPEG and BMP files read as PNGs do, [C, H, W]; a file whose bytes are not
// the format its name says is kBadData naming it.
TEST_F(IoTest, JpegAndBmpImages) {
  auto rgb = torch::zeros({8, 12, 3}, torch::kUInt8);
  rgb.narrow(1, 0, 6).select(2, 0).fill_(200);  // left half red, right half blue
  rgb.narrow(1, 6, 6).select(2, 2).fill_(120);
  const auto c = rgb.contiguous();
  ASSERT_NE(stbi_write_bmp(path("c.bmp").c_str(), 12, 8, 3, c.data_ptr<uint8_t>()), 0);
  EXPECT_TRUE(torch::equal(ebm::read_image(path("c.bmp")), c.permute({2, 0, 1})));
  ASSERT_NE(stbi_write_jpg(path("c.JPG").c_str(), 12, 8, 3, c.data_ptr<uint8_t>(), 100), 0);
  const auto j = ebm::read_image(path("c.JPG"));
  EXPECT_EQ(j.sizes(), (c10::IntArrayRef{3, 8, 12}));
  // (lossy: within a few levels of 255 at quality 100, away from the edge between the halves)
  const auto diff = (j.to(torch::kInt) - c.permute({2, 0, 1}).to(torch::kInt)).abs();
  EXPECT_LE(diff.narrow(2, 0, 4).max().item<int>(), 12);
  EXPECT_LE(diff.narrow(2, 8, 4).max().item<int>(), 12);
  const auto grey = torch::full({5, 7}, 90, torch::kUInt8);
  ASSERT_NE(stbi_write_jpg(path("g.jpeg").c_str(), 7, 5, 1, grey.data_ptr<uint8_t>(), 100), 0);
  // (stb's writer stores every JPEG as three components: grey comes back RGB)
  EXPECT_EQ(ebm::read_image(path("g.jpeg")).sizes(), (c10::IntArrayRef{3, 5, 7}));
  EXPECT_LE((ebm::read_image(path("g.jpeg")).to(torch::kInt) - 90).abs().max().item<int>(), 2);
  // One image as a file of rows: [1, C, H, W].
  EXPECT_EQ(ebm::read_array_raw(path("c.bmp")).sizes(), (c10::IntArrayRef{1, 3, 8, 12}));
  expect_error(error_of([&] { ebm::read_image(write_bytes("p.jpg", "\x89PNG\r\n\x1a\nxx")); }),
               ebm::ExitCode::kBadData, {"p.jpg", "not a JPEG file"});
  expect_error(error_of([&] { ebm::read_image(write_bytes("t.bmp", "hello")); }), ebm::ExitCode::kBadData,
               {"t.bmp", "not a BMP file"});
  expect_error(error_of([&] { ebm::read_image(write_bytes("cut.jpg", "\xFF\xD8\xFF\xE0\x00\x10JFIF")); }),
               ebm::ExitCode::kBadData, {"cut.jpg", "cannot decode JPEG: "});
  expect_error(error_of([&] { ebm::read_array_raw(write_bytes("x.gif", "GIF89a")); }), ebm::ExitCode::kUsage,
               {"x.gif", "unknown file format"});
}

// read_png gives [C, H, W] what write_png wrote as [H, W] or [H, W, 3].
TEST_F(IoTest, PngRoundTripGreyAndRgb) {
  auto g = ebm::make_generator(3, ebm::kStreamTestData);
  const auto grey = at::randint(0, 256, {5, 7}, g, torch::kLong).to(torch::kUInt8);     // [H, W]
  const auto rgb = at::randint(0, 256, {4, 6, 3}, g, torch::kLong).to(torch::kUInt8);  // [H, W, 3]
  ebm::write_png(path("g.png"), grey);
  ebm::write_png(path("c.PNG"), rgb);
  const auto g2 = ebm::read_png(path("g.png"));
  EXPECT_EQ(g2.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(g2, grey.unsqueeze(0)));
  EXPECT_TRUE(torch::equal(ebm::read_png(path("c.PNG")), rgb.permute({2, 0, 1})));
  // Through the extension dispatch: one image, one row.
  EXPECT_TRUE(torch::equal(ebm::read_array_raw(path("c.PNG")), rgb.permute({2, 0, 1}).unsqueeze(0)));
  EXPECT_TRUE(torch::equal(ebm::read_array(path("g.png")), grey.unsqueeze(0).unsqueeze(0).to(torch::kFloat32)));
  EXPECT_EQ(ebm::read_matrix(path("g.png")).sizes(), (c10::IntArrayRef{1, 35}));
}

// Alpha is composited (auto: ImageAlpha.* checks the arithmetic), or
// dropped when asked, the colour under it kept.
TEST_F(IoTest, PngAlphaIsCompositedOrDropped) {
  const auto ga = torch::arange(2 * 3 * 2, torch::kUInt8).reshape({2, 3, 2});  // [H, W, grey + alpha]
  const auto rgba = torch::arange(2 * 3 * 4, torch::kUInt8).reshape({2, 3, 4});
  ASSERT_TRUE(stbi_write_png(path("ga.png").c_str(), 3, 2, 2, ga.data_ptr<uint8_t>(), 3 * 2));
  ASSERT_TRUE(stbi_write_png(path("rgba.png").c_str(), 3, 2, 4, rgba.data_ptr<uint8_t>(), 3 * 4));
  const auto drop = ebm::Alpha::kDrop;
  EXPECT_TRUE(torch::equal(ebm::read_image(path("ga.png"), drop), ga.narrow(2, 0, 1).permute({2, 0, 1})));
  EXPECT_TRUE(torch::equal(ebm::read_image(path("rgba.png"), drop), rgba.narrow(2, 0, 3).permute({2, 0, 1})));
  EXPECT_TRUE(torch::equal(ebm::read_png(path("ga.png")), ebm::composite_alpha(ga, ebm::Alpha::kAuto)));
  EXPECT_TRUE(torch::equal(ebm::read_png(path("rgba.png")), ebm::composite_alpha(rgba, ebm::Alpha::kAuto)));
  // (the first pixel: grey 0 at alpha 1 over white, dark content, 254)
  EXPECT_EQ(ebm::read_png(path("ga.png"))[0][0][0].item<int>(), 254);
}

TEST_F(IoTest, PngErrors) {
  ebm::write_png(path("ok.png"), torch::full({16, 16}, 7, torch::kUInt8));
  const auto full = slurp(path("ok.png"));
  // The signature intact, the image data cut: stb_image's reason in the message.
  const auto cut = write_bytes("cut.png", full.substr(0, full.size() / 2));
  expect_error(error_of([&] { ebm::read_png(cut); }), ebm::ExitCode::kBadData, {"cut.png", "cannot decode PNG: "});
  auto flipped = full;
  flipped[12] ^= 0x55;  // the IHDR chunk's type
  const auto bad = write_bytes("bad.png", flipped);
  expect_error(error_of([&] { ebm::read_png(bad); }), ebm::ExitCode::kBadData, {"bad.png", "cannot decode PNG: "});
  const auto text = write_bytes("text.png", "hello, not an image\n");
  expect_error(error_of([&] { ebm::read_png(text); }), ebm::ExitCode::kBadData,
               {"text.png", "byte offset 0", "not a PNG"});
  expect_error(error_of([&] { ebm::read_array(text); }), ebm::ExitCode::kBadData, {"text.png"});
  expect_error(error_of([&] { ebm::read_png(path("none.png")); }), ebm::ExitCode::kMissingInput, {"none.png"});
}

TEST_F(IoTest, CheckFiniteRowsAndExtension) {
  EXPECT_NO_THROW(ebm::check_finite_rows(torch::ones({3, 2}), "x"));
  auto x = torch::ones({4, 2});
  x[2][0] = std::numeric_limits<float>::infinity();
  expect_error(error_of([&] { ebm::check_finite_rows(x, "batch"); }), ebm::ExitCode::kBadData,
               {"batch", "row 2", "column 0"});
  EXPECT_EQ(ebm::file_extension("a/b.IDX.gz"), ".idx.gz");
  EXPECT_EQ(ebm::file_extension("dir.v1/data.CSV"), ".csv");
  EXPECT_EQ(ebm::file_extension("dir.v1/train-images-idx3-ubyte"), "");
  EXPECT_EQ(ebm::file_extension("x.npy"), ".npy");
}

// The seal of model.pt and checkpoint.pt: every single flipped bit and every
// cut is caught (CRC-32 catches all single-bit errors), unsealed bytes (files
// written before seals) pass as they are.
TEST_F(IoTest, SealCatchesEveryFlippedBit) {
  std::string payload(300, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = char((i * 131 + 7) & 0xff);
  const std::string sealed = ebm::seal(payload);
  ASSERT_EQ(sealed.size(), payload.size() + 24);
  EXPECT_EQ(ebm::unseal(sealed, "m.pt"), payload);
  EXPECT_EQ(ebm::unseal(payload, "m.pt"), payload);
  EXPECT_EQ(ebm::unseal("", "m.pt"), "");
  EXPECT_EQ(ebm::read_sealed_file(write_bytes("ok.pt", sealed)), payload);
  int caught = 0, tried = 0;
  for (size_t i = 0; i < sealed.size(); ++i) {
    if (i >= payload.size() && i < payload.size() + 8) continue;  // (the magic word: then no seal at all)
    for (int b = 0; b < 8; ++b) {
      std::string bad = sealed;
      bad[i] = char(bad[i] ^ (1 << b));
      ++tried;
      try {
        ebm::unseal(bad, "m.pt");
      } catch (const ebm::Error& e) {
        caught += e.code() == ebm::ExitCode::kBadData && std::string(e.what()).find("m.pt: corrupt file") == 0;
      }
    }
  }
  EXPECT_EQ(caught, tried);
  // (a copy padded to its length by zeros, and one with bytes cut from the middle)
  std::string padded = sealed;
  std::fill(padded.begin() + 100, padded.begin() + 200, '\0');
  EXPECT_THROW(ebm::unseal(padded, "m.pt"), ebm::Error);
  std::string cut = sealed;
  cut.erase(50, 10);
  EXPECT_THROW(ebm::unseal(cut, "m.pt"), ebm::Error);
}

}  // namespace
