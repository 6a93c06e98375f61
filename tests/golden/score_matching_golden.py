#!/usr/bin/python3
"""Reference values for the score matching losses (tests/unit/objectives).

Independent of ebm: plain PyTorch autograd (double backward), float64. The
weights, batch, projections and noise are closed-form functions of their
indices (the same formulas are in test_score_matching.cpp), so no RNG has to
agree across languages. Run with Debian's python3-torch:

    /usr/bin/python3 tests/golden/score_matching_golden.py > tests/golden/score_matching_golden.json
"""
import json
import math

import torch

torch.set_default_dtype(torch.float64)

B, D, M, H = 6, 2, 3, 8
PRIOR_STD = 2.0
SIGMA = 0.3                       # dsm
LADDER = (1.0, 0.1, 4)            # mdsm: sigma_max, sigma_min, levels
SIGMA_REF = 0.1                   # mdsm form li


def weight(layer, rows, cols):
    return torch.tensor([[0.5 * math.sin(1.3 * (r + 1) + 0.7 * (c + 1) + layer)
                          for c in range(cols)] for r in range(rows)])


def bias(layer, rows):
    return torch.tensor([0.1 * math.cos(r + layer) for r in range(rows)])


def table(rows, cols, a, b, c, scale):
    return torch.tensor([[scale * math.sin(a * i + b * j + c) for j in range(cols)]
                         for i in range(rows)])


def mlp(sizes):
    layers = [(weight(i, sizes[i + 1], sizes[i]), bias(i, sizes[i + 1]))
              for i in range(len(sizes) - 1)]

    def f(x):
        h = x
        for i, (w, b) in enumerate(layers):
            h = h @ w.t() + b
            if i + 1 < len(layers):
                h = torch.nn.functional.silu(h)
        return h.squeeze(-1)
    return f


f_plain = mlp([D, H, H, 1])
f_cond = mlp([D + 1, H, H, 1])


def energy(x):                    # MLP energy with the Gaussian base term
    return f_plain(x) + x.pow(2).sum(-1) / (2 * PRIOR_STD ** 2)


def energy_at(x, sigma):          # noise-conditional: f([x, log sigma]) / sigma + base
    return f_cond(torch.cat([x, sigma.log().unsqueeze(1)], 1)) / sigma + \
        x.pow(2).sum(-1) / (2 * PRIOR_STD ** 2)


def grad(e_fn, x):
    x = x.detach().requires_grad_(True)
    g, = torch.autograd.grad(e_fn(x).sum(), x, create_graph=True)
    return x, g


x = table(B, D, 0.9, 1.7, 0.3, 1.5)
v = torch.stack([table(B, D, 0.4 + 0.3 * m, 1.1, 0.2 * m, 1.0) for m in range(M)], 1)  # [B, M, D]
eps = table(B, D, 2.3, 0.5, 0.1, 1.0)

# exact: 1/2 |g|^2 - tr H
xr, g = grad(energy, x)
tr = sum(torch.autograd.grad(g[:, j].sum(), xr, create_graph=True)[0][:, j] for j in range(D))
esm = (0.5 * g.pow(2).sum(1) - tr).mean()

# sliced, plain and variance-reduced
ssm_rows, vr_rows = [], []
for m in range(M):
    vm = v[:, m]
    xr, g = grad(energy, x)
    hv, = torch.autograd.grad((g * vm).sum(), xr, create_graph=True)
    q = (hv * vm).sum(1)
    ssm_rows.append(0.5 * (g * vm).sum(1).pow(2) - q)
    vr_rows.append(0.5 * g.pow(2).sum(1) - q)
ssm = torch.stack(ssm_rows, 1).mean(1).mean()
ssm_vr = torch.stack(vr_rows, 1).mean(1).mean()


def denoise(e_fn, sigma, r):
    xt = x + sigma.unsqueeze(1) * eps
    _, g = grad(e_fn, xt)
    return (0.5 * (r.unsqueeze(1) * g - (sigma / r).unsqueeze(1) * eps).pow(2).sum(1)).mean()


sig = torch.full((B,), SIGMA)
dsm = denoise(energy, sig, sig)
ladder = torch.exp(torch.linspace(math.log(LADDER[0]), math.log(LADDER[1]), LADDER[2]))
levels = ladder[torch.tensor([b % LADDER[2] for b in range(B)])]
ncsn = denoise(lambda z: energy_at(z, levels), levels, levels)
li = denoise(energy, levels, torch.full((B,), SIGMA_REF))

out = {
    "generated": "by tests/golden/score_matching_golden.py with python3-torch " + torch.__version__
                 + "; do not edit",
    "setup": {"B": B, "D": D, "M": M, "H": H, "prior_std": PRIOR_STD, "sigma": SIGMA,
              "ladder": list(LADDER), "sigma_ref": SIGMA_REF, "activation": "swish"},
    "esm": esm.item(), "ssm": ssm.item(), "ssm_vr": ssm_vr.item(), "dsm": dsm.item(),
    "mdsm_ncsn": ncsn.item(), "mdsm_li": li.item(),
}
print(json.dumps(out, indent=2))
