// The process group of a data-parallel run (include/ebm/train/distributed.h).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include "ebm/train/distributed.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
#ifdef EBM_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "ebm/core/error.h"
#include "ebm/train/step.h"

namespace ebm {

namespace {
std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

int64_t env_int(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  EBM_CHECK_USAGE(end != v && *end == '\0' && x >= lo && x <= hi, "environment variable ", name, "=", v,
                  ": expected an integer in ", lo, " .. ", hi);
  return x;
}

std::string heartbeat_key(int64_t rank) { return "ebm/heartbeat/" + std::to_string(rank); }
}  // namespace

DistConfig dist_config_from_env() {
  DistConfig c;
  const bool has_world = std::getenv("WORLD_SIZE") != nullptr;
  EBM_CHECK_USAGE(has_world || std::getenv("RANK") == nullptr,
                  "environment variable RANK is set but WORLD_SIZE is not (torchrun sets both)");
  c.world = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  c.rank = env_int("RANK", 0, 0, c.world - 1);
  c.local_rank = env_int("LOCAL_RANK", c.rank, 0, 1 << 16);
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') c.master_addr = a;
  c.master_port = env_int("MASTER_PORT", c.master_port, 1, 65535);
  if (const char* b = std::getenv("EBM_DIST_BACKEND"); b != nullptr && *b != '\0') c.backend = b;
  EBM_CHECK_USAGE(c.backend == "gloo" || c.backend == "nccl", "EBM_DIST_BACKEND=", c.backend,
                  ": expected gloo or nccl");
  if (const char* t = std::getenv("EBM_DIST_TIMEOUT"); t != nullptr && *t != '\0') {
    char* end = nullptr;
    c.timeout_s = std::strtod(t, &end);
    EBM_CHECK_USAGE(end != t && *end == '\0' && c.timeout_s > 0, "EBM_DIST_TIMEOUT=", t,
                    ": expected seconds > 0");
  }
  return c;
}

// LibTorch 2 splits c10d's ProcessGroup (a front end) from the backends
// (Gloo, NCCL), which derive from c10d::Backend; in 1.x they were the group.
#if TORCH_VERSION_MAJOR >= 2
using GroupPtr = c10::intrusive_ptr<c10d::Backend>;
#else
using GroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;
#endif

struct Collective::Impl {
  DistConfig cfg;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  GroupPtr pg;
  c10::Device device = c10::kCPU;  // where the group's own small tensors live
  std::thread heartbeat;
  std::atomic<bool> stop{false};
  double seconds = 0;

  c10::intrusive_ptr<c10d::TCPStore> connect(bool server, std::chrono::milliseconds wait) const {
    c10d::TCPStoreOptions o;
    o.port = uint16_t(cfg.master_port);
    o.isServer = server;
    o.numWorkers = size_t(cfg.world);
    o.waitWorkers = false;
    o.timeout = wait;
    return c10::make_intrusive<c10d::TCPStore>(cfg.master_addr, o);
  }

