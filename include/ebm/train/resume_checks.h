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

}  // namespace ebm
