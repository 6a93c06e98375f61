// The exact-resume pattern of the training tests: one run straight through,
// one stopped after a step and resumed from its checkpoint.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "ebm/train/train.h"

namespace ebm::test_helpers {

// Trains `c` in root/full without a stop and in root/split up to `stop`
// steps, then resumes root/split to the end; `check` compares the two.
inline void run_and_resume(const Config& c, const std::string& root, int64_t stop,
                           const std::function<void(Trainer& full, Trainer& resumed)>& check) {
  Trainer full(c, root + "/full");
  full.run(false);
  {
    Trainer a(c, root + "/split");
    a.on_step([stop](int64_t step, const std::map<std::string, double>&) { return step == stop; });
    a.run(false);
  }
  Trainer b(c, root + "/split");
  b.run(true);
  check(full, b);
}

}  // namespace ebm::test_helpers
