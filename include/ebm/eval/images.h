// Evaluation of image models: class probabilities of a classifier energy,
// model samples drawn as `ebm sample` draws them, and the Frechet distance
// between feature statistics (FID, Heusel et al. 2017, here on the
// penultimate features of the toolkit's own classifier).
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "ebm/energy/energy.h"
#include "ebm/model/model.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

// softmax_y(-E(x, y)) [N, K] of a class-conditional energy, in batches.
// kBadData, naming `what` and the first such row, where a row's class
// energies are not finite (a value far beyond the training data's range
// overflows them): no NaN probabilities.
torch::Tensor class_probabilities(EnergyImpl& energy, const torch::Tensor& x, int64_t batch = 256,
                                  const std::string& what = "the input");

// The penultimate features [N, F] of `energy` (eval mode, no graph), in batches.
torch::Tensor batch_features(EnergyImpl& energy, const torch::Tensor& x, int64_t batch = 256);

// E(x) [N] of `energy` (eval mode, no graph), in batches.
torch::Tensor batch_energies(EnergyImpl& energy, const torch::Tensor& x, int64_t batch = 256);

// The sampler of `spec`; an empty spec: the model's training sampler when its
// file keeps one, else ula:step=0.01.
std::shared_ptr<Sampler> model_sampler(const ModelInfo& info, const std::string& spec);

// n samples [n, ...event] in the model's range: chains from uniform noise over
// the pixel range (images) or N(0, I), run `steps` transitions of `sampler`
// (empty spec: the model's training sampler); a conditional model's chain i
// is drawn at labels[i] when given, else at label i mod K (equal shares).
torch::Tensor draw_model_samples(EnergyImpl& energy, const ModelInfo& info, int64_t n, int64_t steps,
                                 const std::string& sampler, at::Generator& gen, const torch::Tensor& labels = {});
// Labels [n] for chains of a model of `classes` classes in its training
// rows' class shares (largest remainders; class by class): x | y drawn at
// them follows p(x) = sum_y p(y) p(x | y), which the marginal exp(-E(x)) of
// a model trained on p(x | y) need not (contrastive divergence per class
// leaves each class's offset free: on a folder of 59% trousers the marginal
// drew none). Undefined, with *why, when the model file cannot rebuild its
// training split (older files; data moved).
torch::Tensor labels_in_class_shares(const ModelInfo& info, int64_t classes, int64_t n, std::string* why);
// n samples of the generator that `model` keeps (load_generator), in the
// energy's units (a standardised model's user units; images in the model's
// range), each refined by `steps` transitions of `sampler` on `energy` (0 =
// the generator's draws as they are). kBadData when the model has none.
torch::Tensor draw_generator_samples(const std::string& model, EnergyImpl& energy, const ModelInfo& info, int64_t n,
                                     int64_t steps, const std::string& sampler, at::Generator& gen);

// Frechet distance between Gaussians fitted to two feature sets [N, F]:
// |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), in float64.
double frechet_distance(const torch::Tensor& a, const torch::Tensor& b);

// n draws [n, ...] (float64) of the Gaussian with the sample mean and
// covariance of `rows` [m, ...] (m >= 2), as mean + z (X - mean) / sqrt(m - 1)
// with z ~ N(0, I_m) over the centred rows X: the D x D covariance is never
// formed, so any image size fits (FID's Gaussian baseline).
torch::Tensor gaussian_draws(const torch::Tensor& rows, int64_t n, at::Generator& gen);

}  // namespace ebm
