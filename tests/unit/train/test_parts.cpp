// The training step from parts: two learners composed without the CLI and
// resumed bit-exactly; an image energy trained through the public API; the
// ATen path of a step (what CUDA runs) forced on the CPU; every registered
// config key in --help-config.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/errors.h"
#include "common/nets.h"
#include "common/tmp.h"
#include "ebm/core/device.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/conv.h"
#include "ebm/io/io.h"
#include "ebm/objectives/score_matching.h"
#include "ebm/sampling/sampling.h"
#include "ebm/train/train.h"

using namespace ebm;
namespace fs = std::filesystem;

namespace {
std::string fresh_dir(const std::string& name) {
  auto d = test_helpers::fresh_dir("parts_" + name);
  fs::create_directories(d);
  return d;
}

std::vector<torch::Tensor> state_of(const TrainParts& p) {
  std::vector<torch::Tensor> out;
  for (const auto& l : p.learners) {
    for (auto& t : l.module->parameters()) out.push_back(t.detach().clone());
    for (auto& t : l.module->buffers()) out.push_back(t.detach().clone());
  }
  return out;
}

// A learned-sampler shaped objective: the energy contrasts data with a
// generator's samples g(z); the generator descends the energy of its samples.
class GeneratorContrast : public Objective {
 public:
  explicit GeneratorContrast(torch::nn::Linear g) : g_(std::move(g)) {}
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override {
    auto z = standard_normal(batch.x.sizes(), gen, batch.x.scalar_type());
    auto fake = g_->forward(z);  // [B, 2]
    auto e_pos = energy.energy(batch.x), e_neg = energy.energy(fake.detach());
    Output out;
    out.loss = e_pos.mean() - e_neg.mean() + 0.1 * (e_pos.pow(2).mean() + e_neg.pow(2).mean());
    out.learner_losses["generator"] = energy.energy(fake).mean();
    out.metrics = {{"e_pos", e_pos.mean().item<double>()}, {"e_neg", e_neg.mean().item<double>()}};
    return out;
  }

 private:
  torch::nn::Linear g_;
};

TrainParts two_learner_parts() {
  TrainParts p;
  auto init = make_generator(11, kStreamInit);
  p.energy = MLPEnergy(MLPEnergyOptions(2, {16, 16})).ptr();
  torch::nn::Linear g(2, 2);
  reset_parameters(*p.energy, init);
  reset_parameters(*g, init);
  p.objective = std::make_shared<GeneratorContrast>(g);
  Learner e;
  e.name = "energy";
  e.module = p.energy;
  e.optimizer = std::make_unique<FusedAdam>(p.energy->parameters(),
                                            torch::optim::AdamOptions(1e-3).betas({0.0, 0.999}));
  e.schedule = [](int64_t step) { return 1e-3 / (1.0 + 0.1 * double(step)); };
  Learner gl;
  gl.name = "generator";
  gl.module = g.ptr();
  gl.optimizer = std::make_unique<torch::optim::SGD>(g->parameters(), torch::optim::SGDOptions(1e-2).momentum(0.9));
  gl.grad_clip = 0.5;
  p.learners.push_back(std::move(e));
  p.learners.push_back(std::move(gl));
  auto data_gen = make_generator(11, kStreamData);
  p.data = Dataset{toy2d("moons", 500, data_gen), torch::arange(500, torch::kLong) % 2, "moons"};
  p.gen = make_generator(11, kStreamTrain);
  return p;
}
}  // namespace

