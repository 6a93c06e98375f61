// Validation rows (data.val_fraction) and early stopping (train.keep_best):
// the rows come out of the training split and leave the test split as it
// was; model.pt takes the weights of the lowest logged validation NLL, and a
// run that keeps them resumes bit-exactly.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/grid2d.h"
#include "ebm/io/io.h"
#include "ebm/model/model.h"
#include "ebm/model/temperature.h"
#include "ebm/train/train.h"

using namespace ebm;
using test_helpers::code_of;
using test_helpers::fresh_dir;
namespace fs = std::filesystem;

namespace {
// Rows of pure noise with random labels: a classifier can only overfit them,
// so the validation NLL rises after the first steps.
Config noise_run(const std::string& root, const std::string& extra) {
  fs::create_directories(root);
  auto gen = make_generator(21, kStreamTestData);
  write_csv(root + "/x.csv", at::normal(0.0, 1.0, {120, 8}, gen, torch::TensorOptions(torch::kDouble)));
  write_csv(root + "/y.csv", at::randint(0, 3, {120, 1}, gen, torch::TensorOptions(torch::kDouble)));
  Config c = make_train_config();
  c.load_string("seed = 3\n[data]\npath = \"" + root + "/x.csv\"\nlabels = \"" + root +
                    "/y.csv\"\ntest_fraction = 0.1\nval_fraction = 0.3\n[energy]\nname = \"jem\"\nclasses = 3\n"
                    "hidden = [64, 64]\n[objective]\nname = \"ce\"\n[train]\nsteps = 60\nbatch_size = 16\n"
                    "lr = 1e-2\nlog_every = 5\ncheckpoint_every = 30\n[eval]\nsample_chains = 4\nsample_steps = 1\n" +
                    extra,
                "test");
  return c;
}

// Mean -log p(y | x) of the energy on the run's validation rows.
double val_nll(Trainer& t) {
  torch::NoGradGuard no_grad;
  const Dataset& v = t.data().val;
  auto x = t.data().transform.defined() ? t.data().transform.to_model(v.x) : v.x;
  t.energy().eval();
  auto lp = (-t.energy().class_energies(x.to(torch::kFloat))).to(torch::kDouble).log_softmax(1);
  return -lp.gather(1, v.y.unsqueeze(1)).mean().item<double>();
}
}  // namespace

TEST(ValidationRows, ComeOutOfTheTrainingRowsAndLeaveTheTestSplit) {
  const std::string root = fresh_dir("val_rows");
  Config with = noise_run(root, ""), without = noise_run(root, "");
  without.set_value("data.val_fraction", 0.0);
  DataSplit a = build_data(with), b = build_data(without);
  EXPECT_TRUE(torch::equal(a.test.x, b.test.x));
  EXPECT_TRUE(torch::equal(a.test.y, b.test.y));
  EXPECT_EQ(b.val.size(), 0);
  ASSERT_EQ(b.train.size(), 108);
  EXPECT_EQ(a.val.size(), 32);  // round(0.3 * 108)
  EXPECT_EQ(a.train.size(), 76);
  // train and val are a partition of the old training rows, labels following
  auto key = [](const torch::Tensor& x, const torch::Tensor& y) {
    std::multiset<std::vector<double>> s;
    auto xd = x.to(torch::kDouble).contiguous(), yd = y.to(torch::kDouble);
    for (int64_t i = 0; i < xd.size(0); ++i) {
      std::vector<double> row(xd[i].data_ptr<double>(), xd[i].data_ptr<double>() + xd.size(1));
      row.push_back(yd[i].item<double>());
      s.insert(row);
    }
    return s;
  };
  auto joined = key(torch::cat({a.train.x, a.val.x}), torch::cat({a.train.y, a.val.y}));
  EXPECT_TRUE(joined == key(b.train.x, b.train.y));
  with.set_value("data.val_fraction", 1.0);
  EXPECT_EQ(code_of([&] { build_data(with); }), ExitCode::kBadConfig);
  // less than one row's worth: no validation rows, the training rows kept
  with.set_value("data.val_fraction", 0.004);
  DataSplit c = build_data(with);
  EXPECT_EQ(c.val.size(), 0);
  EXPECT_TRUE(torch::equal(c.train.x, b.train.x));
  fs::remove_all(root);
}

