// A program that embeds ebm: load a model.pt, draw samples with Langevin
// dynamics, print their energies. Build against an installed ebm:
//   cmake -S examples/embed -B embed-build -DCMAKE_PREFIX_PATH=PREFIX && cmake --build embed-build
#include <ebm/core/rng.h>
#include <ebm/model/model.h>
#include <ebm/sampling/sampling.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 2) return std::cerr << "usage: embed model.pt [n] [steps]\n", 64;
  const int64_t n = argc > 2 ? std::stoll(argv[2]) : 8, steps = argc > 3 ? std::stoll(argv[3]) : 200;
  ebm::ModelInfo info;
  ebm::Energy energy = ebm::load_model(argv[1], &info);
  auto gen = ebm::make_generator(/*seed=*/0, ebm::kStreamSample);
  std::vector<int64_t> shape = info.event_shape;
  shape.insert(shape.begin(), n);
  ebm::ChainState chains(ebm::standard_normal(shape, gen, torch::kFloat));
  ebm::LangevinSampler sampler(ebm::LangevinOptions(0.01).exact_noise(true));
  sampler.run(*energy, chains, steps, gen);
  auto e = energy->energy(chains.x).detach();
  for (int64_t i = 0; i < n; ++i) std::cout << "sample " << i << " energy " << e[i].item<double>() << "\n";
  std::cout << "mean energy " << e.mean().item<double>() << "\n";
}
