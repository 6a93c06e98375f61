// Score matching: golden values from tests/golden/score_matching_golden.py,
// the MLP fast path against autograd's double backward (float64, exact up to
// rounding), closed-form optima on Gaussian data, unbiasedness of the sliced
// estimator, and config errors. Statistical tolerances are z * SE with
// z = 4.89 (two-sided normal, false-alarm rate 1e-6 per assertion) or, where
// the SE is estimated from R = 20 replicates, Student's t_19 = 7.07 (same rate).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/core/simd.h"
#include "ebm/objectives/score_matching.h"
#include "ebm/sampling/tempering.h"
#include "common/nets.h"

using namespace ebm;

namespace {
constexpr double kZ = 4.89;
constexpr double kT19 = 7.07;

// The closed-form tables of score_matching_golden.py.
torch::Tensor table(int64_t rows, int64_t cols, double a, double b, double c, double scale) {
  auto t = torch::empty({rows, cols}, torch::kDouble);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t[i][j] = scale * std::sin(a * i + b * j + c);
  return t;
}

void set_golden_weights(torch::nn::Module& m) {
  torch::NoGradGuard ng;
  for (auto& kv : m.named_parameters()) {
    auto& p = kv.value();
    const std::string& name = kv.key();
    const int layer = name[name.find("fc") + 2] - '0';
    if (name.find("weight") != std::string::npos) {
      for (int64_t r = 0; r < p.size(0); ++r)
        for (int64_t c = 0; c < p.size(1); ++c)
          p[r][c] = 0.5 * std::sin(1.3 * (r + 1) + 0.7 * (c + 1) + layer);
    } else {
      for (int64_t r = 0; r < p.size(0); ++r) p[r] = 0.1 * std::cos(double(r + layer));
    }
  }
}

nlohmann::json golden() {
  std::ifstream in(std::string(EBM_SOURCE_DIR) + "/tests/golden/score_matching_golden.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

std::vector<torch::Tensor> param_grads(torch::nn::Module& m, const torch::Tensor& loss) {
  std::vector<torch::Tensor> ps;
  for (auto& p : m.parameters()) ps.push_back(p);
  auto g = torch::autograd::grad({loss}, ps, {}, false, false, /*allow_unused=*/true);
  for (size_t i = 0; i < g.size(); ++i)
    if (!g[i].defined()) g[i] = torch::zeros_like(ps[i]);
  return g;
}

// float64 rounding of a few hundred operations: 1e-10 relative is ~1e5 ulps
// of margin; float32 (the fused swish kernels): 2e-4 is ~1e3 ulps.
void expect_same_grads(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
                       const std::string& what, double rel = 1e-10) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = 1.0 + b[i].abs().max().item<double>();
    EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), rel * scale) << what << " param " << i;
  }
}

// E(x) = 1/2 (x - mu)^T P (x - mu), P = L L^T (L lower-triangular): the
// family whose exact score matching optimum is the inverse sample covariance.
class QuadraticEnergyImpl : public EnergyImpl {
 public:
  explicit QuadraticEnergyImpl(int64_t d) {
    mu = register_parameter("mu", torch::zeros({d}, torch::kDouble));
    l = register_parameter("l", torch::eye(d, torch::kDouble));
  }
  torch::Tensor precision() { return torch::mm(l.tril(), l.tril().t()); }
  torch::Tensor energy(const torch::Tensor& x) override {
    auto y = x - mu;
    return 0.5 * (torch::mm(y, precision()) * y).sum(1);
  }
  std::vector<int64_t> event_shape() const override { return {mu.size(0)}; }
  torch::Tensor mu, l;
};

// Minimises loss() over the energy's parameters with L-BFGS to a gradient
// norm of 1e-12 (float64).
void fit(QuadraticEnergyImpl& e, const std::function<torch::Tensor()>& loss) {
  torch::optim::LBFGS opt(e.parameters(), torch::optim::LBFGSOptions(1.0)
                                              .max_iter(500)
                                              .tolerance_grad(1e-12)
                                              .tolerance_change(1e-16)
                                              .line_search_fn("strong_wolfe"));
  for (int k = 0; k < 20; ++k)
    opt.step([&] {
      opt.zero_grad();
      auto l = loss();
      l.backward();
      return l;
    });
}

// Gaussian data with covariance [[1, 0.6], [0.6, 0.5]] and mean (1, -2).
torch::Tensor gaussian_data(int64_t n, at::Generator& gen) {
  auto chol = torch::tensor({1.0, 0.0, 0.6, std::sqrt(0.5 - 0.36)}, torch::kDouble).view({2, 2});
  auto z = at::normal(0.0, 1.0, {n, 2}, gen, torch::kDouble);
  return torch::mm(z, chol.t()) + torch::tensor({1.0, -2.0}, torch::kDouble);
}

torch::Tensor sample_cov(const torch::Tensor& x) {  // 1/N, the ESM optimum's
  auto y = x - x.mean(0);
  return torch::mm(y.t(), y) / x.size(0);
}
}  // namespace

