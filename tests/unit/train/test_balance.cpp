// data.balance: batches that draw every class equally often, on by default
// only for a class-conditional energy trained on p(x | y) alone (cd, dsm)
// whose classes' rows differ twofold or more; classifiers keep the shares.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/io/io.h"
#include "ebm/train/train.h"

using namespace ebm;
using test_helpers::code_of;
using test_helpers::fresh_dir;
namespace fs = std::filesystem;

namespace {
// 1,000 rows of 2 columns: 900 of class 0, 90 of class 1, 10 of class 2.
Dataset imbalanced() {
  auto gen = make_generator(5, kStreamTestData);
  Dataset d;
  d.x = at::normal(0.0, 1.0, {1000, 2}, gen, torch::TensorOptions(torch::kFloat));
  d.y = torch::cat({torch::zeros({900}, torch::kLong), torch::ones({90}, torch::kLong),
                    torch::full({10}, 2, torch::kLong)});
  return d;
}

Config config(const std::string& extra, const std::string& balance = "auto") {
  Config c = make_train_config();
  c.load_string("[data]\nname = \"moons\"\nbalance = \"" + balance + "\"\n" + extra, "test");
  return c;
}
}  // namespace

TEST(Balance, BalancedBatchesDrawEveryClassEquallyOften) {
  const Dataset d = imbalanced();
  auto gen = make_generator(3, kStreamTrain);
  const Batch b = draw_balanced_batch(d, 30000, gen);
  // 30,000 draws: each share's sd is 0.0027; 0.015 is 5.5 sds (false alarm ~1e-7)
  for (int64_t k = 0; k < 3; ++k)
    EXPECT_NEAR((b.y == k).to(torch::kDouble).mean().item<double>(), 1.0 / 3.0, 0.015) << k;
  // the rows come with their own labels
  for (int64_t i = 0; i < 50; ++i) {
    auto match = (d.x == b.x[i]).all(1).nonzero();
    ASSERT_EQ(match.size(0), 1);
    EXPECT_EQ(d.y[match[0][0]].item<int64_t>(), b.y[i].item<int64_t>());
  }
}

TEST(Balance, AutoBalancesConditionalGenerativeModelsOnly) {
  const Dataset d = imbalanced();
  auto class_share = [&](const Config& c) {
    auto draw = augmented_draw(c, d, std::nullopt);
    auto gen = make_generator(4, kStreamTrain);
    const Batch b = draw ? draw(d, 20000, gen) : draw_batch(d, 20000, gen);
    return (b.y == 2).to(torch::kDouble).mean().item<double>();  // 1/3 balanced, 0.01 not
  };
  const std::string cond = "[energy]\nname = \"mlp\"\nconditional = true\nclasses = 3\n";
  EXPECT_GT(class_share(config(cond + "[objective]\nname = \"cd\"\n")), 0.3);
  EXPECT_GT(class_share(config(cond + "[objective]\nname = \"dsm\"\n")), 0.3);
  EXPECT_LT(class_share(config(cond + "[objective]\nname = \"ce\"\n")), 0.02);
  EXPECT_LT(class_share(config("[energy]\nname = \"jem\"\nclasses = 3\n[objective]\nname = \"jem\"\n")), 0.02);
  EXPECT_LT(class_share(config(cond + "[objective]\nname = \"cd\"\n", "off")), 0.02);
  EXPECT_GT(class_share(config("[energy]\nname = \"jem\"\nclasses = 3\n[objective]\nname = \"ce\"\n", "on")), 0.3);
  std::string why;
  EXPECT_EQ(code_of([&] { augmented_draw(config("", "yes"), d, std::nullopt); }, &why),
            ExitCode::kBadConfig);
  EXPECT_NE(why.find("data.balance"), std::string::npos) << why;
  Dataset unlabelled = d;
  unlabelled.y = torch::Tensor();
  EXPECT_EQ(code_of([&] { augmented_draw(config("", "on"), unlabelled, std::nullopt); }, &why),
            ExitCode::kBadConfig);
}

// Validation under balanced batches weighs every class alike: 900/90/10 rows
// get weights whose class totals are equal and whose sum is the row count.
TEST(Balance, ClassWeightsWeighClassesAlike) {
  const Dataset d = imbalanced();
  EXPECT_FALSE(class_weights(d.y, false).defined());
  EXPECT_FALSE(class_weights(torch::Tensor(), true).defined());
  const auto w = class_weights(d.y, true);
  ASSERT_EQ(w.numel(), 1000);
  EXPECT_NEAR(w.sum().item<double>(), 1000.0, 1e-9);
  for (int64_t k = 0; k < 3; ++k)
    EXPECT_NEAR(w.index({d.y == k}).sum().item<double>(), 1000.0 / 3.0, 1e-9) << k;
  // (a label with no rows, 1 of {0, 2}: two classes present)
  const auto w2 = class_weights(torch::tensor({0, 0, 0, 2}, torch::kLong), true);
  EXPECT_TRUE(torch::allclose(w2, torch::tensor({2.0 / 3, 2.0 / 3, 2.0 / 3, 2.0}, torch::kDouble)));
}
