// Springs (NRI) and pendulum trajectories: velocity Verlet in float64.
#include "ebm/data/trajectories.h"

#include <cmath>
#include <vector>

#include "ebm/core/error.h"

namespace ebm {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Mirrors a coordinate that crossed a wall back into [-box, box] (as often
// as it crossed one) and negates its velocity each time: an elastic bounce.
void reflect(double& x, double& v, double box) {
  while (x > box || x < -box) {
    x = (x > box ? 2 * box : -2 * box) - x;
    v = -v;
  }
}

// a_i = -k sum_j e_ij (x_i - x_j) for one trajectory; x, a: [P * 2].
void spring_accel(const double* x, const double* e, int64_t p, double k, double* a) {
  for (int64_t i = 0; i < p; ++i) {
    double ax = 0, ay = 0;
    for (int64_t j = 0; j < p; ++j) {
      const double w = e[i * p + j];
      ax -= w * (x[2 * i] - x[2 * j]);
      ay -= w * (x[2 * i + 1] - x[2 * j + 1]);
    }
    a[2 * i] = k * ax;
    a[2 * i + 1] = k * ay;
  }
}

void check(const SpringsOptions& o) {
  EBM_CHECK_CONFIG(o.particles() >= 1, "data.particles must be >= 1, got ", o.particles());
  EBM_CHECK_CONFIG(o.steps() >= 1, "data.steps must be >= 1, got ", o.steps());
  EBM_CHECK_CONFIG(o.edge_prob() >= 0 && o.edge_prob() <= 1, "data.edge_prob must be in [0, 1], got ", o.edge_prob());
  EBM_CHECK_CONFIG(o.spring() >= 0 && std::isfinite(o.spring()), "data.spring must be >= 0, got ", o.spring());
  EBM_CHECK_CONFIG(o.dt() > 0 && std::isfinite(o.dt()), "data.dt must be > 0, got ", o.dt());
  EBM_CHECK_CONFIG(o.substeps() >= 1, "data.substeps must be >= 1, got ", o.substeps());
  EBM_CHECK_CONFIG(o.box() > 0 && std::isfinite(o.box()), "data.box must be > 0, got ", o.box());
  EBM_CHECK_CONFIG(o.velocity_std() >= 0 && std::isfinite(o.velocity_std()), "data.velocity_std must be >= 0, got ",
                   o.velocity_std());
}

void check(const PendulumOptions& o) {
  EBM_CHECK_CONFIG(o.steps() >= 1, "data.steps must be >= 1, got ", o.steps());
  EBM_CHECK_CONFIG(o.gravity() >= 0 && std::isfinite(o.gravity()), "data.gravity must be >= 0, got ", o.gravity());
  EBM_CHECK_CONFIG(o.damping() >= 0 && std::isfinite(o.damping()), "data.damping must be >= 0, got ", o.damping());
  EBM_CHECK_CONFIG(o.dt() > 0 && std::isfinite(o.dt()), "data.dt must be > 0, got ", o.dt());
  EBM_CHECK_CONFIG(o.substeps() >= 1, "data.substeps must be >= 1, got ", o.substeps());
  EBM_CHECK_CONFIG(o.velocity_std() >= 0 && std::isfinite(o.velocity_std()), "data.velocity_std must be >= 0, got ",
                   o.velocity_std());
}

}  // namespace

SpringsRun simulate_springs(int64_t n, const SpringsOptions& o, at::Generator& gen) {
  check(o);
  TORCH_CHECK(n >= 0, "simulate_springs: n must be >= 0, got ", n);
  const int64_t p = o.particles(), t_steps = o.steps(), d = 2 * p;
  const auto f64 = torch::TensorOptions(torch::kDouble);
  // (drawn in this order: positions, velocities, edges)
  auto x0 = (at::rand({n, d}, gen, f64) - 0.5) * o.box();
  auto v0 = at::normal(0.0, 1.0, {n, d}, gen, f64) * o.velocity_std();
  auto u = at::rand({n, p, p}, gen, f64);
  auto upper = torch::ones({p, p}, f64).triu(1).to(torch::kBool);
  auto e_up = torch::where(upper, (u < o.edge_prob()).to(torch::kDouble), torch::zeros({}, f64));
  auto edges = (e_up + e_up.transpose(1, 2)).contiguous();  // [n, P, P]

  SpringsRun run{torch::empty({n, t_steps, p, 2}, f64), torch::empty({n, t_steps, p, 2}, f64), edges};
  x0 = x0.contiguous();
  v0 = v0.contiguous();
  const double h = o.dt() / double(o.substeps()), k = o.spring(), box = o.box();
  const double* xs = x0.data_ptr<double>();
  const double* vs = v0.data_ptr<double>();
  const double* es = edges.data_ptr<double>();
  double* pos = run.positions.data_ptr<double>();
  double* vel = run.velocities.data_ptr<double>();
  std::vector<double> x(d), v(d), a(d);
  for (int64_t r = 0; r < n; ++r) {
    const double* e = es + r * p * p;
    std::copy(xs + r * d, xs + (r + 1) * d, x.begin());
    std::copy(vs + r * d, vs + (r + 1) * d, v.begin());
    spring_accel(x.data(), e, p, k, a.data());
    for (int64_t t = 0; t < t_steps; ++t) {
      if (t > 0) {
        for (int64_t s = 0; s < o.substeps(); ++s) {
          for (int64_t c = 0; c < d; ++c) {
            v[c] += 0.5 * h * a[c];
            x[c] += h * v[c];
            reflect(x[c], v[c], box);
          }
          spring_accel(x.data(), e, p, k, a.data());
          for (int64_t c = 0; c < d; ++c) v[c] += 0.5 * h * a[c];
        }
      }
      std::copy(x.begin(), x.end(), pos + (r * t_steps + t) * d);
      std::copy(v.begin(), v.end(), vel + (r * t_steps + t) * d);
    }
  }
  return run;
}

PendulumRun simulate_pendulum(int64_t n, const PendulumOptions& o, at::Generator& gen) {
  check(o);
  TORCH_CHECK(n >= 0, "simulate_pendulum: n must be >= 0, got ", n);
  const auto f64 = torch::TensorOptions(torch::kDouble);
  auto th0 = ((at::rand({n}, gen, f64) * 2 - 1) * kPi).contiguous();
  auto om0 = (at::normal(0.0, 1.0, {n}, gen, f64) * o.velocity_std()).contiguous();
  const int64_t t_steps = o.steps();
  PendulumRun run{torch::empty({n, t_steps}, f64), torch::empty({n, t_steps}, f64)};
  const double h = o.dt() / double(o.substeps()), g = o.gravity(), c = o.damping();
  double* th = run.theta.data_ptr<double>();
  double* om = run.omega.data_ptr<double>();
  for (int64_t r = 0; r < n; ++r) {
    double x = th0.data_ptr<double>()[r], w = om0.data_ptr<double>()[r];
    for (int64_t t = 0; t < t_steps; ++t) {
      if (t > 0) {
        for (int64_t s = 0; s < o.substeps(); ++s) {
          // kick (damping at the half-step velocity, solved exactly for it), drift, kick
          w = (w - 0.5 * h * g * std::sin(x)) / (1 + 0.5 * h * c);
          x += h * w;
          w = w - 0.5 * h * (g * std::sin(x) + c * w);
        }
      }
      th[r * t_steps + t] = x;
      om[r * t_steps + t] = w;
    }
  }
  return run;
}

torch::Tensor springs_trajectories(int64_t n, const SpringsOptions& options, at::Generator& gen) {
  auto run = simulate_springs(n, options, gen);
  return run.positions.reshape({n, -1}).to(torch::kFloat);
}

torch::Tensor pendulum_trajectories(int64_t n, const PendulumOptions& options, at::Generator& gen) {
  auto run = simulate_pendulum(n, options, gen);
  return torch::stack({run.theta.sin(), -run.theta.cos()}, 2).reshape({n, -1}).to(torch::kFloat);
}

int64_t trajectory_step_dim(const Config& c) {
  if (!c.get_string("data.path").empty()) return c.get_int("data.step_values");
  const std::string& name = c.get_string("data.name");
  if (name == "particles") return 2 * c.get_int("data.particles");
  if (name == "pendulum") return 2;
  return 0;
}

}  // namespace ebm
