// Column names: a model trained on a CSV with a header keeps its names
// (data.columns); a CSV read for it later whose header lists the same names
// in another order is refused (its values would feed the wrong inputs, and
// columns of similar scales raise no other alarm: accuracy 0.80 -> 0.67 on
// a probe's 8 swapped columns), and one naming other columns is noted.
#pragma once

#include <string>
#include <vector>

#include "ebm/model/model.h"

namespace ebm {

// kBadData when `path` is a CSV whose header names `want` in another order;
// a note on stderr when it names other columns; nothing without a header,
// without names to compare, or for other files.
void check_csv_columns(const std::string& path, const std::vector<std::string>& want);
// The model's data.columns (from model.pt's [data] table).
void check_csv_columns(const std::string& path, const ModelInfo& info);
// The names of the model's `d` input columns: its training CSV's header
// (data.columns) when that names d columns, else x0 .. x{d-1}.
std::vector<std::string> model_column_names(const ModelInfo& info, int64_t d);

}  // namespace ebm
