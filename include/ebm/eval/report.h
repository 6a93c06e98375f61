// The report a training run ends with (DESIGN.md "Data flow of a training
// run"): samples/ pictures and, in 2D, the exact test NLL in eval.json.
#pragma once

#include <string>

#include "ebm/core/config.h"
#include "ebm/data/data.h"
#include "ebm/energy/energy.h"

namespace ebm {

// Writes out/samples/ (2D: density.png, samples.png, samples.csv; images:
// samples.png grid and samples.npy; other shapes: samples.npy) and, for 2D
// data, out/eval.json; the energy must be on the CPU. Returns a summary line.
std::string report_run(EnergyImpl& energy, const Config& cfg, const DataSplit& data, const std::string& out);

}  // namespace ebm
