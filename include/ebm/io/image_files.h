// Image files other than PNG: JPEG and BMP, which folders of a user's own
// images often hold. stb_image decodes them as it does PNG (io.h read_png).
#pragma once

#include <torch/torch.h>

#include <string>

namespace ebm {

// .png, .jpg, .jpeg or .bmp (any case) by name.
bool image_file_name(const std::string& path);
// What becomes of an image's alpha channel (data.alpha): composited over
// black or white, over whichever of the two contrasts with the image's own
// content (auto: white under content darker than mid-grey on average,
// weighted by opacity, else black), or dropped (the colour values under
// transparent pixels kept as they are, PIL's convert("RGB")).
enum class Alpha { kAuto, kBlack, kWhite, kDrop };

// One image, uint8 [C, H, W] (C = 1 or 3), as read_png: the extension picks
// the format and the file's signature must match it (kBadData naming the
// file otherwise, or stb_image's reason when it cannot decode it). Alpha, if
// the file has it, as `alpha` says.
torch::Tensor read_image(const std::string& path, Alpha alpha = Alpha::kAuto);

// The luminance (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B) of float
// colours along `dim` (size 3), that dim dropped.
torch::Tensor luminance(const torch::Tensor& rgb, int64_t dim);

// uint8 [H, W, C + 1] pixels with alpha last (C = 1 or 3) made [C, H, W].
torch::Tensor composite_alpha(const torch::Tensor& hwc, Alpha alpha);

// Grey images stored as RGB (every pixel's three values within 2 levels of
// each other, as JPEG rounding leaves them): x [N, 3, H, W] of 0-255 pixels
// (any dtype) as [N, 1, H, W], their channels' mean rounded, in x's dtype;
// undefined for anything else.
torch::Tensor grey_of_rgb(const torch::Tensor& x);

}  // namespace ebm
