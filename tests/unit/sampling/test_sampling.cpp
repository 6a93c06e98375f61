// Deterministic properties of the samplers and the replay buffer.
#include <gtest/gtest.h>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/sampling/sampling.h"

using namespace ebm;

namespace {
// E(x) = a . x: a constant gradient; NaN energy where x0 > nan_above.
class LinearEnergy : public EnergyImpl {
 public:
  explicit LinearEnergy(torch::Tensor a, double nan_above = INFINITY)
      : a_(std::move(a)), nan_above_(nan_above) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    auto e = torch::mv(x, a_.to(x.dtype()));
    return torch::where(x.select(1, 0) > nan_above_, torch::full_like(e, NAN), e);
  }
  std::vector<int64_t> event_shape() const override { return {a_.size(0)}; }

 private:
  torch::Tensor a_;
  double nan_above_;
};

ExitCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ExitCode::kOk;
}
}  // namespace

TEST(Langevin, NoiselessStepIsGradientDescent) {
  LinearEnergy e(torch::tensor({1.0, -2.0}, torch::kDouble));
  LangevinSampler s(LangevinOptions(0.1).noise(0.0));
  auto gen = make_generator(0, kStreamTrain);
  ChainState st(torch::zeros({3, 2}, torch::kDouble));
  auto stats = s.step(e, st, gen);
  EXPECT_TRUE(torch::allclose(st.x, torch::tensor({-0.1, 0.2}, torch::kDouble).expand({3, 2})));
  EXPECT_EQ(stats.n_divergent, 0);
  EXPECT_DOUBLE_EQ(stats.step_size, 0.1);
}

TEST(Langevin, GradientClipAndBoxClamp) {
  LinearEnergy e(torch::tensor({10.0, -10.0}, torch::kDouble));
  LangevinSampler s(LangevinOptions(1.0).noise(0.0).grad_clip(0.03).clamp_min(-0.05).clamp_max(0.05));
  auto gen = make_generator(0, kStreamTrain);
  ChainState st(torch::zeros({2, 2}, torch::kDouble));
  s.step(e, st, gen);
  EXPECT_TRUE(torch::allclose(st.x, torch::tensor({-0.03, 0.03}, torch::kDouble).expand({2, 2})));
  s.step(e, st, gen);  // -0.06 clamps to -0.05
  EXPECT_TRUE(torch::allclose(st.x, torch::tensor({-0.05, 0.05}, torch::kDouble).expand({2, 2})));
}

TEST(Langevin, ExactNoiseIsSqrtTwoEta) {
  LangevinSampler s(LangevinOptions(0.02).noise(123.0).exact_noise(true));
  EXPECT_DOUBLE_EQ(s.noise(), std::sqrt(0.04));
}

TEST(Langevin, NonFiniteEnergyIsCountedAndChainStays) {
  LinearEnergy e(torch::tensor({-1.0, 0.0}, torch::kDouble), /*nan_above=*/0.5);
  LangevinSampler s(LangevinOptions(0.1).noise(0.3));
  auto gen = make_generator(0, kStreamTrain);
  auto x0 = torch::tensor({0.0, 0.0, 1.0, 1.0}, torch::kDouble).view({2, 2});
  ChainState st(x0.clone());
  auto stats = s.step(e, st, gen);
  EXPECT_EQ(stats.n_divergent, 1);
  EXPECT_TRUE(torch::equal(st.x[1], x0[1]));   // the NaN chain did not move
  EXPECT_FALSE(torch::equal(st.x[0], x0[0]));  // the good one did
  EXPECT_TRUE(std::isfinite(stats.energy_mean));
}

TEST(RandomWalkMH, RejectsNonFiniteProposals) {
  // Finite at the start, NaN at every proposal.
  struct NanAfterFirst : EnergyImpl {
    int calls = 0;
    torch::Tensor energy(const torch::Tensor& x) override {
      return torch::full({x.size(0)}, calls++ ? NAN : 0.0, x.options());
    }
    std::vector<int64_t> event_shape() const override { return {2}; }
  } e;
  RandomWalkMH s(RandomWalkMHOptions(0.5));
  auto gen = make_generator(0, kStreamTrain);
  ChainState st(torch::zeros({4, 2}, torch::kDouble));
  auto stats = s.step(e, st, gen);
  EXPECT_EQ(stats.n_divergent, 4);
  EXPECT_DOUBLE_EQ(stats.accept_rate, 0.0);
  EXPECT_TRUE(torch::equal(st.x, torch::zeros({4, 2}, torch::kDouble)));
}

