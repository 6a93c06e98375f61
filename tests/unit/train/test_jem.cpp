// JEM: the energy of a conditional network is -logsumexp of its logits, the
// objective is cross entropy plus CD on E(x) (and on E(x, y)) with the stated
// weights and warm-up, and a JEM run resumes bit-exactly.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/resume.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/classifier_mlp.h"
#include "ebm/energy/conv.h"
#include "ebm/energy/registry.h"
#include "ebm/energy/resnet.h"
#include "ebm/energy/standardized.h"
#include "ebm/io/io.h"
#include "ebm/objectives/objective.h"
#include "ebm/sampling/sampling.h"
#include "ebm/train/train.h"

using namespace ebm;
namespace fs = std::filesystem;

namespace {
ConvEnergy small_net(at::Generator& gen) {
  ConvEnergy net(
      ConvEnergyOptions({1, 8, 8}).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({8}).classes(3));
  reset_parameters(*net, gen);
  net->to(torch::kDouble);
  return net;
}

// Short-run CD (no buffer) with no sampler steps: the negatives are the
// buffer's uniform init draws, reproducible from a clone of the stream.
std::shared_ptr<ContrastiveDivergence> zero_step_cd(bool marginal, int64_t classes) {
  return std::make_shared<ContrastiveDivergence>(
      ContrastiveDivergenceOptions(0).marginal(marginal), std::make_shared<LangevinSampler>(LangevinOptions(0.1)),
      std::make_shared<ReplayBuffer>(ReplayBufferOptions(0).low(-1).high(1).classes(classes),
                                     std::vector<int64_t>{1, 8, 8}));
}
}  // namespace

TEST(JemEnergy, MarginalIsMinusLogsumexpOfTheLogits) {
  auto gen = make_generator(1, kStreamInit);
  auto net = small_net(gen);
  auto x = at::rand({5, 1, 8, 8}, gen, torch::kDouble) * 2 - 1;
  auto logits = -net->class_energies(x);
  EXPECT_TRUE(torch::allclose(net->energy(x), -torch::logsumexp(logits, 1), 1e-12, 1e-12));
  // p(y | x) = softmax of the logits: the cross entropy of the classifier.
  auto y = torch::tensor({0, 1, 2, 1, 0}, torch::kLong);
  CrossEntropy ce;
  auto want = -torch::log_softmax(logits, 1).gather(1, y.unsqueeze(1)).mean();
  EXPECT_NEAR(ce.compute(*net, Batch{x, y}, gen).loss.item<double>(), want.item<double>(), 1e-12);
}

// loss = a CE + b [mean E(x+) - mean E(x-)] + c [mean E(x+, y) - mean E(x-, y)],
// value and gradient, the negatives reproduced from the stream.
TEST(JemObjective, LossAndGradientMatchTheDefinition) {
  auto init = make_generator(2, kStreamInit);
  auto net = small_net(init);
  auto x = at::rand({6, 1, 8, 8}, init, torch::kDouble) * 2 - 1;
  auto y = torch::tensor({0, 1, 2, 2, 1, 0}, torch::kLong);
  const double a = 0.7, b = 1.3, c = 0.4;
  Jem jem(JemOptions().ce_weight(a).px_weight(b).pxy_weight(c), zero_step_cd(true, 0), zero_step_cd(false, 0));
  auto gen = make_generator(9, kStreamTrain);
  auto replay = gen.clone();
  auto out = jem.compute(*net, Batch{x, y}, gen);
  // The same draws: p(x)'s negatives, then p(x | y)'s.
  ReplayBuffer same(ReplayBufferOptions(0).low(-1).high(1), {1, 8, 8});
  auto neg_x = same.sample(6, replay).first.to(torch::kDouble);
  auto neg_xy = same.sample(6, replay).first.to(torch::kDouble);
  auto logits = -net->class_energies(x);
  auto ce = -torch::log_softmax(logits, 1).gather(1, y.unsqueeze(1)).mean();
  auto px = net->energy(x).mean() - net->energy(neg_x).mean();
  auto ey = [&](const torch::Tensor& v) { return net->class_energies(v).gather(1, y.unsqueeze(1)).mean(); };
  auto pxy = ey(x) - ey(neg_xy);
  auto want = a * ce + b * px + c * pxy;
  EXPECT_NEAR(out.loss.item<double>(), want.item<double>(), 1e-10);
  EXPECT_NEAR(out.metrics.at("ce"), ce.item<double>(), 1e-12);
  EXPECT_NEAR(out.metrics.at("e_pos"), net->energy(x).mean().item<double>(), 1e-10);
  auto g = torch::autograd::grad({out.loss}, net->parameters());
  auto g_ref = torch::autograd::grad({want}, net->parameters());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_TRUE(torch::allclose(g[i], g_ref[i], 1e-9, 1e-11)) << i;
  // An unconditional energy is refused.
  ConvEnergy plain(ConvEnergyOptions({1, 8, 8}).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({8}));
  EXPECT_EQ(test_helpers::code_of([&] { jem.compute(*plain, Batch{x.to(torch::kFloat), y}, gen); }),
            ExitCode::kBadConfig);
}

