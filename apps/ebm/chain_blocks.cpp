#include "chain_blocks.h"

#include <sstream>

#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/sampling/diagnostics.h"
#include "ebm/sampling/tempering.h"
#include "ebm/train/distributed.h"

namespace ebm::cli {

ChainRun run_chains(EnergyImpl& energy, Sampler& sampler, const torch::Tensor& x0, at::Generator& gen,
                    const ChainRunOptions& o, bool show) {
  const int64_t n = x0.size(0), dim = x0[0].numel();
  ChainState chains(x0);
  ChainRun r;
  int64_t rounds = 0;
  auto jump = [&](int64_t k) {
    if (!o.jump || o.jump_every <= 0 || k % o.jump_every != 0) return;
    r.jump_accept += o.jump(chains.x, gen);
    ++rounds;
    chains.invalidate();  // (moved chains: cached energies and gradients are stale)
  };
  std::unique_ptr<WarmupAdapter> adapter;
  if (o.warmup > 0 && sampler.target_accept() > 0 && o.adapt)
    adapter = std::make_unique<WarmupAdapter>(
        sampler, WarmupOptions(o.warmup).target_accept(o.target_accept).adapt_mass(o.adapt_mass));
  {
    Progress progress("warmup", show ? o.warmup : 0);
    for (int64_t k = 0; k < o.warmup; ++k) {
      jump(k);
      Stats st = adapter ? adapter->step(energy, chains, gen) : sampler.step(energy, chains, gen);
      r.warm_divergent += st.n_divergent;
      if (show) progress.update(k + 1, "step " + std::to_string(st.step_size) + " accept " + std::to_string(st.accept_rate));
    }
    progress.finish();
  }
  if (auto* pt = dynamic_cast<ParallelTempering*>(&sampler)) pt->reset_swap_counts();
  std::unique_ptr<DrawRecorder> summary, kept;
  std::unique_ptr<SplitMoments> moments;
  if (o.tracked > 0) summary = std::make_unique<DrawRecorder>(n, o.tracked, o.steps);
  if (o.split_all && o.steps >= 4) moments = std::make_unique<SplitMoments>(n, dim, o.steps);
  if (o.thin > 0) kept = std::make_unique<DrawRecorder>(n, dim, o.steps / o.thin, o.thin);
  double last_step = 0;
  Progress progress("sample", show ? o.steps : 0);
  for (int64_t k = 0; k < o.steps; ++k) {
    jump(o.warmup + k);
    Stats st = sampler.step(energy, chains, gen);
    r.accept += st.accept_rate;
    r.divergent += st.n_divergent;
    r.n_grad += st.n_grad;
    last_step = st.step_size;
    // (the change of units takes whole rows; then the tracked dimensions)
    if (summary || kept || moments) {
      const auto u = o.to_user(chains.x.flatten(1));
      if (summary) summary->record(u.narrow(1, 0, o.tracked));
      if (kept) kept->record(u);
      if (moments) moments->record(u);
    }
    if (show) progress.update(k + 1, "accept " + std::to_string(r.accept / double(k + 1)));
  }
  progress.finish();
  r.accept = o.steps > 0 ? r.accept / double(o.steps) : 1.0;
  if (rounds > 0) r.jump_accept /= double(rounds);
  r.jump_rounds = rounds;
  r.step_size = sampler.step_size() > 0 ? sampler.step_size() : last_step;
  r.x = chains.x;
  if (summary) r.summary = summary->draws();
  if (kept) r.kept = kept->draws();
  if (moments) r.halves = moments->halves();
  return r;
}

namespace {
std::string pack(const ChainRun& r, int64_t chains) {
  torch::serialize::OutputArchive ar;
  ar.write("x", r.x.detach().cpu());
  ar.write("summary", r.summary.defined() ? r.summary : torch::empty({0}));
  ar.write("kept", r.kept.defined() ? r.kept : torch::empty({0}));
  ar.write("halves", r.halves.defined() ? r.halves : torch::empty({0}));
  ar.write("stats", torch::tensor({double(chains), r.accept, r.n_grad, r.step_size, double(r.divergent),
                                   double(r.warm_divergent)},
                                  torch::kDouble));
  std::ostringstream os;
  ar.save_to(os);
  return os.str();
}

// Chain-weighted merge of block results, in order.
ChainRun merge(const std::vector<ChainRun>& runs, const std::vector<int64_t>& counts, c10::Device device) {
  ChainRun m;
  std::vector<torch::Tensor> xs, ss, ks, hs;
  int64_t n = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    if (counts[i] == 0) continue;
    xs.push_back(r.x.to(device));
    if (r.summary.defined() && r.summary.numel()) ss.push_back(r.summary);
    if (r.kept.defined() && r.kept.numel()) ks.push_back(r.kept);
    if (r.halves.defined() && r.halves.numel()) hs.push_back(r.halves);
    m.accept += r.accept * double(counts[i]);
    m.n_grad += r.n_grad * double(counts[i]);
    m.step_size += r.step_size * double(counts[i]);
    m.divergent += r.divergent;
    m.warm_divergent += r.warm_divergent;
    n += counts[i];
  }
  m.x = torch::cat(xs);
  if (!ss.empty()) m.summary = torch::cat(ss);
  if (!ks.empty()) m.kept = torch::cat(ks);
  if (!hs.empty()) m.halves = torch::cat(hs);
  m.accept /= double(n);
  m.n_grad /= double(n);
  m.step_size /= double(n);
  return m;
}
}  // namespace

