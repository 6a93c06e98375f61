// `--nproc N`: the command line run again as N local ranks of one
// data-parallel run, with torchrun's environment (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT on a free loopback
// port). The launcher waits for them; when one fails, the others are given a
// grace period to stop on their own (they name the lost rank) and are then
// killed, so the launcher never hangs.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "ebm/core/error.h"

extern char** environ;

namespace ebm::cli {
namespace {
std::vector<std::string> g_argv;

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EBM_CHECK_CODE(fd >= 0, ExitCode::kInternal, "--nproc: cannot open a socket to find a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  EBM_CHECK_CODE(ok, ExitCode::kInternal, "--nproc: no free loopback port");
  return ntohs(a.sin_port);
}

std::vector<pid_t>* g_children = nullptr;

void forward_signal(int sig) {
  if (g_children == nullptr) return;
  for (pid_t p : *g_children)
    if (p > 0) ::kill(p, sig);
}
}  // namespace

void remember_argv(int argc, char** argv) { g_argv.assign(argv, argv + argc); }

int launch_local(int64_t nproc, double grace_s) {
  // This command line without --nproc.
  std::vector<std::string> args;
  for (size_t i = 0; i < g_argv.size(); ++i) {
    if (g_argv[i] == "--nproc") {
      ++i;
      continue;
    }
    if (g_argv[i].rfind("--nproc=", 0) == 0) continue;
    args.push_back(g_argv[i]);
  }
  const int port = free_port();
  // Everything the children need, built before forking (a child only calls
  // async-signal-safe functions before execve).
  std::vector<std::vector<std::string>> envs(nproc);
  std::vector<std::vector<char*>> envps(nproc);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(const_cast<char*>(a.c_str()));
  cargs.push_back(nullptr);
  const char* skip[] = {"RANK=", "LOCAL_RANK=", "WORLD_SIZE=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT="};
  for (int64_t r = 0; r < nproc; ++r) {
    envs[r] = {"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r), "WORLD_SIZE=" + std::to_string(nproc),
               "LOCAL_WORLD_SIZE=" + std::to_string(nproc), "MASTER_ADDR=127.0.0.1",
               "MASTER_PORT=" + std::to_string(port)};
    for (char** e = environ; *e != nullptr; ++e) {
      bool ours = false;
      for (const char* k : skip) ours = ours || std::strncmp(*e, k, std::strlen(k)) == 0;
      if (!ours) envs[r].emplace_back(*e);
    }
    for (auto& e : envs[r]) envps[r].push_back(const_cast<char*>(e.c_str()));
    envps[r].push_back(nullptr);
  }
  // (children reaped by waitpid below, whatever the parent was given)
  ::signal(SIGCHLD, SIG_DFL);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = ::getpid();
  std::vector<pid_t> pids(nproc, -1);
  for (int64_t r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int err = errno;
      for (int64_t q = 0; q < r; ++q) {
        ::kill(pids[q], SIGKILL);
        ::waitpid(pids[q], nullptr, 0);
      }
      fail(ExitCode::kInternal, "--nproc: cannot start rank ", r, ": ", std::strerror(err));
    }
    if (pid == 0) {
      // (a rank dies with its launcher, never orphaned)
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(int(ExitCode::kInternal));
      // (a launcher started from a script in the background ignores SIGINT,
      // and its ranks inherited that: a forwarded Ctrl-C never reached them)
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::execve("/proc/self/exe", cargs.data(), envps[r].data());
      static const char msg[] = "ebm: --nproc: cannot start a rank (execve failed)\n";
      [[maybe_unused]] auto w = ::write(2, msg, sizeof(msg) - 1);
      ::_exit(int(ExitCode::kInternal));
    }
    pids[r] = pid;
  }
  // Interrupts and terminations sent to the launcher alone reach the ranks.
  g_children = &pids;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, forward_signal);
  int64_t running = nproc, failed = -1;
  int code = 0;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, failed >= 0 ? WNOHANG : 0);
    if (pid == 0) {  // (a rank failed: the others have until the deadline)
      if (std::chrono::steady_clock::now() > deadline) {
        for (int64_t r = 0; r < nproc; ++r)
          if (pids[r] > 0) {
            std::cerr << "ebm: rank " << r << " did not stop within " << grace_s << " s of rank " << failed
                      << "'s failure; killing it\n";
            ::kill(pids[r], SIGKILL);
          }
        deadline = std::chrono::steady_clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int64_t r = 0;
    while (r < nproc && pids[r] != pid) ++r;
    if (r == nproc) continue;
    pids[r] = -1;
    --running;
    const bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok && failed < 0) {
      failed = r;
      if (WIFSIGNALED(st)) {
        std::cerr << "ebm: rank " << r << " was killed by signal " << WTERMSIG(st) << " (" << strsignal(WTERMSIG(st))
                  << "); stopping the other ranks\n";
        code = int(ExitCode::kInternal);
      } else {
        code = WEXITSTATUS(st);
      }
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(grace_s * 1000));
    }
  }
  g_children = nullptr;
  return code;
}

}  // namespace ebm::cli
