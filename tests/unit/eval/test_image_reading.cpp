// How image files are read (data/image_reading.h): data.image_size (any size
// made one [H, W]: a folder of mixed sizes), data.channels (grey and colour
// files made one channel count) and data.alpha (transparency composited), in
// training and for every command that reads images for such a model.
#include <gtest/gtest.h>

#include <stb/stb_image_write.h>

#include <cmath>
#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/data/image_reading.h"
#include "ebm/data/images.h"
#include "ebm/io/io.h"
#include "ebm/model/input_units.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"
#include "ebm/train/train.h"

namespace fs = std::filesystem;
using ebm::test_helpers::code_of;
using ebm::test_helpers::fresh_dir;

namespace {
ebm::ImageReading size_of(int64_t h, int64_t w, bool crop) {
  ebm::ImageReading s;
  s.height = h;
  s.width = w;
  s.crop = crop;
  return s;
}
}  // namespace

// Shrinking by whole factors averages blocks; growing is bilinear (a
// constant stays constant, a ramp stays a ramp between its ends); crop keeps
// the centre of the target's aspect ratio, stretch all of the image; pixels
// come back rounded into 0..255.
TEST(ImageReading, ResizeAveragesShrinksInterpolatesGrowthAndCropsTheCentre) {
  auto x = torch::arange(16, torch::kFloat).reshape({1, 1, 4, 4});
  auto half = ebm::resize_images(x, size_of(2, 2, true), false);
  EXPECT_TRUE(torch::allclose(half, torch::tensor({2.5f, 4.5f, 10.5f, 12.5f}).reshape({1, 1, 2, 2}))) << half;
  EXPECT_TRUE(ebm::resize_images(x, size_of(4, 4, true), false).is_same(x));  // (its own size: as it is)
  auto flat = torch::full({2, 3, 5, 7}, 200, torch::kUInt8);
  auto big = ebm::resize_images(flat, size_of(11, 13, false), true);
  EXPECT_EQ(big.sizes(), (c10::IntArrayRef{2, 3, 11, 13}));
  EXPECT_EQ(big.scalar_type(), torch::kUInt8);
  EXPECT_TRUE((big == 200).all().item<bool>());
  // A ramp across 4 columns enlarged to 8: monotone, within its ends.
  auto ramp = torch::arange(4, torch::kFloat).mul(80).reshape({1, 1, 1, 4}).expand({1, 1, 4, 4}).contiguous();
  auto wide = ebm::resize_images(ramp, size_of(4, 8, false), true).select(2, 0).reshape({-1});
  EXPECT_TRUE((wide.slice(0, 1) >= wide.slice(0, 0, -1)).all().item<bool>()) << wide;
  EXPECT_EQ(wide.min().item<float>(), 0.0f);
  EXPECT_EQ(wide.max().item<float>(), 240.0f);
  EXPECT_TRUE(torch::equal(wide, wide.round()));
  // A 2 x 6 image whose middle 2 x 2 is 100 and the rest 0: crop to 1 x 1
  // keeps the middle (100), stretch averages the whole (100 / 3).
  auto bar = torch::zeros({1, 1, 2, 6});
  bar.narrow(3, 2, 2).fill_(100);
  EXPECT_FLOAT_EQ(ebm::resize_images(bar, size_of(1, 1, true), false).item<float>(), 100.0f);
  EXPECT_NEAR(ebm::resize_images(bar, size_of(1, 1, false), false).item<float>(), 100.0 / 3, 1e-4);
  // One side shrinks, the other grows: [1, 1, 8, 2] to 4 x 4 stretched.
  auto tall = torch::arange(8, torch::kFloat).reshape({1, 1, 8, 1}).expand({1, 1, 8, 2}).contiguous();
  auto sq = ebm::resize_images(tall, size_of(4, 4, false), false);
  EXPECT_TRUE(torch::allclose(sq.select(3, 0).reshape({-1}), torch::tensor({0.5f, 2.5f, 4.5f, 6.5f}))) << sq;
  EXPECT_TRUE(torch::allclose(sq.select(3, 3), sq.select(3, 0)));
}

