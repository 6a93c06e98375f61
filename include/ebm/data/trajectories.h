// Simulated dynamical systems for trajectory prediction (data.name =
// particles | pendulum): each sample is one trajectory of T recorded steps,
// flattened step-major, x [N, T * F] with F values per step.
//
// particles: P point masses (unit mass) in the box [-box, box]^2 coupled by
// springs of rest length 0 as in NRI's springs (Kipf et al. 2018, "Neural
// Relational Inference for Interacting Systems", data/synthetic_sim.py):
// a_i = -k sum_j e_ij (x_i - x_j), each pair i < j connected (e_ij = 1)
// independently per trajectory with probability edge_prob (1: all pairs),
// elastic walls (a crossing coordinate is mirrored back, its velocity
// negated). Integrated by velocity Verlet, x' = x + h v + h^2/2 a(x),
// v' = v + h/2 (a(x) + a(x')), with h = dt / substeps, recorded every
// `substeps` inner steps from t = 0. Step layout: (x_1, y_1, ..., x_P, y_P),
// F = 2P. Initial positions uniform in [-box/2, box/2]^2, velocities
// N(0, velocity_std^2) per coordinate.
//
// pendulum: a rigid pendulum of length 1, theta'' = -g sin(theta) -
// damping theta' (damping 0 by default: the frictionless pendulum), by the
// same velocity Verlet (the damping term taken at the half-step velocity);
// each step records the bob's position (sin theta, -cos theta), F = 2.
// theta_0 uniform in [-pi, pi), theta'_0 ~ N(0, velocity_std^2) (swinging
// and rotating trajectories both occur).
//
// Every draw comes from the caller's generator (initial states and edges,
// drawn as tensors in a fixed order); the integration is deterministic
// float64 arithmetic.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "ebm/core/config.h"

namespace ebm {

struct SpringsOptions {
  TORCH_ARG(int64_t, particles) = 3;       // P >= 1
  TORCH_ARG(int64_t, steps) = 20;          // T >= 1 recorded steps
  TORCH_ARG(double, edge_prob) = 0.5;      // chance each pair is connected, in [0, 1] (NRI's 0.5)
  TORCH_ARG(double, spring) = 1.0;         // k >= 0
  TORCH_ARG(double, dt) = 0.1;             // time between recorded steps, > 0
  TORCH_ARG(int64_t, substeps) = 10;       // Verlet steps per recorded step, >= 1
  TORCH_ARG(double, box) = 1.0;            // walls at +-box, > 0
  TORCH_ARG(double, velocity_std) = 0.5;   // initial velocity std per coordinate, >= 0
};

struct PendulumOptions {
  TORCH_ARG(int64_t, steps) = 20;          // T >= 1 recorded steps
  TORCH_ARG(double, gravity) = 9.81;       // g / L >= 0 (small-swing period 2 pi / sqrt(g))
  TORCH_ARG(double, damping) = 0.0;        // >= 0; 0 = frictionless
  TORCH_ARG(double, dt) = 0.1;             // time between recorded steps, > 0
  TORCH_ARG(int64_t, substeps) = 10;       // Verlet steps per recorded step, >= 1
  TORCH_ARG(double, velocity_std) = 2.0;   // initial angular velocity std, >= 0
};

// The full state along n trajectories, float64.
struct SpringsRun {
  torch::Tensor positions;   // [n, T, P, 2]
  torch::Tensor velocities;  // [n, T, P, 2]
  torch::Tensor edges;       // [n, P, P], symmetric 0/1, zero diagonal
};
SpringsRun simulate_springs(int64_t n, const SpringsOptions& options, at::Generator& gen);

struct PendulumRun {
  torch::Tensor theta, omega;  // [n, T] angle (unwrapped) and angular velocity
};
PendulumRun simulate_pendulum(int64_t n, const PendulumOptions& options, at::Generator& gen);

// The data sets: float32 [n, T * F], step-major.
torch::Tensor springs_trajectories(int64_t n, const SpringsOptions& options, at::Generator& gen);
torch::Tensor pendulum_trajectories(int64_t n, const PendulumOptions& options, at::Generator& gen);

// Values per recorded step F of a run's trajectory data set (2 * data.particles
// for particles, 2 for pendulum, data.step_values for data.path), from its
// [data] table; 0 when the data are not trajectories.
int64_t trajectory_step_dim(const Config& data_cfg);

}  // namespace ebm