TEST(ScoreMatchingGolden, EveryLossMatchesTheReferenceScript) {
  auto j = golden();
  ASSERT_NE(j["generated"].get<std::string>().find("do not edit"), std::string::npos);
  const auto& s = j["setup"];
  const int64_t b = s["B"], d = s["D"], m = s["M"], h = s["H"];
  const double prior = s["prior_std"], sigma = s["sigma"], ref = s["sigma_ref"];
  MLPEnergy mlp(MLPEnergyOptions(d, {h, h}).prior_std(prior));
  NoiseConditionalMLP ncm(NoiseConditionalMLPOptions(d, {h, h}).prior_std(prior));
  mlp->to(torch::kDouble);
  ncm->to(torch::kDouble);
  set_golden_weights(*mlp);
  set_golden_weights(*ncm);
  auto x = table(b, d, 0.9, 1.7, 0.3, 1.5);
  std::vector<torch::Tensor> vs;
  for (int64_t k = 0; k < m; ++k) vs.push_back(table(b, d, 0.4 + 0.3 * k, 1.1, 0.2 * k, 1.0));
  auto v = torch::stack(vs, 1);  // [B, M, D]
  auto eps = table(b, d, 2.3, 0.5, 0.1, 1.0);
  auto sig = torch::full({b}, sigma, torch::kDouble);
  auto ladder = torch::tensor(geometric_ladder(s["ladder"][0], s["ladder"][1], s["ladder"][2]), torch::kDouble);
  auto idx = torch::arange(b, torch::kLong).remainder(ladder.size(0));
  auto lev = ladder.index_select(0, idx);
  for (bool analytic : {true, false}) {
    const std::string path = analytic ? " (analytic)" : " (autograd)";
    auto near = [&](const torch::Tensor& got, const char* key) {
      const double want = j[key];
      // float64, different operation order: agreement to ~1e-14 expected.
      EXPECT_NEAR(got.mean().item<double>(), want, 1e-11 * (1 + std::abs(want))) << key << path;
    };
    near(exact_sm_loss(*mlp, x, analytic), "esm");
    near(sliced_sm_loss(*mlp, x, v, false, analytic), "ssm");
    near(sliced_sm_loss(*mlp, x, v, true, analytic), "ssm_vr");
    near(denoising_sm_loss(*mlp, x, eps, sig, sig, analytic), "dsm");
    near(denoising_sm_loss(*ncm, x, eps, lev, lev, analytic), "mdsm_ncsn");
    near(denoising_sm_loss(*mlp, x, eps, lev, torch::full({b}, ref, torch::kDouble), analytic),
         "mdsm_li");
  }
}

// The hand-derived backward equals autograd's double backward for every
// loss, activation, spectral normalisation and base term.
TEST(ScoreMatchingFastPath, ParameterGradientsMatchDoubleBackward) {
  auto gen = make_generator(5, kStreamTrain);
  const int64_t b = 7, d = 3;
  auto x = at::normal(0.0, 1.0, {b, d}, gen, torch::kDouble);
  auto v = at::normal(0.0, 1.0, {b, 2, d}, gen, torch::kDouble);
  auto eps = at::normal(0.0, 1.0, {b, d}, gen, torch::kDouble);
  auto sig = torch::tensor({0.1, 0.2, 0.5, 1.0, 0.3, 0.05, 2.0}, torch::kDouble);
  for (const auto& act : mlp_activations()) {
    for (bool sn : {false, true}) {
      for (const std::vector<int64_t>& hidden : {std::vector<int64_t>{5}, {6, 5}, {4, 6, 5}}) {
        MLPEnergy mlp(MLPEnergyOptions(d, hidden).activation(act).spectral_norm(sn).prior_std(1.5));
        NoiseConditionalMLP ncm(
            NoiseConditionalMLPOptions(d, hidden).activation(act).spectral_norm(sn).prior_std(1.5));
        reset_parameters(*mlp, gen);
        reset_parameters(*ncm, gen);
        mlp->to(torch::kDouble);
        ncm->to(torch::kDouble);
        mlp->eval();  // no power-iteration update between the two paths
        ncm->eval();
        const std::string what = act + (sn ? " sn " : " ") + std::to_string(hidden.size());
        using L = std::function<torch::Tensor(EnergyImpl&, bool)>;
        std::vector<std::pair<std::string, L>> losses = {
            {"esm", [&](EnergyImpl& e, bool a) { return exact_sm_loss(e, x, a).mean(); }},
            {"ssm", [&](EnergyImpl& e, bool a) { return sliced_sm_loss(e, x, v, false, a).mean(); }},
            {"ssm_vr", [&](EnergyImpl& e, bool a) { return sliced_sm_loss(e, x, v, true, a).mean(); }},
            {"dsm", [&](EnergyImpl& e, bool a) {
               return denoising_sm_loss(e, x, eps, sig, sig, a).mean(); }},
        };
        for (auto& [name, loss] : losses) {
          for (EnergyImpl* e : {static_cast<EnergyImpl*>(mlp.get()), static_cast<EnergyImpl*>(ncm.get())}) {
            auto la = loss(*e, true), lg = loss(*e, false);
            EXPECT_NEAR(la.item<double>(), lg.item<double>(), 1e-11 * (1 + std::abs(lg.item<double>())))
                << what << " " << name;
            expect_same_grads(param_grads(*e, la), param_grads(*e, lg), what + " " + name);
          }
        }
      }
    }
  }
}

