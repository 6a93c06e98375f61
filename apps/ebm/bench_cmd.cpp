// ebm bench [--workload NAME | --all] [--threads N] [--seconds S]
#include <iostream>

#include "commands.h"
#include "ebm/core/error.h"
#include "workloads.h"

namespace ebm::cli {

Runner add_bench(CLI::App& app) {
  struct Args {
    Common common;
    std::vector<std::string> workloads;
    bool all = false, list = false;
    double seconds = 2.0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "speed workloads of BENCHMARKS.md, one JSON line each");
  auto* wl = cmd->add_option("--workload", a->workloads, "workload name (repeatable)");
  cmd->add_flag("--all", a->all, "every workload")->excludes(wl);
  cmd->add_flag("--list", a->list, "list workload names");
  cmd->add_option("--seconds", a->seconds, "timed window per workload")->capture_default_str();
  add_common(cmd, a->common);
  return [a]() -> int {
    if (a->list) {
      for (const auto& n : bench::workload_names()) std::cout << n << "\n";
      return 0;
    }
    apply_common(a->common);
    EBM_CHECK_USAGE(a->seconds > 0 && a->seconds <= 86400, "--seconds must be in (0, 86400], got ",
                    a->seconds);
    auto names = a->all ? bench::workload_names() : a->workloads;
    EBM_CHECK_USAGE(!names.empty(), "bench: give --workload NAME or --all");
    for (const auto& n : names)
      std::cout << bench::run_workload(n, a->seconds, a->common.threads, a->common.seed).json()
                << std::endl;
    return 0;
  };
}

}  // namespace ebm::cli
