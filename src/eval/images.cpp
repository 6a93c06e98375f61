#include "ebm/eval/images.h"

#include "ebm/core/error.h"
#include "ebm/energy/generator.h"
#include "ebm/energy/standardized.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"
#include "ebm/sampling/registry.h"
#include "ebm/sampling/sampling.h"
#include "ebm/train/train.h"

namespace ebm {

namespace {
// f over x's rows in batches of `batch`, the results concatenated (eval
// mode, no graph).
torch::Tensor in_batches(EnergyImpl& energy, const torch::Tensor& x, int64_t batch,
                         const std::function<torch::Tensor(const torch::Tensor&)>& f) {
  torch::NoGradGuard ng;
  energy.eval();
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < x.size(0); i += batch) out.push_back(f(x.narrow(0, i, std::min(batch, x.size(0) - i))));
  return torch::cat(out);
}
}  // namespace

torch::Tensor class_probabilities(EnergyImpl& energy, const torch::Tensor& x, int64_t batch, const std::string& what) {
  TORCH_CHECK(energy.num_classes() > 0, "class_probabilities: the energy is not class-conditional");
  auto p = in_batches(energy, x, batch, [&](const torch::Tensor& b) { return torch::softmax(-energy.class_energies(b), 1); });
  const auto bad = (~torch::isfinite(p)).any(1).to(torch::kCPU);
  if (bad.any().item<bool>()) {
    const int64_t first = bad.nonzero()[0][0].item<int64_t>();
    fail(ExitCode::kBadData, what, ": row ", first, " (0-based; ", bad.sum().item<int64_t>(), " row(s) in all): the model's ",
         "class energies are not finite there (a value far beyond its training data's range?)");
  }
  return p;
}

torch::Tensor batch_features(EnergyImpl& energy, const torch::Tensor& x, int64_t batch) {
  return in_batches(energy, x, batch, [&](const torch::Tensor& b) {
    auto f = energy.features(b);
    TORCH_CHECK(f.defined(), "batch_features: the energy has no penultimate features");
    return f.flatten(1);
  });
}

torch::Tensor batch_energies(EnergyImpl& energy, const torch::Tensor& x, int64_t batch) {
  return in_batches(energy, x, batch, [&](const torch::Tensor& b) { return energy.energy(b); });
}

std::shared_ptr<Sampler> model_sampler(const ModelInfo& info, const std::string& spec) {
  if (!spec.empty() || info.sampler_toml.empty()) return make_sampler(spec.empty() ? "ula:step=0.01" : spec);
  Config sc = make_train_config();
  sc.load_string(info.sampler_toml, "model sampler_config");
  return build_sampler(sc);
}

torch::Tensor draw_model_samples(EnergyImpl& energy, const ModelInfo& info, int64_t n, int64_t steps,
                                 const std::string& spec, at::Generator& gen, const torch::Tensor& labels) {
  auto sampler = model_sampler(info, spec);
  // (the run's fitted start, or noise over the model's range: its pixel
  // map's, or the box its chains stayed in for images trained on float arrays)
  auto x0 = chain_start(info, n, gen);
  const int64_t k = energy.num_classes();
  TORCH_CHECK(!labels.defined() || labels.numel() == n, "draw_model_samples: ", labels.numel(), " labels for ", n);
  Energy target = at_labels(energy, k == 0         ? torch::Tensor()
                                    : labels.defined() ? labels
                                                       : torch::arange(n, torch::kLong).remainder(k));
  energy.eval();
  FreezeParameters frozen(energy);
  ChainState chains(x0);
  sampler->run(*target, chains, steps, gen);
  return chains.x.detach();
}

torch::Tensor labels_in_class_shares(const ModelInfo& info, int64_t classes, int64_t n, std::string* why) {
  auto split = model_data_split(info, "the model", why);
  if (!split || !split->train.has_labels() || classes <= 0) {
    if (split && why) *why = "its training rows have no labels";
    return {};
  }
  const auto y = split->train.y.to(torch::kLong);
  if (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() >= classes) {
    if (why) *why = "its training labels are not its classes";
    return {};
  }
  const auto share = torch::bincount(y, {}, classes).to(torch::kDouble) / double(y.numel());
  auto count = (share * double(n)).floor().to(torch::kLong);
  // (the n - sum left over go to the largest remainders)
  const auto rest = share * double(n) - count.to(torch::kDouble);
  const int64_t left = n - count.sum().item<int64_t>();
  if (left > 0) count.index_add_(0, std::get<1>(rest.topk(left)), torch::ones({left}, torch::kLong));
  return torch::repeat_interleave(torch::arange(classes, torch::kLong), count);
}

torch::Tensor draw_generator_samples(const std::string& model, EnergyImpl& energy, const ModelInfo& info, int64_t n,
                                     int64_t steps, const std::string& spec, at::Generator& gen) {
  Generator g = load_generator(model);
  torch::Tensor x0;
  x0 = g->draw(g->latent(n, gen), gen).to(torch::kFloat);
  if (auto* s = dynamic_cast<StandardizedEnergyImpl*>(&energy)) x0 = s->map().to_user(x0).to(torch::kFloat);
  if (const auto range = image_range(info)) x0 = x0.clamp(range->first, range->second);
  if (steps == 0) return x0;
  auto sampler = model_sampler(info, spec);
  const int64_t k = energy.num_classes();
  Energy target = at_labels(energy, k > 0 ? torch::arange(n, torch::kLong).remainder(k) : torch::Tensor());
  energy.eval();
  FreezeParameters frozen(energy);
  ChainState chains(x0);
  sampler->run(*target, chains, steps, gen);
  return chains.x.detach();
}

torch::Tensor gaussian_draws(const torch::Tensor& rows, int64_t n, at::Generator& gen) {
  const int64_t m = rows.size(0);
  TORCH_CHECK(m >= 2, "gaussian_draws: needs at least 2 rows, got ", m);
  auto flat = rows.flatten(1).to(torch::kDouble);
  auto mu = flat.mean(0);
  auto z = at::normal(0.0, 1.0, {n, m}, gen, torch::TensorOptions(torch::kDouble));
  std::vector<int64_t> shape = rows.sizes().vec();
  shape[0] = n;
  return (mu + z.mm(flat - mu) / std::sqrt(double(m - 1))).reshape(shape);
}

double frechet_distance(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1) && a.size(0) >= 2 && b.size(0) >= 2,
              "frechet_distance: want [N, F] feature sets of one width, got ", a.sizes(), " and ", b.sizes());
  auto stats = [](const torch::Tensor& f) {
    auto x = f.to(torch::kDouble);
    auto mu = x.mean(0);
    auto c = x - mu;
    return std::make_pair(mu, c.t().mm(c) / double(x.size(0) - 1));
  };
  auto [ma, sa] = stats(a);
  auto [mb, sb] = stats(b);
  auto psd_sqrt = [](const torch::Tensor& s) {
    auto [l, v] = torch::linalg_eigh(s);
    return v.mm(torch::diag(l.clamp_min(0).sqrt())).mm(v.t());
  };
  auto ra = psd_sqrt(sa);
  auto m = ra.mm(sb).mm(ra);
  auto ev = torch::linalg_eigvalsh((m + m.t()) / 2);
  const double tr_sqrt = ev.clamp_min(0).sqrt().sum().item<double>();
  return (ma - mb).pow(2).sum().item<double>() + sa.trace().item<double>() + sb.trace().item<double>() -
         2 * tr_sqrt;
}

}  // namespace ebm
