// What a --resume checks against the run it continues (the run's
// config.toml in `out`): the same energy (exit 78 naming the first setting
// that differs), float images in the same units, the same [data] section
// (another file or other classes are another run: exit 78); other changed
// settings (optimiser, sampler, objective) go on with a note.
#pragma once

#include <string>

#include "ebm/core/config.h"
#include "ebm/data/data.h"

namespace ebm {

void check_resume_matches(const Config& cfg, const DataSplit& data, const std::string& out);

// Whether `out` holds a run (its checkpoint.pt): a new run there needs
// --force (or resume = true), else it would mix with the old one's files.
bool holds_run(const std::string& out);
// --force: the old run's outputs go before the new run writes its own, so
// that no sample grid, checkpoint or report of the old run is left beside
// the new run's (a grid of step 5,000 next to a new run of 1,000 steps).
// Only the files a run writes; anything else the user put there stays.
void remove_old_run(const std::string& out);

}  // namespace ebm
