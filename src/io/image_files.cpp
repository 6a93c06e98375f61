// Image files in: PNG, JPEG and BMP through stb_image (Debian's libstb ships
// it compiled), and grey images stored as RGB told apart (io/image_files.h).
#include "ebm/io/image_files.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/io/io.h"
#include "ebm/io/file_bytes.h"

namespace ebm {

namespace {
// stb_image's decode of `bytes` (of the named format, for messages) as
// uint8 [C, H, W], alpha as `alpha` says.
torch::Tensor decode_image(const std::string& bytes, const std::string& path, const char* format, Alpha alpha) {
  EBM_CHECK_DATA(bytes.size() <= size_t(std::numeric_limits<int>::max()), path, ": ", format, " file too large");
  int w = 0, h = 0, comp = 0;
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int size = static_cast<int>(bytes.size());
  // 16-bit files are read at 8 bits (the top byte) like every image; data
  // of fewer bits stored in 16 (a 12-bit sensor's 0..4095) then keep only
  // 0..15 of 0-255: a probe's such classifier trained at chance, 0.50
  // (warned once a process, naming the first file).
  static bool warned = false;
  if (!warned && stbi_is_16_bit_from_memory(data, size)) {
    if (stbi_us* wide = stbi_load_16_from_memory(data, size, &w, &h, &comp, 0)) {
      const auto peak = *std::max_element(wide, wide + size_t(w) * size_t(h) * size_t(comp));
      stbi_image_free(wide);
      if (peak < 4096) {
        warned = true;
        notes() << "ebm: warning: " << path << ": a 16-bit PNG whose values reach only " << peak
                << " of 65535: read at 8 bits (value / 256), as every image is, they keep only 0.." << (peak >> 8)
                << " of 0-255; scale such images to the full 16 bits (or to 8) first\n";
      }
    }
  }
  unsigned char* px = stbi_load_from_memory(data, size, &w, &h, &comp, 0);
  if (!px) {
    const char* why = stbi_failure_reason();
    fail(ExitCode::kBadData, path, ": cannot decode ", format, ": ", why ? why : "unknown error");
  }
  auto img = torch::from_blob(px, {h, w, comp}, torch::kUInt8).clone();  // [H, W, comp]
  stbi_image_free(px);
  if (comp == 2 || comp == 4) return composite_alpha(img, alpha);
  return img.permute({2, 0, 1}).contiguous();  // [C, H, W]
}
}  // namespace

torch::Tensor luminance(const torch::Tensor& rgb, int64_t dim) {
  return 0.299 * rgb.select(dim, 0) + 0.587 * rgb.select(dim, 1) + 0.114 * rgb.select(dim, 2);
}

torch::Tensor composite_alpha(const torch::Tensor& hwc, Alpha alpha) {
  TORCH_CHECK(hwc.dim() == 3 && (hwc.size(2) == 2 || hwc.size(2) == 4), "composite_alpha: [H, W, C + 1], got ",
              hwc.sizes());
  const int64_t c = hwc.size(2) - 1;
  auto colour = hwc.narrow(2, 0, c);
  if (alpha == Alpha::kDrop) return colour.permute({2, 0, 1}).contiguous();
  const auto v = colour.to(torch::kFloat), a = hwc.select(2, c).to(torch::kFloat).unsqueeze(2) / 255.0;
  double under = alpha == Alpha::kWhite ? 255.0 : 0.0;
  if (alpha == Alpha::kAuto) {  // (the content's mean luminance, weighted by opacity)
    const auto lum = c == 1 ? v.select(2, 0) : luminance(v, 2);
    const double w = a.sum().item<double>();
    under = w > 0 && (lum * a.squeeze(2)).sum().item<double>() / w < 127.5 ? 255.0 : 0.0;
  }
  const auto out = (v * a + under * (1.0 - a)).round().clamp(0, 255).to(torch::kUInt8);
  return out.permute({2, 0, 1}).contiguous();  // [C, H, W]
}

namespace {
torch::Tensor read_png_as(const std::string& path, Alpha alpha) {
  const auto bytes = read_file_bytes(path);
  // stb_image would take a JPEG or BMP as well; a .png must be a PNG.
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0)
    fail(ExitCode::kBadData, path, ": byte offset 0: not a PNG file (bad signature)");
  return decode_image(bytes, path, "PNG", alpha);
}
}  // namespace

torch::Tensor read_png(const std::string& path) { return read_png_as(path, Alpha::kAuto); }

bool image_file_name(const std::string& path) {
  const auto ext = file_extension(path);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

torch::Tensor grey_of_rgb(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != 3 || x.numel() == 0) return {};
  const auto v = x.to(torch::kFloat);
  const auto r = v.select(1, 0), g = v.select(1, 1), b = v.select(1, 2);
  const double spread = torch::max((r - g).abs().max(), (g - b).abs().max()).item<double>();
  if (!(spread <= 2)) return {};
  return v.mean(1, /*keepdim=*/true).round().to(x.scalar_type());
}

torch::Tensor read_image(const std::string& path, Alpha alpha) {
  const auto ext = file_extension(path);
  if (ext == ".png") return read_png_as(path, alpha);
  const bool jpeg = ext == ".jpg" || ext == ".jpeg";
  if (!jpeg && ext != ".bmp")
    fail(ExitCode::kUsage, path, ": not an image file name (want .png, .jpg, .jpeg or .bmp)");
  const auto bytes = read_file_bytes(path);
  // (the format the name says: a JPEG starts FF D8 FF, a BMP "BM")
  const bool ok = jpeg ? bytes.size() >= 3 && (unsigned char)bytes[0] == 0xFF && (unsigned char)bytes[1] == 0xD8 &&
                             (unsigned char)bytes[2] == 0xFF
                       : bytes.size() >= 2 && bytes[0] == 'B' && bytes[1] == 'M';
  if (!ok)
    fail(ExitCode::kBadData, path, ": byte offset 0: not a ", jpeg ? "JPEG" : "BMP", " file (bad signature)");
  return decode_image(bytes, path, jpeg ? "JPEG" : "BMP", alpha);
}

}  // namespace ebm
