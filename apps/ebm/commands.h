// The `ebm` subcommands: each file registers one on the CLI11 app and runs it.
// No algorithms here: they live in the library.
#pragma once

#include <CLI/CLI.hpp>
#include <c10/core/Device.h>

#include <functional>
#include <string>

namespace ebm::cli {

// Options every subcommand shares.
struct Common {
  int64_t seed = 0;
  bool seed_set = false;
  int threads = 1;
  std::string device = "cpu";
};
void add_common(CLI::App* cmd, Common& common);
// Applies --threads and returns the --device to run on; throws kUsage on a
// bad value or a device this build or machine lacks.
c10::Device apply_common(const Common& common);

// `--nproc N` (launch.cpp): main remembers the command line; launch_local
// runs it again as N local ranks of one data-parallel run and returns the
// first failing rank's exit code (0 when all succeed), killing ranks that
// outlive a failure by grace_s seconds.
void remember_argv(int argc, char** argv);
int launch_local(int64_t nproc, double grace_s);

using Runner = std::function<int()>;
Runner add_train(CLI::App& app);
Runner add_sample(CLI::App& app);
Runner add_energy(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_classify(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_inpaint(CLI::App& app);
Runner add_denoise(CLI::App& app);
Runner add_predict(CLI::App& app);

}  // namespace ebm::cli
