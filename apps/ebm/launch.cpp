// `--nproc N`: the command line run again as N local ranks of one
// data-parallel run, with torchrun's environment (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT on a free loopback
// port). The launcher waits for them; when one fails, the others are given a
// grace period to stop on their own (they name the lost rank) and are then
// killed, so the launcher never hangs.
//
// The ranks' stderr comes through the launcher, line by line: rank 0's as it
// is written (its progress line included: rank 0 is told when the launcher's
// stderr is a terminal), another rank's line only when rank 0 has not written
// the same line within a short while (a bad config or data file is one error,
// not one per rank, and lines of two ranks never run into each other).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <set>
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

void write_all(const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= size_t(w);
  }
}

// The ranks' stderr pipes, merged as the header says.
class StderrMerge {
 public:
  explicit StderrMerge(int64_t nproc) : fds_(nproc, -1), partial_(nproc) {}
  // (the pipe's write end, for rank r's stderr; -1 when no pipe could be made)
  int open_pipe(int64_t r) {
    int p[2];
    if (::pipe(p) != 0) return -1;
    ::fcntl(p[0], F_SETFD, FD_CLOEXEC);
    fds_[r] = p[0];
    return p[1];
  }
  bool open() const {
    for (int fd : fds_)
      if (fd >= 0) return true;
    return false;
  }
  // Reads what the ranks wrote within timeout_ms; at_end: flush every held line.
  void pump(int timeout_ms) {
    std::vector<pollfd> pf;
    std::vector<int64_t> who;
    for (size_t r = 0; r < fds_.size(); ++r)
      if (fds_[r] >= 0) {
        pf.push_back({fds_[r], POLLIN, 0});
        who.push_back(int64_t(r));
      }
    if (!pf.empty() && ::poll(pf.data(), pf.size(), timeout_ms) > 0) {
      char buf[4096];
      for (size_t i = 0; i < pf.size(); ++i) {
        if ((pf[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::read(pf[i].fd, buf, sizeof(buf));
        if (n > 0) {
          take(who[i], buf, size_t(n));
        } else if (n == 0 || errno != EINTR) {
          ::close(pf[i].fd);
          fds_[who[i]] = -1;
          if (!partial_[who[i]].empty()) take(who[i], "\n", 1);
        }
      }
    } else if (pf.empty() && timeout_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
    }
    release(false);
  }
  void finish() {
    while (open()) pump(100);
    release(true);
  }

 private:
  struct Held {
    std::string line;
    std::chrono::steady_clock::time_point at;
  };
  // (what a line says: after a progress line's text where a message followed
  // it without a newline, "\033[Ktrain 10/100 ...ebm: X" then being "ebm: X";
  // take() keeps a line from its last carriage return)
  static std::string last_segment(const std::string& line) {
    std::string seg = line;
    if (seg.rfind("\033[K", 0) == 0)
      if (const size_t at = seg.find("ebm"); at != std::string::npos && at > 0) seg = seg.substr(at);
    return seg;
  }
  void take(int64_t r, const char* p, size_t n) {
    if (r == 0) write_all(p, n);
    std::string& part = partial_[r];
    for (size_t i = 0; i < n; ++i) {
      // (a progress line redrawn after each carriage return: only its last
      // drawing is kept, not hours of them)
      if (p[i] == '\r') {
        part.clear();
        continue;
      }
      if (p[i] != '\n') {
        part.push_back(p[i]);
        continue;
      }
      std::string line = last_segment(part);
      part.clear();
      if (r == 0) {
        seen_.insert(line);
        for (auto it = held_.begin(); it != held_.end();) it = it->line == line ? held_.erase(it) : it + 1;
      } else if (seen_.count(line) == 0) {
        held_.push_back({std::move(line), std::chrono::steady_clock::now()});
      }
    }
  }
  // Another rank's lines rank 0 did not also write within 2 s (all at the end).
  void release(bool all) {
    const auto now = std::chrono::steady_clock::now();
    while (!held_.empty() && (all || now - held_.front().at > std::chrono::seconds(2))) {
      std::string line = held_.front().line;
      held_.pop_front();
      if (seen_.count(line) != 0) continue;
      seen_.insert(line);
      line.push_back('\n');
      // (on a line of its own, not after rank 0's unfinished progress line)
      if (!partial_[0].empty()) line.insert(line.begin(), '\n');
      write_all(line.data(), line.size());
    }
  }
  std::vector<int> fds_;
  std::vector<std::string> partial_;
  std::set<std::string> seen_;
  std::deque<Held> held_;
};
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
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  std::vector<std::vector<std::string>> envs(nproc);
  std::vector<std::vector<char*>> envps(nproc);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(const_cast<char*>(a.c_str()));
  cargs.push_back(nullptr);
  const char* skip[] = {"RANK=",        "LOCAL_RANK=",  "WORLD_SIZE=",    "LOCAL_WORLD_SIZE=",
                        "MASTER_ADDR=", "MASTER_PORT=", "EBM_STDERR_TTY="};
  for (int64_t r = 0; r < nproc; ++r) {
    envs[r] = {"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r), "WORLD_SIZE=" + std::to_string(nproc),
               "LOCAL_WORLD_SIZE=" + std::to_string(nproc), "MASTER_ADDR=127.0.0.1",
               "MASTER_PORT=" + std::to_string(port)};
    if (r == 0 && tty) envs[r].emplace_back("EBM_STDERR_TTY=1");
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
  StderrMerge merge(nproc);
  for (int64_t r = 0; r < nproc; ++r) {
    const int err_fd = merge.open_pipe(r);
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
      if (err_fd >= 0 && ::dup2(err_fd, STDERR_FILENO) >= 0) ::close(err_fd);
      ::execve("/proc/self/exe", cargs.data(), envps[r].data());
      static const char msg[] = "ebm: --nproc: cannot start a rank (execve failed)\n";
      [[maybe_unused]] auto w = ::write(2, msg, sizeof(msg) - 1);
      ::_exit(int(ExitCode::kInternal));
    }
    pids[r] = pid;
    if (err_fd >= 0) ::close(err_fd);
  }
  // Interrupts and terminations sent to the launcher alone reach the ranks.
  g_children = &pids;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, forward_signal);
  int64_t running = nproc, failed = -1;
  int code = 0;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid == 0) {  // (after a rank failed, the others have until the deadline)
      if (failed >= 0 && std::chrono::steady_clock::now() > deadline) {
        for (int64_t r = 0; r < nproc; ++r)
          if (pids[r] > 0) {
            std::cerr << "ebm: rank " << r << " did not stop within " << grace_s << " s of rank " << failed
                      << "'s failure; killing it\n";
            ::kill(pids[r], SIGKILL);
          }
        deadline = std::chrono::steady_clock::time_point::max();
      }
      merge.pump(50);
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
  merge.finish();
  g_children = nullptr;
  return code;
}

}  // namespace ebm::cli
