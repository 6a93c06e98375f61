// Draws against data over the Voronoi cells of the data's k-means centres,
// in any dimension: a sampler's (or a generator's) share of each cell beside
// the data's. A learned sampler's generator can drop a small mode that its
// energy keeps (a 70/20/10 mixture: VERA's generator drew 0.997 / 0.003 / 0
// where its energy held the modes' masses within 0.03), and its draws look
// fine one by one; this says so.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>
#include <torch/torch.h>

namespace ebm {

struct CellShares {
  torch::Tensor centers;        // [K, D] in the data's units
  torch::Tensor data_fraction;  // [K]
  torch::Tensor draw_fraction;  // [K]
  torch::Tensor flagged;        // [K] bool
  int64_t flagged_count() const;
  // The flagged cells, the largest differences first, at most `max` of
  // them: "0.997 of the draws where the data have 0.690; ..."
  std::string worst(int max = 3) const;
};

// The cells are k-means' (`clusters` centres, fewer when the data have under
// 10 rows a cluster; at most 20,000 evenly spaced rows are clustered) in the
// data's standardised columns, so columns in any units weigh alike; draws
// and data [N, D] in the same units. A cell is flagged where the draws hold
// under 1/ratio or over ratio times the data's fraction there, by more than
// min_diff and by more than z standard errors of the difference (binomial,
// both sides): a dropped or doubled mode, not a cell 20% off. Under 2 cells'
// worth of data: no cells.
CellShares cell_shares(const torch::Tensor& draws, const torch::Tensor& data, int64_t clusters, double z,
                       double min_diff, double ratio, at::Generator& gen);

// {"flagged": n, "cells": [{"center", "data_fraction", "draw_fraction", "flagged"}]}
nlohmann::json cell_shares_json(const CellShares& s);

}  // namespace ebm
