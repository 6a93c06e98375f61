// ebm: command-line front end (DESIGN.md "CLI contract"). Errors are one line
// on stderr with the documented exit code.
#include <iomanip>
#include <iostream>
#include <new>
#include <optional>
#include <sstream>
#include <map>
#include <utility>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "commands.h"
#include "ebm/core/device.h"
#include "ebm/core/error.h"

namespace ebm::cli {

void add_common(CLI::App* cmd, Common& c) {
  cmd->add_option("--seed", c.seed, "random seed (default 0, or the config's)")
      ->each([&c](const std::string&) { c.seed_set = true; });
  cmd->add_option("--threads", c.threads, "LibTorch intra-op threads")->capture_default_str();
  cmd->add_option("--device", c.device, "cpu, cuda or cuda:N (CUDA needs a CUDA LibTorch build)")
      ->capture_default_str();
}

c10::Device apply_common(const Common& c) {
  // (each thread of LibTorch's pool costs start-up time: thousands take minutes)
  EBM_CHECK_USAGE(c.threads >= 1 && c.threads <= 1024, "--threads must be in 1 .. 1024, got ",
                  c.threads);
  torch::set_num_threads(c.threads);
  return parse_device(c.device);
}

}  // namespace ebm::cli

namespace {
// Training and sampling allocate and free the same few 0.1-10 MB activation
// tensors every step. glibc serves those from fresh mmap()s or returns them to
// the kernel on free, so every step pays page faults and page clearing
// (measured: ~15% of a DSM step). Keep freed memory in the heap instead.
// (32 MiB: the largest mmap threshold mallopt(3) documents for 64-bit systems.)
// Larger blocks would still be mmap()ed whatever the threshold, and a free
// heap top over M_TRIM_THRESHOLD goes back to the kernel: the 50 MB
// activations of 1,000 chains of an image energy (eval --task fid, ood)
// faulted fresh pages in every step. Measured (ResNet energy, 1,000 chains,
// 30 steps, 2 threads): 35.0 s with 23.9 s in the kernel before, 11.5 s with
// 2.1 s after M_MMAP_MAX = 0 (every block from the heap) and a 2 GiB trim
// threshold (a run's peak heap is kept until it exits).
void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 2047 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
#endif
}

// An allocation that failed (the CPU allocator's "can't allocate memory",
// CUDA's "out of memory", std::bad_alloc): what the user asked for does not
// fit, which is no internal error. One line saying so and how much was
// wanted when the message says ("tried to allocate N bytes" or "N GiB").
std::optional<std::string> out_of_memory(const std::string& what) {
  if (what.find("can't allocate memory") == std::string::npos && what.find("out of memory") == std::string::npos &&
      what.find("bad_alloc") == std::string::npos && what.find("size calculation overflowed") == std::string::npos)
    return std::nullopt;
  std::ostringstream o;
  o << "out of memory";
  // (a size beyond any memory: its byte count overflows 64 bits)
  if (what.find("size calculation overflowed") != std::string::npos) o << ": an allocation's size overflows 64 bits";
  const auto at = what.find("tried to allocate ");
  if (at != std::string::npos) {
    std::istringstream in(what.substr(at + 18));
    double amount = 0;
    std::string unit;
    if (in >> amount >> unit) {
      if (unit.rfind("bytes", 0) == 0) amount /= double(1 << 30), unit = "GiB";
      o << ": one allocation of " << std::fixed << std::setprecision(1) << amount << " " << unit.substr(0, 3) << " failed";
    }
  }
  o << "; ask for less (fewer samples or chains with --n, a smaller train.batch_size, fewer rows)";
  return o.str();
}

std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}
}  // namespace

int main(int argc, char** argv) {
  using namespace ebm;
  keep_freed_memory();
  cli::remember_argv(argc, argv);
  CLI::App app{"ebm: energy-based models on LibTorch"};
  app.require_subcommand(1);
  std::map<CLI::App*, cli::Runner> runners;
  try {
    // (each adder registers its subcommand and returns what runs it)
    const std::vector<std::pair<const char*, cli::Runner (*)(CLI::App&)>> commands = {
        {"train", cli::add_train},       {"sample", cli::add_sample},   {"energy", cli::add_energy},
        {"eval", cli::add_eval},         {"classify", cli::add_classify}, {"bench", cli::add_bench},
        {"inpaint", cli::add_inpaint},   {"denoise", cli::add_denoise}, {"predict", cli::add_predict}};
    for (const auto& [name, add] : commands) {
      cli::Runner r = add(app);
      runners[app.get_subcommand(name)] = r;
    }
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    // A first word that is no command and no option: name it.
    std::string known;
    bool is_command = false;
    for (const auto& [sub, run] : runners) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      is_command = is_command || (argc > 1 && sub->get_name() == argv[1]);
    }
    if (argc > 1 && argv[1][0] != '-' && !is_command) {
      std::cerr << "ebm: unknown command '" << argv[1] << "' (commands: " << known
                << "; see ebm --help)\n";
      return int(ExitCode::kUsage);
    }
    std::cerr << "ebm: " << e.what() << " (see ebm --help)\n";
    return int(ExitCode::kUsage);
  }
  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub)();
    return int(ExitCode::kUsage);
  } catch (const Error& e) {
    std::cerr << "ebm: " << first_line(e.what()) << "\n";
    return int(e.code());
  } catch (const c10::Error& e) {
    const auto oom = out_of_memory(e.what_without_backtrace());
    std::cerr << "ebm: " << (oom ? *oom : "internal error: " + first_line(e.what_without_backtrace())) << "\n";
    return int(ExitCode::kInternal);
  } catch (const std::bad_alloc&) {
    std::cerr << "ebm: " << *out_of_memory("bad_alloc") << "\n";
    return int(ExitCode::kInternal);
  } catch (const std::exception& e) {
    std::cerr << "ebm: internal error: " << first_line(e.what()) << "\n";
    return int(ExitCode::kInternal);
  }
}
