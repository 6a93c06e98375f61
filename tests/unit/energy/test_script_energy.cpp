// TorchScript energies from tests/data (written by scripts/make_script_energy.py,
// so no Python is needed here) against their closed forms.
#include <gtest/gtest.h>

#include "common/errors.h"
#include "ebm/core/error.h"
#include "ebm/energy/energy.h"
#include "ebm/energy/script_energy.h"

using namespace ebm;

namespace {
std::string data(const std::string& name) { return std::string(EBM_SOURCE_DIR) + "/tests/data/" + name; }

using ebm::test_helpers::error_of;

// E = a (x1^2 - 1)^2 + 1/2 sum_{i>1} x_i^2 and its gradient, in float64.
torch::Tensor well_energy(const torch::Tensor& x, double a) {
  auto x1 = x.select(1, 0);
  return a * (x1 * x1 - 1).pow(2) + 0.5 * x.narrow(1, 1, x.size(1) - 1).pow(2).sum(1);
}
torch::Tensor well_grad(const torch::Tensor& x, double a) {
  auto g = x.clone();
  auto x1 = x.select(1, 0);
  g.select(1, 0).copy_(4 * a * x1 * (x1 * x1 - 1));
  return g;
}

torch::Tensor points(int64_t d) {
  auto x = torch::tensor({0.0, 0.0, 1.0, 0.0, -1.5, 0.7, 0.3, -2.0, 2.2, 1.1}, torch::kDouble);
  x = x.view({5, 2});
  if (d > 2) x = torch::cat({x, torch::linspace(-1, 1, 5 * (d - 2), torch::kDouble).view({5, d - 2})}, 1);
  return x;
}
}  // namespace

// The float32 module: float32 chains agree to float32 rounding; float64
// chains are cast in and out, so they get float32 precision too (relative
// 1e-6 here: a handful of float32 operations on O(1) values).
TEST(ScriptEnergy, DoubleWellMatchesClosedFormInBothDtypes) {
  ScriptEnergyImpl e(data("double_well.pt"));
  EXPECT_EQ(e.dim(), 2);
  EXPECT_EQ(e.event_shape(), (std::vector<int64_t>{2}));
  EXPECT_EQ(e.dtype(), torch::kFloat);
  EXPECT_FALSE(e.module().is_training());
  for (const auto& p : e.module().parameters()) EXPECT_FALSE(p.requires_grad());
  auto x = points(2);
  auto truth = well_energy(x, 2.0), g_truth = well_grad(x, 2.0);
  // And the same as the library's double_well target (same formula).
  EXPECT_TRUE(torch::allclose(truth, DoubleWellEnergyImpl(2, 2.0).energy(x), 1e-14, 0));
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto xd = x.to(dtype);
    auto en = e.energy(xd);
    EXPECT_EQ(en.scalar_type(), dtype);
    EXPECT_EQ(en.sizes(), (std::vector<int64_t>{5}));
    EXPECT_TRUE(torch::allclose(en.to(torch::kDouble), truth, 1e-6, 1e-6)) << en;
    auto g = e.grad(xd);  // EnergyImpl's autograd path through the casts
    EXPECT_EQ(g.scalar_type(), dtype);
    EXPECT_TRUE(torch::allclose(g.to(torch::kDouble), g_truth, 1e-6, 1e-6)) << g;
    auto [en2, g2] = e.energy_and_grad(xd);
    EXPECT_TRUE(torch::equal(en2, en.detach()));
    EXPECT_TRUE(torch::equal(g2, g));
  }
}

// A float64 module keeps float64 precision for float64 chains.
TEST(ScriptEnergy, Float64ModuleIsDetectedAndExact) {
  ScriptEnergyImpl e(data("double_well_f64.pt"));
  EXPECT_EQ(e.dtype(), torch::kDouble);
  auto x = points(2);
  EXPECT_TRUE(torch::allclose(e.energy(x), well_energy(x, 2.0), 1e-14, 1e-14));
  EXPECT_TRUE(torch::allclose(e.grad(x), well_grad(x, 2.0), 1e-14, 1e-14));
  // float32 chains: cast to float64 and back.
  EXPECT_EQ(e.energy(x.to(torch::kFloat)).scalar_type(), torch::kFloat);
}

