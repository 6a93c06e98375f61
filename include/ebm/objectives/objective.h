// Training objectives (DESIGN.md "Objective"): loss plus named metrics.
#pragma once

#include <torch/torch.h>

#include <limits>
#include <map>
#include <memory>
#include <string>

#include "ebm/energy/energy.h"
#include "ebm/sampling/jumps.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

struct Batch {
  torch::Tensor x;  // [B, ...] data
  torch::Tensor y;  // [B] labels, or undefined
};

struct Output {
  torch::Tensor loss;                      // scalar: the energy's loss, differentiable w.r.t. parameters
  // Losses of the run's other learners (a generator, a statistics network),
  // by learner name; each learner descends its own.
  std::map<std::string, torch::Tensor> learner_losses;
  std::map<std::string, double> metrics;   // e_pos, e_neg, gap, accept_rate, ...
};

// A network an objective trains beside the energy (a generator, a posterior
// scale, a statistics network): the run gives it a learner of its own, whose
// loss the objective puts in Output::learner_losses under `name`.
struct LearnedModule {
  std::string name;
  std::shared_ptr<torch::nn::Module> module;
  double lr = 0;                // 0 = train.lr
  double beta1 = -1, beta2 = -1;  // < 0 = train.beta1, train.beta2
  bool constant_lr = false;     // true: no schedule, no warm-up
};

class Objective {
 public:
  virtual ~Objective() = default;
  // The networks trained beside the energy, in a fixed order.
  virtual std::vector<LearnedModule> learned_modules() { return {}; }
  virtual Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) = 0;
  // Persistent state (replay buffers) for checkpoints.
  virtual void save(torch::serialize::OutputArchive&) const {}
  virtual void load(torch::serialize::InputArchive&) {}
  // The smallest noise level the objective trains at (multi-scale score
  // matching), where a noise-conditional energy is best evaluated; 0 = none.
  virtual double smallest_noise_level() const { return 0.0; }
  // The training rows (in the model's units), once before the first step:
  // objectives whose parts follow the data (a buffer's init box, a jump
  // proposal) fit them here.
  virtual void fit_data(const torch::Tensor& /*train*/) {}
  // The step size its sampler adapted to during training (sampler.adapt),
  // which model.pt keeps as sampler.step_size; 0 = none adapted.
  virtual double adapted_step() const { return 0.0; }
  // Whether training ran the run's [sampler] (chains, whose step it tuned or
  // used); objectives without chains (score matching, cross entropy,
  // learned samplers) leave it a guess that model.pt marks as such.
  virtual bool runs_sampler() const { return false; }
  // Whether held_out_loss gives a value: a generative part of the loss that
  // can be scored on validation rows (the trainer adds it to the validation
  // NLL); most objectives (contrastive divergence) have none.
  virtual bool scores_held_out() const { return false; }
  // That part's value on rows x (noise from `gen`); NaN when there is none.
  virtual double held_out_loss(EnergyImpl& /*energy*/, const torch::Tensor& /*x*/, at::Generator& /*gen*/) {
    return std::numeric_limits<double>::quiet_NaN();
  }
};

// The batch's labels [B] (int64) for a class-conditional energy; kBadData
// when there are none or one is outside its classes.
torch::Tensor checked_labels(EnergyImpl& energy, const Batch& batch);

// Cross entropy of the classifier p(y | x) = softmax_y(-E(x, y)) on labelled
// data (a class-conditional energy; JEM's discriminative term, Grathwohl et
// al. 2020): loss = mean -log p(y | x). Metrics: accuracy. With
// `batch_classes`, p(y | x) normalises over only the labels present in the
// batch (Li et al. 2020, "Energy-Based Models for Continual Learning"): a
// class absent from the batch is neither pushed up nor down, so learning new
// classes leaves old ones' energies out of the contrast; its accuracy metric
// is then among the batch's classes too.
class CrossEntropy : public Objective {
 public:
  explicit CrossEntropy(bool batch_classes = false) : batch_classes_(batch_classes) {}
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;

 private:
  bool batch_classes_;
};

// Contrastive divergence (Hinton 2002; PCD, Tieleman 2008; short-run chains,
// Nijkamp et al. 2019; L2 energy penalty of IGEBM, Du & Mordatch 2019):
//   loss = mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2),
// x- from `steps` sampler transitions started at the buffer (PCD; short-run
// when its capacity is 0) or at the data batch (CD-k), after `jumps`
// independence moves between modes (sampling/jumps.h) when asked for.
struct ContrastiveDivergenceOptions {
  explicit ContrastiveDivergenceOptions(int64_t steps) : steps_(steps) {}
  TORCH_ARG(int64_t, steps);                // sampler transitions per iteration (k)
  TORCH_ARG(double, alpha) = 0.0;           // L2 energy penalty weight >= 0
  TORCH_ARG(double, data_noise) = 0.0;      // std of Gaussian noise added to x+
  TORCH_ARG(std::string, chain_init) = "buffer";  // buffer | data
  // Independence moves between modes per chain and iteration, before the
  // sampler's steps (sampling/jumps.h; vectors only); 0 = none.
  TORCH_ARG(int64_t, jumps) = 0;
  TORCH_ARG(DataProposalOptions, jump_proposal) = {};
  // Train the marginal E(x) of a class-conditional energy (labels ignored,
  // one pool of chains): JEM's log p(x) term.
  TORCH_ARG(bool, marginal) = false;
  // After each iteration, step <- step * exp(adapt_rate (acceptance -
  // target)): the step follows the data's scale and dimension (a fixed step
  // tuned in 2D barely moves chains in 64 dimensions). Target 0 = the
  // sampler's own (mala 0.57, hmc 0.65, ...); samplers without an acceptance
  // (Langevin) are left alone. The step is kept in checkpoints.
  TORCH_ARG(bool, adapt_step) = false;
  TORCH_ARG(double, target_accept) = 0.0;
  TORCH_ARG(double, adapt_rate) = 0.05;
};