TEST(Trainer, KeepBestTakesTheLowestValidationNll) {
  const std::string root = fresh_dir("keep_best");
  Config c = noise_run(root, "");
  c.set_value("train.keep_best", true);
  Trainer t(c, root + "/run");
  t.run(false);
  // the logged validation curve, and its minimum
  std::ifstream in(root + "/run/metrics.jsonl");
  std::string line;
  double best = 1e300, last = 0;
  int64_t best_step = -1, logged = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("val_nll") || j.contains("event")) continue;
    ++logged;
    last = j["val_nll"].get<double>();
    if (last < best) best = last, best_step = j["step"].get<int64_t>();
  }
  EXPECT_EQ(logged, 12);
  // (on noise the curve turns up: else this test would not tell the last
  // weights from the best)
  ASSERT_LT(best_step, 60);
  ASSERT_GT(last, best + 0.05);
  EXPECT_EQ(t.best_step(), best_step);
  EXPECT_NEAR(val_nll(t), best, 1e-6);
  // model.pt holds those weights
  ModelInfo info;
  auto model = load_model(root + "/run/model.pt", &info);
  auto pa = t.energy().parameters(), pm = model->parameters();
  ASSERT_EQ(pa.size(), pm.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pm[i])) << i;
  // without keep_best the last weights, whose validation NLL is the last logged
  c.set_value("train.keep_best", false);
  Trainer u(c, root + "/last");
  u.run(false);
  EXPECT_EQ(u.best_step(), -1);
  EXPECT_NEAR(val_nll(u), last, 1e-6);
  fs::remove_all(root);
}

TEST(Trainer, KeepBestResumesBitExactly) {
  const std::string root = fresh_dir("keep_best_resume");
  Config c = noise_run(root, "");
  c.set_value("train.keep_best", true);
  Trainer full(c, root + "/full");
  full.run(false);
  {
    Trainer a(c, root + "/split");
    a.on_step([](int64_t step, const std::map<std::string, double>&) { return step == 30; });
    a.run(false);
  }
  // (the best is found before the cut: the checkpoint must carry it)
  ASSERT_LE(full.best_step(), 30);
  Trainer b(c, root + "/split");
  b.run(true);
  EXPECT_EQ(b.best_step(), full.best_step());
  EXPECT_EQ(b.best_score(), full.best_score());
  auto pa = full.energy().parameters(), pb = b.energy().parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  fs::remove_all(root);
}

TEST(Trainer, KeepBestConfigErrorsSayWhatItNeeds) {
  const std::string root = fresh_dir("keep_best_errors");
  Config c = noise_run(root, "");
  c.set_value("train.keep_best", true);
  std::string why;
  Config no_val = c;
  no_val.set_value("data.val_fraction", 0.0);
  EXPECT_EQ(code_of([&] { Trainer t(no_val, root + "/a"); }, &why), ExitCode::kBadConfig);
  EXPECT_NE(why.find("data.val_fraction"), std::string::npos) << why;
  Config ema = c;
  ema.set_value("train.ema", 0.99);
  EXPECT_EQ(code_of([&] { Trainer t(ema, root + "/b"); }, &why), ExitCode::kBadConfig);
  EXPECT_NE(why.find("train.ema"), std::string::npos) << why;
  Config unlabelled = make_train_config();
  unlabelled.load_string("[data]\npath = \"" + root + "/x.csv\"\nval_fraction = 0.2\n[objective]\nname = \"dsm\"\n"
                         "[train]\nkeep_best = true\n",
                         "test");
  EXPECT_EQ(code_of([&] { Trainer t(unlabelled, root + "/c"); }, &why), ExitCode::kBadConfig);
  EXPECT_NE(why.find("classifying energy"), std::string::npos) << why;
  fs::remove_all(root);
}

