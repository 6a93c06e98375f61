// CSV and whitespace-separated text matrices (DESIGN.md "Data formats"):
// read_csv's dialects (a header, pandas' and R's row names, savetxt's
// comments and spaces, quotes), each problem one line naming the file and
// line. Split from io.cpp, which keeps the binary formats and the writers.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/io/file_bytes.h"
#include "ebm/io/io.h"
#include "ebm/io/missing.h"

namespace ebm {
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

enum class Parse { kOk, kNotNumber, kOutOfRange };

// Locale-independent decimal parse of a whole field.
Parse parse_double(const std::string& field, double* out) {
  const char* b = field.data();
  const char* e = b + field.size();
  if (b != e && *b == '+') ++b;
  if (b == e || (b != field.data() && *b == '-')) return Parse::kNotNumber;
  const auto r = std::from_chars(b, e, *out);
  if (r.ptr != e) return Parse::kNotNumber;
  if (r.ec == std::errc::result_out_of_range) return Parse::kOutOfRange;
  if (r.ec != std::errc()) return Parse::kNotNumber;
  return Parse::kOk;
}

// The field separator of a file, from its first line: a comma, else a tab,
// else a semicolon, else runs of spaces (' ': numpy's savetxt default).
char field_separator(const std::string& first_line) {
  for (char c : {',', '\t', ';'})
    if (first_line.find(c) != std::string::npos) return c;
  return ' ';
}

// Fields are trimmed, and a field in double quotes loses them (R's
// write.csv quotes names and row names); separators inside quotes are not
// read. With ' ' any run of spaces and tabs separates.
std::vector<std::string> split_fields(const std::string& line, char sep = ',') {
  std::vector<std::string> out;
  if (sep == ' ') {  // (a quoted field keeps its spaces: R's row name "Mazda RX4")
    for (size_t i = line.find_first_not_of(" \t"); i != std::string::npos; i = line.find_first_not_of(" \t", i)) {
      const auto close = line[i] == '"' ? line.find('"', i + 1) : std::string::npos;
      const auto end = close != std::string::npos ? close + 1 : std::min(line.find_first_of(" \t", i), line.size());
      out.push_back(close != std::string::npos ? line.substr(i + 1, close - i - 1) : line.substr(i, end - i));
      i = end;
    }
    if (out.empty()) out.push_back("");
    return out;
  }
  size_t start = 0;
  while (true) {
    const auto at = line.find(sep, start);
    auto f = trim(line.substr(start, at - start));
    if (f.size() >= 2 && f.front() == '"' && f.back() == '"') f = trim(f.substr(1, f.size() - 2));
    out.push_back(std::move(f));
    if (at == std::string::npos) break;
    start = at + 1;
  }
  return out;
}

// A header: every field a non-empty name that is not a number (a line with
// some numbers is a data row, and a malformed one is reported as such).
bool header_fields(const std::vector<std::string>& fields) {
  double v;
  for (const auto& f : fields)
    if (trim(f).empty() || parse_double(f, &v) != Parse::kNotNumber) return false;
  return true;
}

// pandas' default column names: "0,1,...,D-1" (to_csv of a frame made from
// an array), or ",0,1,..." with its row index. A header only when a later
// line holds a fraction or an exponent: a row of whole numbers that reads
// 0, 1, ... stays data in a file of whole numbers. (It was read as the
// data row (0, 1): one row too many, and every energy one row off.)
// (the names 0 .. k-1 may be followed by words: a --thin draws file of such a
// model adds chain and draw; ",0" is pandas' index and one column)
bool range_header(const std::vector<std::string>& fields, const std::vector<std::string>& later, char sep) {
  const size_t from = fields.size() >= 2 && fields[0].empty() ? 1 : 0;
  size_t k = 0;
  while (from + k < fields.size() && fields[from + k] == std::to_string(k)) ++k;
  const std::vector<std::string> rest(fields.begin() + from + k, fields.end());
  if (k == 0 || (!rest.empty() && !header_fields(rest)) || (k == 1 && from == 0 && rest.empty())) return false;
  for (const auto& line : later)
    for (const auto& f : split_fields(line, sep)) {
      double v;
      if (parse_double(f, &v) == Parse::kOk && f.find_first_of(".eE") != std::string::npos) return true;
    }
  return false;
}
constexpr size_t kRangeHeaderLines = 200;  // (later lines range_header looks at)

// A missing value's spellings (read_csv_missing): empty, NA, N/A, NaN, null,
// None, ? (case aside).
bool missing_field(const std::string& field) {
  std::string f = trim(field);
  for (auto& ch : f) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return f.empty() || f == "na" || f == "n/a" || f == "nan" || f == "null" || f == "none" || f == "?";
}

torch::Tensor read_csv_impl(const std::string& path, bool missing);

}  // namespace

