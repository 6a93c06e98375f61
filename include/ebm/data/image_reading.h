// How image files become a model's images as they are read, in training and
// in every command that reads images for a model trained so (model.pt keeps
// the [data] keys): data.image_size (any size made one [H, W]: a user's
// folder of photos or icons of mixed sizes; MNIST enlarged to 32 x 32),
// data.channels (grey and colour files made one channel count) and
// data.alpha (what becomes of transparency).
#pragma once

#include <torch/torch.h>

#include <string>

#include "ebm/core/config.h"
#include "ebm/data/data.h"
#include "ebm/io/image_files.h"

namespace ebm {

struct ImageReading {
  int64_t height = 0, width = 0;  // 0: images as they are (one size, else an error)
  bool crop = true;               // data.image_fit: crop (scale to cover, keep the centre) or stretch
  int64_t channels = 0;           // 1 or 3: every image made grey (luminance) or colour (copies); 0: as they are
  Alpha alpha = Alpha::kAuto;     // data.alpha
  bool resizes() const { return height > 0; }
  std::string text() const;       // "32x32 (crop)"
};

// data.image_size ([S] or [H, W]), data.image_fit, data.channels and
// data.alpha of a config with the [data] section; kBadConfig for sizes below
// 1, channel counts other than 0, 1 and 3, and other names.
ImageReading image_reading_of(const Config& cfg);

// Images [N, C, H, W] (any dtype; [C, H, W] for one) at `size`: area
// averaging where a side shrinks, bilinear interpolation where it grows
// (antialiased neither way beyond that), after a centre crop to the target's
// aspect ratio when `size.crop`. Pixels (`pixels`: 0-255 values) come back
// rounded into 0..255, in x's dtype; x itself when its size is the target's.
torch::Tensor resize_images(const torch::Tensor& x, const ImageReading& size, bool pixels);

// Images [N, C, H, W] or [C, H, W] (C = 1 or 3) with `channels` (1 or 3):
// colour to grey by luminance (ITU-R BT.601, rounded when `pixels`), grey
// to colour by copies; x itself when it has them or channels is 0.
torch::Tensor with_channels(const torch::Tensor& x, int64_t channels, bool pixels);

// load_data_path (data/images.h) read as `reading` says: a folder's images
// one by one as they are read (so they may differ in size and channels),
// an image file's alpha as reading.alpha says, an array's images as a whole;
// kBadData for rows that are not images ([N, D] vectors) when they would be
// resized or given channels.
Dataset load_data_path(const std::string& path, const ImageReading& reading);

}  // namespace ebm