// 12 steps straight, against 5 steps, a checkpoint file, fresh parts restored
// from it and 7 more steps: the same bits in both learners. Each learner
// moved, and the generator's gradient never reached the energy.
TEST(TrainStep, TwoLearnersResumeBitExact) {
  const auto options = StepOptions(32);
  TrainParts full = two_learner_parts();
  const auto before = state_of(full);
  for (int i = 0; i < 12; ++i) ASSERT_FALSE(train_step(full, options).diverged);
  EXPECT_EQ(full.step, 12);

  const std::string dir = fresh_dir("two"), file = dir + "/ckpt.bin";
  {
    TrainParts first = two_learner_parts();
    for (int i = 0; i < 5; ++i) train_step(first, options);
    const std::string bytes = snapshot(first);
    atomic_write_text(file, bytes);
  }
  TrainParts second = two_learner_parts();
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  restore(second, ss.str());
  EXPECT_EQ(second.step, 5);
  while (second.step < 12) train_step(second, options);

  auto a = state_of(full), b = state_of(second);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
    EXPECT_FALSE(torch::equal(a[i], before[i])) << "tensor " << i << " never moved";
  }
  // A rollback to the snapshot taken before the first step (what a divergence
  // early in a run restores) forgets the optimisers' moments of the steps
  // since: the steps after it are a fresh run's.
  {
    TrainParts rolled = two_learner_parts();
    const std::string start = snapshot(rolled);
    for (int i = 0; i < 4; ++i) train_step(rolled, options);
    restore(rolled, start);
    EXPECT_EQ(rolled.step, 0);
    while (rolled.step < 12) train_step(rolled, options);
    auto c = state_of(rolled);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], c[i])) << "tensor " << i << " after a rollback";
  }
  // A snapshot of other learners is refused, naming what is missing.
  TrainParts other = two_learner_parts();
  other.learners[1].name = "critic";
  EXPECT_EQ(test_helpers::code_of([&] { restore(other, ss.str()); }), ExitCode::kBadData);
  fs::remove_all(dir);
}

// train.ema: each learner's average follows avg <- d avg + (1 - d) w with
// d = min(ema, (1 + t) / (10 + t)) after step t (the first step copies),
// replayed by hand from the weights after each step; it survives a
// snapshot bit-exactly, and use_averages puts it into the parameters.
TEST(TrainStep, MovingAverageOfTheWeights) {
  const auto options = StepOptions(32);
  const double ema = 0.6;
  TrainParts p = two_learner_parts();
  for (auto& l : p.learners) l.ema = ema;
  std::vector<std::vector<torch::Tensor>> want(p.learners.size());
  for (int t = 0; t < 8; ++t) {
    ASSERT_FALSE(train_step(p, options).diverged);
    const double d = std::min(ema, (1.0 + t) / (10.0 + t));
    for (size_t i = 0; i < p.learners.size(); ++i) {
      auto w = p.learners[i].module->parameters();
      for (size_t j = 0; j < w.size(); ++j) {
        auto now = w[j].detach().to(torch::kDouble);
        if (t == 0) want[i].push_back(now.clone());
        else want[i][j] = d * want[i][j] + (1 - d) * now;
      }
    }
  }
  for (size_t i = 0; i < p.learners.size(); ++i) {
    ASSERT_EQ(p.learners[i].averages.size(), want[i].size());
    for (size_t j = 0; j < want[i].size(); ++j)
      EXPECT_TRUE(torch::allclose(p.learners[i].averages[j].to(torch::kDouble), want[i][j], 1e-6, 1e-7))
          << i << "," << j;
  }
  // Resume: 3 steps, snapshot, restore into fresh parts, 5 more = 8 straight.
  TrainParts a = two_learner_parts(), b = two_learner_parts();
  for (auto* q : {&a, &b})
    for (auto& l : q->learners) l.ema = ema;
  for (int t = 0; t < 3; ++t) train_step(a, options);
  restore(b, snapshot(a));
  while (b.step < 8) train_step(b, options);
  for (size_t i = 0; i < p.learners.size(); ++i)
    for (size_t j = 0; j < want[i].size(); ++j)
      EXPECT_TRUE(torch::equal(b.learners[i].averages[j], p.learners[i].averages[j])) << i << "," << j;
  // A checkpoint without averages (written before the first step) restores
  // to none, and the next step starts them from the weights.
  TrainParts c = two_learner_parts(), d = two_learner_parts();
  for (auto* q : {&c, &d})
    for (auto& l : q->learners) l.ema = ema;
  restore(d, snapshot(c));
  EXPECT_TRUE(d.learners[0].averages.empty());
  use_averages(p.learners);
  auto w = p.learners[0].module->parameters();
  for (size_t j = 0; j < w.size(); ++j) EXPECT_TRUE(torch::equal(w[j], p.learners[0].averages[j]));
}

