// Evaluation: exact log-likelihood in 2D by quadrature, and pictures.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <array>
#include <string>

#include "ebm/energy/energy.h"
#include "ebm/energy/grid2d.h"

namespace ebm {

struct Nll2dResult {
  double log_z;        // converged quadrature value
  double log_z_error;  // |last change| under refinement / enlargement
  double mean_nll;     // mean over test points of E(x) + log Z
  double nll_se;       // standard error of the mean NLL (sampling only)
  int64_t grid;        // final grid points per axis
  Box2d box;           // final box
  bool converged;
};

// Refines the grid (x2 points) and enlarges the box (x1.5 about its centre,
// same cell size) until both change log Z by less than `tol`, starting from
// the data's bounding box widened by half its extent.
Nll2dResult nll2d(EnergyImpl& energy, const torch::Tensor& test, double tol = 1e-3,
                  int64_t max_grid = 4096);


// k-means (k-means++ seeding from `gen`, Lloyd's iterations): [k, D] centres.
torch::Tensor kmeans(const torch::Tensor& points, int64_t k, at::Generator& gen, int64_t iterations = 100);

// The model's mass in each Voronoi cell of the data's k-means centres against
// the data's fraction there (src/eval/modes.cpp), 2D models (exact quadrature).
struct ModeMassResult {
  torch::Tensor centers;        // [K, 2]
  torch::Tensor data_fraction;  // [K]
  torch::Tensor data_se;        // [K] binomial standard error of the fraction
  torch::Tensor model_mass;     // [K], summing to 1 up to the quadrature's error
  torch::Tensor flagged;        // [K] bool: |mass - fraction| > z se and > min_diff
  double kl = 0;                // sum_k f_k log(f_k / m_k)
  double log_z_error = 0;
  bool ok = true;               // no cell flagged
  std::string table() const;    // one line per cell
};
ModeMassResult mode_masses(EnergyImpl& energy, const torch::Tensor& data, int64_t clusters, double z,
                           double min_diff, at::Generator& gen, double tol = 1e-3);
// The same on the converged grid of an nll2d of `data` already computed.
ModeMassResult mode_masses(EnergyImpl& energy, const torch::Tensor& data, const Nll2dResult& quadrature,
                           int64_t clusters, double z, double min_diff, at::Generator& gen);
// {"ok", "kl_cells", "cells": [{"center", "data_fraction", "data_se", "model_mass", "flagged"}]}
nlohmann::json mode_masses_json(const ModeMassResult& r);

// exp(-E) normalised on the box as a heat map (RGB PNG, px x px).
void density_png(const std::string& path, EnergyImpl& energy, const Box2d& box, int64_t px = 256);
// A 2D classifier's decision regions (RGB PNG, px x px): each pixel the
// p(y | x)-weighted mix of the classes' light colours, black where the
// argmax changes (the decision boundary), with up to 2000 labelled points
// (`points` [N, 2], `labels` [N], may be undefined) as dots of their class's
// dark colour. kBadData for a model that is not class-conditional.
void decision_png(const std::string& path, EnergyImpl& energy, const Box2d& box, const torch::Tensor& points,
                  const torch::Tensor& labels, int64_t px = 256);
// Data (grey) with samples (red) over it (RGB PNG).
void scatter_png(const std::string& path, const torch::Tensor& samples, const torch::Tensor& data,
                 const Box2d& box, int64_t px = 512);

}  // namespace ebm
