// Network helpers shared by the test executables.
#pragma once

#include <torch/torch.h>

#include "ebm/energy/energy.h"

namespace ebm::test_helpers {

// A float64 copy of a float MLP in eval mode (no power-iteration update
// between evaluations), for checking float paths against; net is put in eval
// mode too.
inline MLPEnergy float64_copy(MLPEnergy& net) {
  MLPEnergy ref(net->options());
  net->eval();
  ref->eval();
  ref->to(torch::kDouble);
  torch::NoGradGuard ng;
  auto dst = ref->named_parameters();
  for (const auto& kv : net->named_parameters()) dst[kv.key()].copy_(kv.value());
  auto dst_b = ref->named_buffers();
  for (const auto& kv : net->named_buffers()) dst_b[kv.key()].copy_(kv.value());
  return ref;
}

}  // namespace ebm::test_helpers
