// Whether a vector energy falls without bound away from its data: then
// exp(-E) has no normaliser (log Z is infinite) and rows far from the data
// score as more typical than the data. A classifier trained by cross entropy
// alone, E(x) = -logsumexp f(x), is one: along a ray a probe's fell from -42
// at the data's centre to -257 at 1,000 spreads, and AIS printed log Z 224,894.
#pragma once

#include <string>

#include <torch/torch.h>

#include "ebm/energy/energy.h"

namespace ebm {

struct FarEnergy {
  bool unbounded = false;  // along some ray E fell at 10, 100 and 1,000 radii, below every row's
  double rows_min = 0;     // the lowest energy of the rows
  double at[3] = {0, 0, 0};  // E along that ray (the lowest at 1,000 radii) at 10, 100, 1,000 radii
  std::string describe() const;  // "E falls from ... to ... along a ray ..."
};

// `rows` [N, D] in the energy's units (up to 256 used); the rays run from
// their mean through up to 32 of them, the radius their RMS distance from it.
FarEnergy far_energy(EnergyImpl& energy, const torch::Tensor& rows);

}  // namespace ebm
