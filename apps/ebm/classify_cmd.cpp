// ebm classify --model model.pt --input FILE --out probs.csv [--labels FILE]:
// class probabilities softmax(-E(x, y)) of every input row, in input order (a
// folder's images in the byte order of their names).
#include <cmath>
#include <cstdlib>
#include <optional>
#include <iostream>

#include "commands.h"
#include "named_rows.h"
#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/eval/images.h"
#include "ebm/eval/tasks.h"
#include "ebm/eval/per_class.h"
#include "ebm/data/labels.h"
#include "ebm/io/io.h"
#include "ebm/energy/standardized.h"
#include "ebm/model/inputs.h"
#include "ebm/model/columns.h"
#include "ebm/model/model.h"
#include "ebm/model/temperature.h"

namespace ebm::cli {

Runner add_classify(CLI::App& app) {
  struct Args {
    Common common;
    std::string model, input, out, labels, temperature = "model";
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("classify", "class probabilities of every input row (a class-conditional model)");
  cmd->add_option("--model", a->model, "model.pt of a classifier or conditional energy")->required();
  cmd->add_option("--input", a->input,
                  "rows: CSV, NPY, IDX, an image, a folder of images (rows in the byte order of the file names, class sub-folders "
                  "in label order; class sub-folders: also print the accuracy), or "
                  "fashion_mnist / mnist (their test split) for an image model")
      ->required();
  cmd->add_option("--out", a->out,
                  "output CSV: one row of probabilities per input row, columns p0 ... pK-1 (p_NAME for a model "
                  "trained on class folders)")
      ->required();
  cmd->add_option("--labels", a->labels, "true labels (CSV, NPY, IDX or .txt, one per row, as the model was trained: class indices, label "
                  "values or words): also print the accuracy");
  cmd->add_option("--temperature", a->temperature,
                  "T of softmax(-E(x, y) / T): model = the T its training fitted on validation rows (train.calibrate; "
                  "1 when it fitted none), or a number > 0 (1 = the softmax as trained)")
      ->capture_default_str();
  // (a folder with class sub-folders is labelled by them, mapped to the
  // model's classes by name)
  add_common(cmd, a->common);
  return [a]() -> int {
    const c10::Device device = apply_common(a->common);
    EBM_CHECK_USAGE(file_extension(a->out) == ".csv", "--out ", a->out, ": extension must be .csv");
    check_writable(a->out);
    std::optional<double> t_arg;
    if (a->temperature != "model") {
      char* end = nullptr;
      const double t = std::strtod(a->temperature.c_str(), &end);
      EBM_CHECK_USAGE(end != a->temperature.c_str() && *end == '\0' && std::isfinite(t) && t > 0,
                      "--temperature must be 'model' or a number > 0, got '", a->temperature, "'");
      t_arg = t;
    }
    ModelInfo info;
    Energy energy = load_model(a->model, &info);
    const int64_t k = energy->num_classes();
    const std::optional<double> temperature = t_arg ? t_arg : info.temperature;
    EBM_CHECK_USAGE(k > 0, a->model, ": not a classifier (train one with energy.conditional = true)");
    // (pixel conventions for image models and any model trained on pixels,
    // flattened images included; a class folder or a built-in set brings its
    // labels, in the model's numbering)
    torch::Tensor x, y;
    if (info.event_shape.size() == 3 || info.pixels) {
      Dataset d = read_model_dataset(a->input, info, "test", a->labels);
      x = d.x;
      y = d.y;
    } else {
      check_csv_columns(a->input, info);
      auto r = read_array(a->input);
      EBM_CHECK_DATA(r[0].numel() == info.event_shape[0], a->input, ": rows of ", r[0].numel(),
                     " values for a model of ", info.event_shape[0]);
      x = r.reshape({r.size(0), info.event_shape[0]});
    }
    warn_if_far_from_training(sampling_view(energy).second, info, x, a->input);
    const std::string labels_from = a->labels.empty() ? a->input : a->labels;
    if (!a->labels.empty() && !y.defined()) {
      const auto file = read_label_file(a->labels, x.size(0), info.class_names);  // (one per input row)
      y = labels_as_trained(file, info.class_names, k, a->labels);  // (in the model's numbering)
    }
    if (y.defined()) check_labels_in_classes(y, k, labels_from);  // (a folder's or a built-in set's labels come counted)
    if (const int64_t out = rows_outside_classes(y, model_trained_classes(info)); out > 0)
      notes() << "ebm classify: note: " << out << " of " << y.numel() << " rows of " << labels_from << " belong to "
              << "classes the model was not trained on (its data.classes): the accuracy counts them as errors ("
              << "ebm eval --task classify leaves them out)\n";
    energy->to(device);
    auto p = class_probabilities(*energy, x.to(device), 256, a->input).to(torch::kCPU, torch::kDouble);
    p = scale_by_model_temperature(p, temperature);
    std::vector<std::string> header;
    // (p_<name> when the model knows its classes' names, class folders' or
    // label values' say; else p<k>)
    const bool named = int64_t(info.class_names.size()) == k, by_value = named_by_value(info.class_names);
    for (int64_t i = 0; i < k; ++i) {
      const std::string number = std::to_string(i);
      std::string name = named && (by_value || info.class_names[size_t(i)] != number)
                             ? "p_" + info.class_names[size_t(i)]
                                                                         : "p" + number;
      for (char& ch : name)
        if (ch == ',' || ch == '"' || ch == '\n' || ch == '\r') ch = '_';
      header.push_back(name);
    }
    // (a folder's rows carry their files' names: its order is byte order)
    if (const auto names = folder_row_names(a->input); int64_t(names.size()) == p.size(0))
      write_named_csv(a->out, "file", names, p, header);
    else
      write_csv(a->out, p, header);
    if (y.defined()) {
      const double acc = (p.argmax(1) == y).to(torch::kDouble).mean().item<double>();
      const double nll = -p.gather(1, y.unsqueeze(1)).clamp_min(1e-300).log().mean().item<double>();
      const double balanced = per_class(p, y, info.class_names).balanced_accuracy;  // (imbalanced classes)
      std::cout << "{\"n\": " << x.size(0) << ", \"accuracy\": " << acc << ", \"balanced_accuracy\": " << balanced
                << ", \"nll\": " << nll << ", \"temperature\": " << temperature.value_or(1.0) << "}\n";
    }
    return 0;
  };
}

}  // namespace ebm::cli
