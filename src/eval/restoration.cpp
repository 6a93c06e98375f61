#include "ebm/eval/restoration.h"

#include <c10/util/accumulate.h>

#include <cmath>
#include <deque>
#include <limits>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/eval/ood.h"
#include "ebm/sampling/conditional.h"

namespace ebm {

namespace {
bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

double parse_number(const std::string& spec, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  EBM_CHECK_USAGE(used == text.size() && !text.empty() && std::isfinite(v), spec, ": '", text,
                  "' is not a number");
  return v;
}
}  // namespace

bool is_named_mask(const std::string& spec) {
  return starts_with(spec, "center:") || starts_with(spec, "random:") || starts_with(spec, "dims:") ||
         spec == "left-half" || spec == "right-half" || spec == "top-half" || spec == "bottom-half";
}

torch::Tensor named_mask(const std::string& spec, const std::vector<int64_t>& shape, int64_t n,
                         at::Generator& gen) {
  auto full = shape;
  full.insert(full.begin(), n);
  auto mask = torch::zeros(full, torch::kBool);
  if (starts_with(spec, "dims:")) {
    const int64_t d = c10::multiply_integers(shape);
    auto flat = mask.view({n, d});
    std::stringstream ss(spec.substr(5));
    std::string item;
    int64_t count = 0;
    while (std::getline(ss, item, ',')) {
      const double v = parse_number(spec, item);
      EBM_CHECK_USAGE(v == std::floor(v) && v >= 0 && v < d, spec, ": coordinate ", item, " outside 0 to ", d - 1);
      EBM_CHECK_USAGE(n == 0 || !flat[0][int64_t(v)].item<bool>(), spec, ": coordinate ", int64_t(v), " given twice");
      flat.select(1, int64_t(v)).fill_(true);
      ++count;
    }
    EBM_CHECK_USAGE(count > 0, spec, ": no coordinates");
    return mask;
  }
  if (shape.size() != 3 && starts_with(spec, "random:")) {
    // (vectors: each value missing with probability P, each row its own
    // pattern; a row with none masked is scored on nothing, as images are)
    const double p = parse_number(spec, spec.substr(7));
    EBM_CHECK_USAGE(p > 0 && p < 1, spec, ": the missing fraction must be in (0, 1)");
    return at::empty(full, torch::kDouble).uniform_(0, 1, gen) < p;
  }
  EBM_CHECK_USAGE(shape.size() == 3, "--mask ", spec, ": a named image mask, but the model's samples are ",
                  c10::IntArrayRef(shape), " (not images); use dims:i,j, random:P or a mask file");
  const int64_t h = shape[1], w = shape[2];
  if (starts_with(spec, "center:")) {
    const double k = parse_number(spec, spec.substr(7));
    EBM_CHECK_USAGE(k == std::floor(k) && k >= 1 && k <= std::min(h, w), spec, ": the square's side must be 1 to ",
                    std::min(h, w));
    const int64_t s = int64_t(k), top = (h - s) / 2, left = (w - s) / 2;
    mask.slice(2, top, top + s).slice(3, left, left + s).fill_(true);
  } else if (starts_with(spec, "random:")) {
    const double p = parse_number(spec, spec.substr(7));
    EBM_CHECK_USAGE(p > 0 && p < 1, spec, ": the missing fraction must be in (0, 1)");
    auto hit = at::empty({n, 1, h, w}, torch::kDouble).uniform_(0, 1, gen) < p;
    mask = hit.expand(full).clone();
  } else if (spec == "left-half") {
    mask.slice(3, 0, w / 2).fill_(true);
  } else if (spec == "right-half") {
    mask.slice(3, w / 2, w).fill_(true);
  } else if (spec == "top-half") {
    mask.slice(2, 0, h / 2).fill_(true);
  } else if (spec == "bottom-half") {
    mask.slice(2, h / 2, h).fill_(true);
  } else {
    fail(ExitCode::kUsage, "--mask ", spec,
         ": not a mask file or a named mask (center:K, random:P, left-half, right-half, top-half, bottom-half, "
         "dims:i,j)");
  }
  return mask;
}

torch::Tensor mask_from_values(const torch::Tensor& given, const std::vector<int64_t>& shape, int64_t n,
                               const std::string& file) {
  const int64_t d = c10::multiply_integers(shape);
  const bool image = shape.size() == 3;
  // (a 2-D array [H, W], as numpy saves one plane: that plane, for every image)
  const bool one_plane = image && given.dim() == 2 && given.size(0) == shape[1] && given.size(1) == shape[2];
  // (an array of the model's own shape [C, H, W]: one mask, channel by
  // channel, for every image; read as C rows of [H, W], a red-channel mask
  // masked all channels of the first image alone where --n was C)
  const bool one_image = image && given.dim() == 3 && given.sizes() == c10::IntArrayRef(shape) && shape[0] > 1;
  if (one_image && n == shape[0])
    notes() << "ebm: note: " << file << ": read as one mask of the model's shape " << c10::IntArrayRef(shape)
            << " for every image (one [H, W] plane per image: give [N, 1, H, W])\n";
  // (vectors: a 1-D array of the row's D values, read as D rows of one
  // value, is one mask for every row; D rows of one value cannot be rows)
  const bool one_row = !image && d > 1 && given.dim() == 2 && given.size(0) == d && given.size(1) == 1;
  const auto values = one_plane || one_image ? given.unsqueeze(0) : one_row ? given.t() : given;
  const int64_t hw = image ? shape[1] * shape[2] : d;
  const std::string want = image ? " (or [H, W] = [" + std::to_string(shape[1]) + ", " + std::to_string(shape[2]) +
                                       "] for every channel)"
                                 : "";
  EBM_CHECK_DATA(values.dim() >= 1 && (values.size(0) == 1 || values.size(0) == n), file, ": a mask must be 1 or ",
                 n, " rows of ", c10::IntArrayRef(shape), want, ", got ", values.sizes());
  // (a row is the model's shape, or flat with as many values; for images
  // also one [H, W] plane, applied to every channel)
  const auto row = values.sizes().slice(1);
  const int64_t per = values[0].numel();
  const bool flat = row.size() <= 1;
  const bool plane = image && (row == c10::IntArrayRef{shape[1], shape[2]} ||
                               row == c10::IntArrayRef{1, shape[1], shape[2]});
  std::vector<int64_t> full;
  if (per == d && (flat || row == c10::IntArrayRef(shape))) {
    full = shape;
  } else if (image && per == hw && (flat || plane)) {
    full = {1, shape[1], shape[2]};
  } else {
    fail(ExitCode::kBadData, file, ": a mask must be 1 or ", n, " rows of ", c10::IntArrayRef(shape), want,
         ", got rows of ", row);
  }
  full.insert(full.begin(), values.size(0));
  auto m = values.reshape(full).to(torch::kDouble);
  EBM_CHECK_DATA(torch::isfinite(m).all().item<bool>(), file, ": a mask holds non-finite values");
  auto out_shape = shape;
  out_shape.insert(out_shape.begin(), n);
  return (m != 0).expand(out_shape).clone();
}

torch::Tensor corrupt(const torch::Tensor& x, const std::string& spec, const PixelMap& map, at::Generator& gen,
                      double* std) {
  const double range = map.hi - map.lo;
  if (std) *std = 0;
  if (starts_with(spec, "gaussian:")) {
    const double s = parse_number(spec, spec.substr(9));
    EBM_CHECK_USAGE(s > 0, spec, ": the noise std must be > 0");
    if (std) *std = s * range;
    auto noise = at::normal(0.0, s * range, x.sizes(), gen, x.options());
    return (x + noise).clamp(map.lo, map.hi);
  }
  if (starts_with(spec, "salt:")) {
    const double p = parse_number(spec, spec.substr(5));
    EBM_CHECK_USAGE(p > 0 && p < 1, spec, ": the corrupted fraction must be in (0, 1)");
    auto u = at::empty(x.sizes(), x.options()).uniform_(0, 1, gen);
    auto white = at::empty(x.sizes(), x.options()).uniform_(0, 1, gen) < 0.5;
    auto noise = torch::where(white, torch::full_like(x, map.hi), torch::full_like(x, map.lo));
    return torch::where(u < p, noise, x);
  }
  fail(ExitCode::kUsage, "--corrupt ", spec, ": gaussian:STD or salt:FRACTION");
}

torch::Tensor corrupt_values(const torch::Tensor& x, const std::string& spec, at::Generator& gen, double* std) {
  EBM_CHECK_USAGE(starts_with(spec, "gaussian:"), "--corrupt ", spec,
                  starts_with(spec, "salt") ? ": salt is for image models; vectors take gaussian:STD (STD in the "
                                              "data's units)"
                                            : ": vectors take gaussian:STD (STD in the data's units)");
  const double s = parse_number(spec, spec.substr(9));
  EBM_CHECK_USAGE(s > 0 && std::isfinite(s), spec, ": the noise std must be > 0");
  if (std) *std = s;
  return x + at::normal(0.0, s, x.sizes(), gen, x.options());
}

torch::Tensor posterior_mode(EnergyImpl& energy, const torch::Tensor& y, const torch::Tensor& sigma, int64_t steps,
                             const torch::Tensor& prior_var) {
  TORCH_CHECK(steps >= 0, "posterior_mode: steps must be >= 0");
  const int64_t n = y.size(0);
  auto var = sigma.to(y.options()).square().reshape({-1});
  TORCH_CHECK(var.numel() == 1 || var.numel() == y[0].numel(), "posterior_mode: ", var.numel(),
              " noise stds for rows of ", y[0].numel(), " values");
  TORCH_CHECK((var > 0).all().item<bool>(), "posterior_mode: noise stds must be > 0");
  TORCH_CHECK(prior_var.defined() || torch::isfinite(var).all().item<bool>(),
              "posterior_mode: an infinite noise std (no observation term) needs prior_var");
  var = var.expand({y[0].numel()}).reshape(y[0].sizes()).unsqueeze(0);  // [1, ...event]
  auto precond = var;
  if (prior_var.defined()) {
    auto pv = prior_var.to(y.options()).reshape({-1});
    TORCH_CHECK(pv.numel() == 1 || pv.numel() == y[0].numel(), "posterior_mode: ", pv.numel(),
                " prior variances for rows of ", y[0].numel(), " values");
    TORCH_CHECK((pv > 0).all().item<bool>(), "posterior_mode: prior variances must be > 0");
    pv = pv.expand({y[0].numel()}).reshape(y[0].sizes()).unsqueeze(0);
    precond = 1.0 / (1.0 / var + 1.0 / pv);
  }
  auto post = [&](const torch::Tensor& x) {
    auto [e, g] = energy.energy_and_grad(x);
    auto d = x - y;
    return std::make_pair(e + (d.square() / (2 * var)).flatten(1).sum(1), g + d / var);
  };
  // Limited-memory BFGS, row by row, its initial inverse Hessian gamma P.
  // (Diagonally preconditioned descent needed as many iterations as the
  // posterior's condition number: 20 correlated columns whose variances
  // span 6,500 stopped at 1.31x the posterior mean's MSE after the default
  // 200 steps, at 1.01x after 1,000; trajectories with 18 future steps
  // given 2 were 64x off.)
  const int64_t d = y[0].numel();
  auto flat = [&](const torch::Tensor& v) { return v.reshape({n, d}); };
  auto rows = [&](const torch::Tensor& v) {  // [N] -> [N, 1, ...] to broadcast over the event
    std::vector<int64_t> shape(size_t(y.dim()), 1);
    shape[0] = n;
    return v.reshape(shape);
  };
  const auto pc = precond.reshape({1, d});
  constexpr size_t kMemory = 8;
  std::deque<torch::Tensor> hs, hy, hrho;  // ([N, D], [N, D], [N]; a row's pair is zeros where it was not kept)
  auto gamma = torch::full({n}, 0.5, y.options());  // (the first step: half the preconditioned gradient)
  auto direction = [&](const torch::Tensor& grad) {  // -H grad, [N, D]
    auto q = flat(grad).clone();
    std::vector<torch::Tensor> alpha(hs.size());
    for (size_t i = hs.size(); i-- > 0;) {
      alpha[i] = hrho[i] * (hs[i] * q).sum(1);
      q -= alpha[i].unsqueeze(1) * hy[i];
    }
    auto r = gamma.unsqueeze(1) * pc * q;
    for (size_t i = 0; i < hs.size(); ++i) r += (alpha[i] - hrho[i] * (hy[i] * r).sum(1)).unsqueeze(1) * hs[i];
    return -r;
  };
  auto x = y.detach().clone();
  auto [f, g] = post(x);
  auto p = direction(g);
  auto t = torch::ones({n}, y.options());
  for (int64_t it = 0; it < steps; ++it) {
    auto gp = (flat(g) * p).sum(1);
    // (not a descent direction, on a non-convex E: the preconditioned gradient)
    const auto uphill = ~(gp < 0);
    if (uphill.any().item<bool>()) {
      p = torch::where(uphill.unsqueeze(1), -gamma.unsqueeze(1) * pc * flat(g), p);
      gp = (flat(g) * p).sum(1);
    }
    auto cand = x + rows(t) * p.view_as(x);
    auto [fc, gc] = post(cand);
    // (Armijo's sufficient decrease; a row that fails halves its step)
    const auto ok = torch::isfinite(fc) & (fc <= f + 1e-4 * t * gp);
    auto sv = flat(cand - x), yv = flat(gc - g);
    const auto sy = (sv * yv).sum(1);
    const auto keep = ok & torch::isfinite(sy) & (sy > 1e-10 * sv.norm(2, 1) * yv.norm(2, 1)) & (sy > 0);
    const auto k1 = keep.unsqueeze(1);
    hs.push_back(torch::where(k1, sv, torch::zeros_like(sv)));
    hy.push_back(torch::where(k1, yv, torch::zeros_like(yv)));
    hrho.push_back(torch::where(keep, 1.0 / sy, torch::zeros_like(sy)));
    if (hs.size() > kMemory) {
      hs.pop_front();
      hy.pop_front();
      hrho.pop_front();
    }
    gamma = torch::where(keep, sy / (yv * pc * yv).sum(1).clamp_min(1e-30), gamma);
    x = torch::where(rows(ok), cand, x);
    g = torch::where(rows(ok), gc, g);
    f = torch::where(ok, fc, f);
    t = torch::where(ok, torch::ones_like(t), (t * 0.5).clamp_min(1e-30));
    p = torch::where(ok.unsqueeze(1), direction(g), p);
  }
  return x;
}

torch::Tensor conditional_mode(EnergyImpl& energy, const torch::Tensor& known, const torch::Tensor& free,
                               const torch::Tensor& start, int64_t steps, const torch::Tensor& data_var) {
  Energy view(Energy(), &energy);  // (aliasing, not owning)
  ClampedEnergyImpl clamped(view, known, free.to(torch::kBool).expand_as(known));
  // (no observation term: an infinite noise std, the data's variance alone
  // preconditioning the descent)
  auto mode = posterior_mode(clamped, clamped.fill(start), torch::tensor(std::numeric_limits<double>::infinity()),
                             steps, data_var);
  return clamped.fill(mode).detach();
}

torch::Tensor gaussian_fill(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& reference) {
  const int64_t n = x.size(0), d = x[0].numel();
  TORCH_CHECK(reference.dim() >= 2 && reference[0].numel() == d && reference.size(0) >= 2,
              "gaussian_fill: want reference rows of ", d, " values, got ", reference.sizes());
  torch::Tensor mu, cov;
  if (reference.dim() == 2) {
    // Vectors: the ridge the rows choose (GaussianFit). A fixed 1e-6 of the
    // mean variance was 838 where trajectories starting 3e4 apart move by
    // steps of sd 1: their predicted next step was off by 28 (optimum 1.1).
    const auto fit = GaussianFit::fit(reference);
    mu = fit.mean;
    cov = fit.chol.mm(fit.chol.t());
  } else {
    auto r = reference.to(torch::kCPU, torch::kDouble).reshape({reference.size(0), d});
    mu = r.mean(0);
    auto c = r - mu;
    cov = c.t().mm(c) / double(r.size(0) - 1);
    cov = cov + 1e-6 * std::max(cov.diagonal().mean().item<double>(), 1e-12) * torch::eye(d, torch::kDouble);
  }
  auto xd = x.to(torch::kCPU, torch::kDouble).reshape({n, d});
  auto m = mask.to(torch::kCPU, torch::kBool).reshape({-1, d}).expand({n, d});
  auto out = torch::where(m, mu.expand({n, d}), xd);
  // (rows grouped by their mask: one solve per pattern)
  auto [patterns, inverse, counts] = torch::unique_dim(m.to(torch::kLong), 0, true, true, false);
  for (int64_t p = 0; p < patterns.size(0); ++p) {
    auto miss = patterns[p].to(torch::kBool);
    const int64_t nm = miss.sum().item<int64_t>();
    if (nm == 0 || nm == d) continue;  // (nothing to fill, or nothing known: the mean)
    auto rows = (inverse == p).nonzero().squeeze(1);
    auto mi = miss.nonzero().squeeze(1), ob = (~miss).nonzero().squeeze(1);
    auto soo = cov.index_select(0, ob).index_select(1, ob), smo = cov.index_select(0, mi).index_select(1, ob);
    auto dx = xd.index_select(0, rows).index_select(1, ob) - mu.index_select(0, ob);  // [R, O]
    auto l = torch::linalg_cholesky(soo);
    auto fill = mu.index_select(0, mi).unsqueeze(0) + smo.mm(torch::cholesky_solve(dx.t(), l)).t();  // [R, M]
    auto block = out.index_select(0, rows);
    block.index_copy_(1, mi, fill);
    out.index_copy_(0, rows, block);
  }
  return out.reshape(x.sizes()).to(x.scalar_type());
}

torch::Tensor gaussian_denoise(const torch::Tensor& y, const torch::Tensor& train, double sigma) {
  TORCH_CHECK(sigma > 0, "gaussian_denoise: sigma must be > 0");
  const auto fit = GaussianFit::fit(train, train.size(0));
  auto cov = fit.chol.mm(fit.chol.t());
  const int64_t d = cov.size(0);
  auto r = y.detach().to(torch::kCPU, torch::kDouble).flatten(1) - fit.mean;  // [N, D]
  auto l = torch::linalg_cholesky(cov + sigma * sigma * torch::eye(d, torch::kDouble));
  return (y.detach().to(torch::kCPU, torch::kDouble).flatten(1) - sigma * sigma * torch::cholesky_solve(r.t(), l).t())
      .reshape(y.sizes());
}

RestorationScore restoration_score(const torch::Tensor& x, const torch::Tensor& truth, const PixelMap& map,
                                   const torch::Tensor& where) {
  TORCH_CHECK(x.sizes() == truth.sizes(), "restoration_score: ", x.sizes(), " against ", truth.sizes());
  const double range = map.hi - map.lo;
  auto d = ((x.to(torch::kDouble) - truth.to(torch::kDouble)) / range).square().flatten(1);
  auto w = where.defined() ? where.to(torch::kDouble).expand(x.sizes()).flatten(1) : torch::ones_like(d);
  auto count = w.sum(1);
  auto keep = count > 0;
  RestorationScore s;
  s.n = keep.sum().item<int64_t>();
  if (s.n == 0) return s;
  auto mse = ((d * w).sum(1) / count.clamp_min(1)).masked_select(keep);
  // (pooled over every scored value, as the docs say: the mean of per-row
  // MSEs weighed a row with one missing value as one with all of them)
  s.mse = ((d * w).sum() / count.sum()).item<double>();
  s.psnr = (-10.0 * torch::log10(mse.clamp_min(1e-10))).mean().item<double>();
  return s;
}

torch::Tensor mean_fill(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& mean) {
  return torch::where(mask, mean.to(x.dtype()).expand_as(x), x);
}

torch::Tensor nearest_fill(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& reference) {
  const int64_t n = x.size(0), d = x[0].numel();
  auto known = (~mask).to(torch::kFloat).reshape({n, d});
  auto xf = x.to(torch::kFloat).reshape({n, d}) * known;
  auto ref = reference.to(torch::kFloat).reshape({reference.size(0), d});
  auto out = x.clone();
  // |k * (x - r)|^2 = sum k x^2 - 2 (k x) . r + k . r^2, in blocks of rows.
  const int64_t block = 256;
  auto ref2 = ref.square();
  auto mean = ref.mean(0, true);  // [1, d]
  for (int64_t i = 0; i < n; i += block) {
    const int64_t m = std::min(block, n - i);
    auto k = known.narrow(0, i, m), kx = xf.narrow(0, i, m);
    auto dist = (kx.square()).sum(1, true) - 2 * torch::mm(kx, ref.t()) + torch::mm(k, ref2.t());
    auto best = dist.argmin(1);
    // (a row with nothing known has no nearest image: the mean stands in)
    auto none = (k.sum(1, true) == 0);
    auto pick = torch::where(none, mean, ref.index_select(0, best)).reshape(x.narrow(0, i, m).sizes()).to(x.dtype());
    out.narrow(0, i, m).copy_(torch::where(mask.narrow(0, i, m), pick, x.narrow(0, i, m)));
  }
  return out;
}

torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma) {
  TORCH_CHECK(x.dim() == 4, "gaussian_blur: images [N, C, H, W], got ", x.sizes());
  EBM_CHECK_USAGE(sigma > 0 && std::isfinite(sigma), "--blur ", sigma, ": the blur's sigma must be > 0");
  const int64_t r = int64_t(std::ceil(3 * sigma)), c = x.size(1);
  auto t = torch::arange(-r, r + 1, torch::kDouble);
  auto k = torch::exp(-t.square() / (2 * sigma * sigma));
  k = (k / k.sum()).to(x.scalar_type());
  auto kx = k.view({1, 1, 1, 2 * r + 1}).expand({c, 1, 1, 2 * r + 1}).contiguous();
  auto ky = k.view({1, 1, 2 * r + 1, 1}).expand({c, 1, 2 * r + 1, 1}).contiguous();
  namespace F = torch::nn::functional;
  auto p = F::pad(x, F::PadFuncOptions({r, r, r, r}).mode(torch::kReplicate));
  p = F::conv2d(p, kx, F::Conv2dFuncOptions().groups(c));
  return F::conv2d(p, ky, F::Conv2dFuncOptions().groups(c));
}

}  // namespace ebm
