// Adversarial robustness of a classifier p(y | x) = softmax_y(-E(x, y))
// (`ebm eval --task robustness`; Madry et al. 2018): projected gradient
// ascent (PGD) on the cross entropy of the true label inside an L-inf or L2
// ball of radius eps around each input, intersected with the pixel range.
//   L-inf: x <- proj(x + a sign(g)),    L2: x <- proj(x + a g / |g|_2),
// g = d CE / dx; proj clips the perturbation to the ball (L-inf: per
// coordinate; L2: rescaled to radius eps) and then the point to the range
// (which only shrinks each coordinate's perturbation, so the point stays in
// the ball). Restart 0 starts at the input, later restarts at a uniform point
// of the ball; a row counts as robust only when no restart misclassifies it.
// Optionally each attacked input is purified by K transitions of the model's
// sampler on E(x) before it is classified (JEM's defence; the attack itself
// sees the bare classifier: a transfer attack, not an adaptive one).
#pragma once

#include <nlohmann/json.hpp>

#include <limits>
#include <string>
#include <vector>

#include "ebm/core/config.h"
#include "ebm/eval/tasks.h"
#include "ebm/model/model.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

struct AttackOptions {
  std::string norm = "linf";  // linf | l2
  double eps = 0.03;          // radius, in the model's input units
  int64_t steps = 20;         // gradient steps per restart
  double step_size = 0;       // per step; 0 = 2.5 eps / steps
  int64_t restarts = 1;       // 1 = from the input only
  double lo = -std::numeric_limits<double>::infinity();  // the input range
  double hi = std::numeric_limits<double>::infinity();
};

struct AttackResult {
  torch::Tensor x;       // [N, ...] the adversarial inputs (a misclassifying restart's where there is one)
  torch::Tensor loss;    // [N] their cross entropy
  torch::Tensor robust;  // [N] bool: classified correctly at every restart's final point
  // Mean cross entropy over rows after each step of restart 0 (trace[0]: at the start).
  std::vector<double> trace;
};

// PGD against energy's classifier on rows x with labels y, in batches of
// `batch` rows. kUsage for eps < 0, steps < 1, restarts < 1 or an unknown norm.
AttackResult pgd_attack(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& y,
                        const AttackOptions& options, at::Generator& gen, int64_t batch = 500);

std::vector<ConfigKey> robustness_task_keys();
EvalReport robustness_task(const Config& c, EnergyImpl& energy, const ModelInfo& info);

}  // namespace ebm
