// Column names: csv_header across the CSV dialects read_csv takes, and the
// check of a later file's header against the training data's names.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/io/io.h"
#include "ebm/model/columns.h"

using namespace ebm;
using test_helpers::code_of;

namespace {
std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string p = dir + "/" + name;
  std::ofstream(p) << text;
  return p;
}
}  // namespace

TEST(Columns, HeaderNamesAcrossDialects) {
  const std::string dir = test_helpers::fresh_dir("columns");
  std::filesystem::create_directories(dir);
  using V = std::vector<std::string>;
  EXPECT_EQ(csv_header(write(dir, "plain.csv", "a,b\n1,2\n")), (V{"a", "b"}));
  EXPECT_EQ(csv_header(write(dir, "pandas.csv", ",a,b\n0,1,2\n")), (V{"a", "b"}));  // (row index dropped)
  EXPECT_EQ(csv_header(write(dir, "r.csv", "\"a\" \"b\"\n\"x\" 1 2\n")), (V{"a", "b"}));  // (R's row names)
  EXPECT_EQ(csv_header(write(dir, "comment.csv", "# made by savetxt\na;b\r\n1;2\r\n")), (V{"a", "b"}));
  EXPECT_TRUE(csv_header(write(dir, "none.csv", "1,2\n3,4\n")).empty());
  // (every text format, any case: rows.CSV and .tsv went unchecked)
  EXPECT_EQ(csv_header(write(dir, "t.txt", "a,b\n1,2\n")), (V{"a", "b"}));
  EXPECT_EQ(csv_header(write(dir, "UP.CSV", "a,b\n1,2\n")), (V{"a", "b"}));
  EXPECT_EQ(csv_header(write(dir, "tabs.tsv", "a\tb\n1\t2\n")), (V{"a", "b"}));
  EXPECT_TRUE(csv_header(write(dir, "t.npy", "a,b\n1,2\n")).empty());  // (not text)
  // pandas' default names 0, 1, ... over rows with fractions: a header (it
  // was read as the row (0, 1)); over whole numbers: a data row
  EXPECT_EQ(csv_header(write(dir, "range.csv", "0,1\n0.5,2\n3,4\n")), (V{"0", "1"}));
  EXPECT_EQ(read_csv(dir + "/range.csv").size(0), 2);
  EXPECT_EQ(csv_header(write(dir, "range_index.csv", ",0,1\n0,0.5,2\n1,3,4e-3\n")), (V{"0", "1"}));
  EXPECT_TRUE(torch::equal(read_csv(dir + "/range_index.csv"), torch::tensor({{0.5f, 2.0f}, {3.0f, 4e-3f}})));
  EXPECT_TRUE(csv_header(write(dir, "ints.csv", "0,1\n2,3\n")).empty());
  EXPECT_EQ(read_csv(dir + "/ints.csv").size(0), 2);
  EXPECT_TRUE(csv_header(write(dir, "not_range.csv", "1,0\n0.5,2\n")).empty());
  // (then words: a --thin draws file of such a model; pandas' index and one column)
  EXPECT_EQ(csv_header(write(dir, "range_thin.csv", "0,1,chain,draw\n0.5,2,0,0\n")),
            (V{"0", "1", "chain", "draw"}));
  EXPECT_EQ(read_csv(dir + "/range_thin.csv").size(0), 1);
  EXPECT_EQ(csv_header(write(dir, "range_one.csv", ",0\n0,0.5\n1,2\n")), (V{"0"}));
  EXPECT_EQ(read_csv(dir + "/range_one.csv").sizes(), (std::vector<int64_t>{2, 1}));
  EXPECT_TRUE(csv_header(write(dir, "lone_zero.csv", "0\n0.5\n")).empty());  // (a lone 0 stays data)
  EXPECT_TRUE(csv_header(dir + "/missing.csv").empty());
  // Same names: fine; reordered: exit 65 naming the first difference;
  // other names: read by position (a note); no header: unchecked.
  const V want = {"a", "b", "c"};
  EXPECT_NO_THROW(check_csv_columns(write(dir, "same.csv", "a,b,c\n1,2,3\n"), want));
  std::string msg;
  EXPECT_EQ(code_of([&] { check_csv_columns(write(dir, "swap.csv", "a,c,b\n1,3,2\n"), want); }, &msg),
            ExitCode::kBadData);
  EXPECT_NE(msg.find("column 2 is 'c', the training data's was 'b'"), std::string::npos) << msg;
  EXPECT_NO_THROW(check_csv_columns(write(dir, "other.csv", "x,y,z\n1,2,3\n"), want));
  EXPECT_NO_THROW(check_csv_columns(write(dir, "bare.csv", "3,1,2\n"), want));
  EXPECT_NO_THROW(check_csv_columns(dir + "/swap.csv", V{}));
  std::filesystem::remove_all(dir);
}
