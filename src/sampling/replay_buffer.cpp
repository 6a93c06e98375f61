#include "ebm/core/error.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

ReplayBuffer::ReplayBuffer(const ReplayBufferOptions& o, std::vector<int64_t> event_shape)
    : options_(o), event_shape_(std::move(event_shape)) {
  EBM_CHECK_CONFIG(o.capacity() >= 0, "buffer.capacity must be >= 0, got ", o.capacity());
  EBM_CHECK_CONFIG(o.reinit_prob() >= 0 && o.reinit_prob() <= 1,
                   "buffer.reinit_prob must be in [0, 1], got ", o.reinit_prob());
  EBM_CHECK_CONFIG(o.init() == "uniform" || o.init() == "gaussian",
                   "buffer.init must be uniform or gaussian, got '", o.init(), "'");
  EBM_CHECK_CONFIG(o.low() < o.high(), "buffer.init_low must be < buffer.init_high, got ",
                   o.low(), " and ", o.high());
  EBM_CHECK_CONFIG(o.std() > 0, "buffer.init_std must be > 0, got ", o.std());
}

torch::Tensor ReplayBuffer::init_samples(int64_t n, at::Generator& gen) const {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), event_shape_.begin(), event_shape_.end());
  auto x = torch::empty(shape);
  if (options_.init() == "uniform")
    x.uniform_(options_.low(), options_.high(), gen);
  else
    x.normal_(0.0, options_.std(), gen);
  return x;
}

std::pair<torch::Tensor, torch::Tensor> ReplayBuffer::sample(int64_t n, at::Generator& gen) {
  if (options_.capacity() == 0) return {init_samples(n, gen), torch::full({n}, -1, torch::kLong)};
  if (!data_.defined()) data_ = init_samples(options_.capacity(), gen);
  auto slots = at::randint(options_.capacity(), {n}, gen, torch::kLong);
  auto x = data_.index_select(0, slots);
  if (options_.reinit_prob() > 0) {
    auto fresh = (at::rand({n}, gen) < options_.reinit_prob()).nonzero().squeeze(1);
    if (fresh.numel() > 0) x.index_copy_(0, fresh, init_samples(fresh.numel(), gen));
  }
  return {x, slots};
}

void ReplayBuffer::push(const torch::Tensor& x, const torch::Tensor& slots) {
  if (options_.capacity() == 0) return;
  TORCH_INTERNAL_ASSERT(data_.defined(), "push before sample");
  data_.index_copy_(0, slots, x.detach().to(data_.dtype()));
}

void ReplayBuffer::save(torch::serialize::OutputArchive& archive) const {
  archive.write("buffer_data", data_.defined() ? data_ : torch::empty({0}), true);
}

void ReplayBuffer::load(torch::serialize::InputArchive& archive) {
  torch::Tensor d;
  archive.read("buffer_data", d, true);
  if (d.numel() == 0) {
    data_ = torch::Tensor();
    return;
  }
  EBM_CHECK_DATA(d.size(0) == options_.capacity(), "checkpoint buffer has ", d.size(0),
                 " chains but buffer.capacity is ", options_.capacity());
  data_ = d.clone();
}

}  // namespace ebm
