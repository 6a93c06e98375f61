// Training runs: exact resume, the divergence guard, model files, config errors;
// FusedAdam against torch::optim::Adam (image runs: test_train_images.cpp).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/errors.h"
#include "common/nets.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/objectives/objective.h"
#include "ebm/sampling/sampling.h"
#include "ebm/energy/conv.h"
#include "ebm/energy/standardized.h"
#include "ebm/io/io.h"
#include "ebm/model/model.h"
#include "ebm/train/train.h"

using namespace ebm;
using test_helpers::ClassQuadratics;
namespace fs = std::filesystem;

namespace {
using test_helpers::fresh_dir;

Config small_config(int64_t steps) {
  Config c = make_train_config();
  c.load_string(R"(
seed = 3
[data]
name = "moons"
n = 2000
[energy]
hidden = [16, 16]
spectral_norm = true
prior_std = 4.0
[sampler]
steps = 5
step_size = 0.01
exact_noise = true
[buffer]
capacity = 500
[train]
batch_size = 32
lr = 1e-3
schedule = "cosine"
log_every = 5
checkpoint_every = 10
)", "test");
  c.set("train.steps=" + std::to_string(steps));
  return c;
}

std::vector<torch::Tensor> weights(EnergyImpl& e) {
  std::vector<torch::Tensor> out;
  for (auto& p : e.parameters()) out.push_back(p.detach().clone());
  for (auto& b : e.buffers()) out.push_back(b.detach().clone());
  return out;
}

int count_lines(const std::string& path) {
  std::ifstream in(path);
  std::string l;
  int n = 0;
  while (std::getline(in, l)) ++n;
  return n;
}
}  // namespace

// An uninterrupted run and one interrupted after step 23 (between metrics
// lines: the stop's checkpoint holds the steps 21-23 of the next line's
// window) then resumed end with the same weights, bit for bit, and the same
// metrics lines but for their times.
void expect_resume_bit_exact(const std::string& tag, const std::vector<std::string>& sets,
                             const std::vector<std::string>& unsets = {}) {
  const std::string a = fresh_dir(tag + "_full"), b = fresh_dir(tag + "_split");
  auto config = [&] {
    Config c = small_config(40);
    for (const auto& k : unsets) c.unset(k);
    for (const auto& s : sets) c.set(s);
    return c;
  };
  Trainer full(config(), a);
  full.run(false);
  {
    Trainer first(config(), b);
    first.on_step([](int64_t step, const auto&) { return step == 23; });
    first.run(false);
  }
  Trainer second(config(), b);
  second.run(true);
  EXPECT_EQ(second.step(), 40);
  auto wa = weights(full.energy()), wb = weights(second.energy());
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i)
    EXPECT_TRUE(torch::equal(wa[i], wb[i])) << tag << " tensor " << i;
  // metrics.jsonl holds each logged step once.
  EXPECT_EQ(count_lines(a + "/metrics.jsonl"), 8);
  EXPECT_EQ(count_lines(b + "/metrics.jsonl"), 8);
  {
    std::ifstream ia(a + "/metrics.jsonl"), ib(b + "/metrics.jsonl");
    for (std::string la, lb; std::getline(ia, la) && std::getline(ib, lb);) {
      auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
      ja.erase("time");
      jb.erase("time");
      EXPECT_EQ(ja, jb) << tag;
    }
  }
  for (const char* f : {"config.toml", "metrics.jsonl", "checkpoint.pt", "model.pt", "test.csv"})
    EXPECT_TRUE(fs::exists(a + "/" + f)) << f;
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(Trainer, ResumeIsBitExact) { expect_resume_bit_exact("langevin", {}); }

// Parallel tempering keeps hot replicas between iterations: they are part of
// the checkpoint.
TEST(Trainer, ResumeWithParallelTemperingIsBitExact) {
  // (exact_noise is a key of the Langevin samplers: parallel tempering refuses it)
  expect_resume_bit_exact("pt", {"sampler.name=pt", "sampler.temps=3", "sampler.tmax=4.0"},
                          {"sampler.exact_noise"});
}

