// ebm energy --model model.pt --input FILE --out FILE.csv: one energy per row.
#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/io/io.h"
#include "ebm/train/train.h"

namespace ebm::cli {

Runner add_energy(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, input, out;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("energy", "energy of every input row, in input order");
  cmd->add_option("--model", a->model, "model.pt from ebm train")->required();
  cmd->add_option("--input", a->input, "CSV, NPY, IDX or IDX.gz rows")->required();
  cmd->add_option("--out", a->out, "output CSV (column 'energy')")->required();
  add_common(cmd, a->common);
  return [a]() -> int {
    apply_common(a->common);
    EBM_CHECK_USAGE(file_extension(a->out) == ".csv", "--out ", a->out,
                    ": extension must be .csv (the energies are written as CSV)");
    Energy energy = load_model(a->model);
    auto x = read_matrix(a->input);
    const int64_t dim = energy->event_shape()[0];
    EBM_CHECK_DATA(x.size(1) == dim, a->input, ": rows have ", x.size(1),
                   " columns but the model expects ", dim);
    torch::NoGradGuard ng;
    auto e = energy->energy(x).detach();
    // (finite inputs can still overflow the energy, e.g. rows near 1e20)
    check_finite_rows(e.unsqueeze(1), a->input + ": energy of the input");
    write_csv(a->out, e.unsqueeze(1), {"energy"});
    return 0;
  };
}

}  // namespace ebm::cli
