// VERA's three learners through the Trainer: checkpoints and model.pt.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/resume.h"
#include "common/tmp.h"
#include "ebm/energy/generator.h"
#include "ebm/model/model.h"
#include "ebm/train/train.h"

using namespace ebm;
namespace fs = std::filesystem;

// Energy, generator (with batch norm) and posterior scale: three learners,
// all in the checkpoint; a run split at step 3 and resumed ends bit-identical
// to one run straight through, and model.pt keeps the generator.
TEST(VeraTrainer, MultiNetworkResumeIsBitExact) {
  const std::string root = test_helpers::fresh_dir("vera");
  Config c = make_train_config();
  c.load_string(R"(
seed = 3
[data]
name = "8gaussians"
n = 400
[energy]
hidden = [16]
[generator]
name = "mlp"
hidden = [16, 16]
batch_norm = true
lr = 2e-3
[objective]
name = "vera"
posterior_samples = 4
grad_penalty = 0.1
alpha = 0.1
[train]
steps = 6
batch_size = 16
lr = 1e-3
log_every = 1
checkpoint_every = 3
[eval]
sample_chains = 20
sample_steps = 2
)", "test");
  test_helpers::run_and_resume(c, root, 3, [&](Trainer& full, Trainer& b) {
    ASSERT_EQ(full.parts().learners.size(), 3u);
    for (size_t l = 0; l < 3; ++l) {
      auto pa = full.parts().learners[l].module->parameters(), pb = b.parts().learners[l].module->parameters();
      ASSERT_EQ(pa.size(), pb.size());
      for (size_t i = 0; i < pa.size(); ++i)
        EXPECT_TRUE(torch::equal(pa[i], pb[i])) << full.parts().learners[l].name << " " << i;
      auto ba = full.parts().learners[l].module->buffers(), bb = b.parts().learners[l].module->buffers();
      for (size_t i = 0; i < ba.size(); ++i) EXPECT_TRUE(torch::equal(ba[i], bb[i])) << "buffer " << i;
    }
    // The generator in model.pt draws what the trained one draws.
    auto g = load_generator(root + "/full/model.pt");
    auto* trained = dynamic_cast<GeneratorImpl*>(full.parts().learners[1].module.get());
    ASSERT_NE(trained, nullptr);
    trained->eval();
    auto z = torch::randn({5, 2});
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::allclose(g->mean(z), trained->mean(z.to(trained->log_sigma().scalar_type()))));
    EXPECT_NEAR(g->sigma().item<double>(), trained->sigma().item<double>(), 1e-7);
  });
  fs::remove_all(root);
}

// MEG: energy, generator and statistics network, with latent MALA whose
// adapted step lives in the objective's checkpoint state; Kim & Bengio: two
// learners. Split runs end bit-identical to straight ones.
namespace {
void expect_resume_exact(const std::string& objective, size_t learners) {
  const std::string root = test_helpers::fresh_dir("learned");
  Config c = make_train_config();
  c.load_string(R"(
seed = 4
[data]
name = "8gaussians"
n = 400
[energy]
hidden = [16]
[generator]
name = "mlp"
hidden = [16]
batch_norm = true
[train]
steps = 6
batch_size = 16
log_every = 1
checkpoint_every = 3
[eval]
sample_chains = 20
sample_steps = 2
)" + objective, "test");
  test_helpers::run_and_resume(c, root, 3, [&](Trainer& full, Trainer& b) {
    ASSERT_EQ(full.parts().learners.size(), learners);
    for (size_t l = 0; l < learners; ++l) {
      auto pa = full.parts().learners[l].module->parameters(), pb = b.parts().learners[l].module->parameters();
      ASSERT_EQ(pa.size(), pb.size());
      for (size_t i = 0; i < pa.size(); ++i)
        EXPECT_TRUE(torch::equal(pa[i], pb[i])) << full.parts().learners[l].name << " " << i;
    }
  });
  fs::remove_all(root);
}
}  // namespace

TEST(MegTrainer, ThreeNetworksWithLatentMalaResumeBitExactly) {
  expect_resume_exact("[objective]\nname = \"meg\"\nstats_hidden = [16]\nmala_steps = 2\ngrad_penalty = 0.1\n", 3);
}

TEST(KimBengioTrainer, ResumesBitExactly) {
  expect_resume_exact("[objective]\nname = \"kim_bengio\"\nalpha = 0.1\n", 2);
}

// The mass term wraps a learned sampler's objective without hiding its
// networks or its state: the same learners, MEG's adapted latent MALA step in
// the checkpoint, and split runs still bit-identical.
TEST(LearnedSamplerTrainer, WithTheMassTermKeepsItsLearnersAndResumesBitExactly) {
  expect_resume_exact(
      "[objective]\nname = \"meg\"\nstats_hidden = [16]\nmala_steps = 2\nmass_weight = 1.0\nmass_samples = 64\n", 3);
  expect_resume_exact("[objective]\nname = \"vera\"\nposterior_samples = 4\nmass_weight = 1.0\nmass_samples = 64\n", 3);
}
