// 2D toy distributions of FFJORD (Grathwohl et al. 2019, "FFJORD: Free-form
// Continuous Dynamics for Scalable Reversible Generative Models",
// lib/toy_data.py), re-derived without scikit-learn (make_swiss_roll,
// make_circles, make_moons as in sklearn.datasets), plus 25gaussians.
// Every draw comes from the caller's generator; rows are i.i.d. (sets built
// on a deterministic angle grid are shuffled).
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <mutex>

#include "ebm/core/error.h"
#include "ebm/data/data.h"
#include "ebm/data/unbalanced.h"

namespace ebm {
namespace {

constexpr double kPi = 3.14159265358979323846;

const torch::TensorOptions kF32 = torch::TensorOptions().dtype(torch::kFloat32);

torch::Tensor normal(int64_t n, at::Generator& gen) {  // [n, 2] ~ N(0, I)
  return at::normal(0.0, 1.0, {n, 2}, gen, kF32);
}
torch::Tensor uniform(int64_t n, at::Generator& gen) {  // [n] ~ U[0, 1)
  return at::rand({n}, gen, kF32);
}
torch::Tensor shuffle(const torch::Tensor& x, at::Generator& gen) {
  return x.index_select(0, at::randperm(x.size(0), gen, torch::kLong));
}
// k points radius * (cos t, sin t), t = linspace(0, 2 pi, k, endpoint=False).
torch::Tensor circle(int64_t k, double radius) {  // [k, 2]
  const auto t = torch::arange(k, torch::kFloat64) * (2 * kPi / std::max<int64_t>(k, 1));
  return (torch::stack({t.cos(), t.sin()}, 1) * radius).to(torch::kFloat32);
}

// Centers 4 (cos k pi/4, sin k pi/4), std 0.5, all divided by 1.414.
torch::Tensor eight_gaussians(int64_t n, at::Generator& gen) {
  const auto k = at::randint(0, 8, {n}, gen, torch::kLong);
  auto x = normal(n, gen);  // z, then (c_k + 0.5 z) / 1.414 in place
  // (one loop, not a dozen tensor operations: training steps draw a batch each)
  static const std::array<float, 16> centers = [] {
    std::array<float, 16> c{};
    for (int j = 0; j < 8; ++j) {
      c[2 * j] = float(4 * std::cos(j * kPi / 4));
      c[2 * j + 1] = float(4 * std::sin(j * kPi / 4));
    }
    return c;
  }();
  const int64_t* kp = k.data_ptr<int64_t>();
  float* xp = x.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 2; ++c)
      xp[2 * i + c] = (centers[2 * kp[i] + c] + 0.5f * xp[2 * i + c]) / 1.414f;
  return x;
}

// x = 1.414 (c + 0.1 z), c uniform on the grid {-2,-1,0,1,2}^2, z ~ N(0, I):
// 25 equal-weight modes at spacing 1.414 with std 0.1414.
torch::Tensor twentyfive_gaussians(int64_t n, at::Generator& gen) {
  const auto k = at::randint(0, 25, {n}, gen, torch::kLong);
  const auto c = torch::stack({k.div(5, "floor") - 2, k.remainder(5) - 2}, 1).to(torch::kFloat32);
  return (c + 0.1 * normal(n, gen)) * 1.414;
}

// make_swiss_roll(noise=1.0) keeping (x, z), then / 5.
torch::Tensor swissroll(int64_t n, at::Generator& gen) {
  const auto t = 1.5 * kPi * (1 + 2 * uniform(n, gen));
  const auto x = torch::stack({t * t.cos(), t * t.sin()}, 1) + normal(n, gen);
  return x / 5;
}

// make_circles(factor=0.5, noise=0.08), then * 3.
torch::Tensor circles(int64_t n, at::Generator& gen) {
  const int64_t n_out = n / 2, n_in = n - n_out;
  auto x = shuffle(torch::cat({circle(n_out, 1.0), circle(n_in, 0.5)}), gen);
  return (x + 0.08 * normal(n, gen)) * 3;
}

// FFJORD's rings: radii 3, 2.25, 1.5, 0.75 (= 3 * (1, .75, .5, .25)), n / 4
// points each on an angle grid, the remainder on the smallest, noise 0.08.
torch::Tensor rings(int64_t n, at::Generator& gen) {
  const int64_t q = n / 4, n1 = n - 3 * q;
  auto x = torch::cat({circle(q, 3.0), circle(q, 2.25), circle(q, 1.5), circle(n1, 0.75)});
  // (noise, then the permutation: the order GCC gave the unsequenced
  // `shuffle(x, gen) + noise` this set was first written as)
  auto noise = 0.08 * normal(n, gen);
  return shuffle(x, gen) + noise;
}

// make_moons(noise=0.1), then * 2 + (-1, -0.2).
torch::Tensor moons(int64_t n, at::Generator& gen) {
  const int64_t n_out = n / 2, n_in = n - n_out;
  const auto t_out = torch::linspace(0, kPi, n_out, kF32);
  const auto t_in = torch::linspace(0, kPi, n_in, kF32);
  const auto outer = torch::stack({t_out.cos(), t_out.sin()}, 1);
  const auto inner = torch::stack({1 - t_in.cos(), 1 - t_in.sin() - 0.5}, 1);
  // (the noise first, then the permutation: the order GCC gave the unsequenced
  // `shuffle(...) + noise` this set was first written as, kept so that its
  // draws stay what they were; toy2d_labels replays it)
  auto noise = 0.1 * normal(n, gen);
  auto x = shuffle(torch::cat({outer, inner}), gen) + noise;
  return x * 2 + torch::tensor({-1.0f, -0.2f});
}

// Features f ~ N((1, 0), diag(0.3^2, 0.1^2)) in 5 classes (n / 5 each, the
// remainder to the last), rotated by phi = 2 pi k / 5 + 0.25 exp(f_0) the way
// FFJORD's einsum("ti,tij->tj") does (row vector times R(phi), i.e. R(-phi) f),
// then * 2.
torch::Tensor pinwheel(int64_t n, at::Generator& gen) {
  constexpr int64_t kClasses = 5;
  const int64_t per = n / kClasses;
  const auto labels = per > 0 ? torch::arange(n, torch::kLong).div(per, "floor").clamp_max(kClasses - 1)
                              : torch::full({n}, kClasses - 1, torch::kLong);
  auto f = normal(n, gen) * torch::tensor({0.3f, 0.1f});  // [n, 2]
  f.select(1, 0).add_(1.0);
  const auto f0 = f.select(1, 0), f1 = f.select(1, 1);
  const auto phi = labels.to(torch::kFloat32) * static_cast<float>(2 * kPi / kClasses) + 0.25 * f0.exp();
  const auto c = phi.cos(), s = phi.sin();
  const auto x = torch::stack({f0 * c + f1 * s, -f0 * s + f1 * c}, 1);
  return 2 * shuffle(x, gen);
}

// a = sqrt(u) 3 pi; arm (-a cos a, a sin a) + U[0, 0.5]^2, the second arm
// mirrored through the origin; / 3, then + 0.1 N(0, I). ceil(n / 2) draws
// per arm, truncated to n rows, shuffled.
torch::Tensor two_spirals(int64_t n, at::Generator& gen) {
  const int64_t m = (n + 1) / 2;
  const auto a = uniform(m, gen).sqrt() * (540 * 2 * kPi / 360);
  const auto dx = -a.cos() * a + uniform(m, gen) * 0.5;
  const auto dy = a.sin() * a + uniform(m, gen) * 0.5;
  const auto d = torch::stack({dx, dy}, 1);
  auto x = torch::cat({d, -d}).narrow(0, 0, n) / 3;
  return shuffle(x + 0.1 * normal(n, gen), gen);
}

// Uniform on the 8 unit squares of [-2, 2]^2 with floor(x1) + floor(x2) even,
// then * 2 (float32 throughout so the squares are exact).
torch::Tensor checkerboard(int64_t n, at::Generator& gen) {
  const auto x1 = uniform(n, gen) * 4 - 2;
  const auto x2_ = uniform(n, gen) - at::randint(0, 2, {n}, gen, kF32) * 2;
  const auto x2 = x2_ + x1.floor().remainder(2);
  return torch::stack({x1, x2}, 1) * 2;
}

struct Toy {
  const char* name;
  torch::Tensor (*make)(int64_t, at::Generator&);
  double entropy;  // nats
};

// Entropies in nats. Given by the project except 25gaussians and pinwheel;
// each given value was checked against a Monte Carlo average of -log p(x)
// under the exact limiting density over samples of these generators (seed
// 123, stream kStreamData), all within 2 standard errors.
//  - 25gaussians: the modes are 10 std apart, so the mixture entropy is
//    log 25 + log(2 pi e 0.1414^2) = 2.14443 up to e^-50; the MC over 1e6
//    samples gives 2.14555 +- 0.00100 (one standard error).
//  - pinwheel: z = x / 2 = R(-phi) f, phi = 2 pi k / 5 + 0.25 exp(f0): with
//    f = rho (cos a, sin a) the preimages of z = rho (cos psi, sin psi) in class
//    k solve a - 0.25 exp(rho cos a) = psi + 2 pi k / 5 (mod 2 pi) (grid over a,
//    then bisection), and p(x) = 1/4 * 1/5 sum_k sum_a N(f; (1, 0),
//    diag(0.09, 0.01)) / |1 + 0.25 exp(f0) f1| (the Jacobian of the polar warp;
//    this p integrates to 1 - 7e-8 on a grid). MC over 1e6 samples:
//    2.31797 +- 0.00097 (one standard error); below the no-overlap value
//    log 5 + log(2 pi e 0.03) + log 4 + E log|J| = 2.3243 because arms meet
//    near the origin.
const std::vector<Toy>& toys() {
  static const std::vector<Toy> kToys = {
      {"8gaussians", eight_gaussians, 2.834},
      {"25gaussians", twentyfive_gaussians, 2.1444},
      {"swissroll", swissroll, 2.668},
      {"moons", moons, 2.395},
      {"2spirals", two_spirals, 2.646},
      {"checkerboard", checkerboard, 3.466},
      {"pinwheel", pinwheel, 2.318},
      {"rings", rings, 2.623},
      {"circles", circles, 3.269},
  };
  return kToys;
}

// unbalanced<v>: variant v of the unbalanced family; -1 for other names.
int64_t unbalanced_variant(const std::string& name) {
  const std::string prefix = "unbalanced";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}
constexpr int64_t kUnbalancedListed = 5;  // unbalanced0 ... unbalanced4 in the registry

const Toy& find_toy(const std::string& name) {
  for (const auto& t : toys())
    if (name == t.name) return t;
  std::string known;
  for (const auto& t : toys()) known += (known.empty() ? "" : ", ") + std::string(t.name);
  known += ", unbalanced0 ... unbalanced" + std::to_string(kUnbalancedListed - 1);
  fail(ExitCode::kBadConfig, "unknown dataset '", name, "' (known: ", known, ")");
}

}  // namespace