TEST(JemObjective, WarmupRampsTheGenerativeTermsIn) {
  auto init = make_generator(3, kStreamInit);
  auto net = small_net(init);
  auto x = at::rand({4, 1, 8, 8}, init, torch::kDouble) * 2 - 1;
  auto y = torch::tensor({0, 1, 2, 0}, torch::kLong);
  Jem jem(JemOptions().warmup(4), zero_step_cd(true, 0), nullptr);
  auto gen = make_generator(4, kStreamTrain);
  const std::vector<double> want = {0.25, 0.5, 0.75, 1.0, 1.0};
  for (double w : want) {
    auto out = jem.compute(*net, Batch{x, y}, gen);
    EXPECT_DOUBLE_EQ(out.metrics.at("generative_weight"), w);
    EXPECT_NEAR(out.loss.item<double>(),
                out.metrics.at("ce") + w * (out.metrics.at("e_pos") - out.metrics.at("e_neg")), 1e-10);
  }
  // The clock is checkpointed.
  torch::serialize::OutputArchive ar;
  jem.save(ar);
  std::ostringstream bytes;
  ar.save_to(bytes);
  Jem fresh(JemOptions().warmup(8), zero_step_cd(true, 0), nullptr);
  torch::serialize::InputArchive in;
  std::istringstream is(bytes.str());
  in.load_from(is);
  fresh.load(in);
  EXPECT_EQ(fresh.steps_taken(), 5);
  EXPECT_DOUBLE_EQ(fresh.compute(*net, Batch{x, y}, gen).metrics.at("generative_weight"), 6.0 / 8);
  EXPECT_EQ(test_helpers::code_of([&] { Jem(JemOptions().warmup(-1), zero_step_cd(true, 0), nullptr); }),
            ExitCode::kBadConfig);
}


