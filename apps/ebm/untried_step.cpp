#include "untried_step.h"

#include <algorithm>
#include <sstream>

#include "ebm/eval/images.h"
#include "ebm/sampling/sampling.h"

namespace ebm::cli {

UntriedStep untried_step(const ModelInfo& info, int64_t steps) {
  UntriedStep u;
  const auto trained = model_sampler(info, "");
  const auto* langevin = dynamic_cast<const LangevinSampler*>(trained.get());
  u.step = langevin ? langevin->options().step_size() : trained->step_size();
  if (!(u.step > 0)) return UntriedStep();
  std::ostringstream os;
  os << u.step;
  if (trained->target_accept() == 0) u.spec = "mala:step=" + os.str();
  u.sampler = u.spec.empty() ? trained->name() : std::string("MALA");
  u.warmup = std::clamp<int64_t>(steps, 100, 500);
  return u;
}

}  // namespace ebm::cli
