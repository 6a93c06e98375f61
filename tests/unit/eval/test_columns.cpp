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
  EXPECT_TRUE(csv_header(write(dir, "t.txt", "a,b\n1,2\n")).empty());  // (not a .csv)
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
