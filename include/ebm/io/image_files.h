// Image files other than PNG: JPEG and BMP, which folders of a user's own
// images often hold. stb_image decodes them as it does PNG (io.h read_png).
#pragma once

#include <torch/torch.h>

#include <string>

namespace ebm {

// .png, .jpg, .jpeg or .bmp (any case) by name.
bool image_file_name(const std::string& path);
// One image, uint8 [C, H, W], as read_png: the extension picks the format
// and the file's signature must match it (kBadData naming the file
// otherwise, or stb_image's reason when it cannot decode it).
torch::Tensor read_image(const std::string& path);

// Grey images stored as RGB (every pixel's three values within 2 levels of
// each other, as JPEG rounding leaves them): x [N, 3, H, W] of 0-255 pixels
// (any dtype) as [N, 1, H, W], their channels' mean rounded, in x's dtype;
// undefined for anything else.
torch::Tensor grey_of_rgb(const torch::Tensor& x);

}  // namespace ebm