const std::vector<std::string>& toy2d_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& t : toys()) v.emplace_back(t.name);
    for (int64_t i = 0; i < kUnbalancedListed; ++i) v.push_back("unbalanced" + std::to_string(i));
    return v;
  }();
  return kNames;
}

bool is_toy2d(const std::string& name) {
  if (unbalanced_variant(name) >= 0) return true;
  const auto& names = toy2d_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

torch::Tensor toy2d(const std::string& name, int64_t n, at::Generator& gen) {
  EBM_CHECK_CONFIG(n >= 1, "toy2d '", name, "': number of points must be >= 1, got ", n);
  if (const int64_t v = unbalanced_variant(name); v >= 0) return unbalanced_mixture(v).sample(n, gen);
  const auto& toy = find_toy(name);
  auto x = toy.make(n, gen).to(torch::kFloat32).contiguous();  // [n, 2]
  TORCH_INTERNAL_ASSERT(x.dim() == 2 && x.size(0) == n && x.size(1) == 2, name, " gave ", x.sizes());
  return x;
}

torch::Tensor toy2d_labels(const std::string& name, int64_t n, at::Generator& gen) {
  if (name != "moons" && name != "circles") return {};
  // (shuffle's permutation of [first part, second part]: the first draw of
  // circles, the second of moons, after its noise)
  const int64_t n_out = n / 2, n_in = n - n_out;
  if (name == "moons") normal(n, gen);
  auto perm = at::randperm(n, gen, torch::kLong);
  return torch::cat({torch::zeros({n_out}, torch::kLong), torch::ones({n_in}, torch::kLong)}).index_select(0, perm);
}

double toy2d_entropy(const std::string& name) {
  const int64_t v = unbalanced_variant(name);
  if (v < 0) return find_toy(name).entropy;
  static std::mutex mu;
  static std::map<int64_t, double> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(v);
  if (it == cache.end()) it = cache.emplace(v, unbalanced_mixture(v).entropy()).first;
  return it->second;
}

torch::Tensor ToyMixture::log_density(const torch::Tensor& x) const {
  auto d2 = torch::cdist(x.to(torch::kCPU, torch::kDouble).reshape({-1, 2}), centers).pow(2);  // [N, K]
  return torch::logsumexp(-0.5 * d2 / (std * std), 1) - std::log(double(centers.size(0))) -
         std::log(2 * kPi * std * std);
}

std::optional<ToyMixture> toy2d_mixture(const std::string& name) {
  ToyMixture m;
  if (name == "8gaussians") {
    std::vector<double> c;
    for (int j = 0; j < 8; ++j) {
      c.push_back(double(float(4 * std::cos(j * kPi / 4))) / double(1.414f));
      c.push_back(double(float(4 * std::sin(j * kPi / 4))) / double(1.414f));
    }
    m.centers = torch::tensor(c, torch::kDouble).view({8, 2});
    m.std = 0.5 / double(1.414f);
  } else if (name == "25gaussians") {
    auto k = torch::arange(25, torch::kLong);
    m.centers = torch::stack({k.div(5, "floor") - 2, k.remainder(5) - 2}, 1).to(torch::kDouble) * 1.414;
    m.std = 0.1 * 1.414;
  } else {
    return std::nullopt;
  }
  return m;
}

Split split_rows(const torch::Tensor& data, double test_fraction, at::Generator& gen) {
  EBM_CHECK_CONFIG(test_fraction >= 0 && test_fraction < 1, "data.test_fraction must be in [0, 1), got ",
                   test_fraction);
  TORCH_CHECK(data.dim() >= 1, "split_rows: want a tensor with rows, got ", data.sizes());
  const int64_t n = data.size(0);
  const int64_t n_test = std::llround(test_fraction * static_cast<double>(n));
  EBM_CHECK_CONFIG(n - n_test >= 1, "data.test_fraction ", test_fraction, " leaves no training rows out of ",
                   n);
  const auto perm = at::randperm(n, gen, torch::kLong).to(data.device());
  return {data.index_select(0, perm.narrow(0, 0, n - n_test)),
          data.index_select(0, perm.narrow(0, n - n_test, n_test))};
}

}  // namespace ebm
