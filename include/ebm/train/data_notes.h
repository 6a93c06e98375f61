// Notes on training data that train, but train poorly as they are.
#pragma once

#include "ebm/data/data.h"

namespace ebm {

// Vector data standardised by data.standardize whose scale a few far values
// set: a column whose standard deviation is over 10x that of its central
// 98% of training rows (heavy tails, stray outliers, a tiny far cluster)
// has the rest squeezed into a small part of the model's units. One note
// (core/progress.h notes()) naming the worst column; nothing otherwise.
// Float images mapped by their range (data.standardize) likewise, when 99.8%
// of their values span under a tenth of it.
void note_far_values(const DataSplit& split);

}  // namespace ebm
