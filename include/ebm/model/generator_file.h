// Whether a model file keeps a generator (a run of a learned sampler such as
// VERA): load_generator (model.h) reads it.
#pragma once

#include <string>

namespace ebm {

// True when the model file at `path` stores a generator; throws as
// load_model does for a file that is no model.
bool has_generator(const std::string& path);

}  // namespace ebm
