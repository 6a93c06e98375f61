// The simulated trajectory sets: shapes, determinism, the physics'
// invariants (energy and momentum of the springs, the pendulum's energy) and
// the [data] keys that build them.
#include <gtest/gtest.h>

#include <cmath>

#include "common/errors.h"
#include "ebm/core/config.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/data/trajectories.h"

namespace {

using ebm::test_helpers::code_of;

// Kinetic + spring energy per recorded step: [n, T].
torch::Tensor springs_energy(const ebm::SpringsRun& r, double k) {
  auto kinetic = 0.5 * r.velocities.square().sum({2, 3});             // [n, T]
  auto d = r.positions.unsqueeze(3) - r.positions.unsqueeze(2);       // [n, T, P, P, 2]
  auto pair = d.square().sum(4) * r.edges.unsqueeze(1);               // [n, T, P, P]
  return kinetic + 0.25 * k * pair.sum({2, 3});                       // (each pair counted twice)
}

ebm::Config data_config() {
  auto s = std::make_shared<ebm::Schema>();
  s->add(ebm::data_section());
  return ebm::Config(std::shared_ptr<const ebm::Schema>(s));
}

}  // namespace

TEST(Springs, ShapesAndDeterminism) {
  auto o = ebm::SpringsOptions().particles(4).steps(7);
  auto g1 = ebm::make_generator(5, ebm::kStreamData), g2 = ebm::make_generator(5, ebm::kStreamData),
       g3 = ebm::make_generator(6, ebm::kStreamData);
  auto a = ebm::springs_trajectories(50, o, g1), b = ebm::springs_trajectories(50, o, g2),
       c = ebm::springs_trajectories(50, o, g3);
  EXPECT_EQ(a.sizes(), (c10::IntArrayRef{50, 7 * 8}));
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  // Step-major: row values t * F .. (t + 1) * F - 1 are step t's positions.
  auto g4 = ebm::make_generator(5, ebm::kStreamData);
  auto run = ebm::simulate_springs(50, o, g4);
  EXPECT_TRUE(torch::equal(a.view({50, 7, 4, 2}), run.positions.to(torch::kFloat)));
  // Inside the walls always, starting in the middle half of the box.
  EXPECT_LE(run.positions.abs().max().item<double>(), 1.0);
  EXPECT_LE(run.positions.select(1, 0).abs().max().item<double>(), 0.5);
  // Edges: symmetric 0/1 with an empty diagonal.
  EXPECT_TRUE(torch::equal(run.edges, run.edges.transpose(1, 2)));
  EXPECT_EQ(run.edges.diagonal(0, 1, 2).abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(run.edges, run.edges.round()));
}

// Each pair joined with probability edge_prob: 0.5 of 3 * 4000 pairs,
// within z = 4.89 binomial standard errors (false alarm 1e-6).
TEST(Springs, PairsAreJoinedWithEdgeProb) {
  auto gen = ebm::make_generator(7, ebm::kStreamData);
  auto run = ebm::simulate_springs(4000, ebm::SpringsOptions().steps(1), gen);
  const double pairs = 3 * 4000, frac = run.edges.sum().item<double>() / 2 / pairs;
  EXPECT_NEAR(frac, 0.5, 4.89 * std::sqrt(0.25 / pairs));
  auto all = ebm::simulate_springs(100, ebm::SpringsOptions().steps(1).edge_prob(1.0), gen);
  EXPECT_EQ(all.edges.sum().item<double>(), 100 * 6.0);
}

// Walls far away: velocity Verlet keeps the energy within O(h^2) of its start
// (h = 0.01, the fastest mode's omega^2 = 3k = 3: relative error ~ h^2 omega^2
// / 8 ~ 4e-5; the bound leaves 25x) and the internal spring forces keep the
// total momentum (to rounding).
TEST(Springs, ConserveEnergyAndMomentumWithoutWalls) {
  auto o = ebm::SpringsOptions().box(1e3).edge_prob(1.0).steps(50);
  auto gen = ebm::make_generator(8, ebm::kStreamData);
  auto run = ebm::simulate_springs(200, o, gen);
  auto e = springs_energy(run, o.spring());  // [n, T]
  auto rel = ((e - e.select(1, 0).unsqueeze(1)).abs() / e.select(1, 0).unsqueeze(1)).max().item<double>();
  EXPECT_LT(rel, 1e-3);
  auto p = run.velocities.sum(2);  // [n, T, 2]
  // (rounding of 490 float64 substeps: ~1e-11)
  EXPECT_LT((p - p.select(1, 0).unsqueeze(1)).abs().max().item<double>(), 1e-10);
}