// Labels reach the objective with their rows.
TEST(TrainStep, BatchesCarryLabels) {
  TrainParts p = two_learner_parts();
  p.data.x = torch::arange(500, torch::kFloat).unsqueeze(1).repeat({1, 2});
  auto gen = make_generator(1, kStreamTrain);
  Batch b = draw_batch(p.data, 64, gen);
  ASSERT_TRUE(b.y.defined());
  EXPECT_TRUE(torch::equal(b.y, b.x.select(1, 0).to(torch::kLong) % 2));
}

// The ATen path (what a CUDA tensor takes) of a PCD and a DSM step, forced on
// the CPU: the steps run, the loss is finite, and FusedAdam steps exactly as
// torch::optim::Adam (its fused pass stays off).
TEST(TrainStep, AtenPathOfAStepMatchesPlainAdam) {
  FastPathsGuard aten(false);
  for (const std::string objective : {"cd", "dsm"}) {
    auto make = [&](bool fused) {
      TrainParts p;
      auto init = make_generator(5, kStreamInit);
      p.energy = MLPEnergy(MLPEnergyOptions(2, {32, 32})).ptr();
      reset_parameters(*p.energy, init);
      if (objective == "cd")
        p.objective = std::make_shared<ContrastiveDivergence>(
            ContrastiveDivergenceOptions(5).alpha(0.1),
            std::make_shared<LangevinSampler>(LangevinOptions(0.01).noise(0.005)),
            std::make_shared<ReplayBuffer>(ReplayBufferOptions(100), std::vector<int64_t>{2}));
      else
        p.objective = std::make_shared<DenoisingScoreMatching>(DenoisingScoreMatchingOptions(0.1));
      Learner l;
      l.name = "energy";
      l.module = p.energy;
      auto o = torch::optim::AdamOptions(1e-3).betas({0.0, 0.999});
      if (fused)
        l.optimizer = std::make_unique<FusedAdam>(p.energy->parameters(), o);
      else
        l.optimizer = std::make_unique<torch::optim::Adam>(p.energy->parameters(), o);
      p.learners.push_back(std::move(l));
      auto dg = make_generator(5, kStreamData);
      p.data = Dataset{toy2d("8gaussians", 300, dg), {}, "8gaussians"};
      p.gen = make_generator(5, kStreamTrain);
      return p;
    };
    TrainParts a = make(true), b = make(false);
    for (int i = 0; i < 3; ++i) {
      auto ra = train_step(a, StepOptions(64)), rb = train_step(b, StepOptions(64));
      ASSERT_FALSE(ra.diverged) << objective;
      EXPECT_TRUE(std::isfinite(ra.loss)) << objective;
      EXPECT_EQ(ra.loss, rb.loss) << objective;
    }
    auto sa = state_of(a), sb = state_of(b);
    for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i], sb[i])) << objective << " " << i;
  }
}

