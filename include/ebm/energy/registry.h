// The [energy] section: every energy network registers its name, keys and a
// factory from (config, event shape); model files rebuild energies from the
// same table.
#pragma once

#include <memory>
#include <vector>

#include "ebm/core/registry.h"
#include "ebm/energy/energy.h"

namespace ebm {

using EnergyRegistry = ComponentRegistry<Energy, const std::vector<int64_t>&>;
const EnergyRegistry& energy_registry();
Section energy_section();
// A schema holding the [energy] section only (model files).
std::shared_ptr<const Schema> energy_schema();
// The energy cfg's [energy] section describes, for samples of `event_shape`
// ({D} for vectors, {C, H, W} for images); its parameters are LibTorch's
// default initialisation (reset_parameters re-draws them from a generator).
Energy build_energy(const Config& cfg, const std::vector<int64_t>& event_shape);
// True when cfg's [energy] is class-conditional (energy.conditional = true,
// or energy.name = "jem"): energy.classes counts its outputs.
bool energy_is_conditional(const Config& cfg);

// E(x) = sum_i w_i E_i(x) over energies built from [[energy.terms]] tables:
// composition of separately specified energies (IGEBM section 4.3).
class SumEnergyImpl : public EnergyImpl {
 public:
  SumEnergyImpl(std::vector<Energy> terms, std::vector<double> weights);
  torch::Tensor energy(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return terms_.front()->event_shape(); }

 private:
  std::vector<Energy> terms_;
  std::vector<double> weights_;
};

}  // namespace ebm