// Float32 swish runs fused kernels (the activation jet, the 2-jet tangents,
// each layer's cotangents with its bias gradient) instead of tensor
// expressions; they must agree with autograd's float64 double backward on the
// same weights.
TEST(ScoreMatchingFastPath, FloatSwishKernelsMatchDoubleBackward) {
  auto gen = make_generator(6, kStreamTrain);
  const int64_t b = 64;
  // d = 3: the first layer is formed inside the fused sweep; d = 6: by a GEMM.
  for (int64_t d : {3, 6}) {
    auto x = at::normal(0.0, 1.0, {b, d}, gen, torch::kDouble);
    auto v = at::normal(0.0, 1.0, {b, 2, d}, gen, torch::kDouble);
    auto eps = at::normal(0.0, 1.0, {b, d}, gen, torch::kDouble);
    auto sig = torch::rand({b}, torch::kDouble) + 0.1;
    for (const std::vector<int64_t>& hidden : {std::vector<int64_t>{16}, {16, 12}, {8, 16, 12}}) {
      MLPEnergy mf(MLPEnergyOptions(d, hidden)), md(MLPEnergyOptions(d, hidden));
      reset_parameters(*mf, gen);
      {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < mf->parameters().size(); ++i)
          md->parameters()[i].copy_(mf->parameters()[i]);
      }
      md->to(torch::kDouble);
      using L = std::function<torch::Tensor(EnergyImpl&, bool, torch::ScalarType)>;
      std::vector<std::pair<std::string, L>> losses = {
          {"esm", [&](EnergyImpl& e, bool a, auto t) {
             return exact_sm_loss(e, x.to(t), a).mean(); }},
          {"ssm", [&](EnergyImpl& e, bool a, auto t) {
             return sliced_sm_loss(e, x.to(t), v.to(t), false, a).mean(); }},
          {"dsm", [&](EnergyImpl& e, bool a, auto t) {
             return denoising_sm_loss(e, x.to(t), eps.to(t), sig.to(t), sig.to(t), a).mean(); }},
      };
      // Both kernel sets: AVX-512 (where the CPU has it) and the portable loops.
      for (bool portable : {false, true}) {
        for (auto& [name, loss] : losses) {
          ScopedPortableKernels scoped(portable);
          auto lf = loss(*mf, true, torch::kFloat), ld = loss(*md, false, torch::kDouble);
          const std::string what = name + " d " + std::to_string(d) + " " +
                                   std::to_string(hidden.size()) + (portable ? " portable" : "");
          EXPECT_NEAR(lf.item<double>(), ld.item<double>(),
                      1e-5 * (1 + std::abs(ld.item<double>())))
              << what;
          auto gf = param_grads(*mf, lf), gd = param_grads(*md, ld);
          for (auto& g : gf) g = g.to(torch::kDouble);
          expect_same_grads(gf, gd, what, 2e-4);
          // A backward asked for a graph takes the tensor expressions instead
          // of the fused passes (over the same fused forward): same gradient.
          std::vector<torch::Tensor> ps = mf->parameters();
          auto gc = torch::autograd::grad({loss(*mf, true, torch::kFloat)}, ps, {}, true, true, true);
          for (size_t i = 0; i < gc.size(); ++i)
            gc[i] = gc[i].defined() ? gc[i].detach().to(torch::kDouble) : torch::zeros_like(gd[i]);
          expect_same_grads(gc, gd, what + " create_graph", 2e-4);
        }
      }
    }
  }
}

// The blocked passes (MLPEnergyImpl::denoising_loss and sliced_loss) and
// the general forms they stand for, on float64 inputs made by inputs(b, d).
namespace {
struct BlockedLoss {
  std::string name;
  std::function<std::vector<torch::Tensor>(int64_t, int64_t, at::Generator&)> inputs;
  std::function<torch::Tensor(MLPEnergyImpl&, const std::vector<torch::Tensor>&)> blocked;
  std::function<torch::Tensor(EnergyImpl&, const std::vector<torch::Tensor>&)> general;
};

std::vector<BlockedLoss> blocked_losses() {
  auto f = [](const torch::Tensor& t) { return t.to(torch::kFloat); };
  return {
      {"dsm",  // x, eps, per-row sigma and r
       [](int64_t b, int64_t d, at::Generator& gen) {
         return std::vector<torch::Tensor>{at::normal(0.0, 1.5, {b, d}, gen, torch::kDouble),
                                           at::normal(0.0, 1.0, {b, d}, gen, torch::kDouble),
                                           at::rand({b}, gen, torch::kDouble) + 0.05,
                                           at::rand({b}, gen, torch::kDouble) + 0.5};
       },
       [f](MLPEnergyImpl& e, const std::vector<torch::Tensor>& in) {
         return e.denoising_loss(f(in[0]), f(in[1]), f(in[2]), f(in[3]));
       },
       [](EnergyImpl& e, const std::vector<torch::Tensor>& in) {
         return denoising_sm_loss(e, in[0], in[1], in[2], in[3], false).mean();
       }},
      {"ssm",  // x, one projection per row
       [](int64_t b, int64_t d, at::Generator& gen) {
         return std::vector<torch::Tensor>{at::normal(0.0, 1.5, {b, d}, gen, torch::kDouble),
                                           at::normal(0.0, 1.0, {b, d}, gen, torch::kDouble)};
       },
       [f](MLPEnergyImpl& e, const std::vector<torch::Tensor>& in) {
         return e.sliced_loss(f(in[0]), f(in[1]));
       },
       [](EnergyImpl& e, const std::vector<torch::Tensor>& in) {
         return sliced_sm_loss(e, in[0], in[1].unsqueeze(1), false, false).mean();
       }},
  };
}
}  // namespace

