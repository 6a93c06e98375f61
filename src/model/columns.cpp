// The check of a CSV's header against the training data's column names.
#include "ebm/model/columns.h"

#include <algorithm>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/io/io.h"
#include "ebm/model/inputs.h"

namespace ebm {

void check_csv_columns(const std::string& path, const std::vector<std::string>& want) {
  if (want.empty()) return;
  const auto got = csv_header(path);
  if (got.empty() || got == want) return;
  if (got.size() != want.size()) return;  // (the row width check names that)
  size_t first = 0;
  while (first < got.size() && got[first] == want[first]) ++first;
  auto a = got, b = want;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EBM_CHECK_DATA(a != b, path, ": its header names the model's columns in another order (column ", first + 1, " is '",
                 got[first], "', the training data's was '", want[first], "'): put them in the training order");
  notes() << "ebm: warning: " << path << ": its header names other columns than the training data's (column "
          << first + 1 << " is '" << got[first] << "', the training data's was '" << want[first]
          << "'); the values are read by position\n";
}

std::vector<std::string> model_column_names(const ModelInfo& info, int64_t d) {
  if (!info.data_toml.empty()) {
    const Config data = data_config(info.data_toml, "the model's [data] table");
    if (data.has_key("data.columns")) {
      auto names = data.get_string_list("data.columns");
      if (int64_t(names.size()) == d) return names;
    }
  }
  std::vector<std::string> names;
  for (int64_t i = 0; i < d; ++i) names.push_back("x" + std::to_string(i));
  return names;
}

void check_csv_columns(const std::string& path, const ModelInfo& info) {
  if (info.data_toml.empty()) return;
  const Config data = data_config(info.data_toml, "the model's [data] table");
  if (!data.has_key("data.columns")) return;
  check_csv_columns(path, data.get_string_list("data.columns"));
}

}  // namespace ebm
