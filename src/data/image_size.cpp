// data.image_size: images resized as they are read (data/image_size.h).
#include "ebm/data/image_size.h"

#include "ebm/core/error.h"

namespace ebm {

std::string ImageSize::text() const {
  return std::to_string(height) + "x" + std::to_string(width) + (crop ? " (crop)" : " (stretch)");
}

ImageSize image_size_of(const Config& cfg) {
  ImageSize s;
  const auto v = cfg.get_int_list("data.image_size");
  const std::string fit = cfg.get_string("data.image_fit");
  EBM_CHECK_CONFIG(fit == "crop" || fit == "stretch", "data.image_fit must be crop or stretch, got '", fit, "'");
  s.crop = fit == "crop";
  if (v.empty()) return s;
  EBM_CHECK_CONFIG(v.size() <= 2 && v.front() >= 1 && v.back() >= 1 && v.front() <= 4096 && v.back() <= 4096,
                   "data.image_size must be [S] or [H, W] with sides in 1 .. 4096, got ", c10::IntArrayRef(v));
  s.height = v.front();
  s.width = v.back();
  return s;
}

torch::Tensor resize_images(const torch::Tensor& x, const ImageSize& size, bool pixels) {
  if (!size.given()) return x;
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
