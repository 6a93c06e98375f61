#include <gtest/gtest.h>

#include "common/errors.h"
#include "ebm/core/config.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"

using namespace ebm;

namespace {
Config schema() {
  return Config({{"seed", int64_t(0), "seed"},
                 {"train.lr", 1e-3, "learning rate"},
                 {"energy.hidden", std::vector<int64_t>{8}, "widths"},
                 {"data.name", std::string("moons"), "name"},
                 {"flag", false, "a flag"}});
}
using ebm::test_helpers::error_of;
}  // namespace

TEST(Config, LoadsTomlAndOverrides) {
  Config c = schema();
  c.load_string("seed = 4\n[train]\nlr = 1\n[energy]\nhidden = [64, 32]\n", "t.toml");
  EXPECT_EQ(c.get_int("seed"), 4);
  EXPECT_DOUBLE_EQ(c.get_float("train.lr"), 1.0);  // integer widened to float
  EXPECT_EQ(c.get_int_list("energy.hidden"), (std::vector<int64_t>{64, 32}));
  c.set("data.name=rings");  // bare word: a string
  c.set("flag=true");
  EXPECT_EQ(c.get_string("data.name"), "rings");
  EXPECT_TRUE(c.get_bool("flag"));
  EXPECT_TRUE(c.is_set("seed"));
  EXPECT_FALSE(schema().is_set("seed"));
  // The resolved TOML reloads to the same values.
  Config d = schema();
  d.load_string(c.to_toml(), "resolved");
  EXPECT_EQ(d.to_toml(), c.to_toml());
}

TEST(Config, ErrorsNameKeyAndPlace) {
  Config c = schema();
  auto e = error_of([&] { c.load_string("[train]\nlrr = 1\n", "x.toml"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("train.lrr"), std::string::npos);
  EXPECT_NE(e.second.find("x.toml:2"), std::string::npos);
  e = error_of([&] { c.load_string("seed = \n", "y.toml"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("y.toml:1"), std::string::npos);
  e = error_of([&] { c.set("seed=abc"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("seed"), std::string::npos);
  EXPECT_EQ(error_of([&] { c.set("noequals"); }).first, ExitCode::kUsage);
  EXPECT_EQ(error_of([&] { c.load_file("/nonexistent.toml"); }).first, ExitCode::kMissingInput);
}

TEST(Rng, StreamsAreReproducibleAndDistinct) {
  auto a = make_generator(1, kStreamTrain), b = make_generator(1, kStreamTrain),
       c = make_generator(1, kStreamData);
  auto xa = at::rand({4}, a), xb = at::rand({4}, b), xc = at::rand({4}, c);
  EXPECT_TRUE(torch::equal(xa, xb));
  EXPECT_FALSE(torch::equal(xa, xc));
  auto state = generator_state(a);
  auto next = at::rand({4}, a);
  set_generator_state(a, state);
  EXPECT_TRUE(torch::equal(at::rand({4}, a), next));
}
