// Calibration: ECE, MCE, accuracy and NLL against a hand-computed example;
// the reliability diagram's shape.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/eval/calibration.h"
#include "ebm/io/io.h"

using namespace ebm;

// Five bins of width 0.2. Rows (confidence, right?): 0.9 right (bin 4),
// 0.75 wrong (bin 3), 0.55 right (bin 2), 0.65 wrong (bin 3).
// Gaps: bin 4 |1 - 0.9| = 0.1, bin 3 |0 - 0.7| = 0.7, bin 2 |1 - 0.55| = 0.45;
// ECE = 0.1/4 + 0.7 * 2/4 + 0.45/4 = 0.4875, MCE = 0.7.
TEST(Calibration, HandComputedEceAndMce) {
  auto p = torch::tensor({{0.9, 0.1}, {0.75, 0.25}, {0.45, 0.55}, {0.35, 0.65}}, torch::kDouble);
  auto y = torch::tensor({0, 1, 1, 0}, torch::kLong);
  auto c = calibration(p, y, 5);
  EXPECT_EQ(c.n, 4);
  EXPECT_NEAR(c.ece, 0.4875, 1e-12);
  EXPECT_NEAR(c.mce, 0.7, 1e-12);
  EXPECT_DOUBLE_EQ(c.accuracy, 0.5);
  EXPECT_NEAR(c.nll, -(std::log(0.9) + std::log(0.25) + std::log(0.55) + std::log(0.35)) / 4, 1e-12);
  EXPECT_EQ(c.count, (std::vector<int64_t>{0, 0, 1, 2, 1}));
  EXPECT_NEAR(c.confidence[3], 0.7, 1e-12);
  EXPECT_DOUBLE_EQ(c.bin_accuracy[2], 1.0);
  EXPECT_EQ(c.json()["bins"], 5);
  // A perfectly calibrated set: confidence 0.75 everywhere, 3 of 4 right.
  auto q = torch::tensor({{0.75, 0.25}, {0.75, 0.25}, {0.75, 0.25}, {0.25, 0.75}}, torch::kDouble);
  auto yq = torch::tensor({0, 0, 0, 0}, torch::kLong);
  EXPECT_NEAR(calibration(q, yq, 15).ece, 0.0, 1e-12);
  // Labels outside the classes, mismatched counts.
  EXPECT_EQ(test_helpers::code_of([&] { calibration(p, y + 1, 5); }), ExitCode::kBadData);
  EXPECT_EQ(test_helpers::code_of([&] { calibration(p, y.narrow(0, 0, 3), 5); }), ExitCode::kBadData);
}

TEST(Calibration, ReliabilityDiagramIsAPng) {
  const std::string dir = test_helpers::fresh_dir("calibration");
  std::filesystem::create_directories(dir);
  auto p = torch::tensor({{0.9, 0.1}, {0.75, 0.25}, {0.45, 0.55}, {0.35, 0.65}}, torch::kDouble);
  auto c = calibration(p, torch::tensor({0, 1, 1, 0}, torch::kLong), 15);
  write_reliability_diagram(dir + "/r.png", c);
  auto img = read_png(dir + "/r.png");
  EXPECT_EQ(img.sizes(), (c10::IntArrayRef{1, 15 * 20 + 8, 15 * 20 + 8}));
  // The bin of confidence 0.9 (bin 13, accuracy 1) is a full-height dark bar.
  EXPECT_EQ(img[0][4][4 + 13 * 20 + 5].item<int>(), 40);
  std::filesystem::remove_all(dir);
}
