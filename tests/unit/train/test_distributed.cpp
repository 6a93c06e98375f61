// Data-parallel training on c10d/Gloo over loopback, with two real
// processes: this test binary started twice as the ranks of a group
// (DistributedWorker.DISABLED_*, run only when the parent asks for them).
// Denoising score matching is deterministic given its noise, so two ranks
// with batch B each must step exactly as one process stepping on the mean of
// the same two losses (batch 2B on the same draws), up to float rounding.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/tmp.h"
#include "ebm/core/rng.h"
#include "ebm/train/distributed.h"
#include "ebm/train/train.h"

extern char** environ;

using namespace ebm;
namespace fs = std::filesystem;

namespace {
constexpr int64_t kBatch = 64, kSteps = 20;

TrainParts dsm_parts() {
  Config cfg = make_train_config();
  cfg.load_file(std::string(EBM_SOURCE_DIR) + "/configs/toy2d-dsm.toml");
  cfg.set_value("data.n", int64_t(2000));
  // (without the recipe's mass term, whose gradient for the output bias is
  // zero up to rounding: Adam would blow that rounding up to steps of lr)
  cfg.set_value("objective.mass_weight", 0.0);
  cfg.validate();
  DataSplit d = build_data(cfg);
  return build_parts(cfg, d.model_train());
}

// Rank r's batches and noise come from streams of their own.
at::Generator data_stream(int64_t r) { return make_generator(11, 100 + r); }
at::Generator noise_stream(int64_t r) { return make_generator(11, 200 + r); }

std::vector<torch::Tensor> parameters_of(TrainParts& p) {
  std::vector<torch::Tensor> out;
  for (auto& t : p.learners[0].module->parameters()) out.push_back(t.detach().clone());
  return out;
}

// One process's objective over both ranks' draws: the mean of the two
// losses, each on its rank's batch half and noise stream.
class BothRanks : public Objective {
 public:
  explicit BothRanks(std::shared_ptr<Objective> inner) : inner_(std::move(inner)) {}
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator&) override {
    Output a = inner_->compute(energy, {batch.x.narrow(0, 0, kBatch), {}}, noise_[0]);
    Output b = inner_->compute(energy, {batch.x.narrow(0, kBatch, kBatch), {}}, noise_[1]);
    Output out;
    out.loss = 0.5 * (a.loss + b.loss);
    return out;
  }

 private:
  std::shared_ptr<Objective> inner_;
  at::Generator noise_[2] = {noise_stream(0), noise_stream(1)};
};
}  // namespace

TEST(DistributedWorker, DISABLED_DsmRank) {
  const char* out = std::getenv("EBM_TEST_OUT");
  ASSERT_NE(out, nullptr);
  Collective coll(dist_config_from_env());
  TrainParts p = dsm_parts();
  auto data = data_stream(coll.rank());
  p.gen = noise_stream(coll.rank());
  p.draw = [&data](const Dataset& d, int64_t n, at::Generator&) { return draw_batch(d, n, data); };
  for (int64_t s = 0; s < kSteps; ++s) ASSERT_FALSE(train_step(p, StepOptions(kBatch).collective(&coll)).diverged);
  torch::save(parameters_of(p), std::string(out) + "." + std::to_string(coll.rank()));
}

TEST(Distributed, DsmOnTwoRanksStepsAsOneRankOnTheirBatches) {
  const std::string dir = test_helpers::fresh_dir("ddp_dsm");
  fs::create_directories(dir);
  const std::string out = dir + "/params";
  // Two ranks of this binary on a free loopback port.
  const int port = [] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return int(ntohs(a.sin_port));
  }();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> env = {"RANK=" + std::to_string(r), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                                    "MASTER_PORT=" + std::to_string(port), "EBM_DIST_TIMEOUT=60",
                                    "EBM_TEST_OUT=" + out};
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    std::vector<std::string> args = {"/proc/self/exe", "--gtest_also_run_disabled_tests",
                                     "--gtest_filter=DistributedWorker.DISABLED_DsmRank"};
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    ASSERT_EQ(posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()), 0);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int st = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (waitpid(pid, &st, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(120)) {
        for (pid_t q : pids) kill(q, SIGKILL);
        FAIL() << "a rank did not finish within 120 s";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      for (pid_t q : pids) {
        kill(q, SIGKILL);
        waitpid(q, nullptr, 0);
      }
      FAIL() << "a rank failed (status " << st << ")";
    }
  }
  std::vector<torch::Tensor> rank0, rank1;
  torch::load(rank0, out + ".0");
  torch::load(rank1, out + ".1");

  // One process: batch 2B made of the two ranks' draws, the mean loss.
  TrainParts p = dsm_parts();
  const auto before = parameters_of(p);
  p.objective = std::make_shared<BothRanks>(p.objective);
  at::Generator data[2] = {data_stream(0), data_stream(1)};
  p.draw = [&data](const Dataset& d, int64_t, at::Generator&) {
    return Batch{torch::cat({draw_batch(d, kBatch, data[0]).x, draw_batch(d, kBatch, data[1]).x}), {}};
  };
  for (int64_t s = 0; s < kSteps; ++s) ASSERT_FALSE(train_step(p, StepOptions(2 * kBatch)).diverged);
  const auto one = parameters_of(p);

  ASSERT_EQ(one.size(), rank0.size());
  double moved = 0;
  for (size_t i = 0; i < one.size(); ++i) {
    // The ranks hold identical weights, and those of the single process.
    EXPECT_TRUE(torch::equal(rank0[i], rank1[i])) << "parameter " << i << " differs between the ranks";
    const double diff = (rank0[i] - one[i]).abs().max().item<double>();
    // (float sums in another order: a few ulps per step, over 20 Adam steps)
    EXPECT_LT(diff, 2e-5) << "parameter " << i;
    moved = std::max(moved, (one[i] - before[i]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-3);  // (the steps did move the weights)
  fs::remove_all(dir);
}
