// Deterministic properties of annealed Langevin and parallel tempering: the
// ladders, the NCSN step schedule, exact updates replayed from a cloned
// generator, spec parsing, and the replica bookkeeping of PT.
#include <gtest/gtest.h>

#include <sstream>

#include "helpers.h"

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/sampling/sampling.h"
#include "ebm/sampling/tempering.h"

using namespace ebm;

namespace {
// E(x, s) = s * (a . x): gradient s * a. Records the level and x of every
// energy_and_grad call, and the levels energy_at sees.
class RecordingNoiseEnergy : public NoiseConditionalEnergyImpl {
 public:
  explicit RecordingNoiseEnergy(torch::Tensor a) : a_(std::move(a)) {}
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override {
    seen_sigma.push_back(sigma.clone());
    return sigma * torch::mv(x, a_.to(x.dtype()));
  }
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override {
    levels.push_back(noise_level());
    xs.push_back(x.clone());
    auto e = noise_level() * torch::mv(x, a_.to(x.dtype()));
    return {e, (noise_level() * a_.to(x.dtype())).expand_as(x).clone()};
  }
  std::vector<int64_t> event_shape() const override { return {a_.size(0)}; }
  std::vector<double> levels;
  std::vector<torch::Tensor> xs, seen_sigma;

 private:
  torch::Tensor a_;
};

using ebm::test_helpers::code_of;
using Linear = ebm::test_helpers::LinearEnergy;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

torch::Tensor normal_like(const torch::Tensor& x, at::Generator& gen) {
  return standard_normal(x.sizes(), gen, x.scalar_type());
}

bool close(const torch::Tensor& a, const torch::Tensor& b) {
  return torch::allclose(a, b, /*rtol=*/1e-12, /*atol=*/1e-12);
}
}  // namespace

TEST(GeometricLadder, EndpointsExactAndConstantRatio) {
  auto v = geometric_ladder(1.0, 0.01, 3);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_DOUBLE_EQ(v[0], 1.0);
  EXPECT_NEAR(v[1], 0.1, 1e-15);
  EXPECT_EQ(v[2], 0.01);
  auto t = geometric_ladder(1.0, 10.0, 8);
  EXPECT_EQ(t.front(), 1.0);
  EXPECT_EQ(t.back(), 10.0);
  for (size_t k = 1; k < t.size(); ++k) EXPECT_NEAR(t[k] / t[k - 1], std::pow(10.0, 1.0 / 7), 1e-13);
  EXPECT_EQ(geometric_ladder(3.0, 3.0, 1), std::vector<double>{3.0});
}

// NCSN schedule: eta_i = eps * s_i^2 / s_L^2.
TEST(AnnealedLangevin, StepScheduleIsNCSN) {
  AnnealedLangevinSampler s(AnnealedLangevinOptions(1e-3).sigma_max(1).sigma_min(0.01).n_levels(3));
  ASSERT_EQ(s.levels().size(), 3u);
  EXPECT_NEAR(s.levels()[1], 0.1, 1e-15);
  const std::vector<double> want = {10.0, 0.1, 1e-3};
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(s.step_sizes()[i], want[i], 1e-12 * want[i]);
}

// Every update replayed from a cloned generator: level i uses E(x, s_i) and
// x' = x - eta_i * grad E(x, s_i) + sqrt(2 eta_i) xi; the denoising step is
// x - s_L^2 grad E(x, s_L); the previous level is restored afterwards.
TEST(AnnealedLangevin, NoiseConditionalLevelsAndUpdatesAreExact) {
  auto a = torch::tensor({1.0, -2.0}, torch::kDouble);
  RecordingNoiseEnergy e(a);
  e.set_noise_level(0.7);
  const int64_t levels = 3, per = 2;
  AnnealedLangevinSampler s(AnnealedLangevinOptions(0.01)
                                .sigma_max(1.0)
                                .sigma_min(0.25)
                                .n_levels(levels)
                                .steps_per_level(per)
                                .denoise(true));
  auto gen = make_generator(1, kStreamTrain);
  auto replay = gen.clone();
  ChainState st(torch::zeros({4, 2}, torch::kDouble));
  auto stats = s.step(e, st, gen);
  ASSERT_EQ(e.levels.size(), size_t(levels * per + 1));  // + the denoising call
  auto x = torch::zeros({4, 2}, torch::kDouble);
  for (int64_t i = 0; i < levels; ++i) {
    const double lv = s.levels()[i], eta = s.step_sizes()[i];
    for (int64_t t = 0; t < per; ++t) {
      const size_t k = i * per + t;
      EXPECT_EQ(e.levels[k], lv) << "call " << k;
      ASSERT_TRUE(close(e.xs[k], x)) << "call " << k;
      x = x - eta * lv * a + std::sqrt(2 * eta) * normal_like(x, replay);
    }
  }
  const double last = s.levels().back();
  EXPECT_EQ(e.levels.back(), last);
  EXPECT_TRUE(close(e.xs.back(), x));
  x = x - last * last * last * a;  // denoise: grad E(x, s_L) = s_L * a
  EXPECT_TRUE(close(st.x, x));
  EXPECT_EQ(e.noise_level(), 0.7);
  // The final energy is E(x, s_L).
  ASSERT_FALSE(e.seen_sigma.empty());
  EXPECT_TRUE((e.seen_sigma.back() == last).all().item<bool>());
  EXPECT_NEAR(stats.energy_mean, (last * torch::mv(x, a)).mean().item<double>(), 1e-12);
  EXPECT_DOUBLE_EQ(stats.step_size, 0.01);
  EXPECT_EQ(stats.accept_rate, 1.0);
  EXPECT_EQ(stats.n_divergent, 0);
  EXPECT_FALSE(st.energy.defined());
}