// ce_steps cross-entropy-only steps (no chain draws: the stream is not
// touched), then the generative terms on every px_every-th step, their
// warm-up counting only those; the steps between are the cross entropy alone.
TEST(JemObjective, CrossEntropyStepsAndGenerativeEveryK) {
  auto init = make_generator(5, kStreamInit);
  auto net = small_net(init);
  auto x = at::rand({4, 1, 8, 8}, init, torch::kDouble) * 2 - 1;
  auto y = torch::tensor({0, 1, 2, 0}, torch::kLong);
  Jem jem(JemOptions().ce_steps(3).px_every(2).warmup(2), zero_step_cd(true, 0), nullptr);
  auto gen = make_generator(6, kStreamTrain);
  CrossEntropy ce;
  // step:            0    1    2    3    4    5    6    7    8
  const std::vector<double> want = {0, 0, 0, 0.5, 0, 1.0, 0, 1.0, 0};
  for (size_t i = 0; i < want.size(); ++i) {
    auto before = gen.clone();
    auto out = jem.compute(*net, Batch{x, y}, gen);
    EXPECT_DOUBLE_EQ(out.metrics.at("generative_weight"), want[i]) << i;
    const double ce_now = ce.compute(*net, Batch{x, y}, before).loss.item<double>();
    if (want[i] == 0) {
      EXPECT_NEAR(out.loss.item<double>(), ce_now, 1e-12) << i;
      EXPECT_EQ(out.metrics.count("e_pos"), 0u) << i;
      // no negatives drawn: the stream is where it was
      EXPECT_TRUE(torch::equal(at::rand({3}, gen, torch::kDouble), at::rand({3}, before, torch::kDouble))) << i;
    } else {
      EXPECT_NEAR(out.loss.item<double>(), ce_now + want[i] * (out.metrics.at("e_pos") - out.metrics.at("e_neg")),
                  1e-10)
          << i;
    }
  }
  EXPECT_EQ(test_helpers::code_of([&] { Jem(JemOptions().px_every(0), zero_step_cd(true, 0), nullptr); }),
            ExitCode::kBadConfig);
  EXPECT_EQ(test_helpers::code_of([&] { Jem(JemOptions().ce_steps(-1), zero_step_cd(true, 0), nullptr); }),
            ExitCode::kBadConfig);
}
// A JEM run on labelled images stops at step 3 and resumes to step 6 with
// the weights, both buffers and the warm-up clock of an uninterrupted run.
TEST(Trainer, JemResumeIsBitExact) {
  const std::string root = test_helpers::fresh_dir("jem");
  fs::create_directories(root);
  auto gen = make_generator(5, kStreamData);
  write_npy(root + "/images.npy", at::rand({48, 1, 8, 8}, gen) * 2 - 1);
  write_csv(root + "/labels.csv", torch::arange(48).remainder(3).to(torch::kFloat).unsqueeze(1));
  Config c = make_train_config();
  c.load_string(R"(
seed = 4
[energy]
name = "conv"
conditional = true
channels = [4]
kernels = [3]
strides = [2]
paddings = [1]
hidden = [8]
[objective]
name = "jem"
pxy_weight = 0.5
warmup = 4
[sampler]
steps = 3
step_size = 1.0
noise = 0.01
[buffer]
capacity = 30
init_low = -1.0
init_high = 1.0
[train]
steps = 6
batch_size = 8
lr = 1e-3
log_every = 1
checkpoint_every = 3
)", "test");
  c.set("data.path=" + root + "/images.npy");
  c.set("data.labels=" + root + "/labels.csv");
  test_helpers::run_and_resume(c, root, 3, [](Trainer& full, Trainer& b) {
    auto pa = full.energy().parameters(), pb = b.energy().parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
    auto* ja = dynamic_cast<Jem*>(full.parts().objective.get());
    auto* jb = dynamic_cast<Jem*>(b.parts().objective.get());
    ASSERT_TRUE(ja && jb);
    EXPECT_EQ(jb->steps_taken(), 6);
    ASSERT_TRUE(ja->px_chains() && jb->px_chains());
    EXPECT_TRUE(torch::equal(ja->px_chains()->buffer().data(), jb->px_chains()->buffer().data()));
  });
  fs::remove_all(root);
}

namespace {
Config jem_energy_config(const std::string& net) {
  Config c(energy_schema());
  c.set_value("energy.name", std::string("jem"));
  c.set_value("energy.net", net);
  c.set_value("energy.classes", int64_t(3));
  return c;
}
}  // namespace

