// data.image_size: images of any size made one [H, W] as they are read (a
// user's folder of photos or icons of mixed sizes; MNIST enlarged to 32 x 32),
// in training and in every command that reads images for such a model.
#pragma once

#include <torch/torch.h>

#include <string>

#include "ebm/core/config.h"
#include "ebm/data/data.h"

namespace ebm {

struct ImageSize {
  int64_t height = 0, width = 0;  // 0: images as they are (one size, else an error)
  bool crop = true;               // data.image_fit: crop (scale to cover, keep the centre) or stretch
  bool given() const { return height > 0; }
  std::string text() const;       // "32x32 (crop)"
};

// data.image_size ([S] or [H, W]) and data.image_fit of a config with the
// [data] section; kBadConfig for sizes below 1 or other fits.
ImageSize image_size_of(const Config& cfg);

// Images [N, C, H, W] (any dtype; [C, H, W] for one) at `size`: area
// averaging where a side shrinks, bilinear interpolation where it grows
// (antialiased neither way beyond that), after a centre crop to the target's
// aspect ratio when `size.crop`. Pixels (`pixels`: 0-255 values) come back
// rounded into 0..255, in x's dtype; x itself when its size is the target's.
torch::Tensor resize_images(const torch::Tensor& x, const ImageSize& size, bool pixels);

// load_data_path (data/images.h) with every image made `size`: a folder's
// images one by one as they are read (so they may differ in size), an
// array's or an image file's as a whole; kBadData for rows that are not
// images ([N, D] vectors).
Dataset load_data_path(const std::string& path, const ImageSize& size);

}  // namespace ebm
