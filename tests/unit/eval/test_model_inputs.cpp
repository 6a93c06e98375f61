// Reading inputs for a trained model (model/inputs.h): class folders in the
// model's label numbering.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/io/io.h"
#include "ebm/model/inputs.h"

namespace fs = std::filesystem;
using ebm::test_helpers::code_of;
using ebm::test_helpers::fresh_dir;

namespace {
// A grey [H, W] image of one value.
void png(const std::string& path, std::vector<int64_t> shape, int value) {
  fs::create_directories(fs::path(path).parent_path());
  ebm::write_png(path, torch::full(shape, value, torch::kUInt8));
}
}  // namespace

// A folder read for a trained model: named sub-folders take the model's
// labels by name (a folder with only some of the classes keeps their
// numbers), a name the model lacks is an error, numbered ones keep theirs.
TEST(ImageFolder, ModelInputsTakeTheModelsClassNumbers) {
  const std::string dir = fresh_dir("folder_model");
  png(dir + "/some/eel/a.png", {4, 5}, 1);
  png(dir + "/some/dog/a.png", {4, 5}, 2);
  png(dir + "/some/dog/b.png", {4, 5}, 3);
  ebm::ModelInfo info;
  info.event_shape = {1, 4, 5};
  info.pixels = ebm::PixelMap();
  info.class_names = {"cat", "dog", "eel"};
  auto d = ebm::read_model_dataset(dir + "/some", info);
  EXPECT_TRUE(torch::equal(d.y, torch::tensor({1, 1, 2}, torch::kLong))) << d.y;  // (dog, dog, eel)
  png(dir + "/more/fox/a.png", {4, 5}, 1);
  png(dir + "/more/cat/a.png", {4, 5}, 1);
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::read_model_dataset(dir + "/more", info); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("'fox' is not one of the model's classes (cat, dog, eel)"), std::string::npos) << msg;
  png(dir + "/numbered/7/a.png", {4, 5}, 1);
  EXPECT_TRUE(torch::equal(ebm::read_model_dataset(dir + "/numbered", info).y, torch::tensor({7}, torch::kLong)));
  info.class_names.clear();  // (a model that does not say: the folder's own order)
  EXPECT_TRUE(torch::equal(ebm::read_model_dataset(dir + "/some", info).y, torch::tensor({0, 0, 1}, torch::kLong)));
  fs::remove_all(dir);
}