// Elastic walls only mirror velocities: the energy stays conserved, up to the
// error of a bounce inside a step (O(h) per bounce: a few percent at most).
TEST(Springs, WallsAreElastic) {
  auto o = ebm::SpringsOptions().edge_prob(1.0).velocity_std(2.0).steps(50);
  auto gen = ebm::make_generator(9, ebm::kStreamData);
  auto run = ebm::simulate_springs(200, o, gen);
  EXPECT_LE(run.positions.abs().max().item<double>(), 1.0);
  // (they do bounce: some velocity component changes sign without springs able to turn it so fast)
  auto e = springs_energy(run, o.spring());
  auto rel = ((e - e.select(1, 0).unsqueeze(1)).abs() / e.select(1, 0).unsqueeze(1));
  EXPECT_LT(rel.max().item<double>(), 0.05);
  // Free particles (no springs) between walls keep their speeds exactly.
  auto free = ebm::simulate_springs(100, ebm::SpringsOptions().edge_prob(0.0).velocity_std(3.0).steps(30), gen);
  auto speed = free.velocities.abs();
  EXPECT_LT((speed - speed.select(1, 0).unsqueeze(1)).abs().max().item<double>(), 1e-12);
  EXPECT_GT((free.velocities.select(1, 29) * free.velocities.select(1, 0) < 0).sum().item<int64_t>(), 0);
}

// The frictionless pendulum keeps omega^2 / 2 - g cos theta (Verlet, h = 0.01,
// g = 9.81: relative error ~ h^2 g / 8 ~ 1e-4 of the energy's scale g); with
// damping the energy only falls, and every step is a point on the unit circle.
TEST(Pendulum, ConservesEnergyWithoutFriction) {
  auto gen = ebm::make_generator(10, ebm::kStreamData);
  auto o = ebm::PendulumOptions().steps(40);
  auto run = ebm::simulate_pendulum(300, o, gen);
  auto e = 0.5 * run.omega.square() - o.gravity() * run.theta.cos();  // [n, T]
  EXPECT_LT((e - e.select(1, 0).unsqueeze(1)).abs().max().item<double>(), 1e-3 * o.gravity());
  auto damped = ebm::simulate_pendulum(300, ebm::PendulumOptions().steps(40).damping(0.5), gen);
  auto ed = 0.5 * damped.omega.square() - o.gravity() * damped.theta.cos();
  EXPECT_TRUE((ed.select(1, 39) < ed.select(1, 0)).all().item<bool>());
  auto g1 = ebm::make_generator(11, ebm::kStreamData), g2 = ebm::make_generator(11, ebm::kStreamData);
  auto x = ebm::pendulum_trajectories(20, o, g1);
  EXPECT_EQ(x.sizes(), (c10::IntArrayRef{20, 80}));
  EXPECT_TRUE(torch::equal(x, ebm::pendulum_trajectories(20, o, g2)));
  auto xy = x.view({20, 40, 2});
  EXPECT_LT((xy.square().sum(2) - 1).abs().max().item<double>(), 1e-5);
}

TEST(TrajectorySets, DataKeysBuildThemAndGiveTheStepWidth) {
  auto c = data_config();
  c.set("data.name=particles");
  c.set("data.n=10");
  c.set("data.particles=2");
  c.set("data.steps=5");
  c.validate();
  auto gen = ebm::make_generator(0, ebm::kStreamData);
  auto d = ebm::build_dataset(c, gen);
  EXPECT_EQ(d.x.sizes(), (c10::IntArrayRef{10, 20}));
  EXPECT_EQ(ebm::trajectory_step_dim(c), 4);
  c.set("data.split=test");
  EXPECT_EQ(code_of([&] { ebm::build_dataset(c, gen); }), ebm::ExitCode::kBadConfig);
  c.set("data.split=train");
  c.set("data.edge_prob=1.5");
  EXPECT_EQ(code_of([&] { ebm::build_dataset(c, gen); }), ebm::ExitCode::kBadConfig);

  auto p = data_config();
  p.set("data.name=pendulum");
  p.set("data.n=6");
  p.validate();
  EXPECT_EQ(ebm::build_dataset(p, gen).x.sizes(), (c10::IntArrayRef{6, 40}));
  EXPECT_EQ(ebm::trajectory_step_dim(p), 2);
  // (a key of particles is not pendulum's)
  p.set("data.particles=3");
  EXPECT_EQ(code_of([&] { p.validate(); }), ebm::ExitCode::kBadConfig);

  auto m = data_config();
  m.set("data.name=moons");
  EXPECT_EQ(ebm::trajectory_step_dim(m), 0);
}