TEST(ImageReading, ConfigKeys) {
  ebm::Config c = ebm::make_train_config();
  EXPECT_FALSE(ebm::image_reading_of(c).resizes());
  c.set_value("data.image_size", std::vector<int64_t>{24});
  auto s = ebm::image_reading_of(c);
  EXPECT_EQ(s.height, 24);
  EXPECT_EQ(s.width, 24);
  EXPECT_TRUE(s.crop);
  c.set_value("data.image_size", std::vector<int64_t>{16, 40});
  c.set_value("data.image_fit", std::string("stretch"));
  s = ebm::image_reading_of(c);
  EXPECT_EQ(s.height, 16);
  EXPECT_EQ(s.width, 40);
  EXPECT_FALSE(s.crop);
  std::string msg;
  for (const auto& bad : std::vector<std::vector<int64_t>>{{0}, {8, 8, 8}, {-3, 4}}) {
    c.set_value("data.image_size", bad);
    EXPECT_EQ(code_of([&] { ebm::image_reading_of(c); }, &msg), ebm::ExitCode::kBadConfig);
    EXPECT_NE(msg.find("data.image_size must be [S] or [H, W]"), std::string::npos) << msg;
  }
  c.set_value("data.image_size", std::vector<int64_t>{8});
  c.set_value("data.image_fit", std::string("pad"));
  EXPECT_EQ(code_of([&] { ebm::image_reading_of(c); }, &msg), ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("data.image_fit must be crop or stretch"), std::string::npos) << msg;
  c.set_value("data.image_fit", std::string("crop"));
  c.set_value("data.channels", int64_t(2));
  EXPECT_EQ(code_of([&] { ebm::image_reading_of(c); }, &msg), ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("data.channels must be 0"), std::string::npos) << msg;
  c.set_value("data.channels", int64_t(3));
  c.set_value("data.alpha", std::string("grey"));
  EXPECT_EQ(code_of([&] { ebm::image_reading_of(c); }, &msg), ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("data.alpha must be auto, black, white or drop"), std::string::npos) << msg;
  c.set_value("data.alpha", std::string("white"));
  EXPECT_EQ(ebm::image_reading_of(c).alpha, ebm::Alpha::kWhite);
  EXPECT_EQ(ebm::image_reading_of(c).channels, 3);
}