TEST(RandomWalkMH, FlatEnergyAcceptsEverything) {
  LinearEnergy e(torch::tensor({0.0, 0.0}, torch::kDouble));
  RandomWalkMH s(RandomWalkMHOptions(0.5));
  auto gen = make_generator(0, kStreamTrain);
  ChainState st(torch::zeros({8, 2}, torch::kDouble));
  EXPECT_DOUBLE_EQ(s.step(e, st, gen).accept_rate, 1.0);
}

TEST(SamplerSpec, ParsesAndRejects) {
  auto s = make_sampler("langevin:step=0.05,noise=0.01,clip=0.1");
  auto* l = dynamic_cast<LangevinSampler*>(s.get());
  ASSERT_NE(l, nullptr);
  EXPECT_DOUBLE_EQ(l->options().step_size(), 0.05);
  EXPECT_DOUBLE_EQ(l->options().noise(), 0.01);
  EXPECT_DOUBLE_EQ(l->options().grad_clip(), 0.1);
  EXPECT_TRUE(dynamic_cast<LangevinSampler*>(make_sampler("ula").get())->options().exact_noise());
  EXPECT_EQ(make_sampler("mh:step=0.3")->name(), "mh");
  EXPECT_EQ(code_of([] { make_sampler("hmmc"); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([] { make_sampler("langevin:step=abc"); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([] { make_sampler("langevin:step=-1"); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([] { make_sampler("langevin:stepp=1"); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([] { make_sampler("mh:step"); }), ExitCode::kBadConfig);
}

TEST(ReplayBuffer, ShortRunDrawsFreshChains) {
  ReplayBuffer b(ReplayBufferOptions(0).low(-1).high(1), {2});
  auto gen = make_generator(0, kStreamTrain);
  auto [x, slots] = b.sample(5, gen);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{5, 2}));
  EXPECT_TRUE((slots == -1).all().item<bool>());
  EXPECT_LE(x.abs().max().item<double>(), 1.0);
  b.push(x, slots);  // no-op
  EXPECT_FALSE(b.filled());
}

TEST(ReplayBuffer, PersistentChainsComeBack) {
  ReplayBuffer b(ReplayBufferOptions(4).reinit_prob(0.0), {2});
  auto gen = make_generator(0, kStreamTrain);
  auto [x, slots] = b.sample(4, gen);
  EXPECT_TRUE(b.filled());
  // Every draw is a stored chain.
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_TRUE(torch::equal(x[i], b.data()[slots[i].item<int64_t>()]));
  // Pushed chains replace their slots (duplicates: a later write wins).
  auto moved = torch::full({4, 2}, 100.0);
  b.push(moved, slots);
  auto [y, s2] = b.sample(16, gen);
  for (int64_t i = 0; i < 16; ++i) {
    bool was_pushed = (slots == s2[i]).any().item<bool>();
    if (was_pushed) {
      EXPECT_TRUE((y[i] == 100.0).all().item<bool>());
    }
  }
}

TEST(ReplayBuffer, ReinitProbabilityOneGivesFreshChains) {
  ReplayBuffer b(ReplayBufferOptions(8).reinit_prob(1.0).init("uniform").low(10).high(11), {3});
  auto gen = make_generator(0, kStreamTrain);
  b.sample(8, gen);
  b.push(torch::zeros({8, 3}), torch::arange(8));
  auto [x, slots] = b.sample(8, gen);
  EXPECT_GE(x.min().item<double>(), 10.0);  // none of the pushed zeros
}

TEST(ReplayBuffer, SaveLoadRoundTrip) {
  ReplayBuffer a(ReplayBufferOptions(6), {2}), b(ReplayBufferOptions(6), {2});
  auto gen = make_generator(0, kStreamTrain);
  a.sample(3, gen);
  torch::serialize::OutputArchive out;
  a.save(out);
  std::ostringstream os;
  out.save_to(os);
  std::istringstream is(os.str());
  torch::serialize::InputArchive in;
  in.load_from(is);
  b.load(in);
  EXPECT_TRUE(torch::equal(a.data(), b.data()));
  ReplayBuffer c(ReplayBufferOptions(5), {2});
  std::istringstream is2(os.str());
  torch::serialize::InputArchive in2;
  in2.load_from(is2);
  EXPECT_EQ(code_of([&] { c.load(in2); }), ExitCode::kBadData);
}

TEST(ReplayBuffer, BadOptionsAreConfigErrors) {
  EXPECT_EQ(code_of([] { ReplayBuffer(ReplayBufferOptions(-1), {2}); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([] { ReplayBuffer(ReplayBufferOptions(4).reinit_prob(1.5), {2}); }),
            ExitCode::kBadConfig);
  EXPECT_EQ(code_of([] { ReplayBuffer(ReplayBufferOptions(4).init("cauchy"), {2}); }),
            ExitCode::kBadConfig);
}
