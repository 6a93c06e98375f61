"""ebm: energy-based models on LibTorch, from Python.

Tensors in and out are torch tensors. The samplers, trainers and evaluation
tasks are the C++ library's (the same as the `ebm` command line's):

    import torch, ebm
    target = ebm.target("gaussian:dim=3,rho=0.5")
    out = ebm.sample(target, torch.randn(64, 3), sampler="nuts", warmup=200, steps=500, keep=True)
    out["draws"].mean(dim=(0, 1))           # close to target.mean()

    ebm.train({"data": {"name": "8gaussians"}, "train": {"steps": 100}}, out="runs/py",
              callback=lambda step, m: print(step, m["loss"]))   # at each logged step
    model = ebm.load("runs/py/model.pt")
"""
import json as _json
import os as _os
import tempfile as _tempfile

import torch as _torch  # (registers the tensor type the module's functions take)

from ._ebm import (Energy, Error, Target, diagnostics, energy_from_config, load, model_info, sample,
                   script_energy, set_num_threads, target, target_names)
from . import _ebm

__all__ = ["Energy", "Error", "Target", "diagnostics", "energy_from_config", "evaluate", "from_module", "load",
           "model_info", "sample", "script_energy", "set_num_threads", "target", "target_names", "to_toml",
           "train"]


def _toml_value(v):
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 0) == 0:
        v = v.item()  # (numpy and torch scalars: np.int64(5), np.float32(0.1))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _json.dumps(v)  # (a TOML basic string)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"config value {v!r}: expected bool, int, float, str or a list of them")


def to_toml(config):
    """A config dict {"section": {"key": value}} (sections may nest) as TOML text."""
    lines = []
    top = {k: v for k, v in config.items() if not isinstance(v, dict)}
    for k, v in top.items():
        lines.append(f"{k} = {_toml_value(v)}")

    def section(prefix, table):
        plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
        lines.append(f"[{prefix}]")
        for k, v in plain.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                section(f"{prefix}.{k}", v)

    for k, v in config.items():
        if isinstance(v, dict):
            section(k, v)
    return "\n".join(lines) + "\n"


def _config_text(config):
    if isinstance(config, dict):
        return to_toml(config)
    return _os.fspath(config)


def train(config, out, sets=(), resume=False, callback=None, every=None, force=False):
    """Trains as `ebm train` does. config: a TOML file's path, TOML text, or a
    dict of sections; sets: "key=value" overrides; callback(step, metrics)
    (metrics hold the step's loss) is called at every logged step
    (train.log_every), or every `every` steps, and at the last; return True
    to stop there (a checkpoint is written at that step: resume=True goes on).
    An `out` that holds a run is refused unless resume=True (continue it) or
    force=True (remove its outputs and start over). Returns a dict with
    steps, rollbacks, out and the model's path."""
    if isinstance(sets, str):
        sets = [sets]
    if resume and force:
        raise Error("train: resume=True continues the run in out, force=True starts it over: give one")
    return _ebm.train(_config_text(config), _os.fspath(out), list(sets), resume, callback, int(every or 0),
                      bool(force))


def evaluate(task, model=None, target=None, script=None, dim=0, **options):
    """Runs an `ebm eval` task (nll2d, ais, classify, ...) and returns its JSON
    report as a dict; options are the task's keys (temps=1000, chains=100, ...)."""
    sets = [f"{k}={_toml_value(v)}" for k, v in options.items()]
    return _json.loads(_ebm.evaluate_json(task, _os.fspath(model) if model else "", target or "",
                                          _os.fspath(script) if script else "", dim, sets))


def from_module(module, dim=None):
    """An energy from a torch.nn.Module whose forward maps x [B, D] to E(x) [B]:
    scripted with TorchScript (unless it already is) and handed to the C++
    samplers. dim: D, unless the module has an int attribute `dim`."""
    scripted = module if isinstance(module, _torch.jit.ScriptModule) else _torch.jit.script(module)
    fd, path = _tempfile.mkstemp(suffix=".pt")
    _os.close(fd)
    try:
        _torch.jit.save(scripted, path)
        return script_energy(path, int(dim or 0))
    finally:
        _os.unlink(path)