// Without a noise-conditional energy level i is a temperature: the drift is
// eta_i * grad E / s_i with eta_i = eps * s_i / s_L (the same drift at every
// level, noise sqrt(2 eta_i)).
TEST(AnnealedLangevin, TemperatureModeDividesTheGradientByTheLevel) {
  auto a = torch::tensor({0.5, 3.0}, torch::kDouble);
  Linear e(a);
  AnnealedLangevinSampler s(
      AnnealedLangevinOptions(0.02).sigma_max(4.0).sigma_min(1.0).n_levels(3).steps_per_level(2));
  auto gen = make_generator(2, kStreamTrain);
  auto replay = gen.clone();
  ChainState st(torch::ones({3, 2}, torch::kDouble));
  s.step(e, st, gen);
  const std::vector<double> want = {0.08, 0.04, 0.02};  // (levels 4, 2, 1)
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(s.temperature_step_sizes()[i], want[i], 1e-15);
  auto x = torch::ones({3, 2}, torch::kDouble);
  for (size_t i = 0; i < 3; ++i)
    for (int t = 0; t < 2; ++t) {
      const double eta = s.temperature_step_sizes()[i];
      x = x - eta / s.levels()[i] * a + std::sqrt(2 * eta) * normal_like(x, replay);
    }
  EXPECT_TRUE(close(st.x, x));
  EXPECT_EQ(code_of([&] {
              AnnealedLangevinSampler d(AnnealedLangevinOptions(0.01).denoise(true));
              d.step(e, st, gen);
            }),
            ExitCode::kBadConfig);
}

// The clamp box holds every update (images' pixel range): a linear energy
// drives the chains into the box's walls; an empty box is a config error.
TEST(AnnealedLangevin, ClampBoxHoldsTheChains) {
  Linear e(torch::tensor({4.0, -4.0}, torch::kDouble));
  AnnealedLangevinSampler s(AnnealedLangevinOptions(0.02)
                                .sigma_max(4.0)
                                .sigma_min(1.0)
                                .n_levels(3)
                                .steps_per_level(20)
                                .clamp_min(-0.5)
                                .clamp_max(0.5));
  auto gen = make_generator(4, kStreamTrain);
  ChainState st(torch::zeros({50, 2}, torch::kDouble));
  s.step(e, st, gen);
  EXPECT_GE(st.x.min().item<double>(), -0.5);
  EXPECT_LE(st.x.max().item<double>(), 0.5);
  // (the drift 0.02 * 4 a step pushes column 0 down, column 1 up: to the walls)
  EXPECT_GT((st.x.select(1, 0) == -0.5).sum().item<int64_t>(), 10);
  EXPECT_GT((st.x.select(1, 1) == 0.5).sum().item<int64_t>(), 10);
  EXPECT_EQ(code_of([&] { AnnealedLangevinSampler(AnnealedLangevinOptions(0.01).clamp_min(1.0).clamp_max(0.0)); }),
            ExitCode::kBadConfig);
}

