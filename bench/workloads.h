// The speed workloads of shared/BENCHMARKS.md. Benchmarks measure; they are
// never tests.
#pragma once

#include <string>
#include <vector>

namespace ebm::bench {

struct Result {
  std::string workload, unit;
  double rate = 0, seconds = 0;
  int threads = 1;
  std::string json() const;
};

const std::vector<std::string>& workload_names();
// Warm-up (>= 5 iterations, untimed), then iterations until `seconds` pass.
Result run_workload(const std::string& name, double seconds, int threads, uint64_t seed);

}  // namespace ebm::bench