// The default recipe's parts: jumps from the data's kernel density (rebuilt
// from the data on resume), MALA, fresh chains on the data's box.
TEST(Trainer, ResumeWithModeJumpsIsBitExact) {
  expect_resume_bit_exact("jumps", {"sampler.name=mala", "objective.jumps=2", "objective.jump_centers=64",
                                    "buffer.init=data"},
                          {"sampler.exact_noise"});
}

TEST(Trainer, ModelFileRebuildsTheEnergy) {
  const std::string d = fresh_dir("model");
  Trainer t(small_config(10), d);
  t.run(false);
  Energy loaded = load_model(d + "/model.pt");
  auto x = torch::randn({7, 2});
  torch::NoGradGuard ng;
  t.energy().eval();
  // (vector data are standardised by default: the file holds the map, and
  // the model it loads is in the data's units)
  ASSERT_TRUE(t.data().transform.defined());
  auto* s = dynamic_cast<StandardizedEnergyImpl*>(loaded.get());
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(torch::equal(s->inner()->energy(x), t.energy().energy(x)));
  EXPECT_TRUE(torch::allclose(loaded->energy(x), t.user_energy()->energy(x)));
  EXPECT_TRUE(torch::equal(s->map().scale, t.data().transform.scale));
  fs::remove_all(d);
}

TEST(Trainer, DivergenceRollsBackThenFailsClearly) {
  const std::string d = fresh_dir("diverge");
  Config c = small_config(30);
  c.set("train.energy_limit=1e-12");  // every step counts as divergent
  c.set("train.max_retries=2");
  Trainer t(c, d);
  try {
    t.run(false);
    FAIL() << "expected failure";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("diverged"), std::string::npos);
  }
  std::ifstream in(d + "/metrics.jsonl");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t events = 0;
  for (size_t p = all.find("divergence"); p != std::string::npos; p = all.find("divergence", p + 1))
    ++events;
  EXPECT_EQ(events, 3u);  // two rollbacks logged, then the final failure
  EXPECT_NE(all.find("\"lr_scale\":0.25"), std::string::npos);
  fs::remove_all(d);
}

// A divergence rolls back to the last in-memory copy (train.snapshot_every),
// not to the last checkpoint; one that comes back before the next copy rolls
// back to the checkpoint. Weights made NaN by the step callback at chosen
// steps make the next step diverge.
TEST(Trainer, DivergenceRollsBackToTheLastCopyThenTheCheckpoint) {
  for (const int poisonings : {1, 2}) {
    const std::string d = fresh_dir("copies");
    Config c = small_config(40);
    c.set("train.checkpoint_every=20");
    c.set("train.snapshot_every=5");
    Trainer t(c, d);
    std::vector<int64_t> seen;
    int left = poisonings;
    t.on_step([&](int64_t step, const std::map<std::string, double>&) {
      seen.push_back(step);
      if (left > 0 && (step == 27 || (step == 26 && left < poisonings))) {
        --left;
        torch::NoGradGuard ng;
        for (auto& p : t.energy().parameters()) p.fill_(std::numeric_limits<float>::quiet_NaN());
      }
      return false;
    });
    EXPECT_EQ(t.run(false), poisonings);
    // after step 27 the next step is 26 (rolled back to the copy at 25); a
    // second poisoning there sends it to the checkpoint at 20 (next step 21)
    const auto at = std::find(seen.begin(), seen.end(), 27);
    ASSERT_NE(at, seen.end());
    ASSERT_GE(seen.end() - at, 3);
    EXPECT_EQ(at[1], 26);
    if (poisonings == 2) {
      EXPECT_EQ(at[2], 21);
    }
    EXPECT_EQ(seen.back(), 40);
    fs::remove_all(d);
  }
}

