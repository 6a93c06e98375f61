// Quadrature of a 2D energy on a grid: log Z = log of the integral of
// exp(-E) over a box, for exact 2D likelihoods (eval/eval.h's nll2d refines
// it to a tolerance; training's validation of 2D models uses one grid).
#pragma once

#include <torch/torch.h>

#include <array>

#include "ebm/energy/energy.h"

namespace ebm {

struct Box2d {
  std::array<double, 2> lo, hi;
};

// Energies on the midpoint grid of `box`, row-major with y varying slowest:
// [n * n] float64 (in the energy's own dtype, chunked, without gradients).
torch::Tensor grid_energy(EnergyImpl& energy, const Box2d& box, int64_t n);

// log Z by the midpoint rule on an n x n grid (log-sum-exp in float64).
double log_z_grid(EnergyImpl& energy, const Box2d& box, int64_t n);

// Box around points: bounding box widened by `margin` times its extent.
Box2d bounding_box(const torch::Tensor& points, double margin);
// The same, less the farthest 0.2% of points on each side of each axis (500
// points or more): one stray row at 1,000 sd stretched a box over which a
// grid never converged. Extents below min_extent count as min_extent.
Box2d trimmed_bounding_box(const torch::Tensor& points, double margin, double min_extent = 1e-3);

}  // namespace ebm
