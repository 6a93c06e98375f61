// Integer arrays (NPY) as raw 0-255 pixels or as numbers. A file of bytes
// holds pixels; a wider integer type holds pixels only as images ([N, H, W]
// or [N, C, H, W]) whose values all lie in 0..255. An array of only 0s and
// 1s (binary images, masks: black as pixels) and any other integer array
// (counts [N, D], 16-bit images) hold numbers, taken as floats are.
#pragma once

#include <torch/torch.h>

#include <string>

namespace ebm {

// `raw` as read_array_raw returns it (images [N, C, H, W]).
bool integer_array_is_pixels(const torch::Tensor& raw);
// kBadData naming `path`, the first value outside 0..255 and its row, for
// an integer array that a model trained on pixels is given.
void check_pixel_range(const torch::Tensor& x, const std::string& path);
// An array of images stored channels last, as numpy, PIL and TensorFlow
// write them ([N, H, W, C]: 4 axes, the last 1 or 3 and the second
// neither), as [N, C, H, W]; any other array as it is. kBadData naming
// `path` for one whose last axis is 2 or 4 and second over 4: grey + alpha
// or RGBA stored last, which arrays do not composite.
torch::Tensor channels_first(const torch::Tensor& raw, const std::string& path);

}  // namespace ebm
