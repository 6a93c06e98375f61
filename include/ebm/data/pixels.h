// Pixel conventions (issue 17): PNG, IDX and some integer NPY (as
// integer_arrays.h says) hold raw 0-255 pixels; a model maps them into its own
// range [lo, hi] (data.scale). With uniform dequantization (data.dequantize)
// pixel p stands for the bin [p, p + 1) / 256: training adds U(0, 1/256)
// noise (Dinh et al. 2017; IGEBM), other commands take the bin's centre.
#pragma once

#include <torch/torch.h>

#include <cmath>

namespace ebm {

struct PixelMap {
  double lo = -1.0, hi = 1.0;  // the model's pixel range
  bool dequantize = false;

  // Raw pixels (any dtype, 0-255) -> float32 in the model's range.
  torch::Tensor to_model(const torch::Tensor& pixels) const {
    auto p = pixels.to(torch::kFloat);
    auto v = dequantize ? (p + 0.5) / 256.0 : p / 255.0;
    return v * (hi - lo) + lo;
  }
  // Model-range values -> uint8 pixels, rounded and clamped to 0-255.
  torch::Tensor to_pixels(const torch::Tensor& x) const {
    auto v = (x.to(torch::kFloat) - lo) / (hi - lo);
    auto p = dequantize ? v * 256.0 - 0.5 : v * 255.0;
    return p.round().clamp(0, 255).to(torch::kUInt8);
  }
  // Dequantization noise for a batch in the model's units, centred on the
  // bin: (U(0, 1) - 1/2) (hi - lo) / 256.
  torch::Tensor noise(at::IntArrayRef sizes, at::Generator& gen, const torch::TensorOptions& options) const {
    return (at::rand(sizes, gen, options) - 0.5) * ((hi - lo) / 256.0);
  }
  // As a [3] float64 tensor (lo, hi, dequantize) for model files, and back.
  torch::Tensor to_tensor() const { return torch::tensor({lo, hi, dequantize ? 1.0 : 0.0}, torch::kDouble); }
  static PixelMap from_tensor(const torch::Tensor& t) {
    auto d = t.to(torch::kCPU, torch::kDouble).contiguous();
    PixelMap m;
    m.lo = d[0].item<double>();
    m.hi = d[1].item<double>();
    m.dequantize = d[2].item<double>() != 0;
    return m;
  }
};

// Float images (values, not pixels) under data.standardize: one affine map,
// the same for every pixel, of the training images' range [raw_lo, raw_hi]
// onto the model's [lo, hi] (data.scale), so images saved in any units
// ([0, 1], 0-255 as floats, standardised) train as the recipes' [-1, 1] ones
// do. Users' files and the .npy outputs are in the raw units; the model,
// its sampler's settings and its clamp box in the model's.
struct ValueMap {
  double raw_lo = 0.0, raw_hi = 1.0;  // the training images' smallest and largest value
  double lo = -1.0, hi = 1.0;         // where they go (data.scale)

  // Model units per user unit.
  double gain() const { return (hi - lo) / (raw_hi - raw_lo); }
  // User values -> the model's units (formed in float64, returned in x's
  // floating dtype, float32 for integers).
  torch::Tensor to_model(const torch::Tensor& x) const {
    auto out = (x.to(torch::kDouble) - raw_lo) * gain() + lo;
    return out.to(x.is_floating_point() ? x.scalar_type() : torch::kFloat);
  }
  // The model's units -> user values (x's dtype).
  torch::Tensor to_user(const torch::Tensor& u) const {
    return ((u.to(torch::kDouble) - lo) / gain() + raw_lo).to(u.scalar_type());
  }
  // [4] float64 (raw_lo, raw_hi, lo, hi) for model files, and back.
  torch::Tensor to_tensor() const { return torch::tensor({raw_lo, raw_hi, lo, hi}, torch::kDouble); }
  static ValueMap from_tensor(const torch::Tensor& t) {
    auto d = t.to(torch::kCPU, torch::kDouble).contiguous();
    return {d[0].item<double>(), d[1].item<double>(), d[2].item<double>(), d[3].item<double>()};
  }
  // The map of images x's range onto [lo, hi]; images of one value keep
  // their units' width (raw range [v - (hi - lo) / 2, v + (hi - lo) / 2]).
  static ValueMap fit(const torch::Tensor& x, double lo, double hi) {
    auto mm = x.to(torch::kDouble).aminmax();
    double a = std::get<0>(mm).item<double>(), b = std::get<1>(mm).item<double>();
    if (!(b > a)) {
      a -= (hi - lo) / 2;
      b = a + (hi - lo);
    }
    return {a, b, lo, hi};
  }
};

// Float images are taken as already in the model's range [lo, hi]: values
// far outside it (beyond `slack` times its width: [0, 255] against
// [-1, 1]) are raw pixels saved as floats, an error (kBadData) naming
// `what`; so are NaN and inf. `hint` ends the message (default: how float
// arrays and pixels are told apart). Training data take slack 1/2 (its
// chains' box); commands' inputs more, noisy images leaving the range.
void check_in_pixel_range(const torch::Tensor& x, double lo, double hi, const std::string& what,
                          const std::string& hint = "", double slack = 0.5);
// Rows read from a file against a model's event shape: images [N, C, H, W]
// ([N, H, W] files read as one channel) must have its [C, H, W] (grey 64x48
// is not colour 32x32 though the counts agree); flat rows are left to the
// caller's count check. kBadData naming `what`.
void check_image_rows(const torch::Tensor& x, c10::IntArrayRef shape, const std::string& what);

}  // namespace ebm
