// ebm energy --model model.pt --input FILE --out FILE.csv: one energy per row.
#include <c10/util/accumulate.h>

#include "commands.h"
#include "named_rows.h"
#include "ebm/core/error.h"
#include "ebm/eval/images.h"
#include "ebm/io/io.h"
#include "ebm/energy/standardized.h"
#include "ebm/model/inputs.h"
#include "ebm/model/columns.h"
#include "ebm/model/model.h"

namespace ebm::cli {

Runner add_energy(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, input, out;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("energy", "energy of every input row, in input order");
  cmd->add_option("--model", a->model, "model.pt from ebm train")->required();
  cmd->add_option("--input", a->input,
                  "CSV, NPY, IDX or IDX.gz rows: samples of the model's shape, or flattened; image models also "
                  "take an image (PNG, JPEG, BMP), a folder of them (rows in the byte order of the file names), or fashion_mnist "
                  "/ mnist (test split; NAME:train for the other)")
      ->required();
  cmd->add_option("--out", a->out, "output CSV (column 'energy')")->required();
  add_common(cmd, a->common);
  return [a]() -> int {
    const c10::Device device = apply_common(a->common);
    EBM_CHECK_USAGE(file_extension(a->out) == ".csv", "--out ", a->out,
                    ": extension must be .csv (the energies are written as CSV)");
    ModelInfo info;
    Energy energy = load_model(a->model, &info);
    const auto shape = energy->event_shape();
    // (images, and models trained on pixels such as flattened images, follow
    // the pixel conventions: PNG / IDX / integer NPY are pixels for them)
    const bool model_read = shape.size() == 3 || info.pixels;  // (read_model_data checks a CSV's columns)
    if (!model_read) check_csv_columns(a->input, info);
    auto x = model_read ? read_model_data(a->input, info, "test") : read_array(a->input);
    warn_if_far_from_training(sampling_view(energy).second, info, x, a->input);
    const int64_t dim = c10::multiply_integers(shape);
    // (rows of the model's shape, or the same values flattened, e.g. CSV)
    EBM_CHECK_DATA(x[0].numel() == dim, a->input, ": rows of shape ", x.sizes().slice(1),
                   " but the model expects ", c10::IntArrayRef(shape));
    std::vector<int64_t> batch_shape = shape;
    batch_shape.insert(batch_shape.begin(), x.size(0));
    x = x.reshape(batch_shape);
    energy->to(device);
    // (in batches: a whole image set at once would hold every row's activations)
    auto e = batch_energies(*energy, x.to(device), 1024).to(torch::kCPU);
    // (finite inputs can still overflow the energy, e.g. rows near 1e20)
    check_finite_rows(e.unsqueeze(1), a->input + ": energy of the input");
    if (const auto names = folder_row_names(a->input); int64_t(names.size()) == e.size(0))
      write_named_csv(a->out, "file", names, e.unsqueeze(1), {"energy"});
    else
      write_csv(a->out, e.unsqueeze(1), {"energy"});
    return 0;
  };
}

}  // namespace ebm::cli
