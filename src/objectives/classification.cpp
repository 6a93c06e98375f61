#include "ebm/core/error.h"
#include "ebm/objectives/objective.h"

namespace ebm {

Output CrossEntropy::compute(EnergyImpl& energy, const Batch& batch, at::Generator&) {
  EBM_CHECK_CONFIG(energy.num_classes() > 0,
                   "objective.name = \"ce\" trains a classifier: set energy.conditional = true");
  auto y = checked_labels(energy, batch);
  auto logits = -energy.class_energies(batch.x);  // [B, K]
  Output out;
  out.loss = torch::nn::functional::cross_entropy(logits, y.to(logits.device()));
  out.metrics["accuracy"] = (logits.detach().argmax(1) == y.to(logits.device())).to(torch::kDouble).mean().item<double>();
  return out;
}

}  // namespace ebm
