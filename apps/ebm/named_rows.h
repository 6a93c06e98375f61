// Output rows named by the files they came from: a folder of images read as
// rows (classify, energy) gets a first column of its files, so no user has
// to know the order it was read in.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ebm::cli {

// The files of `input` in row order, relative to it, when it is a folder of
// images (data/images.h image_folder_files); empty for any other input.
std::vector<std::string> folder_row_names(const std::string& input);

// Writes rows x [N, D] as CSV (%.9g) with a first column `name_column`
// holding names[i] (quoted where a comma, quote or line break needs it),
// atomically. names.size() must be N.
void write_named_csv(const std::string& path, const std::string& name_column, const std::vector<std::string>& names,
                     const torch::Tensor& x, const std::vector<std::string>& header);

}  // namespace ebm::cli
