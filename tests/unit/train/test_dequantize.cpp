// data.dequantize = gaussian for vectors: every training batch gets fresh
// noise at dequantize_std x each column's sd, on the rows a plain draw from
// the same stream gives; none adds nothing; images keep uniform.
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
// 4,000 rows: column 0 continuous, 1 a ReLU (half zeros), 2 rounded to 0.5.
torch::Tensor mixed_columns() {
  auto gen = make_generator(31, kStreamTestData);
  auto opts = torch::TensorOptions(torch::kDouble);
  const int64_t n = 4000;
  auto g = at::normal(0.0, 1.0, {n, 3}, gen, opts);
  return torch::stack({g.select(1, 0), g.select(1, 1).clamp_min(0.0), (g.select(1, 2) * 2.0).round() / 2.0}, 1);
}

Config run_on(const std::string& csv, const std::string& extra) {
  Config c = make_train_config();
  c.load_string("seed = 1\n[data]\npath = \"" + csv + "\"\ntest_fraction = 0.1\n" + extra, "test");
  return c;
}
}  // namespace

TEST(Dequantize, GaussianJittersEveryColumnOfVectorBatches) {
  const std::string root = fresh_dir("dequantize");
  fs::create_directories(root);
  const std::string csv = root + "/x.csv";
  write_csv(csv, mixed_columns());
  auto jitter_of = [&](const std::string& extra) {
    Config c = run_on(csv, extra);
    DataSplit d = build_data(c);
    return vector_jitter(c, d.model_train(), false);
  };
  Config c = run_on(csv, "dequantize = \"gaussian\"\n");
  DataSplit d = build_data(c);
  const Dataset train = d.model_train();
  auto sd = train.x.to(torch::kDouble).std(0, false);
  auto want = 0.05 * sd;
  auto j = jitter_of("dequantize = \"gaussian\"\n");
  ASSERT_TRUE(j.defined());
  EXPECT_TRUE(torch::allclose(j.to(torch::kDouble), want, 1e-6, 1e-7)) << j;
  EXPECT_TRUE(torch::allclose(jitter_of("dequantize = \"gaussian\"\ndequantize_std = 0.2\n").to(torch::kDouble),
                              4.0 * want, 1e-6, 1e-7));
  EXPECT_FALSE(jitter_of("").defined()) << "none by default";
  // images read as pixels never get it (uniform is theirs)
  EXPECT_FALSE(vector_jitter(c, train, true).defined());

  // The drawn batches: the same rows as a plain draw from the same stream,
  // plus noise of the asked std in every column.
  auto draw = augmented_draw(c, train, std::nullopt);
  ASSERT_TRUE(draw);
  auto gen = make_generator(32, kStreamTrain), gen_plain = make_generator(32, kStreamTrain);
  Batch b = draw(train, 20000, gen);
  Batch plain = draw_batch(train, 20000, gen_plain);
  auto noise = (b.x - plain.x).to(torch::kDouble);
  EXPECT_EQ((b.x.select(1, 1) == plain.x.select(1, 1)).sum().item<int64_t>(), 0) << "no value left on the mass";
  for (int64_t j = 0; j < 3; ++j) {
    // 20,000 draws: the sd's standard error is 0.5% of it, the mean's 0.7%
    const double sj = want[j].item<double>();
    EXPECT_NEAR(noise.select(1, j).std().item<double>(), sj, 0.03 * sj);
    EXPECT_NEAR(noise.select(1, j).mean().item<double>(), 0.0, 0.04 * sj);
  }
  fs::remove_all(root);
}

TEST(Dequantize, ConfigErrorsNameTheKindOfData) {
  const std::string root = fresh_dir("dequantize_errors");
  fs::create_directories(root);
  const std::string csv = root + "/x.csv";
  write_csv(csv, mixed_columns());
  EXPECT_EQ(code_of([&] { build_data(run_on(csv, "dequantize = \"uniform\"\n")); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { build_data(run_on(csv, "dequantize = \"triangular\"\n")); }), ExitCode::kBadConfig);
  // auto: none for values (no pixel map, no jitter), uniform for pixels (below)
  const DataSplit values = build_data(run_on(csv, "dequantize = \"auto\"\n"));
  EXPECT_FALSE(values.pixels.has_value());
  EXPECT_FALSE(vector_jitter(run_on(csv, "dequantize = \"auto\"\n"), values.train, false).defined());
  EXPECT_EQ(code_of([&] { build_data(run_on(csv, "dequantize = \"gaussian\"\ndequantize_std = 0\n")); }),
            ExitCode::kBadConfig);
  // gaussian on images read as pixels (a folder of 4x4 grey PNGs)
  const std::string pngs = root + "/pngs";
  fs::create_directories(pngs);
  for (int i = 0; i < 20; ++i)
    write_png(pngs + "/" + std::to_string(i) + ".png", torch::randint(0, 256, {4, 4}, torch::TensorOptions(torch::kUInt8)));
  EXPECT_EQ(code_of([&] { build_data(run_on(pngs, "dequantize = \"gaussian\"\n")); }), ExitCode::kBadConfig);
  EXPECT_NO_THROW(build_data(run_on(pngs, "dequantize = \"uniform\"\n")));
  EXPECT_TRUE(build_data(run_on(pngs, "dequantize = \"auto\"\n")).pixels->dequantize);
  EXPECT_FALSE(build_data(run_on(pngs, "dequantize = \"none\"\n")).pixels->dequantize);
  fs::remove_all(root);
}

// data.standardize: a column constant in the training rows takes the other
// columns' geometric-mean scale, so the map follows the data into other
// units (km for m: every scale 1e-3 times), where scale 1 did not.
TEST(Standardize, ConstantColumnsFollowTheDatasUnits) {
  const std::string root = fresh_dir("standardize_constant");
  fs::create_directories(root);
  auto x = mixed_columns();
  x.select(1, 1).zero_();  // (a dead feature)
  write_csv(root + "/m.csv", x);
  write_csv(root + "/km.csv", x * 1e-3);
  const DataSplit m = build_data(run_on(root + "/m.csv", "")), km = build_data(run_on(root + "/km.csv", ""));
  ASSERT_TRUE(m.transform.defined());
  EXPECT_TRUE(torch::allclose(km.transform.scale, m.transform.scale * 1e-3, 1e-5, 0.0))  // (CSV digits)
      << km.transform.scale << m.transform.scale;
  const auto s = m.transform.scale;
  EXPECT_NEAR(s[1].item<double>(), std::sqrt(s[0].item<double>() * s[2].item<double>()), 1e-12);
  fs::remove_all(root);
}
