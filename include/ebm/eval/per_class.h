// Per-class figures of a classifier on labelled rows: what an accuracy
// hides on imbalanced data (a 2% class can be missed entirely at 98%
// accuracy). Recall_k = share of class k's rows predicted k; precision_k =
// share of the rows predicted k that are k; balanced accuracy = mean recall
// over the classes that have rows.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <string>
#include <vector>

namespace ebm {

struct PerClass {
  double balanced_accuracy = 0;
  nlohmann::json json;   // {"balanced_accuracy", "per_class": [{class, name, rows, predicted, recall, precision}]}
  std::string text;      // lines for a terminal (a table up to 20 classes, else the 5 lowest recalls)
};

// `probs` [N, K], `labels` [N] in 0 .. K-1; `names` label k's name when it
// has K entries (else the class numbers are shown). A class with no rows has
// recall null; one never predicted has precision null.
PerClass per_class(const torch::Tensor& probs, const torch::Tensor& labels, const std::vector<std::string>& names);

}  // namespace ebm
