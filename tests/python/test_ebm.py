"""The Python module (import ebm): samplers against analytic moments, a
TorchScript nn.Module energy on the C++ samplers, training with a callback,
an evaluation task, and errors. Run by ctest with Debian's /usr/bin/python3
and PYTHONPATH=build/python (make python installs the module instead)."""
import math
import os
import tempfile
import unittest

import torch

import ebm

SRC = os.environ.get("EBM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


class Samplers(unittest.TestCase):
    def test_nuts_matches_a_correlated_gaussian(self):
        target = ebm.target("gaussian:dim=3,rho=0.5")
        out = ebm.sample(target, torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)),
                         sampler="nuts", warmup=200, steps=400, seed=3, keep=True)
        draws = out["draws"]
        self.assertEqual(tuple(draws.shape), (32, 400, 3))
        self.assertGreater(out["accept_rate"], 0.6)
        self.assertEqual(out["n_divergent"], 0)
        ess = ebm.diagnostics(draws)["ess_bulk"]
        self.assertTrue(bool((ess > 1000).all()), f"ESS {ess}")
        flat = draws.reshape(-1, 3)
        mean, cov = target.mean(), target.covariance()
        # Monte Carlo errors from the ESS: |error| < 4.5 SE (two-sided false
        # alarm 7e-6 per check, 9 checks); a Gaussian's variance estimate has
        # SE sqrt(2 / ESS) var, a covariance's sqrt((1 + rho^2) / ESS).
        for d in range(3):
            se_mean = math.sqrt(cov[d, d] / ess[d])
            self.assertLess(abs(flat[:, d].mean() - mean[d]), 4.5 * se_mean)
        emp = torch.cov(flat.T)
        for i in range(3):
            for j in range(3):
                rho = cov[i, j] / math.sqrt(cov[i, i] * cov[j, j])
                se = math.sqrt((1 + rho ** 2) / min(ess[i], ess[j])) * math.sqrt(cov[i, i] * cov[j, j])
                self.assertLess(abs(emp[i, j] - cov[i, j]), 4.5 * se, f"cov[{i},{j}]")

    def test_integer_and_other_width_rows_are_the_energys_floats(self):
        # int64 rows (plain Python ints) gave E = 7 where 4.67 is right
        target = ebm.target("gaussian:dim=3,rho=0.5")
        xi = torch.tensor([[1, 2, 3], [0, 1, 0]])
        # (as float32 rows: agreeing to float32's precision)
        torch.testing.assert_close(target.energy(xi).double(), target.energy(xi.double()), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(target.grad(xi).double(), target.grad(xi.double()), rtol=1e-5, atol=1e-5)
        # float64 rows for a float32 network, and a gradient through autograd
        net = ebm.energy_from_config('[energy]\nname = "mlp"\nhidden = [8]\n', [3])
        self.assertEqual(net.energy(torch.ones(2, 3, dtype=torch.float64)).dtype, torch.float32)
        self.assertEqual(tuple(net.grad(torch.ones(2, 3, dtype=torch.float64)).shape), (2, 3))
        conv = ebm.energy_from_config('[energy]\nname = "conv"\n', [1, 8, 8])
        self.assertEqual(tuple(conv.grad(torch.rand(2, 1, 8, 8)).shape), (2, 1, 8, 8))

        class Square(torch.nn.Module):
            def forward(self, x):
                return (x ** 2).sum(dim=1) + torch.sin(x).sum(dim=1)

        module_energy = ebm.from_module(Square(), dim=2)
        x = torch.tensor([[0.5, -1.0]])
        torch.testing.assert_close(module_energy.grad(x), 2 * x + torch.cos(x))

    def test_ctrl_c_stops_sampling(self):
        import signal
        import threading
        import time
        target = ebm.target("gaussian:dim=2")
        timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
        t0 = time.monotonic()
        timer.start()
        with self.assertRaises(KeyboardInterrupt):
            ebm.sample(target, torch.zeros(4, 2), sampler="mala:step=0.5", steps=100000000)
        timer.join()
        self.assertLess(time.monotonic() - t0, 30.0)

    def test_energy_and_grad_of_a_target(self):
        target = ebm.target("gaussian:dim=2,rho=0.3")
        x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
        e = target.energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
        torch.testing.assert_close(target.grad(x), g)
        self.assertEqual(target.event_shape, [2])

    def test_a_python_module_energy_samples_with_the_cpp_samplers(self):
        class Quadratic(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.mu = torch.nn.Parameter(torch.tensor([1.0, -2.0]))

            def forward(self, x):
                return 0.5 * ((x - self.mu) ** 2).sum(dim=1) / 0.25

        energy = ebm.from_module(Quadratic(), dim=2)
        self.assertEqual(energy.event_shape, [2])
        out = ebm.sample(energy, torch.zeros(64, 2), sampler="hmc:step=0.2,leapfrog=5", warmup=100, steps=200,
                         keep=True)
        flat = out["draws"].reshape(-1, 2).double()
        ess = ebm.diagnostics(out["draws"].double())["ess_bulk"]
        for d, mu in enumerate([1.0, -2.0]):
            self.assertLess(abs(flat[:, d].mean().item() - mu), 4.5 * 0.5 / math.sqrt(ess[d]))
            self.assertLess(abs(flat[:, d].std().item() - 0.5), 4.5 * 0.5 * math.sqrt(0.5 / ess[d]))


class Training(unittest.TestCase):
    def test_train_100_steps_of_the_toy2d_recipe(self):
        with tempfile.TemporaryDirectory() as d:
            seen = []
            r = ebm.train(os.path.join(SRC, "configs", "toy2d-pcd.toml"), os.path.join(d, "run"),
                          sets=["train.steps=100", "data.n=2000", "eval.sample_chains=50", "train.log_every=30"],
                          callback=lambda step, m: seen.append((step, m["loss"])))
            self.assertEqual(r["steps"], 100)
            self.assertEqual([s for s, _ in seen], [30, 60, 90, 100])  # (the logged steps and the last)
            self.assertTrue(all(math.isfinite(l) for _, l in seen))
            model = ebm.load(r["model"])
            self.assertEqual(model.event_shape, [2])
            # (rows of another width: ebm.Error, not a broadcast of [B, 1] to (v, v))
            for wrong in (torch.ones(3, 1), torch.ones(3, 3)):
                with self.assertRaisesRegex(ebm.Error, r"expects rows \[B, 2\]"):
                    model(wrong)
            # The model's exact 2D NLL on its test split, as `ebm eval --task nll2d`.
            nll = ebm.evaluate("nll2d", model=r["model"], data=os.path.join(d, "run", "test.csv"))
            self.assertTrue(math.isfinite(nll["mean_nll"]))
            self.assertLess(nll["mean_nll"], 6.0)  # (a 2D box of side 8 holds the data: log 64 = 4.2)

    def test_a_callback_stops_the_run_and_a_dict_config_trains(self):
        config = {"seed": 1, "data": {"name": "8gaussians", "n": 1000},
                  "energy": {"name": "mlp", "hidden": [32, 32]},
                  "objective": {"name": "dsm", "sigma": 0.1}, "train": {"steps": 50, "batch_size": 64}}
        with tempfile.TemporaryDirectory() as d:
            r = ebm.train(config, os.path.join(d, "run"), callback=lambda step, m: step >= 7, every=1)
            self.assertEqual(r["steps"], 7)
            # the stop left a checkpoint: resume goes on; a new run there needs force
            r = ebm.train(config, os.path.join(d, "run"), resume=True)
            self.assertEqual(r["steps"], 50)
            with self.assertRaisesRegex(ebm.Error, "already holds a run"):
                ebm.train(config, os.path.join(d, "run"))
            r = ebm.train(config, os.path.join(d, "run"), sets="train.steps=5", force=True)
            self.assertEqual(r["steps"], 5)

    def test_an_exception_in_the_callback_reaches_the_caller(self):
        config = {"data": {"name": "8gaussians", "n": 500}, "energy": {"name": "mlp", "hidden": [16]},
                  "objective": {"name": "dsm", "sigma": 0.1}, "train": {"steps": 20, "batch_size": 32}}

        def boom(step, metrics):
            if step == 3:
                raise ValueError("stop at 3")

        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(ValueError, "stop at 3"):
                ebm.train(config, os.path.join(d, "run"), callback=boom, every=1)
            # (the run stopped at that step with a checkpoint: resume goes on)
            r = ebm.train(config, os.path.join(d, "run"), resume=True)
            self.assertEqual(r["steps"], 20)
            with self.assertRaisesRegex(ebm.Error, "give one"):
                ebm.train(config, os.path.join(d, "run"), resume=True, force=True)

    def test_ctrl_c_stops_training_with_a_checkpoint(self):
        # SIGINT to this process while the run's lock is released: the run stops
        # within a poll (0.2 s) at a step with a checkpoint there, and
        # KeyboardInterrupt reaches the caller (before: after all its steps).
        import signal
        import threading
        config = {"data": {"name": "8gaussians", "n": 500}, "energy": {"name": "mlp", "hidden": [16]},
                  "objective": {"name": "dsm", "sigma": 0.1}, "train": {"steps": 10000000, "batch_size": 32}}
        with tempfile.TemporaryDirectory() as d:
            timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
            timer.start()
            with self.assertRaises(KeyboardInterrupt):
                ebm.train(config, os.path.join(d, "run"))
            timer.join()
            self.assertTrue(os.path.exists(os.path.join(d, "run", "checkpoint.pt")))
            r = ebm.train(config, os.path.join(d, "run"), sets="train.steps=1", resume=False, force=True)
            self.assertEqual(r["steps"], 1)

    def test_model_info_says_how_float_images_are_mapped(self):
        import numpy as np
        with tempfile.TemporaryDirectory() as d:
            x = (np.random.default_rng(0).random((20, 1, 8, 8)) * 255).astype(np.float32)  # 0-255 as floats
            np.save(os.path.join(d, "x.npy"), x)
            config = {"data": {"path": os.path.join(d, "x.npy")},
                      "energy": {"name": "conv", "channels": [4], "kernels": [3], "strides": [2],
                                 "paddings": [1], "hidden": [8]},
                      "sampler": {"steps": 2}, "buffer": {"capacity": 16},
                      "train": {"steps": 2, "batch_size": 8}, "eval": {"sample_steps": 1, "sample_chains": 8}}
            r = ebm.train(config, os.path.join(d, "run"))
            info = ebm.model_info(r["model"])
            raw_lo, raw_hi, lo, hi = info["value_map"]  # (the training rows' range onto data.scale)
            self.assertGreaterEqual(raw_lo, float(x.min()))
            self.assertLessEqual(raw_hi, float(x.max()))
            self.assertGreater(raw_hi - raw_lo, 200.0)
            self.assertEqual((lo, hi), (-1.0, 1.0))
            self.assertNotIn("pixel_map", info)

    def test_model_info_names_the_classes_of_word_labels(self):
        import numpy as np
        with tempfile.TemporaryDirectory() as d:
            x = np.random.default_rng(1).normal(size=(60, 2)).astype(np.float32)
            np.save(os.path.join(d, "x.npy"), x)
            with open(os.path.join(d, "y.csv"), "w") as f:
                f.write("species\n" + "\n".join("virginica" if v > 0 else "setosa" for v in x[:, 0]) + "\n")
            config = {"data": {"path": os.path.join(d, "x.npy"), "labels": os.path.join(d, "y.csv")},
                      "energy": {"conditional": True, "hidden": [8]}, "objective": {"name": "ce"},
                      "train": {"steps": 2, "batch_size": 8}}
            r = ebm.train(config, os.path.join(d, "run"))
            self.assertEqual(ebm.model_info(r["model"])["class_names"], ["setosa", "virginica"])

    def test_bad_counts_raise_ebm_error(self):
        with self.assertRaisesRegex(ebm.Error, "n must be >= 0"):
            ebm.target("gaussian:dim=2").sample(-1)
        with self.assertRaisesRegex(ebm.Error, "n must be >= 1"):
            ebm.set_num_threads(0)

    def test_bad_config_raises_ebm_error(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(ebm.Error, "no_such_key"):
                ebm.train({"train": {"no_such_key": 1}}, os.path.join(d, "run"))


class Evaluation(unittest.TestCase):
    def test_ais_of_a_gaussian_target(self):
        r = ebm.evaluate("ais", target="gaussian:dim=2,rho=0.5", temps=200, chains=100)
        self.assertLess(abs(r["log_z"] - r["truth"]), 4.5 * r["se"] + 1e-3)


if __name__ == "__main__":
    unittest.main()
