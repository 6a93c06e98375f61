// Data-parallel training on LibTorch's c10d (DESIGN.md "Data-parallel
// training"): the ranks of a run join one process group (Gloo on the CPU,
// NCCL in a CUDA build) through a TCPStore that rank 0 hosts, as PyTorch's
// torchrun sets them up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT). Each rank draws its own batches and negatives; train_step
// agrees on divergence, averages the loss and metrics, and averages the
// gradients between backward and the optimiser step (bucketed), as DDP does.
// A collective that fails because a peer died throws kInternal naming the
// lost rank; none waits longer than the timeout.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace ebm {

struct Learner;

struct DistConfig {
  int64_t rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  std::string backend = "gloo";  // gloo, or nccl in a CUDA build
  double timeout_s = 300;        // longest wait in any collective (and for the group to form)
};

// The torchrun variables (world 1 when WORLD_SIZE is unset), EBM_DIST_BACKEND
// and EBM_DIST_TIMEOUT (seconds). kUsage on malformed or inconsistent values.
DistConfig dist_config_from_env();

class Collective {
 public:
  // Joins the group: rank 0 hosts the store and waits for the others (kInternal
  // with one clear line when they do not come within the timeout).
  explicit Collective(const DistConfig& config);
  ~Collective();
  Collective(const Collective&) = delete;
  Collective& operator=(const Collective&) = delete;

  int64_t rank() const;
  int64_t world() const;
  const DistConfig& config() const;

  // Every learner's parameter gradients, averaged over the ranks in buckets of
  // at most bucket_mb MiB (gradients a rank did not compute stay undefined:
  // every rank runs the same objective, so the same ones are defined).
  // `extra` values ride in the last bucket (in the gradients' precision, so
  // no message of their own); their sums over the ranks are returned.
  std::vector<double> average_gradients(std::vector<Learner>& learners, const std::vector<double>& extra = {},
                                        double bucket_mb = 25);
  // kBadConfig on every rank unless all ranks run the same config text and
  // parameter shapes (the gradient messages would not line up).
  void check_same_layout(const std::string& config_text, std::vector<Learner>& learners);
  // Rank 0's parameters (and buffers), or its floating-point buffers only
  // (batch-norm statistics, spectral-norm vectors), copied to every rank.
  void broadcast_parameters(std::vector<Learner>& learners);
  void broadcast_buffers(std::vector<Learner>& learners);
  // Elementwise sums over the ranks.
  std::vector<double> sum(const std::vector<double>& values);
  // True on every rank when it is true on any.
  bool any(bool flag);
  // Every rank's bytes, in rank order, on every rank; or on rank 0 only
  // (gather: the others get an empty list).
  std::vector<std::string> all_gather(const std::string& bytes);
  std::vector<std::string> gather(const std::string& bytes);
  // Rank 0's bytes on every rank.
  std::string broadcast(const std::string& bytes);
  void barrier();
  // Seconds spent inside collectives so far (the communication share of a step).
  double seconds() const;

 private:
  std::vector<std::string> gather_bytes(const std::string& bytes, bool to_root);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The process group this process runs in, as torch.distributed's default
// group: set by the CLI for --nproc / torchrun runs of commands whose
// library code splits work over ranks (eval --task ais); null otherwise.
void set_process_group(std::shared_ptr<Collective> group);
Collective* process_group();

}  // namespace ebm
