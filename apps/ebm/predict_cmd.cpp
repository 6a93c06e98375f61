// ebm predict --model M --input PAST --horizon H --out FUTURE [--truth FILE]
//             [--method mode|sample --steps K --chains C --sampler SPEC --seed S]
// Trajectory prediction: the H steps after each row of PAST, the model's
// conditional mode given the past (default) or a draw from it
// (eval/prediction.h); with --truth, the MSE per horizon step beside
// constant-velocity extrapolation, the last position held, and a Gaussian
// fitted to the run's training trajectories, as JSON on stdout.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "commands.h"
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/trajectories.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/images.h"
#include "ebm/eval/prediction.h"
#include "ebm/io/io.h"
#include "ebm/model/input_units.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"
#include "ebm/train/train.h"

namespace ebm::cli {

Runner add_predict(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, input, out, truth, sampler, method = "auto";
    int64_t horizon = 0, steps = 200, chains = 4, step_values = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("predict", "predict the next steps of trajectories by sampling them given the past");
  cmd->add_option("--model", a->model,
                  "model.pt of a run on trajectories (data.name = particles or pendulum, or data.path with "
                  "data.step_values)")
      ->required();
  cmd->add_option("--input", a->input, "the past: CSV or NPY rows of t_p >= 2 steps (t_p * F values, step-major)")
      ->required();
  cmd->add_option("--horizon", a->horizon, "H: steps to predict (t_p + H <= the model's T)")->required();
  cmd->add_option("--out", a->out, "the predicted steps: .csv or .npy, [N, H * F]")->required();
  cmd->add_option("--truth", a->truth,
                  "the true continuation [N, >= H * F]: print JSON with the MSE per horizon step for the model and "
                  "for constant-velocity extrapolation");
  cmd->add_option("--method", a->method,
                  "mode: the most likely future given the past (descent from the last position; the least squared "
                  "error where the conditional is close to Gaussian) | sample: a draw by --sampler | auto (default: "
                  "sample when --sampler is given, else mode)")
      ->capture_default_str();
  cmd->add_option("--steps", a->steps, "descent iterations (mode) or sampler transitions per chain (sample)")
      ->capture_default_str();
  cmd->add_option("--chains", a->chains, "sample: chains per row; the one of lowest energy is kept")
      ->capture_default_str();
  cmd->add_option("--sampler", a->sampler, "sample: sampler spec (default: the model's training sampler)");
  cmd->add_option("--step-values", a->step_values,
                  "F, values per step, for a model of trajectories whose run did not say (data.step_values)");
  add_common(cmd, a->common);
  return [a]() -> int {
    const c10::Device device = apply_common(a->common);
    EBM_CHECK_USAGE(a->horizon >= 1, "--horizon must be >= 1, got ", a->horizon);
    EBM_CHECK_USAGE(a->steps >= 0, "--steps must be >= 0, got ", a->steps);
    EBM_CHECK_USAGE(a->chains >= 1, "--chains must be >= 1, got ", a->chains);
    EBM_CHECK_USAGE(a->method == "auto" || a->method == "mode" || a->method == "sample",
                    "--method must be mode, sample or auto, got '", a->method, "'");
    const std::string method = a->method != "auto" ? a->method : a->sampler.empty() ? "mode" : "sample";
    EBM_CHECK_USAGE(method == "sample" || a->sampler.empty(), "--sampler ", a->sampler,
                    ": --method mode descends, it draws nothing (--method sample)");
    const std::string ext = file_extension(a->out);
    EBM_CHECK_USAGE(ext == ".csv" || ext == ".npy", "--out ", a->out, ": extension must be .csv or .npy");
    check_writable(a->out);
    ModelInfo info;
    Energy user = load_model(a->model, &info);
    EBM_CHECK_DATA(info.event_shape.size() == 1 && !info.pixels, a->model, ": an image model (samples of ",
                   c10::IntArrayRef(info.event_shape), "); predict needs a model of trajectories");
    EBM_CHECK_USAGE(a->step_values >= 0, "--step-values must be >= 0 (0: the model's own), got ", a->step_values);
    const int64_t known =
        info.data_toml.empty() ? 0 : trajectory_step_dim(data_config(info.data_toml, a->model + "[data_config]"));
    EBM_CHECK_USAGE(a->step_values == 0 || known == 0 || a->step_values == known, "--step-values ", a->step_values,
                    ": ", a->model, " was trained on steps of ", known, " values");
    const int64_t f = a->step_values > 0 ? a->step_values : known;
    EBM_CHECK_DATA(f > 0, a->model, ": not a model of trajectories (its run's data.name must be particles or "
                   "pendulum, or data.path with data.step_values = F; --step-values F says it for older runs; "
                   "model files written before the [data] table was kept lack it)");
    EBM_CHECK_USAGE(info.event_shape[0] % f == 0 && info.event_shape[0] >= 2 * f, "--step-values ", f, ": ",
                    a->model, "'s rows of ", info.event_shape[0], " values are not T >= 2 steps of ", f);
    const int64_t t = trajectory_steps(info.event_shape, f);
    auto past = read_matrix(a->input);
    const int64_t tp = past_steps(past, f, t, a->horizon, a->input);
    torch::Tensor truth;
    if (!a->truth.empty()) {
      truth = read_matrix(a->truth);
      EBM_CHECK_DATA(truth.size(0) == past.size(0) && truth.size(1) >= a->horizon * f, a->truth, ": want ",
                     past.size(0), " rows of >= ", a->horizon * f, " values (H = ", a->horizon, " steps of ", f,
                     "), got ", truth.size(0), " x ", truth.size(1));
    }
    auto [energy, units] = sampling_view(user);
    if (units.defined() && past.size(1) <= units.shift.numel()) {
      // (the past is a prefix of a trajectory: the map's first columns)
      AffineMap prefix;
      prefix.shift = units.shift.narrow(0, 0, past.size(1));
      prefix.scale = units.scale.narrow(0, 0, past.size(1));
      warn_if_far_from_training(prefix, info, past, a->input);
    }
    energy->to(device);
    // (the run's own training trajectories, for the descent's scale when the
    // model has no standardisation, and for the Gaussian baseline)
    std::string why;
    // (rebuilt only where needed: a simulated set's trajectories take a while)
    std::optional<DataSplit> split;
    if (truth.defined() || (method == "mode" && !units.defined())) split = model_data_split(info, a->model, &why);
    torch::Tensor future;
    if (method == "mode") {
      double var = 4.0;  // (the model's units: data sd 2 by default)
      if (units.defined()) {
        var = std::pow(model_standardize_sd(info), 2);
      } else if (split && split->train.size() >= 2) {
        var = split->train.x.flatten(1).to(torch::kDouble).var(0).mean().item<double>();
      }
      future = predict_mode(*energy, units, past.to(device), f, a->horizon, a->steps, var).to(torch::kCPU);
    } else {
      auto sampler = model_sampler(info, a->sampler);
      auto gen = make_generator(a->common.seed, kStreamSample, device);
      auto opt = PredictionOptions(f, a->horizon).steps(a->steps).chains(a->chains);
      future = predict_trajectories(*energy, units, *sampler, past.to(device), opt, gen).to(torch::kCPU);
    }
    check_finite_rows(future, "predicted steps");
    write_matrix(a->out, future);
    if (truth.defined()) {
      auto model_mse = per_step_mse(future, truth, f);
      auto cv_mse = per_step_mse(constant_velocity(past, f, a->horizon), truth, f);
      auto held_mse = per_step_mse(last_position(past, f, a->horizon), truth, f);
      nlohmann::json mse = {{"model", model_mse}, {"constant_velocity", cv_mse}, {"last_position", held_mse}};
      // (a model well behind both trivial predictors at every step has
      // learned nothing usable of the motion: say so beside the numbers; one
      // behind constant velocity alone, near-exact on near-straight tracks,
      // may still be far ahead of the position held)
      bool behind = true;
      for (size_t h = 0; h < model_mse.size(); ++h)
        behind = behind && model_mse[h] > 1.5 * std::max(cv_mse[h], held_mse[h]);
      if (behind)
        notes() << "ebm predict: warning: the model's error is well above both constant velocity's and the last "
                   "position held's at every step (step 1: "
                << model_mse[0] << " against " << cv_mse[0] << " and " << held_mse[0]
                << "): it has not learned the motion; train longer, or, where trajectories start far apart for how "
                   "far they move, on positions relative to each one's first step (docs/trajectories.md)\n";
      if (split && split->train.size() >= 2)
        mse["gaussian"] = per_step_mse(gaussian_prediction(split->train.x.flatten(1), past, f, a->horizon), truth, f);
      // (a model behind a baseline over the horizon, named beside the numbers:
      // with 2 past steps of 20 a probe's model averaged 102 against constant
      // velocity's 14 and the Gaussian's 13, without a word)
      if (!behind) {
        auto mean_of = [](const std::vector<double>& v) {
          double m = 0;
          for (double e : v) m += e / double(v.size());
          return m;
        };
        const double model = mean_of(model_mse);
        std::ostringstream better;
        better.precision(4);
        // (by over 10%: on linear-Gaussian motion the Gaussian is the optimum
        // a healthy model's mode approaches from above; a draw, --method
        // sample, has about twice the conditional mean's error, so it is
        // held against the trivial predictors alone)
        for (const char* k : {"gaussian", "constant_velocity", "last_position"})
          if (mse.contains(k) && (method == "mode" || std::string(k) != "gaussian") &&
              1.1 * mean_of(mse[k].get<std::vector<double>>()) < model)
            better << (better.tellp() > 0 ? ", " : "") << k << " " << mean_of(mse[k].get<std::vector<double>>());
        if (better.tellp() > 0)
          notes() << "ebm predict: note: baselines with a mean squared error over the " << a->horizon
                  << " steps over 10% below the model's " << std::setprecision(4) << model << std::setprecision(6)
                  << ": " << better.str() << "\n";
      }
      nlohmann::json j = {{"n", past.size(0)}, {"past_steps", tp},  {"horizon", a->horizon}, {"step_dim", f},
                          {"model_steps", t},  {"method", method},  {"steps", a->steps},     {"mse", mse}};
      if (method == "sample") j["chains"] = a->chains;
      if (!(split && split->train.size() >= 2)) j["gaussian"] = {{"none", why}};
      std::cout << j.dump() << "\n";
    }
    return 0;
  };
}

}  // namespace ebm::cli
