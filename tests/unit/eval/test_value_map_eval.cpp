// Evaluation of float-image models in the user's units (data.standardize's
// value map): AIS's test NLL is the density of the values as saved.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "common/nets.h"
#include "common/tmp.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/pixels.h"
#include "ebm/eval/tasks.h"
#include "ebm/io/io.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"
#include "ebm/train/train.h"

using namespace ebm;
namespace fs = std::filesystem;

// The same images in [-1, 1] and as 0-255 floats train one model (to float
// rounding: test_value_map.cpp); AIS with one seed gives both the same log Z,
// so their test NLLs differ by the maps' Jacobians alone: D (log g_unit -
// log g_wide), about 16 log 127.5 = 77.6 nats for [1, 4, 4] images. A missing
// Jacobian is off by all of it.
TEST(ValueMapEval, AisNllIsTheDensityOfTheSavedValues) {
  const std::string root = test_helpers::fresh_dir("value_map_ais");
  fs::create_directories(root);
  auto gen = make_generator(8, kStreamData);
  auto unit = at::rand({40, 1, 4, 4}, gen).mul_(2).sub_(1);
  write_npy(root + "/unit.npy", unit);
  write_npy(root + "/wide.npy", unit.add(1).mul_(127.5));
  std::map<std::string, double> nll, gain;
  for (const std::string name : {"unit", "wide"}) {
    Config c = make_train_config();
    c.load_string(std::string("seed = 3\n") + test_helpers::tiny_conv_image_toml() +
                      "[buffer]\ncapacity = 50\ninit = \"uniform\"\n[train]\nbatch_size = 8\nlog_every = 1\n",
                  "ais.toml");
    c.set("data.path=" + root + "/" + name + ".npy");
    c.set("data.test_fraction=0");
    c.set("train.steps=2");
    Trainer t(c, root + "/" + name);
    t.run(false);
    ModelInfo info;
    Energy e = load_model(root + "/" + name + "/model.pt", &info);
    ASSERT_TRUE(info.values.has_value()) << name;
    gain[name] = info.values->gain();
    Config task(eval_task_schema());
    task.set_value("task.name", std::string("ais"));
    task.set_value("task.model", root + "/" + name + "/model.pt");
    task.set_value("task.data", root + "/" + name + ".npy");
    task.set_value("task.temps", int64_t(20));
    task.set_value("task.chains", int64_t(16));
    task.validate();
    auto r = eval_task_registry().make(task, *e, info);
    nll[name] = r.json["test"]["nll"].get<double>();
  }
  const double want = 16 * (std::log(gain["unit"]) - std::log(gain["wide"]));
  EXPECT_NEAR(want, 16 * std::log(127.5), 0.1);
  EXPECT_NEAR(nll["wide"] - nll["unit"], want, 1e-2) << nll["unit"] << " " << nll["wide"];
  fs::remove_all(root);
}

// Float images far narrower than a value-mapped model's training range
// ([0, 1] for a model of 0-255 floats) are read in the model's units, with
// one warning naming both ranges; images that fill the range get none.
TEST(ValueMapEval, ImagesInOtherUnitsAreWarnedOf) {
  const std::string root = test_helpers::fresh_dir("value_map_warn");
  fs::create_directories(root);
  auto gen = make_generator(9, kStreamData);
  const auto wide = at::rand({6, 1, 4, 4}, gen).mul_(255);
  write_npy(root + "/wide.npy", wide);
  write_npy(root + "/unit.npy", wide / 255);
  ModelInfo info;
  info.event_shape = {1, 4, 4};
  info.values = ValueMap{0.0, 255.0, -1.0, 1.0};
  set_notes(true);
  testing::internal::CaptureStderr();
  const auto x = read_model_input(root + "/wide.npy", info);
  const std::string quiet = testing::internal::GetCapturedStderr();
  testing::internal::CaptureStderr();
  const auto u = read_model_input(root + "/unit.npy", info);
  const std::string warned = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(quiet.empty()) << quiet;
  EXPECT_NE(warned.find("unit.npy: its values span ["), std::string::npos) << warned;
  EXPECT_NE(warned.find("under a tenth"), std::string::npos) << warned;
  EXPECT_NE(warned.find("[0, 255]"), std::string::npos) << warned;
  EXPECT_TRUE(torch::allclose(u, info.values->to_model(wide / 255)));
  EXPECT_TRUE(torch::allclose(x, info.values->to_model(wide)));
  fs::remove_all(root);
}
