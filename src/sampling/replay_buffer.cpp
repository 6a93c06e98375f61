#include <algorithm>
#include <cstring>
#include <vector>

#include "ebm/core/device.h"
#include "ebm/core/error.h"
#include "ebm/sampling/jumps.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

namespace {
// fit and mixed start (all or most) fresh chains from the data's Gaussian.
bool from_fit(const std::string& init) { return init == "fit" || init == "mixed"; }
}  // namespace

ReplayBuffer::ReplayBuffer(const ReplayBufferOptions& o, std::vector<int64_t> event_shape)
    : options_(o), event_shape_(std::move(event_shape)) {
  // auto: for images ([C, H, W]) most fresh chains from the data's Gaussian
  // (chains from uniform noise alone did not learn colour images and learned
  // Fashion-MNIST worse) and some from uniform noise (from the Gaussian
  // alone, a colour model put uniform noise below its data in energy:
  // docs/images.md); uniform otherwise
  if (options_.init() == "auto") options_.init(event_shape_.size() == 3 ? "mixed" : "uniform");
  EBM_CHECK_CONFIG(o.capacity() >= 0, "buffer.capacity must be >= 0, got ", o.capacity());
  EBM_CHECK_CONFIG(o.reinit_prob() >= 0 && o.reinit_prob() <= 1,
                   "buffer.reinit_prob must be in [0, 1], got ", o.reinit_prob());
  const auto& init = options_.init();
  EBM_CHECK_CONFIG(init == "uniform" || init == "gaussian" || init == "data" || init == "fit" ||
                       init == "mixed",
                   "buffer.init must be auto, uniform, gaussian, data, fit or mixed, got '", init, "'");
  EBM_CHECK_CONFIG(o.mixed_noise() >= 0 && o.mixed_noise() <= 1, "buffer.init_noise must be in [0, 1], got ",
                   o.mixed_noise());
  EBM_CHECK_CONFIG(o.low() < o.high(), "buffer.init_low must be < buffer.init_high, got ",
                   o.low(), " and ", o.high());
  EBM_CHECK_CONFIG(o.std() > 0, "buffer.init_std must be > 0, got ", o.std());
  EBM_CHECK_CONFIG(o.classes() >= 0, "buffer classes must be >= 0, got ", o.classes());
  EBM_CHECK_CONFIG(o.classes() == 0 || o.capacity() == 0 || o.capacity() >= o.classes(), "buffer.capacity = ",
                   o.capacity(), " cannot hold one chain for each of the ", o.classes(), " classes");
}

torch::Tensor ReplayBuffer::init_samples(int64_t n, at::Generator& gen) const {
  if (from_fit(options_.init())) {
    TORCH_CHECK(fit_.defined(), "ReplayBuffer: init = ", options_.init(), " needs fit_data before the first draw");
    auto x = fit_.draw(n, gen);
    if (options_.init() != "mixed") return x;
    // (each row from uniform noise on [init_low, init_high] with probability mixed_noise)
    auto noise = at::rand({n}, gen, x.options()) < options_.mixed_noise();
    auto shape = x.sizes().vec();
    std::fill(shape.begin() + 1, shape.end(), int64_t(1));
    auto u = at::empty_like(x).uniform_(options_.low(), options_.high(), gen);
    return at::where(noise.reshape(shape), u, x);
  }
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), event_shape_.begin(), event_shape_.end());
  auto x = torch::empty(shape, torch::TensorOptions().device(options_.device()));
  if (options_.init() == "uniform") {
    x.uniform_(options_.low(), options_.high(), gen);
  } else if (options_.init() == "data") {
    TORCH_CHECK(box_lo_.defined(), "ReplayBuffer: init = data needs fit_data before the first draw");
    x.uniform_(0.0, 1.0, gen);
    x = x * (box_hi_ - box_lo_) + box_lo_;
  } else {
    x.normal_(0.0, options_.std(), gen);
  }
  return x;
}

void ReplayBuffer::fit_data(const torch::Tensor& x) {
  const bool fit = from_fit(options_.init());
  if (options_.init() != "data" && !fit) return;
  EBM_CHECK_DATA(x.dim() >= 1 && x.size(0) >= 1 && x.sizes().slice(1) == c10::IntArrayRef(event_shape_),
                 "buffer.init = ", options_.init(), ": rows of ", x.sizes().slice(1), " for chains of ",
                 c10::IntArrayRef(event_shape_));
  if (fit) {
    fit_ = LowRankGaussian::fit(x).to(options_.device());
    return;
  }
  auto [lo, hi] = data_box(x);
  box_lo_ = lo.to(options_.device());
  box_hi_ = hi.to(options_.device());
}

std::pair<torch::Tensor, torch::Tensor> ReplayBuffer::box() const {
  if (options_.init() == "data") return {box_lo_, box_hi_};
  if (options_.init() != "uniform" && options_.init() != "mixed") return {};
  auto opts = torch::TensorOptions().device(options_.device());
  return {torch::full(event_shape_, options_.low(), opts), torch::full(event_shape_, options_.high(), opts)};
}