// A 2D model's validation NLL is its exact NLL on the validation rows in the
// data's units: on columns in the thousands and hundredths it matches a
// finer quadrature of the model in those units over a larger box.
TEST(Trainer, ValidationOfA2dModelIsItsExactNllInTheDatasUnits) {
  const std::string root = fresh_dir("val2d");
  fs::create_directories(root);
  auto gen = make_generator(8, kStreamTestData);
  auto z = at::normal(0.0, 1.0, {1000, 2}, gen, torch::TensorOptions(torch::kDouble));
  auto x = torch::stack({5000.0 + 1000.0 * z.select(1, 0), 0.01 * (z.select(1, 0) + z.select(1, 1))}, 1);
  write_csv(root + "/x.csv", x);
  Config c = make_train_config();
  c.load_string("seed = 2\n[data]\npath = \"" + root + "/x.csv\"\nval_fraction = 0.2\n[energy]\nname = \"mlp\"\n"
                    "hidden = [32, 32]\n[objective]\nname = \"dsm\"\nmass_weight = 1.0\n[train]\nsteps = 300\n"
                    "batch_size = 128\nlr = 3e-3\nlog_every = 100\n[eval]\nsample_chains = 4\nsample_steps = 1\n",
                "test");
  Trainer t(c, root + "/run");
  t.run(false);
  std::ifstream in(root + "/run/metrics.jsonl");
  std::string line;
  double logged = 0;
  int64_t lines = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("val_nll")) logged = j["val_nll"].get<double>(), ++lines;
    EXPECT_FALSE(j.contains("val_accuracy"));
  }
  EXPECT_EQ(lines, 3);
  Energy user = t.user_energy();
  torch::NoGradGuard no_grad;
  const auto& val = t.data().val.x;
  const double log_z = log_z_grid(*user, bounding_box(t.data().train.x, 2.0), 1024);
  const double want = user->energy(val.to(torch::kFloat)).to(torch::kDouble).mean().item<double>() + log_z;
  EXPECT_NEAR(logged, want, 2e-3);
  fs::remove_all(root);
}

// train.calibrate: at the run's end T is fitted on the validation rows to the
// kept weights' p(y | x), and model.pt keeps it. On pure noise a classifier
// can only be over-confident: T > 1, and the validation NLL falls with it.
TEST(Trainer, CalibrateFitsTheTemperatureOnTheValidationRows) {
  const std::string root = fresh_dir("calibrate");
  Config c = noise_run(root, "");
  c.set_value("train.calibrate", std::string("temperature"));
  Trainer t(c, root + "/run");
  t.run(false);
  const auto& cal = t.calibrated();
  ASSERT_TRUE(cal.t.has_value());
  EXPECT_EQ(cal.rows, t.data().val.size());
  EXPECT_GT(*cal.t, 1.2);
  EXPECT_LT(cal.nll_scaled, cal.nll - 0.01);
  {
    torch::NoGradGuard no_grad;
    const Dataset& v = t.data().val;
    auto x = t.data().transform.defined() ? t.data().transform.to_model(v.x) : v.x;
    auto p = torch::softmax((-t.energy().class_energies(x.to(torch::kFloat))).to(torch::kDouble), 1);
    EXPECT_NEAR(fit_temperature(p, v.y), *cal.t, 1e-6 * *cal.t);
    EXPECT_NEAR(cal.nll, val_nll(t), 1e-9);
  }
  ModelInfo info;
  load_model(root + "/run/model.pt", &info);
  ASSERT_TRUE(info.temperature.has_value());
  EXPECT_DOUBLE_EQ(*info.temperature, *cal.t);
  // the metrics line
  std::ifstream in(root + "/run/metrics.jsonl");
  std::string line;
  int64_t events = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("event", "") != "calibrate") continue;
    ++events;
    EXPECT_DOUBLE_EQ(j["temperature"].get<double>(), *cal.t);
  }
  EXPECT_EQ(events, 1);
  // auto fits none on 32 validation rows (fewer than 100), none never
  for (const char* mode : {"auto", "none"}) {
    c.set_value("train.calibrate", std::string(mode));
    Trainer u(c, root + "/" + mode);
    u.run(false);
    EXPECT_FALSE(u.calibrated().t.has_value()) << mode;
    ModelInfo ui;
    load_model(root + "/" + mode + "/model.pt", &ui);
    EXPECT_FALSE(ui.temperature.has_value()) << mode;
  }
  // "temperature" needs validation rows; an unknown mode is refused
  std::string why;
  Config no_val = c;
  no_val.set_value("train.calibrate", std::string("temperature"));
  no_val.set_value("data.val_fraction", 0.0);
  EXPECT_EQ(code_of([&] { Trainer u(no_val, root + "/x"); }, &why), ExitCode::kBadConfig);
  EXPECT_NE(why.find("data.val_fraction"), std::string::npos) << why;
  Config bad = c;
  bad.set_value("train.calibrate", std::string("platt"));
  EXPECT_EQ(code_of([&] { Trainer u(bad, root + "/y"); }, &why), ExitCode::kBadConfig);
  EXPECT_NE(why.find("train.calibrate"), std::string::npos) << why;
  fs::remove_all(root);
}
