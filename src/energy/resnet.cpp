#include "ebm/energy/resnet.h"

#include "ebm/core/error.h"
#include "ebm/energy/conv.h"

namespace ebm {

ResNetEnergyImpl::ResNetEnergyImpl(const ResNetEnergyOptions& o) : options_(o) {
  const auto& shape = o.event_shape();
  EBM_CHECK_CONFIG(shape.size() == 3 && shape[0] >= 1 && shape[1] >= 1 && shape[2] >= 1,
                   "energy.name = \"resnet\" takes images [C, H, W]; the data have event shape ",
                   c10::IntArrayRef(shape), " (vectors: energy.name = \"mlp\")");
  const size_t stages = o.channels().size();
  EBM_CHECK_CONFIG(stages >= 1, "energy.channels must list at least one stage");
  EBM_CHECK_CONFIG(o.blocks().size() == stages, "energy.blocks must have one entry per energy.channels entry (",
                   stages, "), got ", o.blocks().size());
  EBM_CHECK_CONFIG(o.classes() >= 0, "energy.classes must be >= 0, got ", o.classes());
  EBM_CHECK_CONFIG(o.prior_std() >= 0 && std::isfinite(o.prior_std()), "energy.prior_std must be >= 0, got ",
                   o.prior_std());
  apply_activation(o.activation(), torch::zeros({1}));  // refuses an unknown name now
  int64_t c = o.channels()[0], h = shape[1], w = shape[2];
  for (size_t s = 0; s < stages; ++s) {
    EBM_CHECK_CONFIG(o.channels()[s] >= 1 && o.blocks()[s] >= 1, "energy stage ", s,
                     ": channels and blocks must be >= 1, got ", o.channels()[s], " and ", o.blocks()[s]);
    if (s + 1 < stages) {
      EBM_CHECK_CONFIG(h >= 2 && w >= 2, "energy.channels: ", stages, " stages pool the ",
                       c10::IntArrayRef(shape), " input below one pixel");
      h /= 2;
      w /= 2;
    }
  }
  add_conv("stem", shape[0], c, 3);
  for (size_t s = 0; s < stages; ++s) {
    for (int64_t b = 0; b < o.blocks()[s]; ++b) {
      const int64_t out = o.channels()[s];
      const std::string name = "s" + std::to_string(s) + "b" + std::to_string(b);
      Block blk;
      blk.c1 = convs_.size();
      add_conv(name + "c1", c, out, 3);
      blk.c2 = convs_.size();
      add_conv(name + "c2", out, out, 3);
      if (c != out) {
        blk.skip = int64_t(convs_.size());
        add_conv(name + "skip", c, out, 1);
      }
      blk.pool_after = b + 1 == o.blocks()[s] && s + 1 < stages;
      blocks_.push_back(blk);
      c = out;
    }
  }
  head_ = register_module("head", torch::nn::Linear(c, std::max<int64_t>(1, o.classes())));
  if (o.spectral_norm()) sn_.emplace_back(*this, "u_head", head_->weight.size(0));
}

torch::nn::Conv2d ResNetEnergyImpl::add_conv(const std::string& name, int64_t in, int64_t out, int64_t k) {
  auto m = register_module(name, torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).padding(k / 2)));
  convs_.push_back(m);
  if (options_.spectral_norm()) sn_.emplace_back(*this, "u_" + name, out);
  return m;
}

torch::Tensor ResNetEnergyImpl::weight(size_t i, const torch::Tensor& w) {
  if (sn_.empty()) return w;
  // (one power iteration per training forward; sampling freezes the
  // parameters and reuses u)
  const bool update = is_training() && torch::GradMode::is_enabled() && w.requires_grad();
  return sn_[i].normalise(w, update);
}

torch::Tensor ResNetEnergyImpl::conv(size_t i, const torch::Tensor& h) {
  const int64_t p = convs_[i]->weight.size(2) / 2;
  const auto w = weight(i, convs_[i]->weight);
  return small_input_conv_applies(h, w) ? small_input_conv2d(h, w, convs_[i]->bias, 1, p)
                                        : torch::conv2d(h, w, convs_[i]->bias, {1, 1}, {p, p});
}

torch::Tensor ResNetEnergyImpl::act(const torch::Tensor& z) const { return apply_activation(options_.activation(), z); }

torch::Tensor ResNetEnergyImpl::features(const torch::Tensor& x) {
  const auto& shape = options_.event_shape();
  TORCH_CHECK(x.dim() == 4 && x.sizes().slice(1).vec() == shape, "ResNetEnergy: want [B, ",
              c10::IntArrayRef(shape), "] input, got ", x.sizes());
  auto h = conv(0, x);
  for (const auto& b : blocks_) {
    auto r = conv(b.c2, act(conv(b.c1, act(h))));
    h = (b.skip >= 0 ? conv(size_t(b.skip), h) : h) + r;
    if (b.pool_after) h = torch::avg_pool2d(h, {2, 2});
  }
  return act(h).sum({2, 3});  // [B, C]
}

torch::Tensor ResNetEnergyImpl::outputs(const torch::Tensor& x) {
  auto out = torch::linear(features(x), weight(convs_.size(), head_->weight), head_->bias);
  return with_base_term(out, x, options_.prior_std());  // [B, max(1, K)]
}

torch::Tensor ResNetEnergyImpl::energy(const torch::Tensor& x) { return marginal_energy(outputs(x), options_.classes()); }

torch::Tensor ResNetEnergyImpl::class_energies(const torch::Tensor& x) {
  return options_.classes() > 0 ? outputs(x) : torch::Tensor();
}

}  // namespace ebm