// Both blocked passes (loss and parameter gradient in one sweep, chains in
// blocks of 32) against autograd's float64 double backward on shapes that
// reach every tile and block edge, with a base term and spectral
// normalisation. Yardstick: the error of ATen's float autograd against
// float64 on the same inputs; the blocked pass may be off by at most 4 times
// that plus 1e-5 of the largest value (it sums in another order).
TEST(ScoreMatchingFastPath, BlockedLossesMatchFloat64) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "the blocked passes run on AVX-512 CPUs only";
  auto gen = make_generator(7, kStreamTrain);
  struct Shape {
    int64_t d;
    std::vector<int64_t> hidden;
    double prior;
    bool sn;
    bool frozen_bias;  // the first layer's bias without a gradient
  };
  const std::vector<Shape> shapes = {
      {2, {128, 128}, 0.0, false, false}, {1, {16}, 0.0, false, false},
      {5, {32, 16}, 1.5, false, false},   {8, {16, 48, 7}, 0.0, true, false},
      {3, {16, 16}, 0.0, false, true},    {4, {16, 2}, 0.0, false, false},
      {2, {32, 1}, 0.0, false, false}};
  auto err = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kDouble) - b).abs().max().item<double>();
  };
  auto f = [](const std::vector<torch::Tensor>& in) {
    std::vector<torch::Tensor> out;
    for (const auto& t : in) out.push_back(t.to(torch::kFloat));
    return out;
  };
  for (const auto& loss : blocked_losses()) {
    for (const auto& sh : shapes) {
      const auto opts = MLPEnergyOptions(sh.d, sh.hidden).prior_std(sh.prior).spectral_norm(sh.sn);
      MLPEnergy mf(opts);
      reset_parameters(*mf, gen);
      MLPEnergy md = test_helpers::float64_copy(mf);
      if (sh.frozen_bias) mf->parameters()[1].requires_grad_(false);
      // The gradients of the parameters that want one (zeros elsewhere).
      auto grads = [](torch::nn::Module& m, const torch::Tensor& l, bool create_graph) {
        std::vector<torch::Tensor> ps, wrt;
        for (auto& p : m.parameters()) {
          ps.push_back(p);
          if (p.requires_grad()) wrt.push_back(p);
        }
        auto g = torch::autograd::grad({l}, wrt, {}, true, create_graph, /*allow_unused=*/true);
        std::vector<torch::Tensor> out;
        size_t k = 0;
        for (auto& p : ps) {
          torch::Tensor gi = p.requires_grad() ? g[k++] : torch::Tensor();
          out.push_back(gi.defined() ? gi.detach() : torch::zeros_like(p));
        }
        return out;
      };
      for (int64_t b : {1, 31, 33, 100}) {
        const auto in = loss.inputs(b, sh.d, gen);
        const std::string what = loss.name + ", " + std::to_string(sh.d) + " inputs, " +
                                 std::to_string(sh.hidden.size()) + " layers, batch " +
                                 std::to_string(b);
        auto lb = loss.blocked(*mf, in);
        ASSERT_TRUE(lb.defined()) << what;
        auto lf = loss.general(*mf, f(in)), ld = loss.general(*md, in);
        EXPECT_LE(err(lb, ld), 4 * err(lf, ld) + 1e-5 * std::abs(ld.item<double>())) << what;
        auto gb = grads(*mf, lb, false), gf = grads(*mf, lf, false), gd = param_grads(*md, ld);
        // A backward asked for a graph differentiates the tensor expressions.
        auto gc = grads(*mf, loss.blocked(*mf, in), true);
        for (size_t i = 0; i < gd.size(); ++i) {
          if (sh.frozen_bias && i == 1) {
            EXPECT_EQ(gb[i].abs().max().item<double>(), 0.0) << what;
            continue;
          }
          const double tol = 4 * err(gf[i], gd[i]) + 1e-5 * gd[i].abs().max().item<double>();
          EXPECT_LE(err(gb[i], gd[i]), tol) << what << " param " << i;
          EXPECT_LE(err(gc[i], gd[i]), tol) << what << " create_graph, param " << i;
        }
      }
    }
  }
}