TEST(Trainer, BadConfigValuesNameTheKey) {
  auto code_msg = [](const std::function<void()>& f) -> std::pair<ExitCode, std::string> {
    try {
      f();
    } catch (const Error& e) {
      return {e.code(), e.what()};
    }
    return {ExitCode::kOk, ""};
  };
  Config c = make_train_config();
  auto r = code_msg([&] { c.set("train.stepz=3"); });
  EXPECT_EQ(r.first, ExitCode::kBadConfig);
  EXPECT_NE(r.second.find("train.stepz"), std::string::npos);
  Config neg = small_config(5);
  neg.set("sampler.step_size=-0.1");
  r = code_msg([&] { Trainer(neg, fresh_dir("neg")); });
  EXPECT_EQ(r.first, ExitCode::kBadConfig);
  EXPECT_NE(r.second.find("step_size"), std::string::npos);
  Config lr = small_config(5);
  lr.set("train.lr=0");
  EXPECT_EQ(code_msg([&] { Trainer(lr, fresh_dir("lr")); }).first, ExitCode::kBadConfig);
  Config data = small_config(5);
  data.set("data.name=nine_gaussians");
  EXPECT_EQ(code_msg([&] { Trainer(data, fresh_dir("data")); }).first, ExitCode::kBadConfig);
  EXPECT_EQ(code_msg([] { load_model("/nonexistent/model.pt"); }).first, ExitCode::kMissingInput);
}

// A noise-conditional energy round-trips through model.pt and evaluates at
// the level it was trained down to (objective.sigma_min when
// energy.noise_level is 0).
TEST(Trainer, NoiseConditionalModelKeepsItsLevel) {
  const std::string d = fresh_dir("ncmlp");
  Config c = small_config(10);
  c.set("energy.name=ncmlp");
  c.set("objective.name=mdsm");
  c.set("objective.sigma_min=0.05");
  Trainer t(c, d);
  t.run(false);
  // (in the model's units: the file holds the data's standardisation too)
  Energy loaded = sampling_view(load_model(d + "/model.pt")).first;
  auto* nc = dynamic_cast<NoiseConditionalEnergyImpl*>(loaded.get());
  ASSERT_NE(nc, nullptr);
  EXPECT_DOUBLE_EQ(nc->noise_level(), 0.05);
  auto x = torch::randn({7, 2});
  torch::NoGradGuard ng;
  t.energy().eval();
  EXPECT_TRUE(torch::equal(loaded->energy(x), t.energy().energy(x)));
  fs::remove_all(d);
}

// ----- FusedAdam ---------------------------------------------------------------
namespace {
struct AdamRun {
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::Adam> opt;
};

AdamRun adam_run(bool fused, const torch::optim::AdamOptions& o, torch::Dtype dtype) {
  auto gen = make_generator(5, kStreamInit);
  AdamRun r;
  for (auto shape : {std::vector<int64_t>{37}, std::vector<int64_t>{5, 7}, std::vector<int64_t>{1}})
    r.params.push_back(at::normal(0.0, 1.0, shape, gen, dtype).requires_grad_(true));
  if (fused)
    r.opt = std::make_unique<FusedAdam>(r.params, o);
  else
    r.opt = std::make_unique<torch::optim::Adam>(r.params, o);
  return r;
}

// Sets the gradients of step t (the same in every run).
void set_grads(AdamRun& r, int t) {
  auto gen = make_generator(100 + t, kStreamTrain);
  for (auto& p : r.params) p.mutable_grad() = at::normal(0.0, 1.0, p.sizes(), gen, p.scalar_type());
}
}  // namespace

// Same update in a different rounding order. Per step each side's update is
// within ~20 float32 roundings of the exact one, whose size is at most
// lr max(1, (1 - b1) / sqrt(1 - b2)) (Kingma & Ba 2015, sec. 2.1), and the
// parameter write adds half an ulp of |p|; the bound sums both over the steps.
TEST(FusedAdam, MatchesAdamToRounding) {
  const double eps32 = std::numeric_limits<float>::epsilon();
  for (double wd : {0.0, 0.01}) {
    for (double b1 : {0.0, 0.9}) {
      auto o = torch::optim::AdamOptions(1e-2).betas({b1, 0.999}).weight_decay(wd);
      auto fused = adam_run(true, o, torch::kFloat), plain = adam_run(false, o, torch::kFloat);
      const double step_max = 1e-2 * std::max(1.0, (1 - b1) / std::sqrt(1 - 0.999));
      for (int t = 1; t <= 25; ++t) {
        set_grads(fused, t);
        set_grads(plain, t);
        fused.opt->step();
        plain.opt->step();
        for (size_t i = 0; i < fused.params.size(); ++i) {
          auto diff = (fused.params[i] - plain.params[i]).abs();
          auto bound = t * (20 * eps32 * step_max + eps32 * plain.params[i].abs());
          EXPECT_TRUE((diff <= bound).all().item<bool>())
              << "wd " << wd << " b1 " << b1 << " step " << t << " param " << i << " diff "
              << diff.max().item<double>();
        }
      }
    }
  }
}