torch::Tensor read_csv(const std::string& path) { return read_csv_impl(path, false); }

torch::Tensor read_csv_missing(const std::string& path) { return read_csv_impl(path, true); }

namespace {
torch::Tensor read_csv_impl(const std::string& path, bool missing) {
  auto text = read_file_bytes(path);
  // (classic Mac line endings, CR alone: read as one line, their rows ran
  // together, "non-numeric value '23'")
  if (text.find('\n') == std::string::npos) std::replace(text.begin(), text.end(), '\r', '\n');
  std::vector<std::string> lines;
  {
    size_t start = 0;
    while (start < text.size()) {
      auto nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      auto line = text.substr(start, nl - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines.push_back(std::move(line));
      start = nl + 1;
    }
  }
  // Blank lines are allowed only at the end.
  size_t n_lines = lines.size();
  while (n_lines > 0 && trim(lines[n_lines - 1]).empty()) --n_lines;
  if (n_lines == 0) fail(ExitCode::kBadData, path, ": empty file (no data rows)");

  // (a UTF-8 byte-order mark is not part of the first field)
  if (lines[0].rfind("\xEF\xBB\xBF", 0) == 0) lines[0].erase(0, 3);
  // (leading "# ..." lines are comments: numpy's savetxt writes its header so)
  size_t top = 0;
  while (top < n_lines && trim(lines[top]).rfind('#', 0) == 0) ++top;
  if (top == n_lines) fail(ExitCode::kBadData, path, ": only comment lines (no data rows)");
  size_t first = top;
  int64_t cols = -1;
  const char sep = field_separator(lines[top]);
  // A header whose first name is empty (",a,b": pandas' to_csv and R's
  // write.csv with their row index or names), or one name short of the rows
  // (R's write.table with its row names), heads a column of row labels,
  // which is not data: it is dropped.
  size_t skip = 0;
  bool short_header = false;  // (then the dropped column must look like row names)
  {
    const auto fields = split_fields(lines[top], sep);
    const std::vector<std::string> later(lines.begin() + top + 1,
                                         lines.begin() + std::min(n_lines, top + 1 + kRangeHeaderLines));
    const bool range = range_header(fields, later, sep);
    if (range)
      notes() << "ebm: note: " << path << ": its first line, " << lines[top]
              << ", is read as column names (pandas' default header), not a data row\n";
    if (header_fields(fields) || (range && !fields[0].empty())) {
      first = top + 1;  // header line
      cols = static_cast<int64_t>(fields.size());
      if (first < n_lines && split_fields(lines[first], sep).size() == fields.size() + 1) {
        cols += 1;
        skip = 1;
        short_header = true;
      }
    } else if (fields.size() >= 2 && fields[0].empty() &&
               (range || header_fields(std::vector<std::string>(fields.begin() + 1, fields.end())))) {
      first = top + 1;
      cols = static_cast<int64_t>(fields.size());
      skip = 1;
    }
  }
  if (first >= n_lines) fail(ExitCode::kBadData, path, ": header line but no data rows");

  std::vector<float> values;
  // R's row names are words ("Mazda RX4") or distinct whole numbers (1, 2,
  // ..., or 3, 7, 12 after a subset); fractions or repeats are data under a
  // header one name short.
  bool names_numeric = short_header, row_numbers = short_header;
  std::set<double> seen_names;
  for (size_t li = first; li < n_lines; ++li) {
    const size_t lineno = li + 1;
    if (trim(lines[li]).empty())
      fail(ExitCode::kBadData, path, ":", lineno, ": blank line before the end of the file");
    const auto fields = split_fields(lines[li], sep);
    if (cols < 0) cols = static_cast<int64_t>(fields.size());
    if (static_cast<int64_t>(fields.size()) != cols)
      fail(ExitCode::kBadData, path, ":", lineno, ": expected ", cols, " columns, got ", fields.size());
    if (names_numeric) {
      double v = 0;
      names_numeric = parse_double(fields[0], &v) == Parse::kOk;
      row_numbers = row_numbers && names_numeric && v == std::floor(v) && seen_names.insert(v).second;
    }
    for (size_t c = skip; c < fields.size(); ++c) {
      if (missing && missing_field(fields[c])) {
        values.push_back(std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      double v = 0;
      switch (parse_double(fields[c], &v)) {
        case Parse::kNotNumber:
          fail(ExitCode::kBadData, path, ":", lineno, ": non-numeric value '", fields[c], "' in column ",
               c + 1);
        case Parse::kOutOfRange:
          fail(ExitCode::kBadData, path, ":", lineno, ": value '", fields[c], "' out of range in column ",
               c + 1);
        case Parse::kOk:
          break;
      }
      if (!std::isfinite(v))
        fail(ExitCode::kBadData, path, ":", lineno, ": non-finite value '", fields[c], "' in column ", c + 1);
      if (std::fabs(v) > std::numeric_limits<float>::max())
        fail(ExitCode::kBadData, path, ":", lineno, ": value '", fields[c],
             "' exceeds float32 range in column ", c + 1);
      values.push_back(static_cast<float>(v));
    }
  }
  EBM_CHECK_CODE(!names_numeric || row_numbers, ExitCode::kBadData, path, ": the header names ", cols - 1,
                 " columns but the rows have ", cols, ", and the first column holds numbers that are not row "
                 "names (R's are words or distinct whole numbers): name every column, or write the file "
                 "without a header");
  const int64_t rows = static_cast<int64_t>(n_lines - first);
  return torch::from_blob(values.data(), {rows, cols - int64_t(skip)}, torch::kFloat32).clone();
}
}  // namespace

std::vector<std::string> csv_header(const std::string& path) {
  // (every text format read_csv reads, any case: a swapped header in
  // rows.CSV or rows.tsv went unchecked, and a model trained on them kept
  // no column names)
  const auto ext = file_extension(path);
  if (ext != ".csv" && ext != ".tsv" && ext != ".txt") return {};
  std::ifstream in(path);
  std::string line;
  auto get = [&in](std::string* l) {
    while (std::getline(in, *l)) {
      if (!l->empty() && l->back() == '\r') l->pop_back();
      if (l->rfind("\xEF\xBB\xBF", 0) == 0) l->erase(0, 3);
      if (trim(*l).rfind('#', 0) != 0) return true;  // (savetxt's comment lines)
    }
    return false;
  };
  if (!get(&line)) return {};
  const char sep = field_separator(line);
  auto fields = split_fields(line, sep);
  std::vector<std::string> later;
  for (std::string l; later.size() < kRangeHeaderLines && std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    later.push_back(l);
  }
  const bool range = range_header(fields, later, sep);
  // (a header one name short of the rows names the data columns too: R's
  // row names are the unnamed column read_csv drops)
  if (header_fields(fields) || (range && !fields[0].empty())) return fields;
  if (fields.size() >= 2 && fields[0].empty() &&
      (range || header_fields(std::vector<std::string>(fields.begin() + 1, fields.end()))))
    return std::vector<std::string>(fields.begin() + 1, fields.end());
  return {};
}

}  // namespace ebm