  // Which peers stopped beating: each rank adds 1 to its key twice a second.
  std::string lost() {
    try {
      store->setTimeout(std::chrono::milliseconds(5000));
      std::vector<int64_t> before(cfg.world), after(cfg.world);
      for (int64_t k = 0; k < cfg.world; ++k) before[k] = store->add(heartbeat_key(k), 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      std::string names;
      int64_t n = 0;
      for (int64_t k = 0; k < cfg.world; ++k) {
        after[k] = store->add(heartbeat_key(k), 0);
        if (k != cfg.rank && after[k] == before[k]) {
          names += (n++ ? ", " : "") + std::to_string(k);
        }
      }
      if (n == 0) return "a peer";
      return (n == 1 ? "rank " : "ranks ") + names;
    } catch (const std::exception&) {
      // (the store lives in rank 0: it is gone with it)
      return cfg.rank == 0 ? std::string("a peer") : std::string("rank 0");
    }
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      const std::string why = first_line(e.what());
      fail(ExitCode::kInternal, "data-parallel rank ", cfg.rank, ": lost ", lost(), " during ", what, " (",
           why, "); stopping");
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // Rank 0's values of `ts` on every rank (one flat message, in double).
  void broadcast_all(const std::vector<at::Tensor>& ts, const char* what) {
    if (ts.empty()) return;
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> v;
    for (auto& t : ts) v.push_back(t.detach().reshape({-1}).to(device, at::kDouble));
    std::vector<at::Tensor> flat = {at::cat(v)};
    wait(pg->broadcast(flat), what);
    int64_t off = 0;
    for (auto& t : ts) {
      t.detach().copy_(flat[0].narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }
};

Collective::Collective(const DistConfig& config) : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.cfg = config;
  m.timeout = std::chrono::milliseconds(int64_t(config.timeout_s * 1000));
  EBM_CHECK_USAGE(config.world >= 1 && config.rank >= 0 && config.rank < config.world, "rank ", config.rank,
                  " outside a world of ", config.world);
  const std::string where = config.master_addr + ":" + std::to_string(config.master_port);
  try {
    m.store = m.connect(config.rank == 0, m.timeout);
  } catch (const std::exception& e) {
    fail(ExitCode::kInternal, "data-parallel rank ", config.rank, ": cannot ",
         config.rank == 0 ? "host" : "reach", " the rendezvous store at ", where, " (", first_line(e.what()), ")");
  }
  try {
    m.store->add(heartbeat_key(config.rank), 1);
    if (config.backend == "nccl") {
#ifdef EBM_HAVE_NCCL
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = m.timeout;
      m.device = c10::Device(c10::kCUDA, c10::DeviceIndex(config.local_rank));
      m.pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(m.store, int(config.rank), int(config.world), o);
#else
      fail(ExitCode::kUsage, "backend nccl needs a build against a CUDA LibTorch; this one has gloo only");
#endif
    } else {
      auto o = c10d::ProcessGroupGloo::Options::create(m.timeout);
      const bool loopback = config.master_addr == "127.0.0.1" || config.master_addr == "localhost";
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0')
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (loopback)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      o->threads = 1;
      m.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(m.store, int(config.rank), int(config.world), o);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(ExitCode::kInternal, "data-parallel rank ", config.rank, ": the group of ", config.world,
         " ranks did not form at ", where, " within ", config.timeout_s, " s (", first_line(e.what()), ")");
  }
  // The heartbeat, on a connection of its own.
  c10::intrusive_ptr<c10d::TCPStore> beat_store;
  try {
    // (a short timeout: a silent host must not hold the heartbeat, or the
    // destructor that joins it, for long)
    beat_store = m.connect(false, std::chrono::milliseconds(5000));
  } catch (const std::exception& e) {
    fail(ExitCode::kInternal, "data-parallel rank ", config.rank, ": cannot reach the store at ", where, " (",
         first_line(e.what()), ")");
  }
  m.heartbeat = std::thread([&m, beat_store, key = heartbeat_key(config.rank)]() {
    try {
      while (!m.stop.load()) {
        beat_store->add(key, 1);
        for (int i = 0; i < 5 && !m.stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    } catch (...) {
      // (the store's host ended: nothing left to tell)
    }
  });
}

Collective::~Collective() {
  impl_->stop = true;
  if (impl_->heartbeat.joinable()) impl_->heartbeat.join();
}

int64_t Collective::rank() const { return impl_->cfg.rank; }
int64_t Collective::world() const { return impl_->cfg.world; }
const DistConfig& Collective::config() const { return impl_->cfg; }
double Collective::seconds() const { return impl_->seconds; }

std::vector<double> Collective::average_gradients(std::vector<Learner>& learners, const std::vector<double>& extra,
                                                  double bucket_mb) {
  if (world() == 1) return extra;
  std::vector<at::Tensor> params;  // (those with a gradient)
  for (auto& l : learners)
    for (auto& p : l.module->parameters())
      if (p.grad().defined()) params.push_back(p);
  if (params.empty()) return sum(extra);
  const double scale = 1.0 / double(world());
  const int64_t limit = std::max<int64_t>(1, int64_t(bucket_mb * (1 << 20)));
  std::vector<double> sums;
  // One message per bucket: the gradients flattened, the extras after them
  // in the last one. The averaged gradients are views of the message (a
  // gradient autograd handed over may be an expanded tensor: never written).
  auto flush = [&](std::vector<at::Tensor>& bucket, bool last) {
    std::vector<at::Tensor> parts;
    for (auto& p : bucket) parts.push_back(p.grad().reshape({-1}));
    const auto like = bucket[0].grad();
    if (last && !extra.empty())
      parts.push_back(torch::tensor(extra, torch::kDouble).to(like.device(), like.scalar_type()));
    std::vector<at::Tensor> flat = {parts.size() == 1 ? parts[0].contiguous() : at::cat(parts)};
    impl_->wait(impl_->pg->allreduce(flat), "the gradient all-reduce");
    int64_t off = 0;
    for (auto& p : bucket) {
      auto v = flat[0].narrow(0, off, p.numel()).view(p.sizes());
      v.mul_(scale);
      p.mutable_grad() = v;
      off += p.numel();
    }
    if (last && !extra.empty()) {
      auto e = flat[0].narrow(0, off, int64_t(extra.size())).to(torch::kCPU, torch::kDouble).contiguous();
      sums.assign(e.data_ptr<double>(), e.data_ptr<double>() + e.numel());
    }
  };
  std::vector<std::vector<at::Tensor>> buckets(1);
  int64_t bytes = 0;
  for (auto& p : params) {
    auto& b = buckets.back();
    const auto& g = p.grad();
    const int64_t n = g.numel() * int64_t(g.element_size());
    if (!b.empty() && (bytes + n > limit || g.scalar_type() != b[0].grad().scalar_type() ||
                       g.device() != b[0].grad().device())) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(p);
    bytes += n;
  }
  for (size_t i = 0; i < buckets.size(); ++i) flush(buckets[i], i + 1 == buckets.size());
  return extra.empty() ? extra : sums;
}

// Every rank must train the same networks from the same settings: a hash of
// the config's text and the parameters' shapes, compared across ranks.
void Collective::check_same_layout(const std::string& config_text, std::vector<Learner>& learners) {
  if (world() == 1) return;
  std::string layout = config_text;
  for (auto& l : learners)
    for (auto& p : l.module->parameters()) layout += "|" + std::to_string(p.numel()) + ":" + c10::toString(p.scalar_type());
  const auto all = all_gather(std::to_string(std::hash<std::string>()(layout)));
  for (int64_t k = 0; k < world(); ++k)
    EBM_CHECK_CONFIG(all[k] == all[0], "data-parallel rank ", rank(), ": rank ", k,
                     " has another config or network than rank 0 (every rank must run the same recipe, "
                     "the same --set overrides)");
}

void Collective::broadcast_parameters(std::vector<Learner>& learners) {
  if (world() == 1) return;
  std::vector<at::Tensor> ts;
  for (auto& l : learners) {
    for (auto& p : l.module->parameters()) ts.push_back(p);
    for (auto& b : l.module->buffers()) ts.push_back(b);
  }
  impl_->broadcast_all(ts, "the parameter broadcast");
}

void Collective::broadcast_buffers(std::vector<Learner>& learners) {
  if (world() == 1) return;
  std::vector<at::Tensor> ts;
  for (auto& l : learners)
    for (auto& b : l.module->buffers())
      if (b.is_floating_point()) ts.push_back(b);
  impl_->broadcast_all(ts, "the buffer broadcast");
}

std::vector<double> Collective::sum(const std::vector<double>& values) {
  if (world() == 1 || values.empty()) return values;
  std::vector<at::Tensor> t = {torch::tensor(values, torch::kDouble).to(impl_->device)};
  impl_->wait(impl_->pg->allreduce(t), "a metrics all-reduce");
  auto c = t[0].cpu();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

bool Collective::any(bool flag) { return sum({flag ? 1.0 : 0.0})[0] > 0; }

std::vector<std::string> Collective::all_gather(const std::string& bytes) { return gather_bytes(bytes, false); }

std::vector<std::string> Collective::gather(const std::string& bytes) { return gather_bytes(bytes, true); }

std::vector<std::string> Collective::gather_bytes(const std::string& bytes, bool to_root) {
  if (world() == 1) return {bytes};
  auto& m = *impl_;
  // (the messages are padded to the longest: Gloo gathers equal sizes)
  const auto sizes = sum([&] {
    std::vector<double> v(world(), 0.0);
    v[rank()] = double(bytes.size());
    return v;
  }());
  int64_t longest = 1;
  for (double s : sizes) longest = std::max<int64_t>(longest, int64_t(s));
  auto mine = torch::zeros({longest}, torch::kUInt8);
  std::memcpy(mine.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  std::vector<at::Tensor> in = {mine.to(m.device)};
  std::vector<std::vector<at::Tensor>> out(1);
  const bool receives = !to_root || rank() == 0;
  if (receives)
    for (int64_t k = 0; k < world(); ++k) out[0].push_back(torch::empty({longest}, in[0].options()));
  if (to_root) {
    if (rank() != 0) out.clear();  // (only the root passes outputs)
    m.wait(m.pg->gather(out, in, c10d::GatherOptions{}), "a state gather");
  } else {
    m.wait(m.pg->allgather(out, in), "a state gather");
  }
  std::vector<std::string> all;
  if (!receives) return all;
  for (int64_t k = 0; k < world(); ++k) {
    auto c = out[0][k].cpu();
    all.emplace_back(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), size_t(sizes[k]));
  }
  return all;
}

std::string Collective::broadcast(const std::string& bytes) {
  if (world() == 1) return bytes;
  auto& m = *impl_;
  std::vector<at::Tensor> n = {torch::tensor({int64_t(rank() == 0 ? bytes.size() : 0)}, torch::kLong).to(m.device)};
  m.wait(m.pg->broadcast(n), "a broadcast");
  const int64_t len = n[0].cpu().item<int64_t>();
  auto buf = torch::zeros({std::max<int64_t>(len, 1)}, torch::kUInt8);
  if (rank() == 0) std::memcpy(buf.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  std::vector<at::Tensor> b = {buf.to(m.device)};
  m.wait(m.pg->broadcast(b), "a broadcast");
  auto c = b[0].cpu();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), size_t(len));
}

void Collective::barrier() {
  if (world() == 1) return;
  impl_->wait(impl_->pg->barrier(), "a barrier");
}

namespace {
std::shared_ptr<Collective>& default_group() {
  static std::shared_ptr<Collective> group;
  return group;
}
}  // namespace

void set_process_group(std::shared_ptr<Collective> group) { default_group() = std::move(group); }
Collective* process_group() { return default_group().get(); }

}  // namespace ebm
