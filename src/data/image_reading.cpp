// How image files are read: their size, channels and alpha (data/image_reading.h).
#include "ebm/data/image_reading.h"

#include "ebm/core/error.h"

namespace ebm {

std::string ImageReading::text() const {
  return std::to_string(height) + "x" + std::to_string(width) + (crop ? " (crop)" : " (stretch)");
}

ImageReading image_reading_of(const Config& cfg) {
  ImageReading s;
  const auto v = cfg.get_int_list("data.image_size");
  const std::string fit = cfg.get_string("data.image_fit"), alpha = cfg.get_string("data.alpha");
  EBM_CHECK_CONFIG(fit == "crop" || fit == "stretch", "data.image_fit must be crop or stretch, got '", fit, "'");
  s.crop = fit == "crop";
  s.channels = cfg.get_int("data.channels");
  EBM_CHECK_CONFIG(s.channels == 0 || s.channels == 1 || s.channels == 3,
                   "data.channels must be 0 (as the images are), 1 (grey) or 3 (colour), got ", s.channels);
  EBM_CHECK_CONFIG(alpha == "auto" || alpha == "black" || alpha == "white" || alpha == "drop",
                   "data.alpha must be auto, black, white or drop, got '", alpha, "'");
  s.alpha = alpha == "black" ? Alpha::kBlack : alpha == "white" ? Alpha::kWhite : alpha == "drop" ? Alpha::kDrop
                                                                                 : Alpha::kAuto;
  if (v.empty()) return s;
  EBM_CHECK_CONFIG(v.size() <= 2 && v.front() >= 1 && v.back() >= 1 && v.front() <= 4096 && v.back() <= 4096,
                   "data.image_size must be [S] or [H, W] with sides in 1 .. 4096, got ", c10::IntArrayRef(v));
  s.height = v.front();
  s.width = v.back();
  return s;
}

torch::Tensor with_channels(const torch::Tensor& x, int64_t channels, bool pixels) {
  const int64_t axis = x.dim() - 3;
  if (channels == 0 || x.dim() < 3 || x.size(axis) == channels) return x;
  TORCH_CHECK(x.size(axis) == 1 || x.size(axis) == 3, "with_channels: 1 or 3 channels, got ", x.sizes());
  if (channels == 3) {
    auto shape = x.sizes().vec();
    shape[axis] = 3;
    return x.expand(shape).contiguous();
  }
  const auto v = x.to(torch::kFloat);
  auto grey = luminance(v, axis).unsqueeze(axis);
  if (pixels) grey = grey.round().clamp(0, 255);
  return grey.to(x.scalar_type());
}

torch::Tensor resize_images(const torch::Tensor& x, const ImageReading& size, bool pixels) {
  if (!size.resizes()) return x;
  if (x.dim() == 3) return resize_images(x.unsqueeze(0), size, pixels).squeeze(0);
  TORCH_CHECK(x.dim() == 4, "resize_images: images [N, C, H, W], got ", x.sizes());
  const int64_t h = size.height, w = size.width;
  if (x.size(2) == h && x.size(3) == w) return x;
  auto y = x.to(torch::kFloat);
  int64_t H = y.size(2), W = y.size(3);
  if (size.crop) {  // (the centre of the target's aspect ratio)
    if (W * h > w * H) {
      const int64_t keep = std::max<int64_t>(1, (H * w + h / 2) / h);
      y = y.narrow(3, (W - keep) / 2, keep);
    } else if (W * h < w * H) {
      const int64_t keep = std::max<int64_t>(1, (W * h + w / 2) / w);
      y = y.narrow(2, (H - keep) / 2, keep);
    }
    H = y.size(2);
    W = y.size(3);
  }
  namespace F = torch::nn::functional;
  // Sides that shrink by averaging areas, then sides that grow bilinearly.
  if (H > h || W > w)
    y = F::interpolate(y, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{std::min(H, h), std::min(W, w)})
                              .mode(torch::kArea));
  if (y.size(2) != h || y.size(3) != w)
    y = F::interpolate(
        y, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false));
  if (pixels) y = y.round().clamp(0, 255);
  return y.contiguous().to(x.scalar_type());
}

}  // namespace ebm
