// The unbalanced family: 2D mixtures of separated Gaussians with unequal
// weights (10:1 to 15:1 between the heaviest and the lightest), unequal
// correlated covariances and one narrow component. Variant v draws its
// mixture from its own deterministic stream (SplitMix64), so every variant
// is a fixed, exactly known density. Persistent Langevin chains do not cross
// between such modes: the set checks that a recipe learns the modes' masses,
// not only their shapes.
#include <array>
#include <cmath>
#include <map>
#include <mutex>

#include "ebm/core/error.h"
#include "ebm/data/unbalanced.h"

namespace ebm {
namespace {
constexpr double kPi = 3.14159265358979323846;

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

Mixture2d draw_mixture(int64_t variant) {
  SplitMix rng{0x5eedULL + 0x1000193ULL * uint64_t(variant)};
  Mixture2d m;
  const int k = 4 + int(variant % 3);
  const double ratio = 10 + 5 * rng.uniform();  // heaviest / lightest weight
  std::vector<double> w(k);
  for (int i = 0; i < k; ++i) w[i] = std::pow(ratio, -double(i) / (k - 1));
  for (int i = k - 1; i > 0; --i) std::swap(w[i], w[rng.next() % uint64_t(i + 1)]);  // random order
  double total = 0;
  for (double v : w) total += v;
  const int narrow = int(rng.next() % uint64_t(k));
  for (int i = 0; i < k; ++i) {
    Gaussian2d g;
    g.weight = w[i] / total;
    g.s1 = i == narrow ? 0.05 + 0.04 * rng.uniform() : 0.2 + 0.35 * rng.uniform();
    g.s2 = g.s1 * (i == narrow ? 0.5 + 0.5 * rng.uniform() : 0.3 + 0.6 * rng.uniform());
    g.angle = kPi * rng.uniform();
    m.parts.push_back(g);
  }
  // Means in [-3.5, 3.5]^2, each pair at least 3 (s1_i + s1_j) + 0.4 apart
  // (separated: the density between modes is under e^-4.5 of theirs).
  for (int attempt = 0;; ++attempt) {
    TORCH_INTERNAL_ASSERT(attempt < 1000, "unbalanced: no placement found");
    bool ok = true;
    for (int i = 0; i < k && ok; ++i) {
      int tries = 0;
      for (;; ++tries) {
        if (tries == 2000) {
          ok = false;
          break;
        }
        auto& g = m.parts[i];
        g.mx = -3.5 + 7 * rng.uniform();
        g.my = -3.5 + 7 * rng.uniform();
        bool far = true;
        for (int j = 0; j < i && far; ++j) {
          const auto& h = m.parts[j];
          far = std::hypot(g.mx - h.mx, g.my - h.my) >= 3 * (g.s1 + h.s1) + 0.4;
        }
        if (far) break;
      }
    }
    if (ok) break;
  }
  return m;
}
}  // namespace

const Mixture2d& unbalanced_mixture(int64_t variant) {
  EBM_CHECK_CONFIG(variant >= 0, "unbalanced: the variant must be >= 0, got ", variant);
  static std::mutex mu;
  static std::map<int64_t, Mixture2d> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(variant);
  if (it == cache.end()) it = cache.emplace(variant, draw_mixture(variant)).first;
  return it->second;
}

torch::Tensor Mixture2d::sample(int64_t n, at::Generator& gen) const {
  std::vector<double> w;
  for (const auto& g : parts) w.push_back(g.weight);
  auto k = at::multinomial(torch::tensor(w, torch::kDouble), n, /*replacement=*/true, gen);
  auto z = at::normal(0.0, 1.0, {n, 2}, gen, torch::TensorOptions().dtype(torch::kDouble));
  auto x = torch::empty({n, 2}, torch::kDouble);
  const int64_t* kp = k.data_ptr<int64_t>();
  const double* zp = z.data_ptr<double>();
  double* xp = x.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& g = parts[kp[i]];
    const double a = g.s1 * zp[2 * i], b = g.s2 * zp[2 * i + 1];
    const double c = std::cos(g.angle), s = std::sin(g.angle);
    xp[2 * i] = g.mx + c * a - s * b;
    xp[2 * i + 1] = g.my + s * a + c * b;
  }
  return x.to(torch::kFloat32);
}

torch::Tensor Mixture2d::log_density(const torch::Tensor& x) const {
  auto d = x.to(torch::kCPU, torch::kDouble);
  std::vector<torch::Tensor> terms;
  for (const auto& g : parts) {
    const double c = std::cos(g.angle), s = std::sin(g.angle);
    auto dx = d.select(1, 0) - g.mx, dy = d.select(1, 1) - g.my;
    auto a = (c * dx + s * dy) / g.s1, b = (-s * dx + c * dy) / g.s2;  // whitened
    terms.push_back(std::log(g.weight) - std::log(2 * kPi * g.s1 * g.s2) - 0.5 * (a * a + b * b));
  }
  return torch::logsumexp(torch::stack(terms, 1), 1);
}

// -sum_k w_k E_{N_k}[log p]: each expectation by the midpoint rule on the
// component's whitened coordinates, [-9, 9]^2 at spacing 0.03 (the Gaussian
// weight outside is below 1e-18 and the rule converges spectrally on these
// smooth integrands: error far below 1e-6 nats).
double Mixture2d::entropy() const {
  const int64_t n = 600;
  const double h = 18.0 / n;
  auto t = -9 + h * (torch::arange(n, torch::kDouble) + 0.5);
  auto za = t.repeat_interleave(n), zb = t.repeat({n});
  auto phi = torch::exp(-0.5 * (za * za + zb * zb)) / (2 * kPi) * (h * h);
  double out = 0;
  for (const auto& g : parts) {
    const double c = std::cos(g.angle), s = std::sin(g.angle);
    auto a = g.s1 * za, b = g.s2 * zb;
    auto x = torch::stack({g.mx + c * a - s * b, g.my + s * a + c * b}, 1);
    out -= g.weight * (phi * log_density(x)).sum().item<double>();
  }
  return out;
}

}  // namespace ebm