// The objectives take the blocked passes where they apply (the same loss as
// the general form, from the same random draws) and the general form
// elsewhere (the blocked entry points return undefined tensors there).
TEST(ScoreMatchingFastPath, ObjectivesTakeTheBlockedPasses) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "the blocked passes run on AVX-512 CPUs only";
  auto gen = make_generator(7, kStreamTrain);
  MLPEnergy net(MLPEnergyOptions(2, {32, 32}));
  reset_parameters(*net, gen);
  auto x = at::normal(0.0, 1.0, {50, 2}, gen, torch::kFloat);
  // The blocked Function at the loss's node or the one below it (ESM scales it).
  auto taken = [](const Output& out) {
    auto blocked = [](const std::shared_ptr<torch::autograd::Node>& f) {
      return f && f->name().find("BlockedLossFunction") != std::string::npos;
    };
    const auto& f = out.loss.grad_fn();
    if (blocked(f)) return true;
    return f && !f->next_edges().empty() && blocked(f->next_edges()[0].function);
  };
  {  // DSM
    auto gen_a = make_generator(9, kStreamTrain), gen_b = make_generator(9, kStreamTrain);
    auto out = DenoisingScoreMatching(DenoisingScoreMatchingOptions(0.2)).compute(*net, {x, {}}, gen_a);
    auto eps = standard_normal(x.sizes(), gen_b, torch::kFloat);
    auto sig = torch::full({50}, 0.2, x.options());
    EXPECT_TRUE(taken(out));
    EXPECT_NEAR(out.loss.item<double>(),
                denoising_sm_loss(*net, x, eps, sig, sig, false).mean().item<double>(), 1e-5);
  }
  // ESM: the sliced pass over the D basis directions, times D (with a base
  // term, whose trace is D / prior_std^2, for D = 3).
  for (int64_t d : {2, 3}) {
    MLPEnergy e(MLPEnergyOptions(d, {32, 16}).prior_std(d == 3 ? 1.5 : 0.0));
    reset_parameters(*e, gen);
    auto xd = at::normal(0.0, 1.0, {40, d}, gen, torch::kFloat);
    auto out = ExactScoreMatching(ExactScoreMatchingOptions(d)).compute(*e, {xd, {}}, gen);
    EXPECT_TRUE(taken(out)) << d;
    auto ref = exact_sm_loss(*e, xd, false).mean();
    EXPECT_NEAR(out.loss.item<double>(), ref.item<double>(), 1e-5 * (1 + std::abs(ref.item<double>())))
        << d;
    auto ga = param_grads(*e, out.loss), gb = param_grads(*e, ref);
    for (size_t i = 0; i < ga.size(); ++i)
      EXPECT_LE((ga[i] - gb[i]).abs().max().item<double>(),
                1e-4 * gb[i].abs().max().item<double>() + 1e-7)
          << "esm d " << d << " param " << i;
  }
  // SSM, three projections a row: each of the 150 rows weighs 1/150, as in
  // the mean over rows of the mean over projections. The variance-reduced
  // form takes the general path.
  for (bool vr : {false, true})
    for (bool rademacher : {false, true}) {
      if (vr && rademacher) continue;  // (SSM-VR is for Gaussian projections)
      auto gen_a = make_generator(9, kStreamTrain), gen_b = make_generator(9, kStreamTrain);
      auto out = SlicedScoreMatching(SlicedScoreMatchingOptions()
                                         .projections(3)
                                         .variance_reduced(vr)
                                         .projection(rademacher ? "rademacher" : "gaussian"))
                     .compute(*net, {x, {}}, gen_a);
      auto v = rademacher ? at::randint(0, 2, {50, 3, 2}, gen_b, x.options()).mul_(2).sub_(1)
                          : standard_normal({50, 3, 2}, gen_b, torch::kFloat);
      EXPECT_EQ(taken(out), !vr);
      auto ref = sliced_sm_loss(*net, x, v, vr, false).mean();
      EXPECT_NEAR(out.loss.item<double>(), ref.item<double>(), 1e-5);
      // and the same parameter gradient (float rounding: 1e-4 of the largest)
      auto ga = param_grads(*net, out.loss), gb = param_grads(*net, ref);
      for (size_t i = 0; i < ga.size(); ++i)
        EXPECT_LE((ga[i] - gb[i]).abs().max().item<double>(),
                  1e-4 * gb[i].abs().max().item<double>() + 1e-7)
            << "vr " << vr << " rademacher " << rademacher << " param " << i;
    }
  auto eps = torch::randn({50, 2});
  auto sig = torch::full({50}, 0.2f);
  {  // without a gradient to compute, the general form
    torch::NoGradGuard ng;
    EXPECT_FALSE(net->denoising_loss(x, eps, sig, sig).defined());
    EXPECT_FALSE(net->sliced_loss(x, eps).defined());
  }
  // Hidden widths but the last not multiples of 16, inputs wider than 8,
  // another activation, mismatched shapes, portable kernels: undefined.
  MLPEnergy odd(MLPEnergyOptions(2, {12, 8}));
  EXPECT_FALSE(odd->denoising_loss(x, eps, sig, sig).defined());
  EXPECT_FALSE(odd->sliced_loss(x, eps).defined());
  auto x9 = torch::randn({50, 9});
  MLPEnergy wide(MLPEnergyOptions(9, {16}));
  EXPECT_FALSE(wide->denoising_loss(x9, x9, sig, sig).defined());
  EXPECT_FALSE(wide->sliced_loss(x9, x9).defined());
  MLPEnergy elu(MLPEnergyOptions(2, {16}).activation("elu"));
  EXPECT_FALSE(elu->denoising_loss(x, eps, sig, sig).defined());
  EXPECT_FALSE(elu->sliced_loss(x, eps).defined());
  EXPECT_FALSE(net->sliced_loss(x, eps.narrow(0, 0, 49)).defined());
  EXPECT_FALSE(net->denoising_loss(x, eps, sig.narrow(0, 0, 49), sig).defined());
  // Inputs of the wrong rank (a [N] projection or noise, [N, D] levels), a
  // float64 or differentiable x.
  EXPECT_FALSE(net->sliced_loss(x, sig).defined());
  EXPECT_FALSE(net->denoising_loss(x, sig, sig, sig).defined());
  EXPECT_FALSE(net->denoising_loss(x, eps, eps, sig).defined());
  EXPECT_FALSE(net->sliced_loss(x.to(torch::kDouble), eps.to(torch::kDouble)).defined());
  EXPECT_FALSE(net->sliced_loss(x.clone().requires_grad_(true), eps).defined());
  ScopedPortableKernels portable(true);
  EXPECT_FALSE(net->denoising_loss(x, eps, sig, sig).defined());
  EXPECT_FALSE(net->sliced_loss(x, eps).defined());
}

