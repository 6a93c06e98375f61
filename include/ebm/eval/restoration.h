// Restoring images with an energy model (IGEBM section 4): inpainting fills
// masked pixels by sampling them given the rest (sampling/conditional.h),
// denoising descends the posterior energy from a corrupted image. Here are
// the masks, the corruptions, the scores and the baselines a user compares
// against. Images are in the model's range [lo, hi] (data/pixels.h); scores
// are in pixels scaled to [0, 1] whatever that range.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/data/pixels.h"
#include "ebm/energy/energy.h"

namespace ebm {

// A mask [n, ...event] (bool, true = missing: to be filled) from a spec:
//   center:K        a K x K square in the middle of every image
//   random:P        each pixel (all channels together) missing with probability P, per image (vectors: each value)
//   left-half, right-half, top-half, bottom-half
//   dims:i,j,...    those coordinates of a vector
// kUsage naming the spec when it is not one of these or does not fit the
// event shape.
torch::Tensor named_mask(const std::string& spec, const std::vector<int64_t>& event_shape, int64_t n,
                         at::Generator& gen);
bool is_named_mask(const std::string& spec);

// A mask read from values [m, ...] (m = 1 or n rows; nonzero = missing; for
// images also one plane [H, W]), checked against the event shape (kBadData
// naming `file`).
torch::Tensor mask_from_values(const torch::Tensor& values, const std::vector<int64_t>& event_shape, int64_t n,
                               const std::string& file);

// Corrupted copies of x [N, ...] in the model's range:
//   gaussian:S  add N(0, S^2) noise, S in [0, 1] pixel units, then clip to the range
//   salt:P      a fraction P of pixels set to black or white (equal odds)
// kUsage on another spec. *std (when given) is the Gaussian noise's std in the
// model's units (0 for salt).
torch::Tensor corrupt(const torch::Tensor& x, const std::string& spec, const PixelMap& map, at::Generator& gen,
                      double* std = nullptr);
// The same for vectors in the data's own units: gaussian:STD adds N(0, STD^2)
// to every value, unclamped; salt is refused (kUsage), being for images.
// *std (when given) is STD.
torch::Tensor corrupt_values(const torch::Tensor& x, const std::string& spec, at::Generator& gen,
                             double* std = nullptr);

// The posterior mode of a Gaussian corruption: argmin over x of
//   E(x) + sum_j (x_j - y_j)^2 / (2 sigma_j^2)
// for observed rows y [N, ...event] with noise std sigma (a scalar or one per
// coordinate, broadcast over the event), from y by limited-memory BFGS (8
// pairs) row by row, its initial inverse Hessian gamma P with
// P = 1 / (1 / sigma^2 + 1 / prior_var) (the first step half of P grad), a
// row's step halved while its posterior energy would not fall by 1e-4 of the
// first-order decrease (Armijo); `steps` energy evaluations. The energy's
// units are y's. prior_var (a scalar
// or one per coordinate; undefined: P = sigma^2) is the data's variance,
// the scale of E's curvature: with coordinates whose noise is small beside
// their spread and others whose noise is large, sigma^2 alone spans their
// curvatures by that ratio squared and a row's one step fits only the
// stiffest (8 columns with sds 0.01 to 100, noise 20: MSE 295 after 200
// steps, 194 after 20,000, against the exact posterior mean's 90; with the
// prior's variance 90 in 200). An infinite sigma drops the observation term
// (the mode of E from y; prior_var needed then).
torch::Tensor posterior_mode(EnergyImpl& energy, const torch::Tensor& y, const torch::Tensor& sigma, int64_t steps,
                             const torch::Tensor& prior_var = {});

// The mode of E over the `free` coordinates (a bool mask of known's shape or
// broadcastable to it) of rows `known` [N, ...event], the others clamped to
// known's: posterior_mode's descent from `start` without an observation
// term, preconditioned by `data_var` (a scalar or one per coordinate).
// Returns the full rows. What ebm predict and vector inpainting find.
torch::Tensor conditional_mode(EnergyImpl& energy, const torch::Tensor& known, const torch::Tensor& free,
                               const torch::Tensor& start, int64_t steps, const torch::Tensor& data_var);

// The conditional mean of the masked values given the others under a
// Gaussian fitted to `reference` rows [M, ...] (vectors [M, D]: GaussianFit's
// ridge, chosen by the rows; images: 1e-6 of the mean variance): rows x
// [N, ...], mask [N or 1, ...] (true = missing). A
// linear imputation any model should beat. Rows with nothing known get the
// mean.
torch::Tensor gaussian_fill(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& reference);

// The denoising baseline of vectors: the posterior mean under a Gaussian
// fitted to training rows `train` [M, D] (the OOD baseline's fit, with its
// ridge) of rows y [N, D] with noise std sigma in every coordinate,
// y - sigma^2 (Sigma + sigma^2 I)^-1 (y - mean) (Wiener's filter); float64.
torch::Tensor gaussian_denoise(const torch::Tensor& y, const torch::Tensor& train, double sigma);

// Mean squared error over the pixels of `where` (all when undefined) of all
// images, and the mean PSNR of each image's, in [0, 1] pixel units; images
// with no such pixel are skipped.
struct RestorationScore {
  double mse = 0;   // mean squared error over every scored value of every image
  double psnr = 0;  // mean over images of 10 log10(1 / MSE_i), dB (MSE_i floored at 1e-10)
  int64_t n = 0;    // images scored
};
RestorationScore restoration_score(const torch::Tensor& x, const torch::Tensor& truth, const PixelMap& map,
                                   const torch::Tensor& where = {});

// Baselines. mean_fill: the masked pixels from `mean` [...event]; nearest_fill:
// from the reference image [M, ...event] closest to each image on its known
// pixels (squared distance; the reference mean for an image with none
// known); gaussian_blur: each channel convolved with a
// normalised Gaussian of `sigma` pixels (kernel radius ceil(3 sigma),
// replicated borders).
torch::Tensor mean_fill(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& mean);
torch::Tensor nearest_fill(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& reference);
torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma);

}  // namespace ebm
