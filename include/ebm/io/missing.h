// Rows with missing values, for filling them (ebm inpaint --mask missing).
#pragma once

#include <torch/torch.h>

#include <string>

namespace ebm {

// A CSV read as read_csv reads it (io.h: header, comments, separators, row
// names), except that a missing value (an empty field, NA, N/A, NaN, null,
// None or ?, case aside) is NaN instead of an error. Infinite values are
// still kBadData.
torch::Tensor read_csv_missing(const std::string& path);

}  // namespace ebm
