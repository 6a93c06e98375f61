// Per-class recall and precision, and the balanced accuracy, against a
// hand-counted example.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ebm/eval/per_class.h"

namespace ebm {

TEST(PerClass, HandCountedRecallPrecisionAndBalancedAccuracy) {
  // 3 classes; class 2 has no rows, class 1's two rows are both missed.
  // labels:    0 0 0 0 1 1
  // predicted: 0 0 0 1 0 2
  auto one_hot = [](std::vector<int64_t> k) {
    auto p = torch::full({int64_t(k.size()), 3}, 0.1, torch::kDouble);
    for (size_t i = 0; i < k.size(); ++i) p[int64_t(i)][k[i]] = 0.8;
    return p;
  };
  auto probs = one_hot({0, 0, 0, 1, 0, 2});
  auto labels = torch::tensor({0, 0, 0, 0, 1, 1}, torch::kLong);
  auto r = per_class(probs, labels, {"a", "b", "c"});
  // recall 3/4 and 0/2 over the two classes with rows: (0.75 + 0) / 2
  EXPECT_DOUBLE_EQ(r.balanced_accuracy, 0.375);
  const auto& pc = r.json["per_class"];
  ASSERT_EQ(pc.size(), 3u);
  EXPECT_EQ(pc[0]["name"], "a");
  EXPECT_EQ(pc[0]["rows"], 4);
  EXPECT_EQ(pc[0]["predicted"], 4);
  EXPECT_DOUBLE_EQ(pc[0]["recall"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(pc[0]["precision"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(pc[1]["recall"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(pc[1]["precision"].get<double>(), 0.0);
  EXPECT_TRUE(pc[2]["recall"].is_null());  // (no rows)
  EXPECT_DOUBLE_EQ(pc[2]["precision"].get<double>(), 0.0);
  EXPECT_NE(r.text.find("balanced accuracy 0.3750"), std::string::npos) << r.text;
  // Without K names the classes are numbered; over 20 classes only the 5
  // lowest recalls are listed.
  auto many = torch::eye(25, torch::kDouble);
  auto y = torch::arange(25, torch::kLong);
  y[3] = 4;  // (row 3 predicted 3, labelled 4: class 4 recall 1/2, class 3 no rows)
  auto m = per_class(many, y, {});
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, (23.0 + 0.5) / 24.0);
  EXPECT_NE(m.text.find("the 5 lowest recalls of 25 classes"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("\n  4 "), std::string::npos) << m.text;  // (the lowest, listed first)
}

}  // namespace ebm
