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
  EXPECT_NE(e.second.find("must be an integer"), std::string::npos) << e.second;
  EXPECT_EQ(error_of([&] { c.set("noequals"); }).first, ExitCode::kUsage);
  // --set: spaces around key and value, numbers TOML does not write, and
  // integers past int64 named as such
  c.set("seed = 7");
  EXPECT_EQ(c.get_int("seed"), 7);
  c.set("train.lr=.001");
  EXPECT_DOUBLE_EQ(c.get_float("train.lr"), 0.001);
  c.set("seed=1e3");
  EXPECT_EQ(c.get_int("seed"), 1000);
  e = error_of([&] { c.set("seed=99999999999999999999"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("must be an integer from"), std::string::npos) << e.second;
  EXPECT_EQ(error_of([&] { c.set("seed=2.5"); }).first, ExitCode::kBadConfig);
  EXPECT_EQ(error_of([&] { c.set(" =3"); }).first, ExitCode::kUsage);
  EXPECT_EQ(error_of([&] { c.load_file("/nonexistent.toml"); }).first, ExitCode::kMissingInput);
}

// A list-of-names key (data.classes) takes names, integers as their text,
// one name alone, and bare names on --set; it writes and reloads as names.
TEST(Config, NameListsTakeNamesAndNumbers) {
  auto c = Config({{"data.classes", std::vector<std::string>{}, "classes"},
                   {"energy.hidden", std::vector<int64_t>{8}, "widths"}});
  EXPECT_TRUE(c.get_string_list("data.classes").empty());
  c.load_string("[data]\nclasses = [\"Ankle boot\", 5]\n", "t.toml");
  EXPECT_EQ(c.get_string_list("data.classes"), (std::vector<std::string>{"Ankle boot", "5"}));
  c.set("data.classes=[3, 11]");
  EXPECT_EQ(c.get_string_list("data.classes"), (std::vector<std::string>{"3", "11"}));
  c.set("data.classes=[sandal, 'T-shirt/top']");
  EXPECT_EQ(c.get_string_list("data.classes"), (std::vector<std::string>{"sandal", "T-shirt/top"}));
  c.set("data.classes=dog");
  EXPECT_EQ(c.get_string_list("data.classes"), (std::vector<std::string>{"dog"}));
  c.set("data.classes=7");
  EXPECT_EQ(c.get_string_list("data.classes"), (std::vector<std::string>{"7"}));
  c.set("data.classes=[]");
  EXPECT_TRUE(c.get_string_list("data.classes").empty());
  auto d = Config({{"data.classes", std::vector<std::string>{}, "classes"},
                   {"energy.hidden", std::vector<int64_t>{8}, "widths"}});
  d.load_string(c.to_toml(), "resolved");
  EXPECT_EQ(d.get_string_list("data.classes"), c.get_string_list("data.classes"));
  // Names where numbers are wanted, and fractions among names, are refused.
  auto e = error_of([&] { c.set("energy.hidden=[a, b]"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("energy.hidden"), std::string::npos) << e.second;
  e = error_of([&] { c.load_string("[energy]\nhidden = [\"a\", 2]\n", "u.toml"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("list of integers"), std::string::npos) << e.second;
  e = error_of([&] { c.load_string("[data]\nclasses = [\"a\", 2.5]\n", "v.toml"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("v.toml:2"), std::string::npos) << e.second;
  EXPECT_EQ(error_of([&] { c.set("data.classes=[a,,b]"); }).first, ExitCode::kBadConfig);
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

// ----- sections and components -------------------------------------------------
namespace {
std::shared_ptr<const Schema> component_schema() {
  auto s = std::make_shared<Schema>();
  s->add({"", {{"seed", int64_t(0), "seed"}}, {}});
  s->add({"sampler",
          {{"steps", int64_t(20), "transitions"}},
          {{"sampler", "name", "langevin", "the sampler",
            {{"langevin", "Langevin", {{"step_size", 0.01, "eta", "step"}, {"noise", 0.005, "sigma"}}},
             {"hmc", "HMC", {{"step_size", 0.05, "eps", "step"}, {"leapfrog", int64_t(10), "L"}}}}}}});
  s->add({"energy",
          {},
          {{"energy", "name", "mlp", "the energy",
            {{"mlp", "MLP", {{"hidden", std::vector<int64_t>{8}, "widths"}}},
             {"sum", "sum", {{"terms", TableList{"energy", {}}, "the terms"}}}}}}});
  return s;
}
}  // namespace

TEST(Config, ComponentDefaultsFollowTheSelection) {
  Config c(component_schema());
  EXPECT_DOUBLE_EQ(c.get_float("sampler.step_size"), 0.01);
  c.set("sampler.name=hmc");
  EXPECT_DOUBLE_EQ(c.get_float("sampler.step_size"), 0.05);
  EXPECT_EQ(c.get_int("sampler.leapfrog"), 10);
  c.validate();
  // The resolved TOML holds the selected component's keys only.
  const std::string t = c.to_toml();
  EXPECT_NE(t.find("leapfrog = 10"), std::string::npos);
  EXPECT_EQ(t.find("noise"), std::string::npos);
}

// An unknown key, a key of another component and a wrong type: each one
// line naming the key (and where it was given).
TEST(Config, RefusesUnknownForeignAndMistypedKeys) {
  Config c(component_schema());
  auto e = error_of([&] { c.load_string("[sampler]\nleapfrogs = 3\n", "a.toml"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("sampler.leapfrogs"), std::string::npos);
  EXPECT_NE(e.second.find("a.toml:2"), std::string::npos);
  EXPECT_EQ(e.second.find('\n'), std::string::npos);

  Config f(component_schema());
  f.load_string("[sampler]\nname = \"langevin\"\nleapfrog = 3\n", "b.toml");
  e = error_of([&] { f.validate(); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  for (const char* want : {"sampler.leapfrog", "hmc", "langevin", "b.toml:3"})
    EXPECT_NE(e.second.find(want), std::string::npos) << want << " in " << e.second;
  EXPECT_EQ(e.second.find('\n'), std::string::npos);
  f.set("sampler.name=hmc");  // the same key is right for HMC
  f.validate();

  Config g(component_schema());
  e = error_of([&] { g.set("sampler.steps=fast"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("sampler.steps"), std::string::npos);
  EXPECT_NE(e.second.find("integer"), std::string::npos);

  Config h(component_schema());
  h.set("sampler.name=nuts");
  e = error_of([&] { h.validate(); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("nuts"), std::string::npos);
  EXPECT_NE(e.second.find("langevin, hmc"), std::string::npos);
}

// [[energy.terms]]: a list of sub-configurations, each checked against the
// energy section, written back and read again.
TEST(Config, ArraysOfTablesHoldSubComponents) {
  Config c(component_schema());
  c.load_string(R"(
[energy]
name = "sum"
[[energy.terms]]
name = "mlp"
hidden = [4, 4]
[[energy.terms]]
hidden = [2]
)", "t.toml");
  c.validate();
  const auto& terms = c.get_tables("energy.terms");
  ASSERT_EQ(terms.items.size(), 2u);
  EXPECT_EQ(terms.items[0]->get_int_list("energy.hidden"), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(terms.items[1]->get_int_list("energy.hidden"), (std::vector<int64_t>{2}));
  EXPECT_EQ(terms.items[1]->get_string("energy.name"), "mlp");
  Config d(component_schema());
  d.load_string(c.to_toml(), "resolved");
  EXPECT_EQ(d.to_toml(), c.to_toml());
  // An item's key of another section, or of another component, is refused.
  Config bad(component_schema());
  auto e = error_of([&] { bad.load_string("[energy]\nname = \"sum\"\n[[energy.terms]]\nleapfrog = 2\n", "u.toml"); });
  EXPECT_EQ(e.first, ExitCode::kBadConfig);
  EXPECT_NE(e.second.find("energy.leapfrog"), std::string::npos);
  Config foreign(component_schema());
  foreign.load_string(
      "[energy]\nname = \"sum\"\n[[energy.terms]]\nname = \"mlp\"\n[[energy.terms.terms]]\nhidden = [1]\n",
      "v.toml");
  EXPECT_EQ(error_of([&] { foreign.validate(); }).first, ExitCode::kBadConfig);
  // Lists of tables are written in files, not on the command line.
  EXPECT_EQ(error_of([&] { c.set("energy.terms=[]"); }).first, ExitCode::kBadConfig);
}

// describe() (ebm train --help-config) lists every key with its component,
// type and default.
TEST(Config, DescribeListsEveryComponentKey) {
  Config c(component_schema());
  const std::string d = c.describe();
  for (const char* want : {"sampler.steps", "sampler.name", "sampler.leapfrog", "(sampler hmc)",
                           "(sampler langevin)", "default 0.05", "default 10", "integer",
                           "energy.terms", "list of [energy] tables"})
    EXPECT_NE(d.find(want), std::string::npos) << want;
}