// A tiny conv energy on [N, 1, 8, 8] images through the public API: trained a
// few steps from an NPY file, saved, reloaded with its shape, scored.
TEST(TrainStep, ConvEnergyTrainsOnImages) {
  const std::string dir = fresh_dir("conv");
  auto gen = make_generator(2, kStreamData);
  auto images = at::rand({64, 1, 8, 8}, gen).mul_(2).sub_(1);
  write_npy(dir + "/images.npy", images);
  Config c = make_train_config();
  c.load_string(std::string(test_helpers::tiny_conv_image_toml()) + R"(
clamp_min = -1.0
clamp_max = 1.0
[buffer]
capacity = 100
init_low = -1.0
init_high = 1.0
[train]
steps = 4
batch_size = 8
lr = 1e-3
log_every = 2
checkpoint_every = 2
)", "conv.toml");
  c.set("data.path=" + dir + "/images.npy");
  Trainer t(c, dir + "/run");
  EXPECT_EQ(t.data().train.event_shape(), (std::vector<int64_t>{1, 8, 8}));
  t.run(false);
  EXPECT_EQ(t.step(), 4);
  Energy loaded = load_model(dir + "/run/model.pt");
  EXPECT_EQ(loaded->event_shape(), (std::vector<int64_t>{1, 8, 8}));
  torch::NoGradGuard ng;
  t.energy().eval();
  auto e = loaded->energy(images);
  EXPECT_EQ(e.sizes(), (c10::IntArrayRef{64}));
  EXPECT_TRUE(torch::equal(e, t.energy().energy(images)));
  EXPECT_TRUE(torch::isfinite(e).all().item<bool>());
  // A vector energy on images, and an image energy on vectors: one clear line.
  Config mlp = c;
  mlp.set("energy.name=mlp");
  mlp.unset("energy.channels");
  mlp.unset("energy.kernels");
  mlp.unset("energy.strides");
  mlp.unset("energy.paddings");
  std::string msg;
  EXPECT_EQ(test_helpers::code_of([&] { Trainer(mlp, dir + "/mlp"); }, &msg), ExitCode::kBadConfig);
  EXPECT_NE(msg.find("event shape [1, 8, 8]"), std::string::npos) << msg;
  Config flat = c;
  flat.set("data.shape=[64]");
  flat.unset("sampler.clamp_min");  // (standardised vectors lie outside [-1, 1]: that error would come first)
  EXPECT_EQ(test_helpers::code_of([&] { Trainer(flat, dir + "/flat"); }, &msg), ExitCode::kBadConfig);
  EXPECT_NE(msg.find("images [C, H, W]"), std::string::npos) << msg;
  fs::remove_all(dir);
}

// --help-config is generated from the registrations: every key of every
// component, with its component, type and default, on one line.
TEST(TrainConfig, HelpListsEveryRegisteredKey) {
  const Config c = make_train_config();
  const std::string help = c.describe();
  std::vector<std::string> lines;
  {
    std::istringstream is(help);
    for (std::string l; std::getline(is, l);) lines.push_back(l);
  }
  auto listed = [&](const std::string& key, const ConfigValue& v, const std::string& owner) {
    const std::string type = config_type_name(v), def = "default " + format_config_value(v);
    for (const auto& l : lines)
      if (l.rfind(key + " ", 0) == 0 && l.find(type) != std::string::npos &&
          l.find(def) != std::string::npos && (owner.empty() || l.find("(" + owner + ")") != std::string::npos))
        return true;
    return false;
  };
  int n = 0;
  for (const auto& s : c.schema().sections()) {
    const std::string prefix = s.name.empty() ? "" : s.name + ".";
    for (const auto& k : s.keys) {
      EXPECT_TRUE(listed(prefix + k.name, k.value, "")) << prefix + k.name;
      ++n;
    }
    for (const auto& g : s.groups)
      for (const auto& comp : g.choices)
        for (const auto& k : comp.keys) {
          EXPECT_TRUE(listed(prefix + k.name, k.value, g.kind + " " + comp.name))
              << prefix + k.name << " of " << g.kind << " " << comp.name;
          ++n;
        }
  }
  EXPECT_GT(n, 60);
  for (const char* kind : {"energy", "sampler", "objective", "optimizer", "schedule", "dataset"})
    EXPECT_NE(help.find(std::string("selects the ") + kind), std::string::npos) << kind;
}

// Every recipe in configs/ loads and validates: its keys exist, have their
// types and belong to the components it selects (a recipe's typo would
// otherwise surface only when a user runs it).
TEST(Recipes, EveryShippedConfigValidates) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(std::string(EBM_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".toml") continue;
    Config c = make_train_config();
    EXPECT_NO_THROW({
      c.load_file(e.path().string());
      c.validate();
    }) << e.path();
    ++n;
  }
  EXPECT_GE(n, 23);
}