TEST(ScriptEnergy, DimComesFromTheModuleAttribute) {
  ScriptEnergyImpl e(data("double_well_3d.pt"));
  EXPECT_EQ(e.dim(), 3);
  auto x = points(3);
  EXPECT_TRUE(torch::allclose(e.energy(x), well_energy(x, 1.5), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(e.grad(x), well_grad(x, 1.5), 1e-6, 1e-6));
  // An explicit dim must agree.
  EXPECT_NO_THROW(ScriptEnergyImpl(data("double_well_3d.pt"), 3));
  auto [code, msg] = error_of([] { ScriptEnergyImpl(data("double_well_3d.pt"), 2); });
  EXPECT_EQ(code, ExitCode::kUsage);
  EXPECT_NE(msg.find("disagrees"), std::string::npos) << msg;
}

// Without a `dim` attribute the caller supplies D; without parameters the
// module runs in the input's dtype (no cast).
TEST(ScriptEnergy, ModuleWithoutDimNeedsAnExplicitOne) {
  auto [code, msg] = error_of([] { ScriptEnergyImpl(data("quadratic_nodim.pt")); });
  EXPECT_EQ(code, ExitCode::kUsage);
  EXPECT_NE(msg.find("--dim"), std::string::npos) << msg;
  ScriptEnergyImpl e(data("quadratic_nodim.pt"), 4);
  EXPECT_EQ(e.event_shape(), (std::vector<int64_t>{4}));
  EXPECT_EQ(e.dtype(), c10::ScalarType::Undefined);
  auto x = torch::linspace(-2, 2, 12, torch::kDouble).view({3, 4}) / 3.0;
  EXPECT_TRUE(torch::allclose(e.energy(x), 0.5 * x.pow(2).sum(1), 1e-15, 0));
  EXPECT_TRUE(torch::allclose(e.grad(x), x, 1e-15, 0));
}

TEST(ScriptEnergy, ColumnOutputIsSqueezed) {
  ScriptEnergyImpl e(data("column_output.pt"));
  auto x = points(2);
  auto en = e.energy(x);
  EXPECT_EQ(en.sizes(), (std::vector<int64_t>{5}));
  EXPECT_TRUE(torch::allclose(en, 0.5 * x.pow(2).sum(1), 1e-6, 1e-6));
}

TEST(ScriptEnergy, WrongModulesAreBadDataNamingFileAndShape) {
  struct Case {
    const char* file;
    const char* says;
  };
  for (const auto& c : {Case{"wrong_per_coordinate.pt", "returned Float [2, 2]"},
                        Case{"wrong_scalar.pt", "returned Float []"},
                        Case{"wrong_tuple.pt", "Tuple"}, Case{"saved_tensor.pt", "TorchScript"},
                        Case{"not_an_archive.pt", "TorchScript"}}) {
    auto [code, msg] = error_of([&] { ScriptEnergyImpl(data(c.file)); });
    EXPECT_EQ(code, ExitCode::kBadData) << c.file << ": " << msg;
    EXPECT_NE(msg.find(c.file), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

TEST(ScriptEnergy, MissingFileAndBadInputs) {
  auto [code, msg] = error_of([] { ScriptEnergyImpl("/nonexistent/energy.pt"); });
  EXPECT_EQ(code, ExitCode::kMissingInput);
  EXPECT_NE(msg.find("/nonexistent/energy.pt"), std::string::npos) << msg;
  EXPECT_EQ(error_of([] { ScriptEnergyImpl(data("")); }).first, ExitCode::kMissingInput);  // a directory
  // A negative --dim is a usage error.
  EXPECT_EQ(error_of([] { ScriptEnergyImpl(data("quadratic_nodim.pt"), -1); }).first, ExitCode::kUsage);
  ScriptEnergyImpl e(data("double_well.pt"));
  EXPECT_EQ(error_of([&] { e.energy(torch::zeros({4, 3})); }).first, ExitCode::kBadData);
  EXPECT_EQ(error_of([&] { e.energy(torch::zeros({4})); }).first, ExitCode::kBadData);
}