// The state is Adam's: a FusedAdam checkpoint continues in torch::optim::Adam
// and the other way round.
TEST(FusedAdam, CheckpointsMoveBetweenAdamAndFusedAdam) {
  auto o = torch::optim::AdamOptions(1e-2).betas({0.5, 0.99});
  for (bool from_fused : {true, false}) {
    auto src = adam_run(from_fused, o, torch::kFloat);
    for (int t = 1; t <= 5; ++t) {
      set_grads(src, t);
      src.opt->step();
    }
    std::stringstream bytes;
    {
      torch::serialize::OutputArchive archive;
      src.opt->save(archive);
      archive.save_to(bytes);
    }
    auto dst = adam_run(!from_fused, o, torch::kFloat);
    {
      torch::NoGradGuard ng;
      for (size_t i = 0; i < dst.params.size(); ++i) dst.params[i].copy_(src.params[i]);
    }
    torch::serialize::InputArchive archive;
    archive.load_from(bytes);
    dst.opt->load(archive);
    set_grads(src, 6);
    set_grads(dst, 6);
    src.opt->step();
    dst.opt->step();
    for (size_t i = 0; i < src.params.size(); ++i)  // one step apart in rounding only
      EXPECT_TRUE(torch::allclose(src.params[i], dst.params[i], 1e-6, 1e-6)) << i;
  }
}

// amsgrad, float64, a float64 parameter among float32 ones, and gradients
// made non-contiguous by a closure are Adam's own step, bit for bit.
TEST(FusedAdam, OtherCasesAreAdamExactly) {
  enum Case { kAmsgrad, kDouble, kMixed, kClosure };
  for (Case c : {kAmsgrad, kDouble, kMixed, kClosure}) {
    auto o = torch::optim::AdamOptions(1e-2).amsgrad(c == kAmsgrad).weight_decay(0.1);
    const auto dtype = c == kDouble ? torch::kDouble : torch::kFloat;
    auto fused = adam_run(true, o, dtype), plain = adam_run(false, o, dtype);
    if (c == kMixed) {
      for (auto* r : {&fused, &plain}) {
        torch::NoGradGuard ng;
        r->params[0].set_data(r->params[0].to(torch::kDouble));
      }
    }
    for (int t = 1; t <= 5; ++t) {
      if (c == kClosure) {
        for (auto* r : {&fused, &plain})
          r->opt->step([r, t] {
            set_grads(*r, t);
            auto& g = r->params[1].mutable_grad();  // [5, 7] stored transposed
            g = g.t().contiguous().t();
            return torch::zeros({});
          });
        continue;
      }
      set_grads(fused, t);
      set_grads(plain, t);
      fused.opt->step();
      plain.opt->step();
    }
    for (size_t i = 0; i < fused.params.size(); ++i)
      EXPECT_TRUE(torch::equal(fused.params[i], plain.params[i])) << "case " << c << " param " << i;
  }
}

// With a closure the gradients come from it: a fused step with a closure
// equals one without.
TEST(FusedAdam, ClosureStepsMatch) {
  auto o = torch::optim::AdamOptions(1e-2);
  auto a = adam_run(true, o, torch::kFloat), b = adam_run(true, o, torch::kFloat);
  for (int t = 1; t <= 5; ++t) {
    auto loss = a.opt->step([&a, t] {
      set_grads(a, t);
      return torch::full({}, double(t));
    });
    EXPECT_EQ(loss.item<double>(), double(t));
    set_grads(b, t);
    b.opt->step();
  }
  for (size_t i = 0; i < a.params.size(); ++i) EXPECT_TRUE(torch::equal(a.params[i], b.params[i]));
}

