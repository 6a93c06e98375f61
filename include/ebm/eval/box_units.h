// A 2D box of a user's units in a standardised model's (data.standardize):
// nll2d's quadrature runs there, and the mode check sums the same grid.
#pragma once

#include "ebm/core/affine.h"
#include "ebm/energy/grid2d.h"

namespace ebm {

Box2d box_to_model(const Box2d& b, const AffineMap& units);

}  // namespace ebm
