"""ebm from Python, notebook style (run with Debian's /usr/bin/python3 after
`make python`, or with PYTHONPATH=build/python). Each block is a cell."""
import os
import tempfile

import torch

import ebm

# --- Sample an analytic target with NUTS and check its moments -------------
target = ebm.target("gaussian:dim=3,rho=0.5")
out = ebm.sample(target, torch.randn(32, 3, dtype=torch.float64), sampler="nuts", warmup=200, steps=400, keep=True)
draws = out["draws"]  # [chains, steps, 3]
print("accept", round(out["accept_rate"], 3), "step", round(out["step_size"], 3))
print("mean", draws.mean(dim=(0, 1)), "exact", target.mean())
print("ESS (bulk)", ebm.diagnostics(draws)["ess_bulk"])

# --- Your own energy: any nn.Module mapping x [B, D] to E(x) [B] -----------
class Ring(torch.nn.Module):
    def forward(self, x):
        return ((x * x).sum(dim=1).sqrt() - 2.0) ** 2 / 0.05

ring = ebm.from_module(Ring(), dim=2)
x = ebm.sample(ring, torch.randn(500, 2), sampler="mala:step=0.01", steps=500)["x"]
print("ring radius", x.norm(dim=1).mean().item())

# --- Train the toy 2D recipe, watching the loss ------------------------------
run = os.path.join(tempfile.mkdtemp(), "toy2d")
config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "toy2d-pcd.toml")
losses = []
result = ebm.train(config, run, sets=["train.steps=500"], callback=lambda step, m: losses.append(m["loss"]), every=10)
print("trained", result["steps"], "steps; last loss", losses[-1])

# --- Evaluate it: the exact 2D NLL, and log Z by AIS ------------------------
model = ebm.load(result["model"])
print("E at the origin", model.energy(torch.zeros(1, 2)).item())
nll = ebm.evaluate("nll2d", model=result["model"], data=os.path.join(run, "test.csv"))
ais = ebm.evaluate("ais", model=result["model"], temps=200, chains=100)
print("test NLL", round(nll["mean_nll"], 3), "log Z: quadrature", round(nll["log_z"], 4),
      "AIS", round(ais["log_z"], 4), "+-", round(ais["se"], 4))