// On two threads the blocked passes sum two chunks' losses and gradients,
// weighted by their rows: the same as one thread up to float rounding of the
// sum (1e-6 of the largest value).
TEST(ScoreMatchingFastPath, BlockedLossesOnTwoThreads) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "the blocked passes run on AVX-512 CPUs only";
  auto gen = make_generator(8, kStreamTrain);
  MLPEnergy net(MLPEnergyOptions(2, {32, 32}));
  reset_parameters(*net, gen);
  for (const auto& loss : blocked_losses()) {
    const auto in = loss.inputs(300, 2, gen);
    const int before = at::get_num_threads();
    std::vector<std::vector<torch::Tensor>> g(2);
    std::vector<double> l(2);
    for (int t : {1, 2}) {
      at::set_num_threads(t);
      auto value = loss.blocked(*net, in);
      ASSERT_TRUE(value.defined()) << loss.name;
      l[t - 1] = value.item<double>();
      g[t - 1] = param_grads(*net, value);
    }
    at::set_num_threads(before);
    EXPECT_NEAR(l[0], l[1], 1e-6 * std::abs(l[0])) << loss.name;
    for (size_t i = 0; i < g[0].size(); ++i)
      EXPECT_LE((g[0][i] - g[1][i]).abs().max().item<double>(),
                1e-6 * g[0][i].abs().max().item<double>() + 1e-12)
          << loss.name << " param " << i;
  }
}

// A loss's own backward hands the stored gradient over (no copy): the caller
// may modify it, and a repeated backward (retain_graph) still gives the
// gradient, through the general form. A seed other than 1 scales the stored
// gradient (exactly, by 2) and leaves it stored. On two threads (batch 300:
// chunks of the batch summed) as on one; the output bias has a zero gradient.
TEST(ScoreMatchingFastPath, BlockedLossesHandTheirGradientOverOnce) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "the blocked passes run on AVX-512 CPUs only";
  auto gen = make_generator(9, kStreamTrain);
  MLPEnergy net(MLPEnergyOptions(2, {32, 32}));
  reset_parameters(*net, gen);
  const auto ps = net->parameters();
  const size_t bias_out = ps.size() - 1;
  auto close = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>() <= 1e-5 * b.abs().max().item<double>() + 1e-7;
  };
  const int before = at::get_num_threads();
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (const auto& loss : blocked_losses()) {
      const std::string what = loss.name + ", " + std::to_string(threads) + " threads";
      const auto in = loss.inputs(300, 2, gen);
      auto value = loss.blocked(*net, in);
      ASSERT_TRUE(value.defined()) << what;
      auto twice = torch::autograd::grad({value}, ps, {torch::full({}, 2.0)}, true);
      auto first = torch::autograd::grad({value}, ps, {}, /*retain_graph=*/true);
      std::vector<torch::Tensor> want;
      for (size_t i = 0; i < ps.size(); ++i) {
        EXPECT_TRUE(torch::equal(twice[i], 2 * first[i])) << what << " param " << i;
        want.push_back(first[i].clone());
        first[i].add_(1.0);  // the caller's to modify
      }
      EXPECT_EQ(want[bias_out].abs().max().item<double>(), 0.0) << what;
      auto again = torch::autograd::grad({value}, ps, {}, /*retain_graph=*/true);
      for (size_t i = 0; i < ps.size(); ++i)
        EXPECT_TRUE(close(again[i], want[i])) << what << " param " << i;
      // Into .grad: a first backward hands over, a second adds.
      for (auto& p : net->parameters()) p.mutable_grad().reset();
      auto fresh = loss.blocked(*net, in);
      fresh.backward({}, /*retain_graph=*/true);
      fresh.backward();
      for (size_t i = 0; i < ps.size(); ++i)
        EXPECT_TRUE(close(ps[i].grad(), 2 * want[i])) << what << " param " << i;
    }
  }
  at::set_num_threads(before);
}

// Hyvarinen (2005): for Gaussian data and the quadratic family, exact score
// matching's minimiser is mu = sample mean, P = inverse sample covariance
// (1/N). Float64 and L-BFGS to a gradient norm of 1e-12: the tolerance
// (1e-8 relative) is the optimiser's, not statistical.
TEST(ScoreMatchingClosedForm, ExactRecoversInverseSampleCovariance) {
  auto gen = make_generator(21, kStreamTestData);
  auto x = gaussian_data(500, gen);
  QuadraticEnergyImpl e(2);
  fit(e, [&] { return exact_sm_loss(e, x).mean(); });
  auto want = torch::inverse(sample_cov(x));
  auto got = e.precision().detach();
  const double scale = want.abs().max().item<double>();
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-8 * scale) << got << "\n" << want;
  EXPECT_LT((e.mu.detach() - x.mean(0)).abs().max().item<double>(), 1e-8);
}

