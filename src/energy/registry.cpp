#include "ebm/energy/registry.h"

#include "ebm/core/error.h"
#include "ebm/energy/classifier_mlp.h"
#include "ebm/energy/conv.h"
#include "ebm/energy/resnet.h"

namespace ebm {
namespace {
using Shape = std::vector<int64_t>;

// MLPs take vectors; an image-shaped input needs a conv energy.
int64_t vector_dim(const Shape& shape, const char* name) {
  EBM_CHECK_CONFIG(shape.size() == 1 && shape[0] >= 1, "energy.name = \"", name,
                   "\" takes vectors [D]; the data have event shape ", c10::IntArrayRef(shape),
                   " (images: energy.name = \"conv\" or \"resnet\", or flatten them with data.shape = [",
                   c10::multiply_integers(shape), "])");
  return shape[0];
}

// energy.conditional / energy.classes: the number of outputs per row.
std::vector<ConfigKey> class_keys() {
  return {{"conditional", false, "one energy per class, E(x, y) (labels needed); E(x) is their -logsumexp(-.)"},
          {"classes", int64_t(0), "classes of a conditional energy; 0 = from the training labels (max + 1)"}};
}

int64_t classes_of(const Config& c) {
  if (!c.get_bool("energy.conditional")) return 0;
  const int64_t k = c.get_int("energy.classes");
  EBM_CHECK_CONFIG(k >= 1, "energy.conditional = true needs energy.classes >= 1 (0: from the data's labels, "
                   "when training), got ", k);
  return k;
}

std::vector<ConfigKey> with(std::vector<ConfigKey> a, const std::vector<ConfigKey>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// conv, resnet: energy.noise_conditional wraps the network as
// E(x, sigma) = f(x) / sigma (NoiseScaledEnergyImpl).
std::vector<ConfigKey> noise_keys() {
  return {{"noise_conditional", false,
           "E(x, sigma) = f(x) / sigma (NCSNv2's noise scaling), a noise-conditional energy for objective.name = "
           "\"mdsm\" with form = \"ncsn\" and the annealed sampler"},
          {"noise_level", 0.0,
           "sigma at which E(x) is evaluated (sampling, eval); 0 = the objective's smallest level (mdsm: "
           "objective.sigma_min)"}};
}

Energy noise_scaled(const Config& c, Energy net) {
  if (!c.get_bool("energy.noise_conditional")) return net;
  EBM_CHECK_CONFIG(net->num_classes() == 0,
                   "energy.noise_conditional = true and energy.conditional = true: a class-conditional energy "
                   "cannot also be noise-conditional");
  const double level = c.get_float("energy.noise_level");
  EBM_CHECK_CONFIG(level >= 0 && std::isfinite(level), "energy.noise_level must be >= 0, got ", level);
  // (0: 1 until build_parts sets the objective's smallest level)
  return std::make_shared<NoiseScaledEnergyImpl>(std::move(net), level > 0 ? level : 1.0);
}

std::vector<ConfigKey> mlp_keys() {
  return {{"hidden", std::vector<int64_t>{128, 128}, "hidden layer widths"},
          {"activation", std::string("swish"), "swish | softplus | elu | leaky_relu"},
          {"spectral_norm", false, "spectral normalisation of every weight"},
          {"prior_std", 0.0, "std of the Gaussian base term |x|^2/(2 s^2); 0 = none"}};
}

// energy.base: a base fitted to the training rows under a classifier MLP's
// outputs (ClassifierMLPOptions::base).
ConfigKey base_key() {
  return {"base", std::string("auto"),
          "classes: a Gaussian per class with one shared covariance and the classes' shares, fitted to the "
          "labelled training rows, is added to the class energies (p(y | x) starts as linear discriminant "
          "analysis', p(x) as their mixture), the network learning what it misses | gaussian: one Gaussian "
          "fitted to the training rows under every class energy | none | auto (classes when log p(x) is trained "
          "by denoising score matching, which alone learned no density on smooth features, gaussian there when "
          "data.tasks > 1, and then energy.prior_std = 0: the base bounds E; none otherwise); "
          "class-conditional MLPs on vectors"};
}

// The base of a class-conditional MLP: classes, gaussian or none (the
// trainer resolves "auto" into the config; an unresolved one is none).
std::string base_of(const Config& c) {
  const std::string b = c.get_string("energy.base");
  EBM_CHECK_CONFIG(b == "classes" || b == "gaussian" || b == "none" || b == "auto",
                   "energy.base must be classes, gaussian, none or auto, got '", b, "'");
  return b == "auto" ? "none" : b;
}

// energy.name = "jem": the classifier network's keys, empty lists and the
// defaults below standing for the network's own defaults.
const std::vector<std::string> kJemLists = {"channels", "kernels", "strides", "paddings", "hidden", "blocks"};

std::vector<ConfigKey> jem_keys() {
  std::vector<ConfigKey> keys = {
      {"net", std::string("auto"), "the classifier network: conv | resnet | mlp; auto = conv for images, mlp for vectors"},
      {"classes", int64_t(0), "classes (outputs of the network); 0 = from the training labels (max + 1)"}};
  for (const auto& name : kJemLists)
    keys.push_back({name, std::vector<int64_t>{}, "the network's " + name + " (as its own key); empty = its default"});
  keys.push_back({"activation", std::string("swish"), "swish | softplus | elu | leaky_relu"});
  keys.push_back({"spectral_norm", false, "spectral normalisation of every weight (JEM: none)"});
  keys.push_back({"prior_std", 0.0, "std of the Gaussian base term |x|^2/(2 s^2); 0 = none"});
  keys.push_back(base_key());
  return keys;
}

// The [energy] table of the conditional network that energy.name = "jem" names.
Config jem_network_config(const Config& c, const Shape& shape) {
  std::string net = c.get_string("energy.net");
  if (net == "auto") net = shape.size() == 1 ? "mlp" : "conv";
  EBM_CHECK_CONFIG(net == "conv" || net == "resnet" || net == "mlp",
                   "energy.net must be conv, resnet, mlp or auto; got '", net, "'");
  const int64_t k = c.get_int("energy.classes");
  EBM_CHECK_CONFIG(k >= 1, "energy.name = \"jem\" needs energy.classes >= 1 (0: from the data's labels, "
                   "when training), got ", k);
  Config inner(energy_schema());
  inner.set_value("energy.name", net);
  inner.set_value("energy.conditional", true);
  inner.set_value("energy.classes", k);
  const auto* chosen = energy_registry().group().find(net);
  auto declares = [&](const std::string& key) {
    for (const auto& ck : chosen->keys)
      if (ck.name == key) return true;
    return false;
  };
  for (const auto& name : kJemLists) {
    const auto v = c.get_int_list("energy." + name);
    if (v.empty()) continue;
    EBM_CHECK_CONFIG(declares(name), "energy." , name, " does not apply to energy.net = \"", net, "\"");
    inner.set_value("energy." + name, v);
  }
  inner.set_value("energy.activation", c.get_string("energy.activation"));
  inner.set_value("energy.spectral_norm", c.get_bool("energy.spectral_norm"));
  inner.set_value("energy.prior_std", c.get_float("energy.prior_std"));
  if (net == "mlp") inner.set_value("energy.base", c.get_string("energy.base"));
  else EBM_CHECK_CONFIG(base_of(c) == "none", "energy.base = \"", base_of(c), "\" takes vectors (energy.net = mlp), not ",
                        net);
  return inner;
}
}  // namespace

bool energy_is_conditional(const Config& c) {
  if (!c.has_key("energy.name")) return false;
  const auto& name = c.get_string("energy.name");
  if (name == "jem") return true;
  const auto* chosen = energy_registry().group().find(name);
  if (chosen == nullptr) return false;
  for (const auto& k : chosen->keys)
    if (k.name == "conditional") return c.get_bool("energy.conditional");
  return false;
}

SumEnergyImpl::SumEnergyImpl(std::vector<Energy> terms, std::vector<double> weights)
    : terms_(std::move(terms)), weights_(std::move(weights)) {
  EBM_CHECK_CONFIG(!terms_.empty(), "energy.name = \"sum\" needs at least one [[energy.terms]] table");
  if (weights_.empty()) weights_.assign(terms_.size(), 1.0);
  EBM_CHECK_CONFIG(weights_.size() == terms_.size(), "energy.weights has ", weights_.size(),
                   " entries for ", terms_.size(), " [[energy.terms]] tables");
  for (size_t i = 0; i < terms_.size(); ++i) {
    EBM_CHECK_CONFIG(terms_[i]->event_shape() == terms_[0]->event_shape(),
                     "[[energy.terms]] ", i, " has another event shape than term 0");
    register_module("term" + std::to_string(i), terms_[i]);
  }
}

torch::Tensor SumEnergyImpl::energy(const torch::Tensor& x) {
  auto e = weights_[0] * terms_[0]->energy(x);
  for (size_t i = 1; i < terms_.size(); ++i) e = e + weights_[i] * terms_[i]->energy(x);
  return e;
}

const EnergyRegistry& energy_registry() {
  static const EnergyRegistry reg = [] {
    EnergyRegistry r("energy", "energy", "name", "mlp", "energy network");
    r.add({"mlp", "MLP on vectors: E(x) = w . h_L + b (+ the base term); conditional: one output per class",
           with(with(mlp_keys(), class_keys()), {base_key()})},
          [](const Config& c, const Shape& shape) -> Energy {
            const std::string base = base_of(c);
            if (const int64_t k = classes_of(c); k > 0)
              return ClassifierMLP(ClassifierMLPOptions(vector_dim(shape, "mlp"), c.get_int_list("energy.hidden"), k)
                                       .activation(c.get_string("energy.activation"))
                                       .spectral_norm(c.get_bool("energy.spectral_norm"))
                                       .prior_std(c.get_float("energy.prior_std"))
                                       .base(base))
                  .ptr();
            EBM_CHECK_CONFIG(base == "none", "energy.base = \"", base, "\" takes a class-conditional MLP (energy.conditional = "
                             "true, or energy.name = \"jem\"); use energy.prior_std for an unconditional one");
            return MLPEnergy(MLPEnergyOptions(vector_dim(shape, "mlp"), c.get_int_list("energy.hidden"))
                                 .activation(c.get_string("energy.activation"))
                                 .spectral_norm(c.get_bool("energy.spectral_norm"))
                                 .prior_std(c.get_float("energy.prior_std")))
                .ptr();
          });
    auto nc_keys = mlp_keys();
    nc_keys.push_back({"noise_level", 0.0,
                       "sigma at which E(x) is evaluated (sampling, eval); 0 = the objective's "
                       "smallest level (mdsm: objective.sigma_min)"});
    r.add({"ncmlp", "noise-conditional MLP E(x, sigma) = f([x, log sigma]) / sigma, for objective.name = \"mdsm\"",
           nc_keys},
          [](const Config& c, const Shape& shape) -> Energy {
            // (0: the options' default, until build_parts sets the objective's smallest level)
            const double level = c.get_float("energy.noise_level");
            EBM_CHECK_CONFIG(level >= 0 && std::isfinite(level),
                             "energy.noise_level must be >= 0, got ", level);
            auto o = NoiseConditionalMLPOptions(vector_dim(shape, "ncmlp"), c.get_int_list("energy.hidden"))
                         .activation(c.get_string("energy.activation"))
                         .spectral_norm(c.get_bool("energy.spectral_norm"))
                         .prior_std(c.get_float("energy.prior_std"));
            if (level > 0) o.noise_level(level);
            return NoiseConditionalMLP(o).ptr();
          });
    const ConvEnergyOptions d({1, 28, 28});
    r.add({"conv", "convolutional energy on images [C, H, W] (IGEBM's small net by default)",
           with({{"channels", d.channels(), "output channels of each conv layer"},
                 {"kernels", d.kernels(), "kernel size of each conv layer"},
                 {"strides", d.strides(), "stride of each conv layer"},
                 {"paddings", d.paddings(), "zero padding of each conv layer"},
                 {"hidden", d.hidden(), "dense widths after the conv layers"},
                 {"activation", d.activation(), "swish | softplus | elu | leaky_relu"},
                 {"spectral_norm", false, "spectral normalisation of every weight"},
                 {"prior_std", 0.0, "std of the Gaussian base term |x|^2/(2 s^2); 0 = none"}},
                with(class_keys(), noise_keys()))},
          [](const Config& c, const Shape& shape) -> Energy {
            return noise_scaled(c, ConvEnergy(ConvEnergyOptions(shape)
                                  .channels(c.get_int_list("energy.channels"))
                                  .kernels(c.get_int_list("energy.kernels"))
                                  .strides(c.get_int_list("energy.strides"))
                                  .paddings(c.get_int_list("energy.paddings"))
                                  .hidden(c.get_int_list("energy.hidden"))
                                  .activation(c.get_string("energy.activation"))
                                  .spectral_norm(c.get_bool("energy.spectral_norm"))
                                  .prior_std(c.get_float("energy.prior_std"))
                                  .classes(classes_of(c)))
                .ptr());
          });
    const ResNetEnergyOptions rd({1, 28, 28});
    r.add({"resnet", "IGEBM's residual energy on images [C, H, W] (BENCHMARKS.md's resnet-fmnist net by default)",
           with({{"channels", rd.channels(), "channels of each stage (average pooling between stages)"},
                 {"blocks", rd.blocks(), "residual blocks of each stage"},
                 {"activation", rd.activation(), "swish | softplus | elu | leaky_relu"},
                 {"spectral_norm", true, "spectral normalisation of every weight"},
                 {"prior_std", 0.0, "std of the Gaussian base term |x|^2/(2 s^2); 0 = none"}},
                with(class_keys(), noise_keys()))},
          [](const Config& c, const Shape& shape) -> Energy {
            return noise_scaled(c, ResNetEnergy(ResNetEnergyOptions(shape)
                                    .channels(c.get_int_list("energy.channels"))
                                    .blocks(c.get_int_list("energy.blocks"))
                                    .activation(c.get_string("energy.activation"))
                                    .spectral_norm(c.get_bool("energy.spectral_norm"))
                                    .prior_std(c.get_float("energy.prior_std"))
                                    .classes(classes_of(c)))
                .ptr());
          });
    r.add({"jem", "a classifier network as an energy (JEM): E(x, y) = -f(x)[y], E(x) = -logsumexp_y f(x)[y]",
           jem_keys()},
          [](const Config& c, const Shape& shape) -> Energy { return build_energy(jem_network_config(c, shape), shape); });
    r.add({"sum", "weighted sum of energies, one [[energy.terms]] table each (composition)",
           {{"terms", TableList{"energy", {}}, "the energies added, each an [energy] table"},
            {"weights", std::vector<double>{}, "weight of each term; empty = all 1"}}},
          [](const Config& c, const Shape& shape) -> Energy {
            std::vector<Energy> terms;
            for (const auto& item : c.get_tables("energy.terms").items)
              terms.push_back(build_energy(*item, shape));
            return std::make_shared<SumEnergyImpl>(std::move(terms), c.get_float_list("energy.weights"));
          });
    return r;
  }();
  return reg;
}

Section energy_section() { return {"energy", {}, {energy_registry().group()}}; }

std::shared_ptr<const Schema> energy_schema() {
  static const auto schema = [] {
    auto s = std::make_shared<Schema>();
    s->add(energy_section());
    return std::shared_ptr<const Schema>(s);
  }();
  return schema;
}

Energy build_energy(const Config& cfg, const std::vector<int64_t>& event_shape) {
  return energy_registry().make(cfg, event_shape);
}

}  // namespace ebm
