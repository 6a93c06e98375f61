#include "ebm/core/error.h"
#include "ebm/objectives/objective.h"

#include <limits>

namespace ebm {

Output CrossEntropy::compute(EnergyImpl& energy, const Batch& batch, at::Generator&) {
  EBM_CHECK_CONFIG(energy.num_classes() > 0,
                   "objective.name = \"ce\" trains a classifier: set energy.conditional = true");
  auto y = checked_labels(energy, batch);
  auto logits = -energy.class_energies(batch.x);  // [B, K]
  y = y.to(logits.device());
  if (batch_classes_) {
    // (classes absent from the batch get -inf logits: no share of p(y | x))
    auto present = torch::zeros({logits.size(1)}, y.options().dtype(torch::kBool));
    present.index_fill_(0, y, true);
    logits = logits.masked_fill(present.logical_not().unsqueeze(0), -std::numeric_limits<float>::infinity());
  }
  Output out;
  out.loss = torch::nn::functional::cross_entropy(logits, y);
  out.metrics["accuracy"] = (logits.detach().argmax(1) == y).to(torch::kDouble).mean().item<double>();
  return out;
}

}  // namespace ebm