// Sliced SM (Song et al. 2019) on the same data: its minimiser converges to
// the exact one as projections grow. R = 20 fits with independent
// projections (K = N M = 2.5 10^4 each); the mean of the fitted precisions must
// sit within t_19 * SE of the inverse sample covariance. The estimator's
// ratio bias is O(1/K) ~ 4e-5 relative, far below the SE (~2e-3).
TEST(ScoreMatchingClosedForm, SlicedApproachesTheExactOptimum) {
  auto gen = make_generator(22, kStreamTestData);
  const int64_t n = 500, m = 50, reps = 20;
  auto x = gaussian_data(n, gen);
  auto want = torch::inverse(sample_cov(x));
  for (const char* kind : {"gaussian", "rademacher"}) {
    std::vector<torch::Tensor> fits;
    for (int64_t r = 0; r < reps; ++r) {
      auto v = std::string(kind) == "gaussian"
                   ? at::normal(0.0, 1.0, {n, m, 2}, gen, torch::kDouble)
                   : at::randint(0, 2, {n, m, 2}, gen, torch::kDouble).mul_(2).sub_(1);
      QuadraticEnergyImpl e(2);
      fit(e, [&] { return sliced_sm_loss(e, x, v, false).mean(); });
      fits.push_back(e.precision().detach());
    }
    auto all = torch::stack(fits);  // [R, 2, 2]
    auto mean = all.mean(0), se = all.std(0) / std::sqrt(double(reps));
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j <= i; ++j)
        EXPECT_NEAR(mean[i][j].item<double>(), want[i][j].item<double>(),
                    kT19 * se[i][j].item<double>()) << kind << " P[" << i << "][" << j << "]";
    // And it does approach: each fit is within 5% of the exact optimum.
    EXPECT_LT(((all - want).abs() / want.abs().max()).max().item<double>(), 0.05) << kind;
  }
}

// Denoising SM (Vincent 2011) at noise sigma: the minimiser of its
// population loss is the optimum on the smoothed data, P = (S + sigma^2 I)^-1,
// which tends to S^-1 as sigma -> 0 with error <= sigma^2 / lambda_min(S)^2.
// R = 20 fits with independent noise (K = 100 draws per point).
TEST(ScoreMatchingClosedForm, DenoisingApproachesTheSmoothedOptimum) {
  auto gen = make_generator(23, kStreamTestData);
  const int64_t n = 500, k = 100, reps = 20;
  const double sigma = 0.05;
  auto x = gaussian_data(n, gen);
  auto s = sample_cov(x);
  auto want = torch::inverse(s + sigma * sigma * torch::eye(2, torch::kDouble));
  auto xs = x.repeat({k, 1});
  auto sig = torch::full({n * k}, sigma, torch::kDouble);
  std::vector<torch::Tensor> fits;
  for (int64_t r = 0; r < reps; ++r) {
    auto eps = at::normal(0.0, 1.0, xs.sizes(), gen, torch::kDouble);
    QuadraticEnergyImpl e(2);
    fit(e, [&] { return denoising_sm_loss(e, xs, eps, sig, sig).mean(); });
    fits.push_back(e.precision().detach());
  }
  auto all = torch::stack(fits);
  auto mean = all.mean(0), se = all.std(0) / std::sqrt(double(reps));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j <= i; ++j)
      EXPECT_NEAR(mean[i][j].item<double>(), want[i][j].item<double>(),
                  kT19 * se[i][j].item<double>()) << "P[" << i << "][" << j << "]";
  // The smoothed optimum is within the stated bound of the exact one.
  const double lmin = std::get<0>(torch::linalg_eigh(s)).min().item<double>();
  EXPECT_LT((want - torch::inverse(s)).abs().max().item<double>(), sigma * sigma / (lmin * lmin));
}

// The sliced estimator is unbiased for exact SM on a fixed batch and fixed
// weights: the mean over K independent projection draws is within z * SE.
TEST(ScoreMatchingUnbiased, SlicedMeanEqualsExactOnABatch) {
  auto gen = make_generator(24, kStreamTestData);
  const int64_t b = 32, d = 3, draws = 20000;
  MLPEnergy mlp(MLPEnergyOptions(d, {16, 16}).prior_std(2.0));
  reset_parameters(*mlp, gen);
  mlp->to(torch::kDouble);
  auto x = at::normal(0.0, 1.0, {b, d}, gen, torch::kDouble);
  torch::NoGradGuard ng;
  const double exact = exact_sm_loss(*mlp, x).mean().item<double>();
  auto xs = x.repeat({draws, 1});  // row (k, b)
  for (const char* kind : {"gaussian", "rademacher", "vr"}) {
    auto v = std::string(kind) == "rademacher"
                 ? at::randint(0, 2, {b * draws, 1, d}, gen, torch::kDouble).mul_(2).sub_(1)
                 : at::normal(0.0, 1.0, {b * draws, 1, d}, gen, torch::kDouble);
    auto per_draw = sliced_sm_loss(*mlp, xs, v, std::string(kind) == "vr").view({draws, b}).mean(1);
    const double mean = per_draw.mean().item<double>();
    const double se = per_draw.std().item<double>() / std::sqrt(double(draws));
    EXPECT_NEAR(mean, exact, kZ * se) << kind;
  }
}

