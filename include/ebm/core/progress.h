// A progress line (step, rate, ETA, and a caller's summary such as the loss)
// on an interactive terminal; silent when stderr is not a TTY (CI logs).
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace ebm {

class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t start = 0);
  // Redraws at most 5 times a second.
  void update(int64_t done, const std::string& extra = "");
  void finish();
  // Units per second since construction.
  double rate(int64_t done) const;
  static bool interactive();

 private:
  std::string label_;
  int64_t total_, start_;
  bool enabled_, drawn_ = false;
  std::chrono::steady_clock::time_point t0_, last_;
};

// Where notes and warnings go (stderr): a data-parallel run's ranks other
// than 0 set them off, so a run says each one once (errors still come from
// every rank, each naming its own failure).
std::ostream& notes();
void set_notes(bool on);

}  // namespace ebm
