// train.init: a run started from a trained model's weights keeps the model's
// units (its standardisation, not one fitted to the new rows) and classes
// (new labels looked up by value or name), and starts from its energy.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/standardized.h"
#include "ebm/io/io.h"
#include "ebm/model/generator_file.h"
#include "ebm/model/model.h"
#include "ebm/train/init_weights.h"
#include "ebm/train/train.h"

using namespace ebm;
using test_helpers::code_of;
using test_helpers::fresh_dir;
namespace fs = std::filesystem;

namespace {
// n rows of 4 columns (sd `sd` about `mean`) with labels drawn from `values`.
void write_set(const std::string& root, const std::string& name, int64_t n, double mean, double sd,
               const std::vector<double>& values, uint64_t seed) {
  auto gen = make_generator(seed, kStreamTestData);
  write_csv(root + "/" + name + "_x.csv", at::normal(mean, sd, {n, 4}, gen, torch::TensorOptions(torch::kDouble)));
  auto pick = at::randint(0, int64_t(values.size()), {n}, gen, torch::TensorOptions(torch::kLong));
  write_csv(root + "/" + name + "_y.csv", torch::tensor(values, torch::kDouble).index_select(0, pick).unsqueeze(1));
}

Config run_config(const std::string& root, const std::string& name, const std::string& init = "") {
  Config c = make_train_config();
  c.load_string("seed = 5\n[data]\npath = \"" + root + "/" + name + "_x.csv\"\nlabels = \"" + root + "/" + name +
                    "_y.csv\"\ntest_fraction = 0.1\n[energy]\nname = \"jem\"\nclasses = 0\nhidden = [16]\n"
                    "[objective]\nname = \"ce\"\n[train]\nsteps = 5\nbatch_size = 16\nlr = 1e-2\nlog_every = 5\n"
                    "checkpoint_every = 5\n[eval]\nsample_chains = 4\nsample_steps = 1\n",
                "test");
  c.set_value("train.init", init);
  return c;
}
}  // namespace

TEST(TrainInit, KeepsTheModelsUnitsClassesAndWeights) {
  const std::string root = fresh_dir("train_init");
  fs::create_directories(root);
  write_set(root, "old", 120, 3.0, 5.0, {1, 2, 3}, 1);  // (labels 1 .. 3: by value)
  {
    Trainer t(run_config(root, "old"), root + "/old_run");
    t.run(false);
  }
  const std::string model = root + "/old_run/model.pt";
  write_set(root, "new", 80, 100.0, 1.0, {3, 2}, 2);  // (other units; two of the classes)
  const Config fresh = run_config(root, "new");
  const Config init = run_config(root, "new", model);
  DataSplit plain = build_data(fresh), d = build_data(init);
  const auto m = adopt_init_model(init, d);
  ASSERT_TRUE(m.has_value());
  // Units: the model's map, not the new rows' (mean 100).
  const AffineMap map = sampling_view(load_model(model)).second;
  ASSERT_TRUE(map.defined() && d.transform.defined());
  EXPECT_TRUE(torch::equal(d.transform.shift, map.shift));
  EXPECT_TRUE(torch::equal(d.transform.scale, map.scale));
  EXPECT_GT(plain.transform.shift.min().item<double>(), 90.0);
  // Classes: the model's 1, 2, 3; the new labels 2 and 3 (alone: classes 0
  // and 1 of their own) are its classes 1 and 2.
  EXPECT_EQ(plain.train.class_names, (std::vector<std::string>{"2", "3"}));
  EXPECT_EQ(d.train.class_names, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_TRUE(torch::equal(d.train.y, plain.train.y + 1));
  EXPECT_TRUE(torch::equal(d.test.y, plain.test.y + 1));
  // Weights: the run's energy starts as the model's.
  Trainer t(init, root + "/new_run");
  {
    auto z = torch::randn({7, 4});
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose(t.energy().class_energies(z), m->energy->class_energies(z)));
  }
  EXPECT_EQ(t.config().get_int("energy.classes"), 3);
  // A label the model lacks; another width of network.
  write_set(root, "odd", 40, 3.0, 5.0, {1, 4}, 3);
  std::string msg;
  EXPECT_EQ(code_of([&] { Trainer(run_config(root, "odd", model), root + "/x"); }, &msg), ExitCode::kBadData);
  EXPECT_NE(msg.find("label 4 is not one of the classes of train.init"), std::string::npos) << msg;
  Config narrow = run_config(root, "new", model);
  narrow.set_value("energy.hidden", std::vector<int64_t>{8});
  EXPECT_EQ(code_of([&] { Trainer(narrow, root + "/y"); }, &msg), ExitCode::kBadConfig);
  EXPECT_NE(msg.find("this run's [energy] settings differ"), std::string::npos) << msg;
  // A run from train.init resumes bit-exactly (the checkpoint's weights
  // over the model's, its units again), also when the file is gone: the
  // run keeps a copy, init.pt.
  {
    const std::string given = root + "/given.pt";
    fs::copy_file(model, given);
    Config longer = init;
    longer.set_value("train.init", given);
    longer.set_value("train.steps", int64_t(10));
    longer.set_value("train.checkpoint_every", int64_t(2));
    Trainer full(longer, root + "/full");
    full.run(false);
    {
      Trainer a(longer, root + "/split");
      a.on_step([](int64_t step, const std::map<std::string, double>&) { return step == 4; });
      a.run(false);
    }
    EXPECT_TRUE(fs::is_regular_file(root + "/split/init.pt"));
    fs::remove(given);
    {
      Trainer b(longer, root + "/split");
      b.run(true);
      auto pa = full.energy().parameters(), pb = b.energy().parameters();
      for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
    }
    // A fresh run needs the file itself.
    EXPECT_EQ(code_of([&] { Trainer(longer, root + "/split").run(false); }, &msg), ExitCode::kMissingInput);
    EXPECT_NE(msg.find("train.init " + given + ": no such file"), std::string::npos) << msg;
    // Another model under the same name: a resume would continue in other
    // units, and is refused.
    {
      Config other = run_config(root, "old");
      other.set_value("seed", int64_t(6));
      Trainer o(other, root + "/other_run");
      o.run(false);
    }
    fs::copy_file(root + "/other_run/model.pt", given);
    EXPECT_EQ(code_of([&] { Trainer(longer, root + "/split").run(true); }, &msg), ExitCode::kBadConfig);
    EXPECT_NE(msg.find("changed since the run in"), std::string::npos) << msg;
  }
  // A model of class indices (labels 0 .. 3, no names): labels 2 and 3 are
  // its classes 2 and 3, not the new data's own 0 and 1.
  write_set(root, "idx", 120, 3.0, 5.0, {0, 1, 2, 3}, 4);
  {
    Trainer u(run_config(root, "idx"), root + "/idx_run");
    u.run(false);
  }
  const Config on_idx = run_config(root, "new", root + "/idx_run/model.pt");
  DataSplit e = build_data(on_idx);
  adopt_init_model(on_idx, e);
  EXPECT_TRUE(torch::equal(e.train.y, plain.train.y + 2));
  EXPECT_TRUE(e.train.class_names.empty());
  fs::remove_all(root);
}

