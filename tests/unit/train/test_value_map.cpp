// Float images in any units (data.standardize on float images): one map of
// the training images' range onto data.scale, kept in model.pt, so a model
// trained on 0-255 saved as floats is the model trained on the same images
// in [-1, 1], and every command reads and writes the user's units.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/nets.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/io/io.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"
#include "ebm/train/train.h"

using namespace ebm;
namespace fs = std::filesystem;

namespace {

Config float_image_config(const std::string& path, int64_t steps) {
  Config c = make_train_config();
  c.load_string(std::string("seed = 5\n") + test_helpers::tiny_conv_image_toml() + R"(
[buffer]
capacity = 100
init = "uniform"
[train]
batch_size = 8
lr = 1e-3
log_every = 1
)", "value_map.toml");
  c.set("energy.spectral_norm=true");
  c.set("data.path=" + path);
  c.set("train.steps=" + std::to_string(steps));
  return c;
}

}  // namespace

TEST(ValueMap, FitsTheRangeAndRoundTrips) {
  auto gen = make_generator(3, kStreamData);
  auto x = at::rand({50, 1, 4, 4}, gen, torch::kDouble).mul_(200).add_(30);  // (values in [30, 230])
  const ValueMap m = ValueMap::fit(x, -1.0, 1.0);
  EXPECT_EQ(m.raw_lo, x.min().item<double>());
  EXPECT_EQ(m.raw_hi, x.max().item<double>());
  auto u = m.to_model(x);
  EXPECT_NEAR(u.min().item<double>(), -1.0, 1e-12);
  EXPECT_NEAR(u.max().item<double>(), 1.0, 1e-12);
  EXPECT_LT((m.to_user(u) - x).abs().max().item<double>(), 1e-10);
  EXPECT_EQ(ValueMap::from_tensor(m.to_tensor()).raw_hi, m.raw_hi);
  // (integers come back as float32; float32 stays float32)
  EXPECT_EQ(m.to_model(torch::ones({2}, torch::kLong)).scalar_type(), torch::kFloat);
  EXPECT_EQ(m.to_model(torch::ones({2}, torch::kFloat)).scalar_type(), torch::kFloat);
  // Images of one value: a range as wide as the target's, centred on it.
  const ValueMap c = ValueMap::fit(torch::full({3, 1, 2, 2}, 7.0), 0.0, 1.0);
  EXPECT_DOUBLE_EQ(c.raw_lo, 6.5);
  EXPECT_DOUBLE_EQ(c.raw_hi, 7.5);
  EXPECT_NEAR(c.to_model(torch::full({1}, 7.0, torch::kDouble)).item<double>(), 0.5, 1e-12);
}

// The same images saved in [-1, 1] and as 0-255 floats train the same model
// (the map puts both on [-1, 1], to float32 rounding); the 0-255 run's
// model.pt keeps its map, reads and scores 0-255 floats, writes .npy in
// them, and refuses values far outside them.
TEST(ValueMap, ImagesInOtherUnitsTrainTheSameModel) {
  const std::string root = test_helpers::fresh_dir("value_map");
  fs::create_directories(root);
  auto gen = make_generator(4, kStreamData);
  auto unit = at::rand({48, 1, 8, 8}, gen).mul_(2).sub_(1);  // [-1, 1]
  auto wide = unit.add(1).mul_(127.5);                       // the same in [0, 255]
  write_npy(root + "/unit.npy", unit);
  write_npy(root + "/wide.npy", wide);
  Trainer a(float_image_config(root + "/unit.npy", 4), root + "/a");
  Trainer b(float_image_config(root + "/wide.npy", 4), root + "/b");
  ASSERT_TRUE(b.data().values.has_value());
  EXPECT_FALSE(b.data().pixels.has_value());
  EXPECT_NEAR(b.data().values->raw_lo, 127.5 * (a.data().values->raw_lo + 1), 1e-3);
  EXPECT_NEAR(b.data().values->raw_hi, 127.5 * (a.data().values->raw_hi + 1), 1e-3);
  // (the training rows in the model's units, the chains' boxes on data.scale)
  EXPECT_LT((a.data().train.x - b.data().train.x).abs().max().item<double>(), 1e-5);
  EXPECT_NEAR(b.data().train.x.min().item<double>(), -1.0, 1e-6);
  EXPECT_NEAR(b.data().train.x.max().item<double>(), 1.0, 1e-6);
  for (const char* k : {"buffer.init_low", "sampler.clamp_min"}) EXPECT_EQ(b.config().get_float(k), -1.0) << k;
  for (const char* k : {"buffer.init_high", "sampler.clamp_max"}) EXPECT_EQ(b.config().get_float(k), 1.0) << k;
  a.run(false);
  b.run(false);
  ModelInfo ia, ib;
  Energy ea = load_model(root + "/a/model.pt", &ia), eb = load_model(root + "/b/model.pt", &ib);
  ASSERT_TRUE(ib.values.has_value());
  EXPECT_EQ(ib.values->raw_hi, b.data().values->raw_hi);
  auto xa = read_model_input(root + "/unit.npy", ia), xb = read_model_input(root + "/wide.npy", ib);
  EXPECT_LT((xa - xb).abs().max().item<double>(), 1e-5);
  torch::NoGradGuard ng;
  auto fa = ea->energy(xa), fb = eb->energy(xb);
  const double scale = fa.abs().max().item<double>() + 1.0;
  EXPECT_LT((fa - fb).abs().max().item<double>(), 1e-3 * scale) << fa.narrow(0, 0, 3) << fb.narrow(0, 0, 3);
  // .npy out in the user's units, PNG and IDX through [lo, hi]
  write_images(root + "/out.npy", xb, *display_map(ib), 0, ib.values);
  EXPECT_LT((read_array(root + "/out.npy") - wide).abs().max().item<double>(), 1e-3);
  // 0-255 floats against the [-1, 1] model: far outside its images' units
  std::string why;
  EXPECT_EQ(test_helpers::code_of([&] { read_model_input(root + "/wide.npy", ia); }, &why), ExitCode::kBadData);
  EXPECT_NE(why.find("far outside"), std::string::npos) << why;
  fs::remove_all(root);
}

// data.standardize = off keeps float images as they are: no map, the start
// box their own range, no clamp made up.
TEST(ValueMap, StandardizeOffKeepsFloatImagesAsTheyAre) {
  const std::string root = test_helpers::fresh_dir("value_map_off");
  fs::create_directories(root);
  auto gen = make_generator(6, kStreamData);
  write_npy(root + "/f.npy", at::rand({32, 1, 8, 8}, gen).mul_(0.5).add_(0.2));
  Config c = float_image_config(root + "/f.npy", 1);
  c.set("data.standardize=off");
  Trainer t(c, root + "/run");
  EXPECT_FALSE(t.data().values.has_value());
  EXPECT_GE(t.data().train.x.min().item<double>(), 0.2);
  EXPECT_GE(t.config().get_float("buffer.init_low"), 0.2);
  EXPECT_FALSE(t.config().is_set("sampler.clamp_min"));
  fs::remove_all(root);
}
