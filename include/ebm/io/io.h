// File formats (DESIGN.md "Data formats"): N x D float matrices as CSV (an
// optional header line), NPY (float32/float64 and the integers int8-int64 and
// uint8, C order, version 1-3), IDX / IDX.gz (MNIST family; read_matrix
// flattens rows, read_array keeps their shape) and PNG (decoded by
// stb_image to 8-bit grey or RGB). Every reader throws
// ebm::Error: kMissingInput when the file cannot be opened, kBadData naming
// the file and the row (CSV) or byte offset (NPY/IDX) of the problem,
// including non-finite values. Nothing is ever silently truncated.
// Writers are atomic: a temp file in the same directory, then rename.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace ebm {

// Dispatches on the extension (.csv, .npy, .idx, .idx.gz, *-ubyte, *-ubyte.gz,
// .png). Returns float32 [N, D] (IDX: [N, prod(rest dims)], raw values; a PNG
// is one row).
torch::Tensor read_matrix(const std::string& path);
torch::Tensor read_csv(const std::string& path);
// The names a CSV file's header gives its data columns (a row-names column
// read_csv drops is left out), or none when its first line (after '#'
// comments) is not a header or the file is not a readable .csv.
std::vector<std::string> csv_header(const std::string& path);
torch::Tensor read_npy(const std::string& path);
torch::Tensor read_idx(const std::string& path);  // gzip detected by magic bytes
// As read_matrix, keeping each row's shape: CSV [N, D]; NPY and IDX their own
// [N, ...] with [N] -> [N, 1] and [N, H, W] -> [N, 1, H, W] (one-channel
// images); a PNG [1, C, H, W]; float32.
torch::Tensor read_array(const std::string& path);
// As read_array, the values in the type the file stores them: uint8 (IDX
// ubyte, PNG, NPY |u1), int8-int64 (other integer NPY) or float32 (CSV, float,
// boolean NPY, IDX float). Pixels or numbers: data/integer_arrays.h.
torch::Tensor read_array_raw(const std::string& path);
// The file's own shape and type (float64 as float32).
torch::Tensor read_npy_array(const std::string& path);
torch::Tensor read_idx_array(const std::string& path);
// One image, uint8 [C, H, W]: C = 1 for grey (and grey + alpha), 3 for RGB
// (and RGBA); alpha composited as Alpha::kAuto says (io/image_files.h).
// Anything but a decodable PNG is kBadData with stb_image's reason.
torch::Tensor read_png(const std::string& path);

// Writes [N, D] (or [N]) as CSV (%.9g, header line when given) or NPY
// (any [N, ...]; float32/float64 as the tensor's dtype); dispatch by extension.
void write_matrix(const std::string& path, const torch::Tensor& x,
                  const std::vector<std::string>& header = {});
void write_csv(const std::string& path, const torch::Tensor& x,
               const std::vector<std::string>& header = {});
void write_npy(const std::string& path, const torch::Tensor& x);

// PNG: uint8 [H, W] (gray) or [H, W, 3] (RGB) (note: read_png gives [C, H, W]).
void write_png(const std::string& path, const torch::Tensor& image);
// Images [N, C, H, W] (C = 1 or 3) as one PNG grid, `cols` per row (0 =
// about square) with a 1-pixel gap; values mapped linearly from [lo, hi]
// to [0, 255] and clamped.
void write_image_grid(const std::string& path, const torch::Tensor& images, double lo, double hi,
                      int64_t cols = 0);

// Writes through `write_tmp(tmp_path)` then renames onto `path`; on any
// exception the temp file is removed and `path` is untouched.
// Refuses (kMissingInput) an output path that is a directory, or whose
// folder is missing or not writable, before any work whose result it would
// receive.
void check_writable(const std::string& path);
void atomic_write(const std::string& path, const std::function<void(const std::string&)>& write_tmp);
void atomic_write_text(const std::string& path, const std::string& text);

// Throws kBadData naming `what` and the first row with a NaN or infinity.
void check_finite_rows(const torch::Tensor& x, const std::string& what);

// Lower-cased extension with .gz kept: "a/b.IDX.gz" -> ".idx.gz".
std::string file_extension(const std::string& path);

}  // namespace ebm