namespace {
Config learned_config(const std::string& objective, const std::string& init) {
  Config c = make_train_config();
  c.load_string("seed = 2\n[data]\nname = \"8gaussians\"\nn = 400\n[energy]\nhidden = [16]\n"
                "[generator]\nname = \"mlp\"\nhidden = [16]\nlatent_dim = 2\n[train]\nsteps = 2\nbatch_size = 32\n"
                "log_every = 1\ncheckpoint_every = 2\n[eval]\nsample_chains = 4\nsample_steps = 1\n",
                "test");
  c.set_value("objective.name", objective);
  c.set_value("train.init", init);
  return c;
}

std::vector<torch::Tensor> generator_weights(const std::string& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : load_generator(model)->parameters()) out.push_back(p.detach().clone());
  return out;
}
}  // namespace

// A learned-sampler run from train.init takes the model's generator when it
// has one (a VERA run) and starts a fresh one when it has none (a CD run).
TEST(TrainInit, TakesTheGeneratorWhenTheModelHasOne) {
  const std::string root = fresh_dir("train_init_generator");
  Trainer(learned_config("vera", ""), root + "/vera").run(false);
  Trainer(learned_config("cd", ""), root + "/cd").run(false);
  EXPECT_TRUE(has_generator(root + "/vera/model.pt"));
  EXPECT_FALSE(has_generator(root + "/cd/model.pt"));
  Config from_vera = learned_config("vera", root + "/vera/model.pt"), from_cd = learned_config("vera", root + "/cd/model.pt");
  from_vera.set_value("train.steps", int64_t(0));
  from_cd.set_value("train.steps", int64_t(0));
  Trainer(from_vera, root + "/from_vera").run(false);
  Trainer(from_cd, root + "/from_cd").run(false);
  const auto a = generator_weights(root + "/vera/model.pt"), b = generator_weights(root + "/from_vera/model.pt"),
             c = generator_weights(root + "/from_cd/model.pt");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), c.size());
  bool all_same = true;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
    all_same = all_same && torch::equal(a[i], c[i]);
  }
  EXPECT_FALSE(all_same);  // (the CD model had none to give: a fresh generator)
  std::string msg;
  EXPECT_EQ(code_of([&] { has_generator(root + "/missing.pt"); }, &msg), ExitCode::kMissingInput);
  fs::remove_all(root);
}