namespace {
// Whole rows copied as bytes, dst row to[i] <- src row from[i] (a null index
// list: the identity); the few tensor operations of index_select and
// index_copy_ cost more than the copy at a training step's few hundred rows.
void copy_rows(const torch::Tensor& src, const int64_t* from, torch::Tensor& dst,
               const int64_t* to, int64_t n) {
  if (n == 0) return;
  const int64_t row = src.numel() / src.size(0) * src.element_size();
  const char* s = static_cast<const char*>(src.data_ptr());
  char* d = static_cast<char*>(dst.data_ptr());
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(d + (to ? to[i] : i) * row, s + (from ? from[i] : i) * row, size_t(row));
}

bool plain_cpu(const torch::Tensor& t) { return cpu_fast_path(t) && t.is_contiguous(); }
}  // namespace

std::pair<torch::Tensor, torch::Tensor> ReplayBuffer::sample(int64_t n, at::Generator& gen,
                                                             const torch::Tensor& labels) {
  const auto opts = torch::TensorOptions().device(options_.device());
  if (options_.capacity() == 0) return {init_samples(n, gen), torch::full({n}, -1, opts.dtype(torch::kLong))};
  if (!data_.defined()) data_ = init_samples(options_.capacity(), gen);
  torch::Tensor slots;
  const int64_t k = options_.classes();
  if (k > 0) {
    TORCH_CHECK(labels.defined() && labels.numel() == n, "ReplayBuffer: a per-class buffer needs ", n, " labels");
    auto y = labels.to(opts.dtype(torch::kLong));
    TORCH_CHECK(y.min().item<int64_t>() >= 0 && y.max().item<int64_t>() < k, "ReplayBuffer: labels outside [0, ",
                k, ")");
    slots = at::randint(options_.capacity() / k, {n}, gen, opts.dtype(torch::kLong)) * k + y;
  } else {
    slots = at::randint(options_.capacity(), {n}, gen, opts.dtype(torch::kLong));
  }
  const bool fast = plain_cpu(data_);
  torch::Tensor x;
  if (fast) {
    auto shape = data_.sizes().vec();
    shape[0] = n;
    x = torch::empty(shape, data_.options());
    copy_rows(data_, slots.data_ptr<int64_t>(), x, nullptr, n);
  } else {
    x = data_.index_select(0, slots);
  }
  if (options_.reinit_prob() > 0) {
    auto u = at::rand({n}, gen, opts);  // row i restarts where u_i < reinit_prob (in float)
    if (fast) {
      std::vector<int64_t> fresh;
      const float p = float(options_.reinit_prob());
      const float* up = u.data_ptr<float>();
      for (int64_t i = 0; i < n; ++i)
        if (up[i] < p) fresh.push_back(i);
      if (!fresh.empty()) {
        auto init = init_samples(int64_t(fresh.size()), gen).to(x.dtype());
        copy_rows(init, nullptr, x, fresh.data(), int64_t(fresh.size()));
      }
    } else {
      auto fresh = (u < options_.reinit_prob()).nonzero().squeeze(1);
      if (fresh.numel() > 0) x.index_copy_(0, fresh, init_samples(fresh.numel(), gen).to(x.dtype()));
    }
  }
  return {x, slots};
}

void ReplayBuffer::push(const torch::Tensor& x, const torch::Tensor& slots) {
  if (options_.capacity() == 0) return;
  TORCH_INTERNAL_ASSERT(data_.defined(), "push before sample");
  auto rows = x.detach().to(data_.device(), data_.scalar_type());
  if (plain_cpu(data_) && slots.device().is_cpu()) {
    rows = rows.contiguous();
    const auto s = slots.to(torch::kLong).contiguous();
    const int64_t* sp = s.data_ptr<int64_t>();
    for (int64_t i = 0; i < s.numel(); ++i)
      TORCH_CHECK(sp[i] >= 0 && sp[i] < data_.size(0), "ReplayBuffer::push: slot ", sp[i],
                  " outside the buffer");
    TORCH_CHECK(rows.dim() >= 1 && rows.size(0) == s.numel() &&
                    rows.sizes().slice(1) == data_.sizes().slice(1),
                "ReplayBuffer::push: ", rows.sizes(), " rows for ", s.numel(), " slots of ",
                data_.sizes().slice(1));
    copy_rows(rows, nullptr, data_, sp, s.numel());  // (a repeated slot: the last row wins)
    return;
  }
  data_.index_copy_(0, slots.to(data_.device()), rows);
}

void ReplayBuffer::save(torch::serialize::OutputArchive& archive) const {
  archive.write("buffer_data", data_.defined() ? data_.cpu() : torch::empty({0}), true);
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
  EBM_CHECK_DATA(d.sizes().slice(1) == c10::IntArrayRef(event_shape_), "checkpoint buffer holds ",
                 d.sizes().slice(1), " chains but the model's are ", c10::IntArrayRef(event_shape_));
  data_ = d.to(options_.device(), d.scalar_type(), /*non_blocking=*/false, /*copy=*/true)
              .contiguous();
}

}  // namespace ebm