class ContrastiveDivergence : public Objective {
 public:
  ContrastiveDivergence(const ContrastiveDivergenceOptions& options,
                        std::shared_ptr<Sampler> sampler, std::shared_ptr<ReplayBuffer> buffer);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  void fit_data(const torch::Tensor& train) override;
  ReplayBuffer& buffer() { return *buffer_; }
  Sampler& sampler() { return *sampler_; }
  double adapted_step() const override { return options_.adapt_step() ? sampler_->step_size() : 0.0; }
  bool runs_sampler() const override { return true; }

 private:
  ContrastiveDivergenceOptions options_;
  std::shared_ptr<Sampler> sampler_;
  std::shared_ptr<ReplayBuffer> buffer_;
  std::unique_ptr<DataProposal> jumps_;  // when options.jumps > 0, after fit_data
};

// JEM (Grathwohl et al. 2020, "Your classifier is secretly an energy based
// model"): the logits f(x) = -E(x, y) of a class-conditional energy are a
// classifier and E(x) = -logsumexp_y f(x)[y] an energy model; the loss is
//   ce_weight * CE(f(x), y)                      (log p(y | x))
//   + w(t) * px_weight * [mean E(x+) - mean E(x-)]   (log p(x), PCD on E(x))
//   + w(t) * pxy_weight * [mean E(x+, y) - mean E(x-, y)]   (log p(x | y),
//     chains at the batch's labels from a per-class buffer; off at 0)
// with each CD term's L2 penalty alpha, and w(t) = min(1, (t + 1) / warmup)
// ramping the generative terms in over the first `warmup` steps (1 when
// warmup = 0). The first `ce_steps` steps train the cross entropy alone (no
// chains run: a cheap classifier warm start), the ramp starting after them;
// after them the generative terms run on every `px_every`-th step only (the
// steps between train the cross entropy alone, at a fraction of the cost).
// Metrics: accuracy, and the p(x) term's e_pos, e_neg, ... (the divergence
// guard reads them).
//
// The p(x) term may instead be denoising score matching on E(x) (a `px_sm`
// objective, vectors): no chains, so it fits a density where PCD's chains do
// not reach the data (measured: on 128-d ReLU features of a classifier the
// chains ended ~100 nats above the data, at the L2 penalty's bound, and E(x)
// ranked OOD rows worse than a Gaussian fit; docs/jem.md). Its metrics
// are e_pos (mean E of the batch) and dsm (the term's loss).
inline constexpr int64_t kJemCdMaxDim = 16;  // objective.px = auto: dsm above this many dimensions (pxy_weight = 0)
struct JemOptions {
  TORCH_ARG(double, ce_weight) = 1.0;
  TORCH_ARG(double, px_weight) = 1.0;
  TORCH_ARG(double, pxy_weight) = 0.0;
  TORCH_ARG(int64_t, warmup) = 0;
  TORCH_ARG(int64_t, ce_steps) = 0;
  TORCH_ARG(int64_t, px_every) = 1;
};

class Jem : public Objective {
 public:
  // `pxy` may be null when pxy_weight = 0.
  Jem(const JemOptions& options, std::shared_ptr<ContrastiveDivergence> px,
      std::shared_ptr<ContrastiveDivergence> pxy);
  // log p(x) by `px_sm` (denoising score matching on E(x)); pxy_weight = 0.
  Jem(const JemOptions& options, std::shared_ptr<Objective> px_sm);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  void fit_data(const torch::Tensor& train) override;
  // The p(x) chains; null when p(x) is trained by score matching.
  ContrastiveDivergence* px_chains() { return px_.get(); }
  bool px_by_score_matching() const { return px_sm_ != nullptr; }
  // p(x) by score matching: px_weight x its loss on rows x (noise from
  // `gen`); with chains none (contrastive divergence has no held-out value).
  bool scores_held_out() const override { return px_by_score_matching(); }
  double held_out_loss(EnergyImpl& energy, const torch::Tensor& x, at::Generator& gen) override;
  int64_t steps_taken() const { return calls_; }
  double adapted_step() const override { return px_ ? px_->adapted_step() : 0.0; }
  bool runs_sampler() const override { return px_ != nullptr; }

 private:
  JemOptions options_;
  CrossEntropy ce_;
  std::shared_ptr<ContrastiveDivergence> px_, pxy_;
  std::shared_ptr<Objective> px_sm_;
  int64_t calls_ = 0;  // computes so far: the warm-up's clock (checkpointed)
};

}  // namespace ebm
