#include "named_rows.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/data/images.h"
#include "ebm/io/io.h"

namespace ebm::cli {

std::vector<std::string> folder_row_names(const std::string& input) {
  std::error_code ec;
  if (!std::filesystem::is_directory(input, ec)) return {};
  std::vector<std::string> names;
  for (const auto& f : image_folder_files(input))
    names.push_back(std::filesystem::path(f).lexically_relative(input).generic_string());
  return names;
}

namespace {
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
}  // namespace

void write_named_csv(const std::string& path, const std::string& name_column, const std::vector<std::string>& names,
                     const torch::Tensor& x, const std::vector<std::string>& header) {
  const auto m = x.to(torch::kCPU, torch::kDouble).reshape({x.size(0), -1}).contiguous();
  TORCH_CHECK(int64_t(names.size()) == m.size(0), "write_named_csv: ", names.size(), " names for ", m.size(0),
              " rows");
  std::ostringstream o;
  o << csv_field(name_column);
  for (const auto& h : header) o << "," << csv_field(h);
  o << "\n";
  const double* v = m.data_ptr<double>();
  char buf[32];
  for (int64_t i = 0; i < m.size(0); ++i) {
    o << csv_field(names[size_t(i)]);
    for (int64_t j = 0; j < m.size(1); ++j) {
      std::snprintf(buf, sizeof buf, "%.9g", v[i * m.size(1) + j]);
      o << "," << buf;
    }
    o << "\n";
  }
  atomic_write_text(path, o.str());
}

}  // namespace ebm::cli
