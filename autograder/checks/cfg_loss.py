"""cfg_loss, instructor side: the hidden checks (other sizes and seeds; the loss recomputed from
what the recording path and model received) and the recording of the visible checks' data.

The table, the test doubles, the property sub-checks and the messages are the student runtime's
(:mod:`cfgflow.checks.cfg_loss`); only ``loss`` is computed here.
"""

from __future__ import annotations

import torch

from cfgflow.checks import cfg_loss as visible
from cfgflow.checks._core import Fail, close

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


def _loss_value(ctx):
    loss, log, call = visible._run(ctx, b=64)
    z0, ts, xs = visible.check_inputs(loss, log, call)
    tt = ts.reshape(-1, 1)
    um = call[3]
    values = losses(um, visible._field(xs, z0, tt), xs, z0, lambda a, b: visible._field(a, b, tt))
    got = loss.reshape(())
    if close(got, values["ok"].reshape(()), 1e-4):
        return
    for name, msg in visible.WRONG_LOSSES:
        if close(got, values[name].reshape(()), 1e-4):
            raise Fail(msg.format(d=um.shape[-1]))
    raise Fail(visible.final_message(got, values["ok"]))


PART = visible.PART.replaced(CONFIG, loss=_loss_value)


def record():
    """Recorded data z, y, path noise and model shift; the reference trainer's loss with the
    deterministic doubles, and the values of the known-wrong losses."""
    import cfgflow_ref

    cfg, b = visible.CONFIG, visible.LOSS_B
    g = torch.Generator().manual_seed(1000)
    y = torch.randint(0, cfg["classes"], (b,), generator=g)
    tensors = {"z": torch.randn(b, cfg["dim"], generator=g) + y[:, None].float(), "y": y.double(),
               "noise": torch.randn(b, cfg["dim"], generator=g),
               "shift": torch.randn(cfg["dim"], generator=g)}
    data = {"config": cfg, "values": {}, "tensors": tensors}
    loss, log, call = visible.fixed_run(cfgflow_ref.CFGTrainer, cfg, data)
    z0, _, xs = visible.check_inputs(loss, log, call)
    with torch.no_grad():
        values = {k: float(v) for k, v in losses(call[3].double(), (z0 - xs).double(), xs.double(),
                                                 z0.double(), lambda a, b: b - a).items()}
    if abs(float(loss.detach()) - values["ok"]) > 1e-5 * (1 + values["ok"]):
        raise RuntimeError("cfgflow_ref.CFGTrainer disagrees with the recorded loss")
    return cfg, values, tensors
