// Reading inputs for a trained model (model/inputs.h): class folders in the
// model's label numbering; models of other units composed (model/compose.h).
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/data/images.h"
#include "ebm/data/integer_arrays.h"
#include "ebm/io/io.h"
#include "ebm/energy/registry.h"
#include "ebm/energy/standardized.h"
#include "ebm/model/compose.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"

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
// numbers), a name the model lacks is an error, numbered ones keep theirs;
// named folders for a model without class names are an error.
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
  // (a model trained on folders 1/ 2/ 7/, labels by value: folder 7 is its third class)
  png(dir + "/numbered/02/a.png", {4, 5}, 1);
  info.class_names = {"1", "2", "7"};
  EXPECT_TRUE(torch::equal(ebm::read_model_dataset(dir + "/numbered", info).y, torch::tensor({1, 2}, torch::kLong)));
  png(dir + "/numbered/3/a.png", {4, 5}, 1);
  EXPECT_EQ(code_of([&] { ebm::read_model_dataset(dir + "/numbered", info); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("'3' is not one of the model's classes (1, 2, 7)"), std::string::npos) << msg;
  // (a model trained on numbered labels has no names to match named folders
  // by: their sorted places would be guesses)
  info.class_names.clear();
  EXPECT_EQ(code_of([&] { ebm::read_model_dataset(dir + "/some", info); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("class sub-folders are named ('dog', ...) but the model's classes have none"), std::string::npos)
      << msg;
  fs::remove_all(dir);
}

// A built-in set's labels given to a model: by its class names (case
// aside), never as bare indices of another numbering; a class the model
// lacks is an error naming both; its images alone (OOD) need no labels.
TEST(BuiltinSets, LabelsTakeTheModelsClassNames) {
  ebm::ModelInfo info;
  info.event_shape = {1, 28, 28};
  info.pixels = ebm::PixelMap();
  const auto own = ebm::read_model_dataset("fashion_mnist:test", info);  // (no names: its own indices)
  ASSERT_EQ(own.size(), 10000);
  // The model's classes in sorted order of lower-case names: bag=0, ...
  info.class_names = {"ankle boot", "bag", "coat", "dress", "pullover", "sandal", "shirt", "sneaker", "t-shirt/top",
                      "trouser"};
  const auto mapped = ebm::read_model_dataset("fashion_mnist:test", info);
  const auto want = torch::tensor({8, 9, 4, 3, 2, 5, 6, 7, 1, 0}, torch::kLong).index_select(0, own.y);
  EXPECT_TRUE(torch::equal(mapped.y, want));
  EXPECT_TRUE(torch::equal(mapped.x, own.x));
  info.class_names = {"bag", "boot", "coat"};
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::read_model_dataset("fashion_mnist:test", info); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("class 'T-shirt/top' is none of the model's classes (bag, boot, coat)"), std::string::npos) << msg;
  EXPECT_EQ(ebm::read_model_data("fashion_mnist:test", info).size(0), 10000);
}

// Images stored channels last ([N, H, W, C], numpy's and PIL's order) read
// as [N, C, H, W] for training and for a trained model alike.
TEST(NpyImages, ChannelsLastReadAsChannelsFirst) {
  const std::string dir = fresh_dir("npy_nhwc");
  fs::create_directories(dir);
  const auto nchw = torch::arange(2 * 3 * 4 * 5, torch::kLong).remainder(256).to(torch::kUInt8).reshape({2, 3, 4, 5});
  ebm::write_npy(dir + "/nhwc.npy", nchw.permute({0, 2, 3, 1}).contiguous().to(torch::kFloat));
  const auto stored = ebm::read_array_raw(dir + "/nhwc.npy");
  ASSERT_EQ(stored.sizes(), (c10::IntArrayRef{2, 4, 5, 3}));
  const auto d = ebm::load_data_path(dir + "/nhwc.npy");
  EXPECT_TRUE(torch::equal(d.x, nchw.to(torch::kFloat)));
  EXPECT_NE(d.description.find("channels last"), std::string::npos) << d.description;
  // (channels first, and grey [N, H, W, 1], as they are or made first)
  EXPECT_TRUE(torch::equal(ebm::channels_first(nchw, "a.npy"), nchw));
  EXPECT_EQ(ebm::channels_first(torch::zeros({2, 28, 28, 1}), "a.npy").sizes(), (c10::IntArrayRef{2, 1, 28, 28}));
  EXPECT_EQ(ebm::channels_first(torch::zeros({2, 3, 28, 3}), "a.npy").sizes(), (c10::IntArrayRef{2, 3, 28, 3}));
  // RGBA or grey + alpha stored last: refused, not read as 4 x H wide images.
  for (int64_t alpha : {2, 4}) {
    try {
      ebm::channels_first(torch::zeros({2, 12, 20, alpha}, torch::kUInt8), "rgba.npy");
      ADD_FAILURE() << "[N, H, W, " << alpha << "] accepted";
    } catch (const ebm::Error& e) {
      EXPECT_EQ(e.code(), ebm::ExitCode::kBadData);
      EXPECT_NE(std::string(e.what()).find("rgba.npy: an array of [2, 12, 20, " + std::to_string(alpha) + "]"),
                std::string::npos) << e.what();
    }
  }
  ebm::ModelInfo info;
  info.event_shape = {3, 4, 5};
  const auto x = ebm::read_model_input(dir + "/nhwc.npy", info);
  EXPECT_TRUE(torch::equal(x, nchw.to(torch::kFloat)));
  fs::remove_all(dir);
}

// Grey images stored as RGB (a JPEG's way) are grey for a model of grey
// images; colour ones are not (exit 65 naming the shapes). Grey images are
// RGB of equal channels for a colour model.
TEST(ImageFiles, GreyStoredAsRgbReadsAsGreyForAGreyModel) {
  const std::string dir = fresh_dir("grey_rgb");
  fs::create_directories(dir);
  ebm::ModelInfo info;
  info.event_shape = {1, 4, 5};
  info.pixels = ebm::PixelMap();  // (0-255 onto [-1, 1])
  ebm::write_png(dir + "/g.png", torch::full({4, 5, 3}, 255, torch::kUInt8));
  const auto x = ebm::read_model_input(dir + "/g.png", info);
  EXPECT_EQ(x.sizes(), (c10::IntArrayRef{1, 1, 4, 5}));
  EXPECT_TRUE(torch::allclose(x, torch::ones({1, 1, 4, 5})));
  auto c = torch::full({4, 5, 3}, 255, torch::kUInt8);
  c.select(2, 0).fill_(0);
  ebm::write_png(dir + "/c.png", c);
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::read_model_input(dir + "/c.png", info); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("([1, 3, 4, 5]) for a model whose samples are [1, 4, 5]"), std::string::npos) << msg;
  // A colour model takes grey images (a folder of grey-as-RGB files reads as
  // grey) as RGB of equal channels.
  info.event_shape = {3, 4, 5};
  fs::create_directories(dir + "/greys");
  ebm::write_png(dir + "/greys/a.png", torch::full({4, 5, 3}, 0, torch::kUInt8));
  ebm::write_png(dir + "/greys/b.png", torch::full({4, 5}, 255, torch::kUInt8));
  const auto rgb = ebm::read_model_input(dir + "/greys", info);
  EXPECT_EQ(rgb.sizes(), (c10::IntArrayRef{2, 3, 4, 5}));
  EXPECT_TRUE(torch::allclose(rgb[0], -torch::ones({3, 4, 5})));
  EXPECT_TRUE(torch::allclose(rgb[1], torch::ones({3, 4, 5})));
  fs::remove_all(dir);
}

// Two models of the same space in other units (other standardisations):
// the composition is sampled in the first model's units, each term's energy
// taken in the user's units (up to one constant): "and" at u is the sum of
// the two user-unit energies at the first map's x = shift + scale u.
TEST(Compose, ModelsOfOtherUnitsShareTheFirstModelsUnits) {
  const std::string dir = fresh_dir("compose_units");
  fs::create_directories(dir);
  ebm::Config ec(ebm::energy_schema());
  ec.set("energy.hidden=[8]");
  ebm::AffineMap a, b;
  a.shift = torch::tensor({5000.0, 0.04}, torch::kDouble);
  a.scale = torch::tensor({500.0, 0.005}, torch::kDouble);
  b.shift = torch::tensor({4900.0, 0.05}, torch::kDouble);
  b.scale = torch::tensor({700.0, 0.004}, torch::kDouble);
  torch::manual_seed(3);
  auto ea = ebm::build_energy(ec, {2}), eb = ebm::build_energy(ec, {2});
  ebm::save_model(dir + "/a.pt", *ea, ec, {2}, a);
  ebm::save_model(dir + "/b.pt", *eb, ec, {2}, b);
  auto c = ebm::load_composed({{dir + "/a.pt"}, {dir + "/b.pt"}}, "and", {});
  ASSERT_TRUE(c.units.defined());
  EXPECT_TRUE(torch::equal(c.units.shift, a.shift));
  auto ua = ebm::load_model(dir + "/a.pt"), ub = ebm::load_model(dir + "/b.pt");  // (the user's units)
  auto u = torch::tensor({{0.0, 0.0}, {1.0, -2.0}, {-0.5, 3.0}}, torch::kDouble);
  auto x = c.units.to_user(u);
  torch::NoGradGuard ng;
  auto want = (ua->energy(x.to(torch::kFloat)) + ub->energy(x.to(torch::kFloat))).to(torch::kDouble);
  auto got = c.energy->energy(u.to(torch::kFloat)).to(torch::kDouble);
  auto diff = got - want;  // (one constant: the log-Jacobians)
  EXPECT_NEAR((diff - diff[0]).abs().max().item<double>(), 0.0, 1e-3 * (1 + want.abs().max().item<double>()));
  fs::remove_all(dir);
}