// energy.name = "jem" builds the named classifier network with one output per
// class: E(x) = -logsumexp of the logits exactly, for vectors and images.
TEST(JemEnergy, NamedWrapperBuildsEachClassifierNetwork) {
  auto gen = make_generator(2, kStreamInit);
  auto check = [&](const Energy& e, torch::Tensor x) {
    EXPECT_EQ(e->num_classes(), 3);
    auto logits = -e->class_energies(x);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{x.size(0), 3}));
    EXPECT_TRUE(torch::allclose(e->energy(x), -torch::logsumexp(logits, 1), 1e-6, 1e-6));
  };
  {  // vectors: the classifier MLP (net = auto)
    auto c = jem_energy_config("auto");
    c.set_value("energy.hidden", std::vector<int64_t>{16, 16});
    auto e = build_energy(c, {4});
    ASSERT_NE(dynamic_cast<ClassifierMLPImpl*>(e.get()), nullptr);
    EXPECT_EQ(dynamic_cast<ClassifierMLPImpl*>(e.get())->options().hidden(), (std::vector<int64_t>{16, 16}));
    check(e, at::normal(0.0, 1.0, {7, 4}, gen, torch::TensorOptions(torch::kFloat)));
  }
  {  // images: the conv net, its keys passed through, the rest its defaults
    auto c = jem_energy_config("auto");
    c.set_value("energy.channels", std::vector<int64_t>{4, 8});
    c.set_value("energy.kernels", std::vector<int64_t>{3, 3});
    c.set_value("energy.strides", std::vector<int64_t>{2, 2});
    c.set_value("energy.paddings", std::vector<int64_t>{1, 1});
    auto e = build_energy(c, {1, 8, 8});
    auto* conv = dynamic_cast<ConvEnergyImpl*>(e.get());
    ASSERT_NE(conv, nullptr);
    EXPECT_EQ(conv->options().channels(), (std::vector<int64_t>{4, 8}));
    EXPECT_EQ(conv->options().hidden(), ConvEnergyOptions({1, 8, 8}).hidden());
    EXPECT_FALSE(conv->options().spectral_norm());
    check(e, at::rand({5, 1, 8, 8}, gen));
  }
  {  // the residual net
    auto c = jem_energy_config("resnet");
    c.set_value("energy.channels", std::vector<int64_t>{4});
    c.set_value("energy.blocks", std::vector<int64_t>{1});
    auto e = build_energy(c, {1, 8, 8});
    ASSERT_NE(dynamic_cast<ResNetEnergyImpl*>(e.get()), nullptr);
    check(e, at::rand({3, 1, 8, 8}, gen));
  }
  {  // energy.conditional on the MLP: the same classifier MLP
    Config c(energy_schema());
    c.set_value("energy.name", std::string("mlp"));
    c.set_value("energy.conditional", true);
    c.set_value("energy.classes", int64_t(3));
    auto e = build_energy(c, {2});
    ASSERT_NE(dynamic_cast<ClassifierMLPImpl*>(e.get()), nullptr);
    check(e, torch::randn({4, 2}));
  }
  // Bad tables: no class count, a key of another network, an unknown network.
  auto code = [&](Config c, const std::vector<int64_t>& shape) {
    return test_helpers::code_of([&] { build_energy(c, shape); });
  };
  auto c = jem_energy_config("conv");
  c.set_value("energy.classes", int64_t(0));
  EXPECT_EQ(code(c, {1, 8, 8}), ExitCode::kBadConfig);
  c = jem_energy_config("conv");
  c.set_value("energy.blocks", std::vector<int64_t>{1});
  EXPECT_EQ(code(c, {1, 8, 8}), ExitCode::kBadConfig);
  EXPECT_EQ(code(jem_energy_config("lstm"), {1, 8, 8}), ExitCode::kBadConfig);
  EXPECT_EQ(code(jem_energy_config("conv"), {4}), ExitCode::kBadConfig);
}

// A model trained on standardised vectors keeps its classifier: p(y | x) in
// the user's units is the inner network's at the standardised point.
TEST(JemEnergy, StandardizedWrapperKeepsTheClassifier) {
  Config c = jem_energy_config("mlp");
  c.set_value("energy.hidden", std::vector<int64_t>{8});
  auto inner = build_energy(c, {2});
  AffineMap map;
  map.shift = torch::tensor({1.0, -2.0}, torch::kDouble);
  map.scale = torch::tensor({3.0, 0.5}, torch::kDouble);
  StandardizedEnergyImpl user(inner, map);
  auto x = torch::randn({6, 2});
  EXPECT_EQ(user.num_classes(), 3);
  auto p_user = torch::softmax(-user.class_energies(x), 1);
  auto p_inner = torch::softmax(-inner->class_energies(map.to_model(x)), 1);
  EXPECT_TRUE(torch::allclose(p_user, p_inner, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(user.energy(x), -torch::logsumexp(-user.class_energies(x), 1), 1e-5, 1e-5));
}