TEST(ScoreMatchingOptions, BadValuesNameTheKey) {
  auto msg = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBadConfig);
      return e.what();
    }
    return "";
  };
  auto big = msg([] { ExactScoreMatching(ExactScoreMatchingOptions(784)); });
  EXPECT_NE(big.find("ssm"), std::string::npos) << big;
  EXPECT_NE(big.find("784"), std::string::npos) << big;
  EXPECT_NO_THROW(ExactScoreMatching(ExactScoreMatchingOptions(100)));
  EXPECT_NE(msg([] { SlicedScoreMatching(SlicedScoreMatchingOptions().projections(0)); })
                .find("objective.projections"), std::string::npos);
  EXPECT_NE(msg([] { SlicedScoreMatching(SlicedScoreMatchingOptions().projection("sphere")); })
                .find("sphere"), std::string::npos);
  EXPECT_NE(msg([] {
              SlicedScoreMatching(
                  SlicedScoreMatchingOptions().projection("rademacher").variance_reduced(true));
            }).find("variance_reduced"), std::string::npos);
  EXPECT_NE(msg([] { DenoisingScoreMatching(DenoisingScoreMatchingOptions(0)); })
                .find("objective.sigma"), std::string::npos);
  EXPECT_NE(msg([] { MultiscaleScoreMatching(MultiscaleScoreMatchingOptions().sigma_max(0.001)); })
                .find("objective.sigma_max"), std::string::npos);
  EXPECT_NE(msg([] { MultiscaleScoreMatching(MultiscaleScoreMatchingOptions().levels(1)); })
                .find("objective.levels"), std::string::npos);
  EXPECT_NE(msg([] { MultiscaleScoreMatching(MultiscaleScoreMatchingOptions().form("ddpm")); })
                .find("ddpm"), std::string::npos);
  // ncsn needs a noise-conditional energy.
  MultiscaleScoreMatching ncsn{MultiscaleScoreMatchingOptions()};
  MLPEnergy plain(MLPEnergyOptions(2, {4}));
  auto gen = make_generator(1, kStreamTrain);
  Batch batch{torch::zeros({3, 2}), {}};
  EXPECT_NE(msg([&] { ncsn.compute(*plain, batch, gen); }).find("ncmlp"), std::string::npos);
}


// The mass term's log Z: self-normalised importance sampling from the data's
// kernel density recovers the known log Z of an analytic target (mixture:
// separated, unequal modes), so nll_is - mean E(x+) = log Z. Tolerance 0.05:
// the estimator's spread at 4096 proposals with an effective sample size above
// a quarter of them is ~0.01, and its bias O(1/ESS).
namespace {
// The mixture target (separated, unequal modes), 4,000 of its draws and a
// DSM objective for the mass term to wrap.
struct MixtureRun {
  ebm::AnalyticEnergy target;
  at::Generator gen;
  torch::Tensor data;
  std::shared_ptr<ebm::DenoisingScoreMatching> inner;
};
MixtureRun mixture_run(int64_t seed) {
  MixtureRun r{ebm::make_target("mixture", 2), ebm::make_generator(seed, ebm::kStreamTrain), {}, nullptr};
  r.data = r.target->sample(4000, r.gen).to(torch::kDouble);
  r.inner = std::make_shared<ebm::DenoisingScoreMatching>(ebm::DenoisingScoreMatchingOptions(0.1).analytic(false));
  return r;
}
}  // namespace

TEST(MassTerm, ImportanceSampledLogZOfAnAnalyticTarget) {
  auto [target, gen, data, inner] = mixture_run(70);
  ebm::WithMassTerm obj(inner, ebm::MassTermOptions().weight(1.0).samples(4096));
  EXPECT_THROW(obj.compute(*target, {data.narrow(0, 0, 64), {}}, gen), c10::Error);  // (fit_data first)
  obj.fit_data(data);
  auto batch = data.narrow(0, 0, 256);
  auto out = obj.compute(*target, {batch, {}}, gen);
  const double mean_e = target->energy(batch).mean().item<double>();
  EXPECT_NEAR(out.metrics.at("nll_is") - mean_e, target->log_z(), 0.05);
  EXPECT_GT(out.metrics.at("ess_fraction"), 0.25);
  EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
  EXPECT_THROW(ebm::WithMassTerm(inner, ebm::MassTermOptions().weight(-1)), ebm::Error);
}

// A step whose importance weights rest on a handful of proposals skips the
// term (metric mass_term 0, the loss the inner objective's alone): a model
// far narrower than the data's kernel density gets a log Z estimate far below
// its own, which training would exploit. The data's own target keeps it.
TEST(MassTerm, SkipsStepsWithTooFewEffectiveSamples) {
  auto [target, gen, data, inner] = mixture_run(71);
  ebm::WithMassTerm obj(inner, ebm::MassTermOptions().weight(1.0).samples(512));
  obj.fit_data(data);
  auto batch = data.narrow(0, 0, 64);
  auto kept = obj.compute(*target, {batch, {}}, gen);
  EXPECT_EQ(kept.metrics.at("mass_term"), 1.0);
  EXPECT_GT(kept.metrics.at("ess_fraction") * 512, 3);
  // N(x_0, 1e-4 I): of 512 proposals a few land near x_0 at all.
  auto narrow = std::make_shared<ebm::GaussianEnergyImpl>(data[0].clone(), 1e-4 * torch::eye(2, torch::kDouble));
  auto g1 = gen.clone();
  auto skipped = obj.compute(*narrow, {batch, {}}, gen);
  EXPECT_EQ(skipped.metrics.at("mass_term"), 0.0);
  EXPECT_LT(skipped.metrics.at("ess_fraction") * 512, 3);
  auto alone = inner->compute(*narrow, {batch, {}}, g1);
  EXPECT_EQ(skipped.loss.item<double>(), alone.loss.item<double>());
  // Skipped on most of a 500-step window (here every one of them after the
  // first two steps): one line on stderr says the term has no effect; the
  // next window says nothing more.
  testing::internal::CaptureStderr();
  for (int i = 0; i < 998; ++i) obj.compute(*narrow, {batch.narrow(0, 0, 4), {}}, gen);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("the mass term was skipped on 499 of the last 500 steps"), std::string::npos) << err;
  EXPECT_EQ(err.find("skipped", err.find("skipped") + 1), std::string::npos) << err;
}
