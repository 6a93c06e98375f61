// Notes on training data (train/data_notes.h): mirror-image classes under
// data.flip, and a column that names the label.
#include <gtest/gtest.h>

#include <string>

#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/train/data_notes.h"

using namespace ebm;

// data.flip's note: arrows pointing left and right (class 1 the mirror image
// of class 0) are named; a symmetric class beside an asymmetric one (a
// centred blob and a left-heavy bar, neither the other's mirror) is not.
TEST(MirroredClasses, NotedOnlyWhenFlipsMakeOneClassAnother) {
  auto gen = make_generator(3, kStreamTestData);
  const int64_t n = 40;
  auto noise = at::normal(0.0, 0.1, {2 * n, 1, 8, 8}, gen, torch::TensorOptions(torch::kFloat));
  auto left = torch::zeros({1, 8, 8});
  left.narrow(2, 0, 3).fill_(1.0);  // (bright on the left)
  auto blob = torch::zeros({1, 8, 8});
  blob.narrow(1, 2, 4).narrow(2, 2, 4).fill_(1.0);
  auto make = [&](const torch::Tensor& a, const torch::Tensor& b) {
    DataSplit s;
    s.train.x = torch::cat({a.expand({n, 1, 8, 8}), b.expand({n, 1, 8, 8})}) + noise;
    s.train.y = torch::cat({torch::zeros({n}, torch::kLong), torch::ones({n}, torch::kLong)});
    s.train.class_names = {"left", "right"};
    s.train.description = "arrows";
    return s;
  };
  testing::internal::CaptureStderr();
  note_mirrored_classes(make(left, left.flip({2})));
  const std::string arrows = testing::internal::GetCapturedStderr();
  EXPECT_NE(arrows.find("'left' -> 'right', 'right' -> 'left'"), std::string::npos) << arrows;
  EXPECT_NE(arrows.find("set data.flip = false"), std::string::npos) << arrows;
  testing::internal::CaptureStderr();
  note_mirrored_classes(make(blob, left));
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

// A label column left among the features (3 classes coded 1, 4, 7) is named;
// continuous features and a binary feature that both classes hold are not.
TEST(LabelColumns, NotedWhenAColumnNamesTheLabel) {
  auto gen = make_generator(4, kStreamTestData);
  const int64_t n = 300;
  auto y = torch::arange(n, torch::kLong).remainder(3);
  auto binary = torch::arange(n, torch::kLong).remainder(2).to(torch::kFloat);  // (both values in every class)
  auto x = torch::cat({at::normal(0.0, 1.0, {n, 2}, gen, torch::TensorOptions(torch::kFloat)),
                       binary.unsqueeze(1)}, 1);
  DataSplit s;
  s.train.x = x;
  s.train.y = y;
  s.train.description = "rows";
  testing::internal::CaptureStderr();
  note_label_columns(s);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  s.train.x = torch::cat({x, (3 * y + 1).to(torch::kFloat).unsqueeze(1)}, 1);
  testing::internal::CaptureStderr();
  note_label_columns(s);
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("column 4 (counting from 1)"), std::string::npos) << out;
  EXPECT_NE(out.find("the label itself"), std::string::npos) << out;
}

// A column of three values among 300 rows is named; continuous columns are
// not, nor is the column once data.dequantize = gaussian smooths it.
TEST(DiscreteColumns, NotedUnlessDequantized) {
  auto gen = make_generator(5, kStreamTestData);
  const int64_t n = 300;
  auto level = torch::arange(n, torch::kLong).remainder(3).to(torch::kFloat);
  DataSplit s;
  s.train.x = at::normal(0.0, 1.0, {n, 2}, gen, torch::TensorOptions(torch::kFloat));
  s.train.description = "rows";
  testing::internal::CaptureStderr();
  note_discrete_columns(s, "none");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  s.train.x = torch::cat({s.train.x, level.unsqueeze(1)}, 1);
  testing::internal::CaptureStderr();
  note_discrete_columns(s, "none");
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("column 3 (3 values)"), std::string::npos) << out;
  testing::internal::CaptureStderr();
  note_discrete_columns(s, "gaussian");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

// Constant-velocity tracks (T = 10 steps of 2 values) starting 1,000 apart
// and moving 1 a step are noted; the same tracks started within 1 are not.
TEST(TrajectoryOffsets, NotedWhenStartsSpreadFarWiderThanTheMotion) {
  auto gen = make_generator(6, kStreamTestData);
  const int64_t n = 200, t = 10;
  const auto opts = torch::TensorOptions(torch::kDouble);
  auto v = at::normal(0.0, 1.0, {n, 1, 2}, gen, opts);
  auto steps = torch::arange(t, opts).view({1, t, 1});
  auto make = [&](double spread) {
    auto start = spread * at::rand({n, 1, 2}, gen, opts);
    DataSplit s;
    s.train.x = (start + steps * v).reshape({n, t * 2}).to(torch::kFloat);
    s.train.description = "tracks";
    return s;
  };
  testing::internal::CaptureStderr();
  note_trajectory_offsets(make(1000.0), 2);
  const std::string far = testing::internal::GetCapturedStderr();
  EXPECT_NE(far.find("relative to its first step"), std::string::npos) << far;
  testing::internal::CaptureStderr();
  note_trajectory_offsets(make(1.0), 2);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  // A third value fixed within each trajectory (a size, spread over 1,000)
  // does not move, and is no offset to note (its ratio was infinite).
  auto near = make(1.0);
  auto size = (1000.0 * at::rand({n, 1, 1}, gen, opts)).expand({n, t, 1});
  near.train.x = torch::cat({near.train.x.view({n, t, 2}).to(torch::kDouble), size}, 2).reshape({n, t * 3}).to(torch::kFloat);
  testing::internal::CaptureStderr();
  note_trajectory_offsets(near, 3);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}
