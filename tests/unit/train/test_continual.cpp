// Class-incremental training (data.tasks): the task split, the step schedule,
// batches drawn from the step's task only, per-task snapshots and held-out
// accuracies, the batch-normalised cross entropy, and the accuracy measure.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/tasks.h"
#include "ebm/energy/conv.h"
#include "ebm/io/io.h"
#include "ebm/model/model.h"
#include "ebm/objectives/objective.h"
#include "ebm/train/continual.h"
#include "ebm/train/train.h"

using namespace ebm;
namespace fs = std::filesystem;

TEST(Tasks, ClassesSplitInOrderIntoEqualGroups) {
  auto y = torch::tensor({7, 3, 3, 1, 9, 5, 1, 7}, torch::kLong);  // classes 1, 3, 5, 7, 9 ... and one more below
  auto y6 = torch::cat({y, torch::tensor({0}, torch::kLong)});      // 0, 1, 3, 5, 7, 9
  const auto g = task_classes(y6, 3);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0], (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(g[1], (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(g[2], (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(task_classes(y6, 1).size(), 1u);
  EXPECT_EQ(task_classes(y6, 6)[5], (std::vector<int64_t>{9}));
  // 5 classes do not split into 2 or 3 equal tasks; 7 tasks is more than classes.
  EXPECT_EQ(test_helpers::code_of([&] { task_classes(y, 2); }), ExitCode::kBadConfig);
  EXPECT_EQ(test_helpers::code_of([&] { task_classes(y6, 4); }), ExitCode::kBadConfig);
  EXPECT_EQ(test_helpers::code_of([&] { task_classes(y6, 7); }), ExitCode::kBadConfig);
  EXPECT_EQ(test_helpers::code_of([&] { task_classes(y6, 0); }), ExitCode::kBadConfig);
  EXPECT_EQ(test_helpers::code_of([&] { task_classes(torch::Tensor(), 2); }), ExitCode::kBadData);
  Dataset d{torch::arange(9, torch::kFloat).unsqueeze(1), y6, "d"};
  auto r = task_rows(d, {3, 5});
  EXPECT_TRUE(torch::equal(r.y, torch::tensor({3, 3, 5}, torch::kLong)));
  EXPECT_TRUE(torch::equal(r.x.view({-1}), torch::tensor({1.0f, 2.0f, 5.0f})));
}

TEST(Tasks, StepsAreSharedOutInOrder) {
  // 10 steps over 3 tasks: [0, 3), [3, 6), [6, 10).
  EXPECT_EQ(task_end(0, 10, 3), 3);
  EXPECT_EQ(task_end(1, 10, 3), 6);
  EXPECT_EQ(task_end(2, 10, 3), 10);
  const std::vector<int64_t> want = {0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
  for (int64_t s = 0; s < 10; ++s) EXPECT_EQ(task_at_step(s, 10, 3), want[size_t(s)]) << s;
  EXPECT_EQ(task_at_step(10, 10, 3), 2);  // (past the end: the last task)
  for (int64_t s = 0; s < 7; ++s) EXPECT_EQ(task_at_step(s, 7, 1), 0);
}

namespace {
// Four classes of 8x8 images: class c is bright in quadrant c.
Dataset quadrant_images(int64_t n, at::Generator& gen) {
  auto y = torch::arange(n).remainder(4);
  auto x = -0.8 + 0.1 * at::randn({n, 1, 8, 8}, gen);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = y[i].item<int64_t>(), r = (c / 2) * 4, q = (c % 2) * 4;
    x[i].narrow(1, r, 4).narrow(2, q, 4).add_(1.6);
  }
  return {x.clamp(-1, 1), y, "quadrants"};
}

Config continual_config(const std::string& dir, const std::string& normalize) {
  auto gen = make_generator(21, kStreamData);
  Dataset d = quadrant_images(200, gen);
  fs::create_directories(dir);
  write_npy(dir + "/images.npy", d.x);
  write_csv(dir + "/labels.csv", d.y.to(torch::kFloat).unsqueeze(1));
  Config c = make_train_config();
  c.load_string(R"(
seed = 2
[data]
tasks = 2
test_fraction = 0.2
[energy]
name = "conv"
conditional = true
channels = [4]
kernels = [3]
strides = [2]
paddings = [1]
hidden = [16]
[objective]
name = "ce"
[train]
steps = 40
batch_size = 16
lr = 1e-2
schedule = "constant"
log_every = 10
checkpoint_every = 10
)", "test");
  c.set("data.path=" + dir + "/images.npy");
  c.set("data.labels=" + dir + "/labels.csv");
  c.set("objective.normalize=" + normalize);
  return c;
}

std::vector<nlohmann::json> task_lines(const std::string& metrics) {
  std::ifstream in(metrics);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("event", "") == "task_end") out.push_back(j);
  }
  return out;
}
}  // namespace

// Steps 0..19 draw only classes {0, 1}, steps 20..39 only {2, 3}; each task's
// end writes model-task-k.pt and a task_end line of held-out accuracies; the
// first task is learned (accuracy 1 on quadrant images) before the second.
TEST(Trainer, ClassIncrementalRunLearnsTasksInOrder) {
  const std::string root = test_helpers::fresh_dir("continual");
  Config c = continual_config(root, "batch");
  Trainer t(c, root + "/run");
  ASSERT_EQ(t.parts().tasks.size(), 2u);
  std::vector<int64_t> seen_max(40, -1), seen_min(40, 99);
  // (the draws of a step, replayed from the step's stream before it runs)
  t.on_step([&](int64_t step, const std::map<std::string, double>&) {
    if (step < 40) {
      auto g = t.parts().gen.clone();
      const Dataset& rows = step_rows(t.parts());
      Batch b = draw_batch(rows, 16, g);
      seen_min[size_t(step)] = b.y.min().item<int64_t>();
      seen_max[size_t(step)] = b.y.max().item<int64_t>();
    }
    return false;
  });
  EXPECT_TRUE(torch::equal(std::get<0>(at::_unique(step_rows(t.parts()).y)), torch::tensor({0, 1}, torch::kLong)));
  t.run(false);
  for (int64_t s = 1; s < 40; ++s) {
    const bool second = s >= 20;  // (the batch of step s + 1 was drawn after step s)
    EXPECT_EQ(seen_min[size_t(s)] >= 2, second) << s;
    EXPECT_EQ(seen_max[size_t(s)] <= 1, !second) << s;
  }
  EXPECT_TRUE(fs::exists(root + "/run/model-task-1.pt"));
  EXPECT_TRUE(fs::exists(root + "/run/model-task-2.pt"));
  EXPECT_FALSE(fs::exists(root + "/run/model-task-3.pt"));
  auto lines = task_lines(root + "/run/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["step"], 20);
  EXPECT_EQ(lines[1]["step"], 40);
  ASSERT_EQ(lines[0]["test_accuracy"].size(), 2u);
  EXPECT_GT(lines[0]["test_accuracy"][0].get<double>(), 0.95);
  EXPECT_TRUE(lines[0]["test_accuracy"][1].is_null());
  EXPECT_GT(lines[1]["test_accuracy"][1].get<double>(), 0.95);
  // The snapshot of task 1 is the energy at step 20: it scores as the line says.
  ModelInfo info;
  Energy first = load_model(root + "/run/model-task-1.pt", &info);
  auto groups = task_classes(t.data().test.y, 2);
  auto r = continual_accuracy(*first, t.data().test, groups, 1);
  EXPECT_NEAR(r.accuracy[0], lines[0]["test_accuracy"][0].get<double>(), 1e-12);
  EXPECT_NEAR(r.average, lines[0]["test_average"].get<double>(), 1e-12);
  fs::remove_all(root);
}

// A class-incremental run resumes bit-exactly across a task boundary.
TEST(Trainer, ClassIncrementalResumeIsBitExact) {
  const std::string root = test_helpers::fresh_dir("continual-resume");
  Config c = continual_config(root, "all");
  Trainer full(c, root + "/full");
  full.run(false);
  Config part = c;
  part.set("train.steps=40");
  {
    Trainer a(part, root + "/split");
    a.on_step([](int64_t step, const std::map<std::string, double>&) { return step == 10; });
    a.run(false);
  }
  Trainer b(part, root + "/split");
  b.run(true);
  auto pa = full.energy().parameters(), pb = b.energy().parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  EXPECT_EQ(task_lines(root + "/split/metrics.jsonl").size(), 2u);
  fs::remove_all(root);
}

TEST(Trainer, ClassIncrementalConfigErrors) {
  const std::string root = test_helpers::fresh_dir("continual-bad");
  Config c = continual_config(root, "batch");
  c.set("data.tasks=3");  // 4 classes
  EXPECT_EQ(test_helpers::code_of([&] { Trainer(c, root + "/a"); }), ExitCode::kBadConfig);
  c.set("data.tasks=2");
  c.set("train.steps=1");
  EXPECT_EQ(test_helpers::code_of([&] { Trainer(c, root + "/b"); }), ExitCode::kBadConfig);
  c.set("train.steps=40");
  c.set("objective.normalize=some");
  EXPECT_EQ(test_helpers::code_of([&] { Trainer(c, root + "/c"); }), ExitCode::kBadConfig);
  fs::remove_all(root);
}

// normalize = batch: the cross entropy over the batch's labels only; classes
// absent from the batch get no gradient through their own logit.
TEST(CrossEntropy, BatchNormalisationContrastsOnlyTheBatchsClasses) {
  auto init = make_generator(3, kStreamInit);
  ConvEnergy net(
      ConvEnergyOptions({1, 8, 8}).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({8}).classes(4));
  reset_parameters(*net, init);
  net->to(torch::kDouble);
  auto x = at::rand({6, 1, 8, 8}, init, torch::kDouble) * 2 - 1;
  auto y = torch::tensor({1, 3, 3, 1, 1, 3}, torch::kLong);
  CrossEntropy ce(/*batch_classes=*/true);
  auto out = ce.compute(*net, Batch{x, y}, init);
  auto logits = -net->class_energies(x);
  auto sub = logits.index_select(1, torch::tensor({1, 3}, torch::kLong));
  auto want = -(torch::log_softmax(sub, 1).gather(1, (y == 3).to(torch::kLong).unsqueeze(1))).mean();
  EXPECT_NEAR(out.loss.item<double>(), want.item<double>(), 1e-12);
  auto g = torch::autograd::grad({out.loss}, net->parameters());
  auto g_ref = torch::autograd::grad({want}, net->parameters());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_TRUE(torch::allclose(g[i], g_ref[i], 1e-10, 1e-12)) << i;
  // The output layer's rows of classes 0 and 2 (absent) get zero gradient.
  auto named = net->named_parameters();
  bool checked = false;
  for (auto& p : named) {
    if (p.value().dim() == 2 && p.value().size(0) == 4) {
      auto gw = torch::autograd::grad({ce.compute(*net, Batch{x, y}, init).loss}, {p.value()})[0];
      EXPECT_EQ(gw[0].abs().max().item<double>(), 0.0) << p.key();
      EXPECT_EQ(gw[2].abs().max().item<double>(), 0.0) << p.key();
      EXPECT_GT(gw[1].abs().max().item<double>(), 0.0) << p.key();
      checked = true;
    }
  }
  EXPECT_TRUE(checked);
  // A batch of every class is the plain cross entropy.
  auto y4 = torch::tensor({0, 1, 2, 3, 1, 2}, torch::kLong);
  EXPECT_NEAR(ce.compute(*net, Batch{x, y4}, init).loss.item<double>(),
              CrossEntropy().compute(*net, Batch{x, y4}, init).loss.item<double>(), 1e-12);
}

namespace {
// E(x, y) = (x_0 - y)^2: classifies x by rounding x_0.
class RoundingClassifier : public EnergyImpl {
 public:
  torch::Tensor energy(const torch::Tensor& x) override { return marginal_energy(class_energies(x), 4); }
  torch::Tensor class_energies(const torch::Tensor& x) override {
    return (x.narrow(1, 0, 1) - torch::arange(4, x.options()).unsqueeze(0)).square();
  }
  int64_t num_classes() const override { return 4; }
  std::vector<int64_t> event_shape() const override { return {1}; }
};
}  // namespace

TEST(ContinualAccuracy, CountsEachTasksRows) {
  RoundingClassifier e;
  // Labels 0 0 1 1 2 2 3 3 3; predictions 0 1 1 1 0 2 3 3 2.
  auto y = torch::tensor({0, 0, 1, 1, 2, 2, 3, 3, 3}, torch::kLong);
  auto x = torch::tensor({0.1, 0.9, 1.2, 0.8, 0.3, 2.0, 3.1, 2.9, 2.2}).unsqueeze(1);
  Dataset d{x, y, "rows"};
  auto r = continual_accuracy(e, d, {{0, 1}, {2, 3}}, /*seen=*/0, /*batch=*/4);
  EXPECT_EQ(r.n, (std::vector<int64_t>{4, 5}));
  EXPECT_DOUBLE_EQ(r.accuracy[0], 3.0 / 4);
  EXPECT_DOUBLE_EQ(r.accuracy[1], 3.0 / 5);
  EXPECT_DOUBLE_EQ(r.average, 0.5 * (0.75 + 0.6));
  EXPECT_DOUBLE_EQ(r.overall, 6.0 / 9);
  EXPECT_EQ(r.seen, 2);
  EXPECT_EQ(r.json()["accuracy"].size(), 2u);
  EXPECT_NE(r.table().find("after 2 of 2 tasks"), std::string::npos);
  // After the first task only classes 0 and 1 can be predicted: rows 0..3
  // as before (0 1 1 1), the rest of task 2 scores 0; the average is over
  // task 1 alone.
  auto r1 = continual_accuracy(e, d, {{0, 1}, {2, 3}}, /*seen=*/1);
  EXPECT_DOUBLE_EQ(r1.accuracy[0], 3.0 / 4);
  EXPECT_DOUBLE_EQ(r1.accuracy[1], 0.0);
  EXPECT_DOUBLE_EQ(r1.average, 3.0 / 4);
  EXPECT_DOUBLE_EQ(r1.overall, 3.0 / 4);
  // (a task not yet learned has no accuracy in the JSON or the table: null
  // and "-", not 0, which a forgetting matrix's reader takes for one)
  EXPECT_TRUE(r1.json()["accuracy"][1].is_null());
  EXPECT_DOUBLE_EQ(r1.json()["accuracy"][0].get<double>(), 0.75);
  EXPECT_NE(r1.table().find("not yet learned"), std::string::npos);
  // x = 1.9 of class 1: over all classes it is a 2, among those seen after
  // task 1 a 1 (classes of unseen tasks never win).
  Dataset two{torch::tensor({1.9f, 2.1f}).unsqueeze(1), torch::tensor({1, 2}, torch::kLong), "two"};
  EXPECT_DOUBLE_EQ(continual_accuracy(e, two, {{0, 1}, {2, 3}}).accuracy[0], 0.0);
  EXPECT_DOUBLE_EQ(continual_accuracy(e, two, {{0, 1}, {2, 3}}, 1).accuracy[0], 1.0);
  // A task with no rows, and an energy that is not a classifier.
  EXPECT_EQ(test_helpers::code_of([&] { continual_accuracy(e, d.rows(torch::arange(4)), {{0, 1}, {2, 3}}); }),
            ExitCode::kBadData);
  ConvEnergy plain(ConvEnergyOptions({1, 8, 8}).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({8}));
  Dataset images{torch::zeros({2, 1, 8, 8}), torch::tensor({0, 1}, torch::kLong), "images"};
  EXPECT_EQ(test_helpers::code_of([&] { continual_accuracy(*plain, images, {{0}, {1}}); }), ExitCode::kUsage);
}
