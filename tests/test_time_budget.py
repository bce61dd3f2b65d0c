"""The time budget (cfgflow.training.TimeBudget) with a mocked clock: each "step" of a tiny
quadratic problem advances a fake clock by a chosen step time, so a fast machine, a slow one
and one whose step time drifts take milliseconds to test. No real training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cfgflow import configs
from cfgflow.training import TimeBudget, Trainer, format_duration, learning_rate


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class ClockedTrainer(Trainer):
    """loss = ||w - 3||^2; every loss call advances ``clock`` by ``step_time(k)`` (k = 0, 1, ...)
    and records the learning rate it ran at."""

    def __init__(self, clock: FakeClock, step_time):
        super().__init__()
        self.clock, self.step_time, self.lrs = clock, step_time, []

    def get_train_loss(self):
        self.clock.t += self.step_time(len(self.lrs))
        self.lrs.append(self.opt.param_groups[0]["lr"])
        return ((self.model.weight - 3.0) ** 2).sum()


def run(step_time, seconds: float, lr: float = 1e-2, warmup_steps: int = 5, **budget_kw):
    clock = FakeClock()
    budget = TimeBudget(seconds, clock=clock, **budget_kw)
    trainer = ClockedTrainer(clock, step_time)
    torch.manual_seed(0)
    losses, _ = trainer.train(nn.Linear(4, 1, bias=False), num_steps=None, time_budget=budget, lr=lr,
                              warmup_steps=warmup_steps, lr_schedule="cosine", progress=False)
    return trainer, budget, clock.t - 1000.0, losses


def test_fast_machine_fills_the_budget_and_schedule_follows_the_plan(capsys):
    # 0.5 s of one-off cost in the first step, then 1/64 s a step (64 steps/s); 10 s budget.
    # The plan after the 20 probe steps (the first 2 skipped in the step time):
    # 20 + floor((0.98 * 10 - (0.5 + 19 / 64)) * 64) = 20 + floor(576.2) = 596
    trainer, budget, used, losses = run(lambda k: 0.5 if k == 0 else 1 / 64, seconds=10)
    first, second = budget.plans
    assert first == dict(at_step=20, num_steps=596, steps_per_s=64.0)
    assert second == dict(at_step=20 + (596 - 20) // 2, num_steps=596, steps_per_s=64.0)
    assert len(losses) == trainer.step == budget.num_steps == 596 and not budget.stopped_early
    assert 0.97 * 10 <= used <= 10  # fills the budget (less the 2 % margin), never beyond
    # warm-up = 4 % of the plan; the probe's 20 steps followed warmup_steps' ramp (5 steps)
    assert budget.warmup_steps == round(0.04 * 596) == 24
    want = [learning_rate(k, 1e-2, 5 if k < 20 else 24, math.inf if k < 20 else 596, "cosine")
            for k in range(596)]
    assert trainer.lrs == pytest.approx(want, abs=1e-12)
    assert trainer.lrs[-1] == pytest.approx(0.0, abs=1e-12)  # the cosine ends on the last step
    out = capsys.readouterr().out
    assert "~596 steps in 10 s at 64 steps/s on cpu" in out  # the plan, printed before going on


def test_slow_machine_probes_less_and_stays_within_budget():
    # 2 s a step, 4 min: the probe stops at 10 % of the budget (12 steps), not at 20 steps
    trainer, budget, used, _ = run(lambda k: 2.0, seconds=240)
    assert budget.plans[0]["at_step"] == 12
    assert budget.plans[0]["num_steps"] == 12 + math.floor((0.98 * 240 - 24) / 2.0) == 117
    assert trainer.step == 117 and used <= 240 and not budget.stopped_early
    assert budget.describe() == "~117 steps in 4 min at 0.5 steps/s on cpu"


def test_step_time_that_slows_down_is_replanned_and_caught_before_the_budget():
    # 10 ms a step, then 30 ms from step 300 on (another job started): the halfway re-plan
    # measures the slower steps and cuts the plan; the guard stops within the budget
    trainer, budget, used, _ = run(lambda k: 1 / 64 if k < 200 else 3 / 64, seconds=10)
    first, second = budget.plans
    assert second["num_steps"] < first["num_steps"]
    assert used <= 10 and trainer.step <= second["num_steps"]
    assert trainer.step > 0.9 * second["num_steps"]  # stopped at most a few % short of the plan


def test_step_time_that_speeds_up_gets_more_steps():
    trainer, budget, used, _ = run(lambda k: 2 / 64 if k < 100 else 1 / 64, seconds=10)
    first, second = budget.plans
    assert second["num_steps"] > first["num_steps"]
    assert trainer.step == second["num_steps"] and used <= 10 and not budget.stopped_early
    assert trainer.lrs[-1] == pytest.approx(0.0, abs=1e-12)  # the stretched cosine still ends at 0


def test_budget_shorter_than_the_probe_stops_in_time():
    trainer, budget, used, _ = run(lambda k: 0.3, seconds=1.0)
    assert used <= 1.0 and 1 <= trainer.step <= 3


def test_explicit_num_steps_wins_over_a_budget():
    trainer = ClockedTrainer(FakeClock(), lambda k: 1.0)
    trainer.train(nn.Linear(4, 1, bias=False), num_steps=7, time_budget=TimeBudget(1.0),
                  progress=False)
    assert trainer.step == 7 and trainer.budget is None
    quick = configs.QUICK.replace(num_steps=2600)
    assert configs.train_kwargs(quick)["time_budget"] is None
    assert configs.train_kwargs(quick)["num_steps"] == 2600


def test_a_budget_is_reusable():
    clock = FakeClock()
    budget = TimeBudget(1.0, clock=clock)
    for _ in range(2):
        ClockedTrainer(clock, lambda k: 0.01).train(nn.Linear(4, 1, bias=False), num_steps=None,
                                                    time_budget=budget, progress=False)
        assert len(budget.plans) == 2 and budget.num_steps > 50


def test_configs_quick_is_budgeted_tiny_and_lab_are_not():
    assert configs.QUICK.num_steps is None and configs.QUICK.time_budget_s == 240
    budget = configs.train_kwargs(configs.QUICK)["time_budget"]
    assert isinstance(budget, TimeBudget)
    assert (budget.seconds, budget.warmup_fraction) == (240, configs.QUICK.warmup_fraction)
    for cfg in (configs.TINY, configs.LAB):
        assert cfg.num_steps and configs.train_kwargs(cfg)["time_budget"] is None


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), "4 min", True, None])
def test_bad_budget_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="time_budget seconds"):
        TimeBudget(bad)


@pytest.mark.parametrize("kw, name", [
    (dict(probe_steps=2), "probe_steps"), (dict(skip_steps=-1), "skip_steps"),
    (dict(warmup_fraction=1.0), "warmup_fraction"), (dict(margin=-0.1), "margin"),
    (dict(probe_fraction=0), "probe_fraction")])
def test_bad_budget_options_are_refused_by_name(kw, name):
    with pytest.raises(ValueError, match=name):
        TimeBudget(10, **kw)


def test_bad_train_arguments_are_refused_by_name(tmp_path):
    trainer = ClockedTrainer(FakeClock(), lambda k: 0.01)
    with pytest.raises(ValueError, match="num_steps.*time_budget"):
        trainer.train(nn.Linear(4, 1), num_steps=None, progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        trainer.train(nn.Linear(4, 1), num_steps=2.5, progress=False)
    with pytest.raises(ValueError, match="time_budget seconds"):
        trainer.train(nn.Linear(4, 1), num_steps=None, time_budget=-1, progress=False)
    with pytest.raises(ValueError, match="resume_from"):
        trainer.train(nn.Linear(4, 1), num_steps=None, time_budget=10, resume_from=str(tmp_path / "x.pt"),
                      progress=False)


def test_bad_config_is_refused_by_name():
    with pytest.raises(ValueError, match="num_steps or time_budget_s"):
        configs.QUICK.replace(time_budget_s=None)
    with pytest.raises(ValueError, match="time_budget_s must be a positive"):
        configs.QUICK.replace(time_budget_s=0)


def test_format_duration():
    assert [format_duration(s) for s in (240, 90, 45, 300.0)] == ["4 min", "1.5 min", "45 s", "5 min"]
