"""cfg_loss, instructor side: the hidden sizes and the recorder (the judge's data z, y, path noise
and model shift for the loss sub-check's deterministic doubles, the reference trainer's loss with
them and the values of the known-wrong losses named in
:data:`cfgflow.checks.cfg_loss.WRONG_LOSSES`). The table, the test doubles, probes, verdicts and
messages are the student runtime's (:mod:`cfgflow.checks.cfg_loss`).
"""

from __future__ import annotations

import torch

from cfgflow.checks import cfg_loss as visible

CONFIG = {"seed": 10, "eta": 0.4, "null_label": 5, "classes": 5, "eps": 0.05, "b": 3000, "dim": 3}


def losses(um, target, xs, z0, field):
    """The correct loss (``"ok"``) and the known-wrong ones (named as in ``visible.WRONG_LOSSES``)
    of model output ``um`` against ``target``; ``field(x, z)``: the path's conditional field."""
    return {
        "ok": ((um - target) ** 2).mean(),
        "x_target": ((um - field(xs, xs)) ** 2).mean(),
        "z_target": ((um - field(z0, z0)) ** 2).mean(),
        "sum": ((um - target) ** 2).sum(),
        "sum_dims": ((um - target) ** 2).sum(-1).mean(),
        "norm": (um - target).norm(),
        "norm2_b": (um - target).norm() ** 2 / um.shape[0],
        "abs": ((um - target).abs()).mean(),
        "rmse": (um - target).pow(2).mean().sqrt(),
    }


def record(cfg, seed):
    """Data z ~ N(y, 1) of ``LOSS_B`` samples in ``cfg["dim"]`` dims with labels y in
    ``[0, cfg["classes"])``, path noise and model shift drawn with ``seed``; the reference
    trainer's loss with the deterministic doubles, and the values of the known-wrong losses."""
    import cfgflow_ref

    b = visible.LOSS_B
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, cfg["classes"], (b,), generator=g)
    tensors = {"z": torch.randn(b, cfg["dim"], generator=g) + y[:, None].float(), "y": y.double(),
               "noise": torch.randn(b, cfg["dim"], generator=g),
               "shift": torch.randn(cfg["dim"], generator=g)}
    loss, log, call = visible.fixed_run(cfgflow_ref.CFGTrainer, cfg, tensors["z"].clone(), y.clone(),
                                        tensors["noise"].clone(), tensors["shift"].clone())
    obs = visible.inputs_obs(loss, log, call)
    visible.check_inputs(obs)
    z0, xs = obs["z"], obs["sample"]["x"]
    with torch.no_grad():
        values = {k: float(v) for k, v in losses(call[3].double(), (z0 - xs).double(), xs.double(),
                                                 z0.double(), lambda a, b: b - a).items()}
    if abs(float(loss.detach()) - values["ok"]) > 1e-5 * (1 + values["ok"]):
        raise RuntimeError("cfgflow_ref.CFGTrainer disagrees with the recorded loss")
    return values, tensors


PART = visible.PART.replaced(CONFIG, record=record)