// The contrastive-divergence loss against its definition: mean E(x+) -
// mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2), value and parameter
// gradient, with the negatives replayed from the same seed (float64).
TEST(ContrastiveDivergence, LossMatchesItsDefinition) {
  auto init = make_generator(3, kStreamInit);
  MLPEnergy net(MLPEnergyOptions(2, {16, 16}));
  reset_parameters(*net, init);
  net->to(torch::kDouble);
  auto x = at::normal(0.0, 1.0, {32, 2}, init, torch::kDouble);
  const double alpha = 0.3;
  auto bopts = ReplayBufferOptions(100).reinit_prob(0.05).init("uniform").low(-4).high(4);
  auto lopts = LangevinOptions(0.01).noise(0.005);
  auto run_gen = make_generator(4, kStreamTrain), ref_gen = make_generator(4, kStreamTrain);
  ContrastiveDivergence cd(ContrastiveDivergenceOptions(3).alpha(alpha),
                           std::make_shared<LangevinSampler>(lopts),
                           std::make_shared<ReplayBuffer>(bopts, std::vector<int64_t>{2}));
  auto out = cd.compute(*net, Batch{x, {}}, run_gen);
  auto params = net->parameters();
  auto g = torch::autograd::grad({out.loss}, params);
  // The same negatives: the buffer's draw and three Langevin steps on a copy.
  ReplayBuffer buffer(bopts, {2});
  ChainState chains(buffer.sample(32, ref_gen).first.to(torch::kDouble));
  {
    FreezeParameters frozen(*net);
    LangevinSampler(lopts).run(*net, chains, 3, ref_gen);
  }
  auto e_pos = net->energy(x), e_neg = net->energy(chains.x);
  auto loss = e_pos.mean() - e_neg.mean() + alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean());
  EXPECT_NEAR(out.loss.item<double>(), loss.item<double>(), 1e-12);
  EXPECT_NEAR(out.metrics.at("e_pos"), e_pos.mean().item<double>(), 1e-12);
  EXPECT_NEAR(out.metrics.at("e_neg"), e_neg.mean().item<double>(), 1e-12);
  auto g_ref = torch::autograd::grad({loss}, params);
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_TRUE(torch::allclose(g[i], g_ref[i], 1e-10, 1e-12)) << i;
}

TEST(ModelFile, RebuildsTheRunsTrainTestSplit) {
  const std::string root = fresh_dir("model_split");
  std::filesystem::create_directories(root);
  auto gen = make_generator(12, kStreamTestData);
  write_csv(root + "/x.csv", at::normal(0.0, 3.0, {80, 2}, gen, torch::TensorOptions(torch::kDouble)));
  write_csv(root + "/y.csv", torch::arange(80, torch::kDouble).remainder(3).unsqueeze(1));
  Config c = make_train_config();
  c.load_string("seed = 5\n[data]\npath = \"" + root + "/x.csv\"\nlabels = \"" + root +
                    "/y.csv\"\ntest_fraction = 0.25\n[energy]\nname = \"jem\"\nclasses = 3\nhidden = [8]\n"
                    "[objective]\nname = \"ce\"\n[train]\nsteps = 2\nbatch_size = 8\n[eval]\nsample_chains = 4\n"
                    "sample_steps = 1\n",
                "test");
  Trainer t(c, root + "/run");
  t.run(false);
  ModelInfo info;
  load_model(root + "/run/model.pt", &info);
  ASSERT_TRUE(info.seed.has_value());
  EXPECT_EQ(*info.seed, 5);
  std::string why;
  auto split = model_data_split(info, "m", &why);
  ASSERT_TRUE(split.has_value()) << why;
  EXPECT_TRUE(torch::equal(split->test.x, t.data().test.x));
  EXPECT_TRUE(torch::equal(split->test.y, t.data().test.y));
  EXPECT_TRUE(torch::equal(split->train.x, t.data().train.x));
  EXPECT_EQ(split->test.size(), 20);
  info.seed.reset();
  EXPECT_FALSE(model_data_split(info, "m", &why).has_value());
  EXPECT_NE(why.find("does not say"), std::string::npos) << why;
  std::filesystem::remove_all(root);
}
