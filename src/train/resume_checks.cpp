// What a --resume checks against the run it continues (train/resume_checks.h).
#include "ebm/train/resume_checks.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/model/model.h"
#include "ebm/train/train.h"

namespace ebm {

namespace {
// The text of the run's config.toml in `out` ("" when it has none).
std::string run_config_text(const std::string& out) {
  std::ifstream in(out + "/config.toml", std::ios::binary);
  std::stringstream text;
  if (in) text << in.rdbuf();
  return text.str();
}

// The run in `out` (its config.toml) must describe the same energy: weights
// of another shape are refused as they load, but other settings, such as the
// activation, would be taken silently.
void check_same_energy(const Config& cfg, const std::string& out) {
  const std::string old_cfg = out + "/config.toml", text = run_config_text(out);
  if (text.empty()) return;
  // (only the [energy] table is read: a run of an earlier version has keys
  // this one no longer knows elsewhere)
  const std::string a = energy_config(text, old_cfg).section_toml("energy"),
                    b = cfg.section_toml("energy");
  if (a == b) return;
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  while (true) {
    const bool ga = bool(std::getline(sa, la)), gb = bool(std::getline(sb, lb));
    if (!ga) la = "(nothing)";
    if (!gb) lb = "(nothing)";
    EBM_CHECK_CONFIG(la == lb, "--resume: the run in ", out, " has energy setting '", la, "' (",
                     old_cfg, "), this config '", lb, "': a checkpoint continues with its own energy");
    if (!ga && !gb) return;
  }
}

// The `key = value` lines of a config's [section] by key.
std::map<std::string, std::string> section_lines(const Config& c, const std::string& section) {
  std::map<std::string, std::string> out;
  std::istringstream in(c.section_toml(section));
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find(" = ");
    if (eq != std::string::npos && line[0] != '[') out[line.substr(0, eq)] = line;
  }
  return out;
}

// A resumed run goes on with the checkpoint's data: another [data] section
// (another file, other columns or classes) is refused. Other settings that
// change the run from the step on ([objective], [sampler], [buffer],
// [generator], [train] but its length and logging) are allowed with a note:
// the run is then not the one an uninterrupted run would have made.
void check_resumed_settings(const Config& cfg, const std::string& out, bool refuse_only) {
  const std::string old_cfg = out + "/config.toml", text = run_config_text(out);
  if (text.empty()) return;
  Config old = make_train_config();
  try {
    old.load_string(text, old_cfg);
  } catch (const Error&) {
    return;  // (a config.toml of an earlier version, with keys this one no longer knows)
  }
  // (the seed made the run's train / test split and toy data: another seed
  // is another run's data, which a checkpoint does not continue)
  if (old.has_key("seed") && cfg.has_key("seed"))
    EBM_CHECK_CONFIG(old.get_int("seed") == cfg.get_int("seed"), "--resume: the run in ", out, " was seeded ",
                     old.get_int("seed"), " (", old_cfg, "), which made its data split; this config says ",
                     cfg.get_int("seed"), ": a checkpoint continues with its own (drop --seed, or train a new run)");
  static const std::set<std::string> free_keys = {"steps", "log_every", "checkpoint_every", "snapshot_every", "sample_every",
                                                  "max_retries", "retry_lr_factor", "energy_limit", "keep_best",
                                                  "calibrate"};
  static const std::set<std::string> structural = {"objective.name", "objective.px", "buffer.capacity"};
  std::vector<std::string> changed;
  for (const std::string section : {"data", "objective", "sampler", "buffer", "generator", "train"}) {
    const auto was = section_lines(old, section), now = section_lines(cfg, section);
    // (another component: its name first, and not the keys one has and the
    // other lacks, which listed "sampler.clamp_max = inf (was none)" and
    // left the name out)
    const bool renamed = was.count("name") && now.count("name") && was.at("name") != now.at("name");
    std::vector<std::string> keys = {"name"};
    for (const auto& [k, v] : was)
      if (k != "name") keys.push_back(k);
    for (const auto& [k, v] : now)
      if (k != "name" && !was.count(k)) keys.push_back(k);
    for (const auto& k : keys) {
      if (!was.count(k) && !now.count(k)) continue;
      if (renamed && (!was.count(k) || !now.count(k))) continue;
      const auto a = was.count(k) ? was.at(k) : k + " (none)", b = now.count(k) ? now.at(k) : k + " (none)";
      if (a == b || (section == "train" && free_keys.count(k)) || (refuse_only && section == "data")) continue;
      EBM_CHECK_CONFIG(section != "data", "--resume: the run in ", out, " trained on data setting '", a, "' (",
                       old_cfg, "), this config '", b, "': a checkpoint continues on its own data (to start from "
                       "its weights on other data, train a new run with train.init = ", out, "/model.pt)");
      // (settings whose state the checkpoint holds: another objective or
      // sampler loaded as "checkpoint does not match this config", exit 65,
      // after a note that the run goes on with it)
      // (of the samplers parallel tempering alone keeps state: its hot replicas)
      const bool tempering = section == "sampler" && k == "name" &&
                             (a.find("\"pt\"") != std::string::npos || b.find("\"pt\"") != std::string::npos);
      EBM_CHECK_CONFIG(!structural.count(section + "." + k) && !tempering, "--resume: the run in ", out,
                       " trained with ", section, ".", a, " (", old_cfg, "), this config has ", section, ".", b,
                       ": a checkpoint holds its own objective's and buffer's state, and parallel tempering's "
                       "replicas (to start from its weights with other ones, train a new run with train.init = ",
                       out, "/model.pt)");
      const auto eq = a.find(" = ");
      changed.push_back(section + "." + b + " (was " + (eq == std::string::npos ? "none" : a.substr(eq + 3)) + ")");
    }
  }
  if (changed.empty() || refuse_only) return;
  std::string list;
  for (size_t i = 0; i < changed.size() && i < 4; ++i) list += (i ? "; " : "") + changed[i];
  if (changed.size() > 4) list += "; and " + std::to_string(changed.size() - 4) + " more";
  notes() << "ebm: note: --resume with settings other than the run's (" << list
          << "): the run goes on with this config's from its checkpoint, not as an uninterrupted run would have\n";
}

// Float images are mapped onto data.scale (data.standardize = on, or auto,
// which runs since then resolve to on in their config.toml) or taken as they
// are (off, or auto in a config.toml written before auto mapped them): a
// checkpoint continues in its own units, so another choice is refused.
void check_same_units(const DataSplit& data, const std::string& out) {
  const std::string old_cfg = out + "/config.toml";
  const bool float_images = !data.pixels && data.train.event_shape().size() == 3;
  const std::string text = float_images ? run_config_text(out) : "";
  if (text.empty()) return;
  std::string was;
  try {
    Config old = make_train_config();
    old.load_string(text, old_cfg);
    was = old.get_string("data.standardize");
  } catch (const Error&) {
    return;  // (a config.toml of an earlier version, with keys this one no longer knows)
  }
  const bool mapped = was == "on", now = data.values.has_value();
  EBM_CHECK_CONFIG(mapped == now, "--resume: the run in ", out, " trained on float images ",
                   mapped ? "mapped onto data.scale" : "as they are", " (data.standardize = \"", was, "\" in ",
                   old_cfg, "), this config ", now ? "maps them" : "takes them as they are",
                   ": a checkpoint continues in its own units (--set data.standardize=", mapped ? "on" : "off", ")");
}
}  // namespace

void check_resume_matches(const Config& cfg, const DataSplit& data, const std::string& out) {
  // (another objective first: objective.px = dsm resolves energy.base and
  // prior_std otherwise, and the refusal named those)
  check_resumed_settings(cfg, out, /*refuse_only=*/true);
  check_same_energy(cfg, out);
  check_same_units(data, out);
  check_resumed_settings(cfg, out, /*refuse_only=*/false);
}

bool holds_run(const std::string& out) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(out) / "checkpoint.pt", ec);
}

void remove_old_run(const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return;
  for (const char* f : {"checkpoint.pt", "model.pt", "eval.json", "metrics.jsonl", "test.csv"})
    fs::remove(fs::path(out) / f, ec);
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("model-task-", 0) == 0 && e.path().extension() == ".pt") fs::remove(e.path(), ec);
  }
  const fs::path samples = fs::path(out) / "samples";
  if (fs::is_directory(samples, ec))
    for (const auto& e : fs::directory_iterator(samples, ec))
      if (e.is_regular_file(ec)) fs::remove(e.path(), ec);
}

}  // namespace ebm
