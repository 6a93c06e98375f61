#include "ebm/core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <iostream>
#include <streambuf>

namespace ebm {

namespace {
struct NullBuf : std::streambuf {
  int overflow(int c) override { return traits_type::not_eof(c); }
};
bool notes_on = true;
}  // namespace

std::ostream& notes() {
  static NullBuf buf;
  static std::ostream quiet(&buf);
  return notes_on ? std::cerr : quiet;
}

void set_notes(bool on) { notes_on = on; }

// (rank 0 of `--nproc N` writes through its launcher, which says when its own
// stderr is a terminal)
bool Progress::interactive() {
  if (isatty(STDERR_FILENO) == 1) return true;
  const char* via = std::getenv("EBM_STDERR_TTY");
  return via != nullptr && std::string(via) == "1";
}

Progress::Progress(std::string label, int64_t total, int64_t start)
    : label_(std::move(label)), total_(total), start_(start), enabled_(interactive()) {
  t0_ = last_ = std::chrono::steady_clock::now();
}

double Progress::rate(int64_t done) const {
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  return s > 0 ? double(done - start_) / s : 0.0;
}

void Progress::update(int64_t done, const std::string& extra) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && std::chrono::duration<double>(now - last_).count() < 0.2) return;
  last_ = now;
  double r = rate(done);
  long eta = r > 0 ? long((total_ - done) / r) : 0;
  std::fprintf(stderr, "\r\033[K%s %lld/%lld  %s  %.1f/s  ETA %ld:%02ld", label_.c_str(),
               (long long)done, (long long)total_, extra.c_str(), r, eta / 60, eta % 60);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (enabled_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace ebm