// A folder of mixed sizes: an error that names the key without it, one size
// with it; a model trained so reads any size of image as its own.
TEST(ImageReading, FoldersOfMixedSizesAndTheModelsInputs) {
  const std::string dir = fresh_dir("image_size");
  fs::create_directories(dir + "/set/a");
  fs::create_directories(dir + "/set/b");
  ebm::write_png(dir + "/set/a/1.png", torch::full({6, 10}, 40, torch::kUInt8));
  ebm::write_png(dir + "/set/a/2.png", torch::full({12, 12}, 80, torch::kUInt8));
  ebm::write_png(dir + "/set/b/3.png", torch::full({3, 5}, 120, torch::kUInt8));
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::load_data_path(dir + "/set"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("(data.image_size resizes them)"), std::string::npos) << msg;
  const auto d = ebm::load_data_path(dir + "/set", size_of(4, 4, true));
  EXPECT_EQ(d.x.sizes(), (c10::IntArrayRef{3, 1, 4, 4}));
  EXPECT_TRUE(d.pixels);
  EXPECT_TRUE(torch::equal(d.x.amax({1, 2, 3}), torch::tensor({40.0f, 80.0f, 120.0f})));
  EXPECT_TRUE(torch::equal(d.y, torch::tensor({0, 0, 1}, torch::kLong)));
  // Rows that are not images.
  ebm::write_csv(dir + "/rows.csv", torch::zeros({3, 4}));
  EXPECT_EQ(code_of([&] { ebm::load_data_path(dir + "/rows.csv", size_of(4, 4, true)); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("data.image_size = 4x4 (crop) resizes images"), std::string::npos) << msg;
  // Training: the folder made 4 x 4; model.pt keeps the key, so commands
  // read an image of any size as 4 x 4 (and without it: an error).
  ebm::Config c = ebm::make_train_config();
  c.load_string("seed = 1\n[data]\npath = \"" + dir + "/set\"\ntest_fraction = 0.0\nimage_size = [4]\n"
                "[energy]\nname = \"conv\"\nchannels = [4]\nkernels = [3]\nstrides = [2]\npaddings = [1]\n"
                "hidden = [8]\n[objective]\nname = \"cd\"\n[sampler]\nsteps = 1\n[train]\nsteps = 1\n"
                "batch_size = 2\nsample_every = 0\n[eval]\nsample_chains = 2\nsample_steps = 1\n",
                "test");
  {
    ebm::Trainer t(c, dir + "/run");
    t.run(false);
  }
  ebm::ModelInfo info;
  ebm::load_model(dir + "/run/model.pt", &info);
  EXPECT_EQ(info.event_shape, (std::vector<int64_t>{1, 4, 4}));
  ebm::write_png(dir + "/big.png", torch::full({9, 7}, 255, torch::kUInt8));
  const auto x = ebm::read_model_input(dir + "/big.png", info);
  EXPECT_EQ(x.sizes(), (c10::IntArrayRef{1, 1, 4, 4}));
  EXPECT_TRUE(torch::allclose(x, torch::ones_like(x)));  // (255 is the top of [-1, 1])
  EXPECT_EQ(ebm::read_model_dataset(dir + "/set", info).y.numel(), 3);
  info.data_toml.clear();  // (a model trained without it)
  EXPECT_EQ(code_of([&] { ebm::read_model_input(dir + "/big.png", info); }, &msg), ebm::ExitCode::kBadData);
  fs::remove_all(dir);
}

namespace {
// A PNG of uint8 [H, W, C] pixels, C = 1 or 3, or with alpha 2 or 4.
void png_of(const std::string& path, const torch::Tensor& hwc) {
  fs::create_directories(fs::path(path).parent_path());
  const auto px = hwc.contiguous();
  ASSERT_NE(stbi_write_png(path.c_str(), int(px.size(1)), int(px.size(0)), int(px.size(2)), px.data_ptr<uint8_t>(),
                           int(px.size(1) * px.size(2))),
            0);
}
}  // namespace

// Transparent pixels are composited: auto over white under dark content and
// over black under light content, whatever colour the file keeps under
// them; black and white as asked; drop keeps that colour (PIL's convert).
// Half-transparent pixels blend: 200 at alpha 128 over black is 100.
TEST(ImageAlpha, CompositedOverTheBackgroundThatContrastsWithTheContent) {
  const std::string dir = fresh_dir("image_alpha");
  // White strokes (a digit's way) on transparent pixels that keep grey 77.
  auto la = torch::zeros({4, 4, 2}, torch::kUInt8);
  la.select(2, 0).fill_(77);
  la[1][1][0] = 255, la[1][1][1] = 255;
  la[2][1][0] = 255, la[2][1][1] = 255;
  la[0][2][0] = 200, la[0][2][1] = 128;
  png_of(dir + "/strokes.png", la);
  auto x = ebm::read_image(dir + "/strokes.png");  // (auto)
  ASSERT_EQ(x.sizes(), (c10::IntArrayRef{1, 4, 4}));
  EXPECT_EQ(x[0][1][1].item<int>(), 255);
  EXPECT_EQ(x[0][3][3].item<int>(), 0);    // (black under light strokes)
  EXPECT_EQ(x[0][0][2].item<int>(), 100);  // (200 x 128 / 255, rounded)
  EXPECT_EQ(ebm::read_image(dir + "/strokes.png", ebm::Alpha::kWhite)[0][3][3].item<int>(), 255);
  EXPECT_EQ(ebm::read_image(dir + "/strokes.png", ebm::Alpha::kBlack)[0][0][2].item<int>(), 100);
  EXPECT_EQ(ebm::read_image(dir + "/strokes.png", ebm::Alpha::kDrop)[0][3][3].item<int>(), 77);
  EXPECT_EQ(ebm::read_image(dir + "/strokes.png", ebm::Alpha::kDrop)[0][0][2].item<int>(), 200);
  // Near-black RGB line art on transparent dark red: white under it.
  auto rgba = torch::zeros({3, 5, 4}, torch::kUInt8);
  rgba.select(2, 0).fill_(90);
  rgba.select(0, 1).fill_(10);
  rgba.select(0, 1).select(1, 3).fill_(255);
  png_of(dir + "/art.png", rgba);
  auto y = ebm::read_image(dir + "/art.png");
  ASSERT_EQ(y.sizes(), (c10::IntArrayRef{3, 3, 5}));
  EXPECT_TRUE((y.select(1, 0) == 255).all().item<bool>()) << y;
  EXPECT_TRUE((y.select(1, 1) == 10).all().item<bool>()) << y;
  EXPECT_EQ(ebm::read_image(dir + "/art.png", ebm::Alpha::kDrop)[0][0][0].item<int>(), 90);
  // An opaque alpha channel changes nothing.
  auto opaque = torch::randint(0, 256, {3, 3, 4}, torch::kUInt8);
  opaque.select(2, 3).fill_(255);
  png_of(dir + "/opaque.png", opaque);
  EXPECT_TRUE(torch::equal(ebm::read_image(dir + "/opaque.png"), opaque.narrow(2, 0, 3).permute({2, 0, 1})));
  fs::remove_all(dir);
}

// data.channels: a folder of grey and colour files is an error that names
// the key; 3 reads every file as colour (grey by copies), 1 as grey (colour
// by luminance, rounded); a model trained so reads either kind as its own,
// and keeps data.alpha (a model file without it drops alpha, as its
// training did).
TEST(ImageChannels, GreyAndColourFilesMadeOneChannelCount) {
  const std::string dir = fresh_dir("image_channels");
  png_of(dir + "/set/g.png", torch::full({4, 4, 1}, 100, torch::kUInt8));
  auto red = torch::zeros({4, 4, 3}, torch::kUInt8);
  red.select(2, 0).fill_(200);
  png_of(dir + "/set/r.png", red);
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::load_data_path(dir + "/set"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("data.channels = 3 reads every one as colour"), std::string::npos) << msg;
  ebm::ImageReading r;
  r.channels = 3;
  auto colour = ebm::load_data_path(dir + "/set", r).x;  // (g.png, then r.png)
  ASSERT_EQ(colour.sizes(), (c10::IntArrayRef{2, 3, 4, 4}));
  EXPECT_TRUE((colour[0] == 100).all().item<bool>());
  EXPECT_TRUE(torch::equal(colour[1][0], torch::full({4, 4}, 200.0f)));
  r.channels = 1;
  auto grey = ebm::load_data_path(dir + "/set", r).x;
  ASSERT_EQ(grey.sizes(), (c10::IntArrayRef{2, 1, 4, 4}));
  EXPECT_TRUE((grey[1] == std::round(0.299 * 200)).all().item<bool>()) << grey[1];
  // A grey model of data.channels = 1 reads a colour file by luminance.
  ebm::ModelInfo info;
  info.event_shape = {1, 4, 4};
  info.pixels = ebm::PixelMap();
  info.data_toml = "[data]\nchannels = 1\nalpha = \"white\"\n";
  const auto x = ebm::read_model_input(dir + "/set/r.png", info);
  EXPECT_TRUE(torch::allclose(x, torch::full({1, 1, 4, 4}, std::round(0.299 * 200) / 255 * 2 - 1)));
  EXPECT_EQ(ebm::model_image_reading(info).alpha, ebm::Alpha::kWhite);
  info.data_toml = "[data]\nchannels = 1\n";
  EXPECT_EQ(ebm::model_image_reading(info).alpha, ebm::Alpha::kDrop);
  fs::remove_all(dir);
}
