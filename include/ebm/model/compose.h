// Several model files composed into one energy (energy/compose.h), each
// taken at its own label when it is class-conditional: what
// `ebm sample --model a.pt --label 3 --model b.pt --label 5 --compose and`
// samples.
#pragma once

#include <string>
#include <vector>

#include "ebm/core/affine.h"
#include "ebm/energy/energy.h"
#include "ebm/model/model.h"

namespace ebm {

struct ModelTerm {
  std::string path;
  // A class index, or a class's name as the model keeps it (a sub-folder's
  // name, "Trouser"); empty or "-1": none (the model's marginal energy).
  std::string label = "";
};

struct ComposedModel {
  Energy energy;   // the composition, to be sampled in `units`' model space
  AffineMap units; // model space -> user units (identity unless every term shares one map)
  ModelInfo info;  // the first term's (pixel map, training sampler)
  // Each term's own info and change of units (its model space -> user units).
  std::vector<ModelInfo> term_info;
  std::vector<AffineMap> term_units;
};

// Loads every term. Throws kUsage on a label given to an unconditional model,
// outside a model's classes or naming none of them, terms of different event
// shapes, or image models of different pixel ranges; kMissingInput /
// kBadData as load_model.
// Terms trained in one standardised space are composed there; otherwise in
// the user's units (each term's density there). One term and no op: the
// model itself (at its label).
ComposedModel load_composed(const std::vector<ModelTerm>& terms, const std::string& op,
                            const std::vector<double>& weights);

}  // namespace ebm