TEST(AnnealedLangevin, NonFiniteChainIsHeldAndCountedOnce) {
  Linear e(torch::tensor({-1.0, 0.0}, torch::kDouble), /*nan_above=*/0.5);
  AnnealedLangevinSampler s(
      AnnealedLangevinOptions(1e-4).sigma_max(1.0).sigma_min(1.0).n_levels(1).steps_per_level(5));
  auto gen = make_generator(3, kStreamTrain);
  auto x0 = torch::tensor({0.0, 0.0, 1.0, 1.0}, torch::kDouble).view({2, 2});
  ChainState st(x0.clone());
  auto stats = s.step(e, st, gen);
  EXPECT_EQ(stats.n_divergent, 1);  // one chain, five held updates
  EXPECT_TRUE(torch::equal(st.x[1], x0[1]));
  EXPECT_FALSE(torch::equal(st.x[0], x0[0]));
  EXPECT_TRUE(std::isfinite(stats.energy_mean));
}

TEST(SamplerSpec, AnnealedKeysAndBadValues) {
  auto p = make_sampler("annealed:eps=2e-5,smax=1,smin=0.01,levels=10,steps=100,denoise=true");
  auto* s = dynamic_cast<AnnealedLangevinSampler*>(p.get());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name(), "annealed");
  EXPECT_DOUBLE_EQ(s->options().step_size(), 2e-5);
  EXPECT_EQ(s->options().n_levels(), 10);
  EXPECT_EQ(s->options().steps_per_level(), 100);
  EXPECT_TRUE(s->options().denoise());
  EXPECT_FALSE(dynamic_cast<AnnealedLangevinSampler*>(make_sampler("annealed").get())->options().denoise());
  for (const char* bad : {"annealed:levels=0", "annealed:levels=2.5", "annealed:steps=0",
                          "annealed:smin=0", "annealed:smax=0.001", "annealed:eps=-1",
                          "annealed:eps=nan", "annealed:levels=1", "annealed:denoise=maybe",
                          "annealed:step=0.1", "annealed:smax=inf"})
    EXPECT_EQ(code_of([&] { make_sampler(bad); }), ExitCode::kBadConfig) << bad;
  // One level is fine when the ladder is a single value.
  EXPECT_EQ(make_sampler("annealed:levels=1,smax=0.5,smin=0.5")->name(), "annealed");
  auto msg = message_of([] { make_sampler("annealed:levels=0"); });
  EXPECT_NE(msg.find("levels"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0"), std::string::npos) << msg;
}

TEST(SamplerSpec, ParallelTemperingKeysAndBadValues) {
  auto p = make_sampler("pt:step=0.05,temps=8,tmax=10");
  auto* s = dynamic_cast<ParallelTempering*>(p.get());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name(), "pt");
  EXPECT_EQ(s->temperatures().size(), 8u);
  EXPECT_EQ(s->temperatures().front(), 1.0);
  EXPECT_EQ(s->temperatures().back(), 10.0);
  for (const char* bad : {"pt:temps=0", "pt:temps=2.5", "pt:tmax=0.5", "pt:tmax=inf", "pt:step=0",
                          "pt:step=x", "pt:eps=0.1"})
    EXPECT_EQ(code_of([&] { make_sampler(bad); }), ExitCode::kBadConfig) << bad;
  auto msg = message_of([] { make_sampler("pt:tmax=0.5"); });
  EXPECT_NE(msg.find("tmax"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0.5"), std::string::npos) << msg;
  EXPECT_NE(message_of([] { make_sampler("nope"); }).find("annealed, pt"), std::string::npos);
}

TEST(ParallelTempering, KeepsColdChainsAndReportsSwapRatesPerPair) {
  auto target = make_target("gaussian", 2);
  ParallelTempering pt(ParallelTemperingOptions(0.1).n_temps(4).t_max(8.0));
  auto gen = make_generator(4, kStreamTrain);
  ChainState st(at::normal(0.0, 1.0, {16, 2}, gen, torch::kDouble));
  pt.step(*target, st, gen);
  EXPECT_EQ(st.x.sizes(), (std::vector<int64_t>{16, 2}));
  EXPECT_EQ(pt.replicas().sizes(), (std::vector<int64_t>{4, 16, 2}));
  auto r = pt.swap_rates();
  ASSERT_EQ(r.size(), 3u);
  // Step 0 tries the even pairs only: (T1, T2) and (T3, T4).
  EXPECT_FALSE(std::isnan(r[0]));
  EXPECT_TRUE(std::isnan(r[1]));
  EXPECT_FALSE(std::isnan(r[2]));
  auto stats = pt.run(*target, st, 20, gen);
  for (double v : pt.swap_rates()) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  EXPECT_GT(stats.accept_rate, 0.0);
  EXPECT_TRUE(st.energy.defined() && st.grad.defined());
  EXPECT_TRUE(torch::allclose(st.energy, target->energy(st.x)));
  pt.reset_swap_counts();
  for (double v : pt.swap_rates()) EXPECT_TRUE(std::isnan(v));
  // A new batch size rebuilds the replicas from the new cold chains.
  ChainState st2(torch::zeros({5, 2}, torch::kDouble));
  pt.step(*target, st2, gen);
  EXPECT_EQ(pt.replicas().sizes(), (std::vector<int64_t>{4, 5, 2}));
}

// On a flat energy MALA accepts every move (x + sqrt(2 eps T_k) xi) and every
// swap, so a step is exact: the cold row starts from ChainState::x, and the
// swapped pair exchanges its replicas.
TEST(ParallelTempering, FlatEnergyMovesAndSwapsExactly) {
  Linear flat(torch::zeros({2}, torch::kDouble));
  const double eps = 0.05;
  ParallelTempering pt(ParallelTemperingOptions(eps).n_temps(3).t_max(4.0));  // T = 1, 2, 4
  auto gen = make_generator(5, kStreamTrain);
  ChainState st(torch::zeros({6, 2}, torch::kDouble));
  pt.step(flat, st, gen);  // even pairs: (1, 2) swap
  auto before = pt.replicas().clone();
  auto z = torch::full({6, 2}, 3.0, torch::kDouble);
  st.x = z.clone();  // the user moves the cold chains
  st.invalidate();
  auto replay = gen.clone();
  auto stats = pt.step(flat, st, gen);  // odd pairs: (2, 3) swap
  EXPECT_EQ(stats.accept_rate, 1.0);
  auto xi = standard_normal({3, 6, 2}, replay, torch::kDouble);
  auto m0 = z + std::sqrt(2 * eps) * xi[0];
  auto m1 = before[1] + std::sqrt(2 * eps * 2) * xi[1];
  auto m2 = before[2] + std::sqrt(2 * eps * 4) * xi[2];
  EXPECT_TRUE(close(st.x, m0));
  EXPECT_TRUE(close(pt.replicas()[0], m0));
  EXPECT_TRUE(close(pt.replicas()[1], m2));
  EXPECT_TRUE(close(pt.replicas()[2], m1));
  EXPECT_EQ(pt.swap_rates(), (std::vector<double>{1.0, 1.0}));
}

// Every replica of a step on E = a . x made its tempered MALA move
// x - eps a + sqrt(2 eps T_k) xi (draws replayed from `replay`); swaps only
// permute a chain's replicas, so the sums over rungs must match.
void expect_every_replica_moved(const ParallelTempering& pt, const torch::Tensor& before,
                                at::Generator& replay, const torch::Tensor& a, double eps) {
  const int64_t k = before.size(0);
  auto xi = standard_normal(before.sizes(), replay, torch::kDouble);
  auto sd = torch::tensor(pt.temperatures(), torch::kDouble).mul(2 * eps).sqrt().view({k, 1, 1});
  auto moved = before - eps * a + sd * xi;
  EXPECT_TRUE(torch::allclose(pt.replicas().sum(0), moved.sum(0), 1e-12, 1e-12));
}

// On a linear energy the tempered MALA ratio is exactly 1 at every
// temperature (drift eps a, noise variance 2 eps T_k, q evaluated with 4 eps
// T_k), so every replica moves; swaps only permute a chain's replicas, so the
// per-chain sum over rungs is exactly the sum of the replayed moves.
TEST(ParallelTempering, TemperedMALAAcceptsEveryMoveOnALinearEnergy) {
  auto a = torch::tensor({1.0, -2.0}, torch::kDouble);
  Linear e(a);
  const double eps = 0.5;
  ParallelTempering pt(ParallelTemperingOptions(eps).n_temps(4).t_max(8.0));
  auto gen = make_generator(8, kStreamTrain);
  ChainState st(torch::zeros({64, 2}, torch::kDouble));
  pt.step(e, st, gen);
  auto before = pt.replicas().clone();
  auto replay = gen.clone();
  auto stats = pt.step(e, st, gen);
  EXPECT_EQ(stats.accept_rate, 1.0);
  expect_every_replica_moved(pt, before, replay, a, eps);
}

// Chains handed over without a cache signal a changed energy (training
// updates it between calls): the hot replicas' cached energies and gradients
// are recomputed, so every replica makes the exact tempered MALA move on the
// new linear energy (as in the test above). A stale flat-energy cache would
// drop the drift -eps a from the hot replicas' proposals.
TEST(ParallelTempering, InvalidatedChainsRefreshTheHotReplicas) {
  Linear flat(torch::zeros({2}, torch::kDouble));
  auto a = torch::tensor({1.0, -2.0}, torch::kDouble);
  Linear e(a);
  const double eps = 0.5;
  ParallelTempering pt(ParallelTemperingOptions(eps).n_temps(4).t_max(8.0));
  auto gen = make_generator(9, kStreamTrain);
  ChainState st(torch::zeros({64, 2}, torch::kDouble));
  pt.step(flat, st, gen);
  st.invalidate();
  auto before = pt.replicas().clone();
  auto replay = gen.clone();
  pt.step(e, st, gen);
  expect_every_replica_moved(pt, before, replay, a, eps);
}

// Checkpoint round trip: a restored sampler continues exactly as the
// original (one temperature too, whose state is only the parity), and an
// archive written by another sampler leaves it fresh.
TEST(ParallelTempering, SaveAndLoadContinueExactly) {
  auto target = make_target("gaussian", 2);
  for (int64_t k : {1, 3}) {
    ParallelTempering a(ParallelTemperingOptions(0.2).n_temps(k).t_max(4.0));
    auto gen = make_generator(2, kStreamTrain);
    ChainState st(torch::zeros({8, 2}, torch::kDouble));
    a.run(*target, st, 3, gen);
    torch::serialize::OutputArchive out;
    a.save(out);
    std::ostringstream os;
    out.save_to(os);
    ParallelTempering b(ParallelTemperingOptions(0.2).n_temps(k).t_max(4.0));
    torch::serialize::InputArchive in;
    std::istringstream is(os.str());
    in.load_from(is);
    b.load(in);
    ChainState sa(st.x.clone()), sb(st.x.clone());  // caches dropped, as training does
    auto ga = gen.clone(), gb = gen.clone();
    a.run(*target, sa, 4, ga);
    b.run(*target, sb, 4, gb);
    EXPECT_TRUE(torch::equal(a.replicas(), b.replicas())) << k;
    EXPECT_EQ(a.swap_rates().size(), b.swap_rates().size());
    for (size_t i = 0; i < a.swap_rates().size(); ++i)
      EXPECT_EQ(a.swap_rates()[i], b.swap_rates()[i]) << k;
  }
  torch::serialize::OutputArchive empty;
  std::ostringstream os;
  empty.save_to(os);
  torch::serialize::InputArchive in;
  std::istringstream is(os.str());
  in.load_from(is);
  ParallelTempering c(ParallelTemperingOptions(0.2).n_temps(3));
  c.load(in);
  EXPECT_FALSE(c.replicas().defined());
}

// K = 1: no swaps, and the local move is MALA's, draw for draw.
TEST(ParallelTempering, OneTemperatureIsMALA) {
  auto target = make_target("gaussian", 3);
  ParallelTempering pt(ParallelTemperingOptions(0.3).n_temps(1));
  MALASampler mala(MALAOptions(0.3));
  auto g1 = make_generator(6, kStreamTrain), g2 = make_generator(6, kStreamTrain);
  auto x0 = at::normal(0.0, 2.0, {32, 3}, g1, torch::kDouble);
  at::normal(0.0, 2.0, {32, 3}, g2, torch::kDouble);
  ChainState a(x0.clone()), b(x0.clone());
  auto sa = pt.run(*target, a, 10, g1);
  auto sb = mala.run(*target, b, 10, g2);
  EXPECT_TRUE(torch::equal(a.x, b.x));
  EXPECT_EQ(sa.accept_rate, sb.accept_rate);
  EXPECT_TRUE(pt.swap_rates().empty());
}

TEST(ParallelTempering, NonFiniteProposalsAreRejectedAndCounted) {
  Linear e(torch::tensor({-1.0, 0.0}, torch::kDouble), /*nan_above=*/0.2);
  ParallelTempering pt(ParallelTemperingOptions(0.1).n_temps(3).t_max(4.0));
  auto gen = make_generator(7, kStreamTrain);
  ChainState st(torch::zeros({8, 2}, torch::kDouble));
  auto stats = pt.run(e, st, 10, gen);
  EXPECT_GT(stats.n_divergent, 0);
  EXPECT_TRUE(torch::isfinite(pt.replicas()).all().item<bool>());
  EXPECT_TRUE((pt.replicas().select(2, 0) <= 0.2).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(st.energy).all().item<bool>());
}