ChainRun run_chain_blocks(EnergyImpl& energy, const std::function<std::shared_ptr<Sampler>()>& make_sampler,
                          const torch::Tensor& x0, uint64_t seed, int64_t block, Collective* coll,
                          const ChainRunOptions& o) {
  const int64_t n = x0.size(0), blocks = (n + block - 1) / block;
  const int64_t rank = coll ? coll->rank() : 0, world = coll ? coll->world() : 1;
  // (contiguous shares: rank order is block order)
  const int64_t first = blocks * rank / world, last = blocks * (rank + 1) / world;
  std::vector<ChainRun> mine;
  std::vector<int64_t> counts;
  for (int64_t b = first; b < last; ++b) {
    const int64_t begin = b * block, count = std::min(block, n - begin);
    auto sampler = make_sampler();
    auto gen = make_generator(seed, uint64_t(kStreamSample) + (uint64_t(b + 1) << 32), x0.device());
    mine.push_back(run_chains(energy, *sampler, x0.narrow(0, begin, count), gen, o, rank == 0 && b == first));
    counts.push_back(count);
  }
  ChainRun local = mine.empty() ? ChainRun() : merge(mine, counts, x0.device());
  if (coll == nullptr || world == 1) return local;
  int64_t chains = 0;
  for (int64_t c : counts) chains += c;
  if (mine.empty()) local.x = torch::empty({0});
  auto all = coll->gather(pack(local, chains));  // (rank 0 alone writes and reports)
  if (coll->rank() != 0) return local;
  std::vector<ChainRun> runs;
  std::vector<int64_t> all_counts;
  for (const auto& bytes : all) {
    torch::serialize::InputArchive ar;
    std::istringstream is(bytes);
    ar.load_from(is);
    ChainRun r;
    torch::Tensor stats;
    ar.read("x", r.x);
    ar.read("summary", r.summary);
    ar.read("kept", r.kept);
    ar.read("halves", r.halves);
    ar.read("stats", stats);
    auto s = stats.accessor<double, 1>();
    all_counts.push_back(int64_t(s[0]));
    r.accept = s[1];
    r.n_grad = s[2];
    r.step_size = s[3];
    r.divergent = int64_t(s[4]);
    r.warm_divergent = int64_t(s[5]);
    runs.push_back(r);
  }
  return merge(runs, all_counts, x0.device());
}

}  // namespace ebm::cli
