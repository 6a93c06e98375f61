// ebm sample (--model model.pt | --target NAME) --sampler SPEC --n N --steps K
//            [--init FILE] --out FILE.{csv,npy,png}
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"
#include "ebm/train/train.h"

namespace ebm::cli {

Runner add_sample(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, target, sampler = "ula:step=0.01", init, out;
    int64_t n = 1000, steps = 1000, dim = 2;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("sample", "draw samples from a model or a built-in target");
  auto* m = cmd->add_option("--model", a->model, "model.pt from ebm train");
  auto* t = cmd->add_option("--target", a->target,
                            "built-in energy: gaussian, mixture, funnel, banana, double_well");
  m->excludes(t);
  cmd->add_option("--dim", a->dim, "dimension of --target")->capture_default_str();
  cmd->add_option("--sampler", a->sampler, "spec, e.g. \"langevin:step=0.01,noise=0.005\"")
      ->capture_default_str();
  cmd->add_option("--n", a->n, "number of chains")->capture_default_str();
  cmd->add_option("--steps", a->steps, "transitions per chain")->capture_default_str();
  cmd->add_option("--init", a->init, "initial states (CSV/NPY, n rows); default N(0, I)");
  cmd->add_option("--out", a->out, "final states: .csv, .npy or .png (2D)")->required();
  add_common(cmd, a->common);
  return [a]() -> int {
    apply_common(a->common);
    EBM_CHECK_USAGE(!a->model.empty() || !a->target.empty(),
                    "sample: give --model FILE or --target NAME");
    EBM_CHECK_USAGE(a->n >= 1, "--n must be >= 1, got ", a->n);
    EBM_CHECK_USAGE(a->steps >= 0, "--steps must be >= 0, got ", a->steps);
    const std::string ext = file_extension(a->out);
    EBM_CHECK_USAGE(ext == ".csv" || ext == ".npy" || ext == ".png", "--out ", a->out,
                    ": extension must be .csv, .npy or .png");
    Energy energy;
    AnalyticEnergy target;
    if (!a->model.empty()) {
      energy = load_model(a->model);
    } else {
      target = make_target(a->target, a->dim);
      energy = target;
    }
    const int64_t dim = energy->event_shape()[0];
    EBM_CHECK_USAGE(ext != ".png" || dim == 2, "--out ", a->out, ": PNG needs a 2D energy, got D=",
                    dim);
    auto sampler = make_sampler(a->sampler);
    auto gen = make_generator(a->common.seed, kStreamSample);
    torch::Tensor x0;
    if (!a->init.empty()) {
      x0 = read_matrix(a->init);
      EBM_CHECK_DATA(x0.size(0) == a->n && x0.size(1) == dim, a->init, ": expected ", a->n,
                     " rows of ", dim, " columns, got ", x0.size(0), " x ", x0.size(1));
    } else {
      x0 = at::normal(0.0, 1.0, {a->n, dim}, gen, torch::kFloat);
    }
    if (target) x0 = x0.to(torch::kDouble);
    ChainState chains(x0);
    Stats total;
    total.accept_rate = 0;
    Progress progress("sample", a->steps);
    for (int64_t k = 0; k < a->steps; ++k) {
      Stats s = sampler->step(*energy, chains, gen);
      total.accept_rate += s.accept_rate;
      total.n_divergent += s.n_divergent;
      total.step_size = s.step_size;
      progress.update(k + 1, "accept " + std::to_string(total.accept_rate / (k + 1)));
    }
    progress.finish();
    auto x = chains.x.to(torch::kFloat);
    if (ext == ".png") {
      torch::Tensor backdrop;
      if (target) backdrop = target->sample(5000, gen);
      scatter_png(a->out, x, backdrop, bounding_box(backdrop.defined() ? backdrop : x, 0.1));
    } else {
      std::vector<std::string> header;
      for (int64_t i = 0; i < dim; ++i) header.push_back("x" + std::to_string(i));
      write_matrix(a->out, x, header);
    }
    auto xd = chains.x.to(torch::kDouble);
    auto mean = xd.mean(0), sd = xd.std(0);
    std::cout << "sampler " << sampler->name() << ": " << a->n << " chains x " << a->steps
              << " steps, accept_rate " << (a->steps ? total.accept_rate / a->steps : 1.0)
              << ", n_divergent " << total.n_divergent << "\n";
    std::cout << std::setw(6) << "dim" << std::setw(12) << "mean" << std::setw(12) << "sd";
    if (target) std::cout << std::setw(12) << "true mean" << std::setw(12) << "true sd";
    std::cout << "\n";
    for (int64_t i = 0; i < std::min<int64_t>(dim, 10); ++i) {
      std::cout << std::setw(6) << i << std::setw(12) << mean[i].item<double>() << std::setw(12)
                << sd[i].item<double>();
      if (target)
        std::cout << std::setw(12) << target->mean()[i].item<double>() << std::setw(12)
                  << std::sqrt(target->covariance()[i][i].item<double>());
      std::cout << "\n";
    }
    return 0;
  };
}

}  // namespace ebm::cli
