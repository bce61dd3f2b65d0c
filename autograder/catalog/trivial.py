"""Trivial stubs: the student's constructor (a correct catalog alternative's), the graded method
returning something of the right shape that computes nothing. For every part: zeros, ones,
random noise, a learned constant broadcast to the output, and the input echoed back where its
shape is the output's. Each may earn at most the share of the part's ``shape`` sub-check
(:func:`autograder.catalog.shape_share`), visible, hidden and graded.

The stub calls nothing of the alternative's (test doubles would see the calls): the output's
shape comes from the constructor's arguments and the inputs (:data:`SHAPES`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import ENTRIES, Entry

METHOD = {  # the graded method; every other part: forward
    "cfg_loss": "get_train_loss", "reparameterize": "sample", "latent_cfg_loss": "get_train_loss",
    "latent_sampler": "sample"}
ECHO = ("mlp_field", "mha", "dit_layer", "dit", "mnist_dit")  # first input has the output's shape
PAIRED = ("encoder", "decoder")  # forward returns (mean, logvar): the stub's logvar is its learned scalar


def _same(c, a):
    return tuple(a[0].shape)


SHAPES = {  # (constructor's arguments, method's arguments) -> the output's shape
    "cfg_loss": lambda c, a: (),
    "mlp_field": _same,
    "fourier_encoder": lambda c, a: (a[0].numel(), c[0]),
    "patchifier": lambda c, a: (a[0].shape[0], (c[0] // c[1]) ** 2, c[2]),
    "mha": _same,
    "dit_layer": _same,
    "dit": _same,
    "depatchifier": lambda c, a: (a[0].shape[0], 1, c[0], c[0]),
    "mnist_dit": _same,
    "reparameterize": lambda c, a: tuple(c[0].shape),  # the mean's
    "vae_loss": lambda c, a: (),
    "encoder": lambda c, a: (a[0].shape[0], c[0], a[0].shape[2] >> len(c[1]), a[0].shape[3] >> len(c[1])),
    "decoder": lambda c, a: (a[0].shape[0], 1, a[0].shape[2] << len(c[1]), a[0].shape[3] << len(c[1])),
    "latent_cfg_loss": lambda c, a: (),
    "latent_sampler": lambda c, a: (a[0].shape[0], 1, 32, 32),  # y: (b,) -> images (b, 1, 32, 32)
}


def _ctor_args(part, args, kwargs):
    names = {"fourier_encoder": ("dim",), "patchifier": ("img_size", "patch_size", "dim"),
             "depatchifier": ("img_size", "patch_size", "dim"), "reparameterize": ("mean", "logvar"),
             "vae_loss": ("beta",), "encoder": ("latent_channels", "hidden_channels", "heads"),
             "decoder": ("latent_channels", "hidden_channels", "heads"),
             "latent_cfg_loss": ("path", "vae", "scale", "eta", "null_label", "eps"),
             "latent_sampler": ("model", "vae", "scale", "latent_shape", "null_label")}.get(part, ())
    return tuple(args) + tuple(kwargs[n] for n in names[len(args):] if n in kwargs)


def _base(part: str):
    from . import entries

    return entries(part, "alternative")[0].cls


def _stub(part: str, name: str, doc: str, make):
    base, method = _base(part), METHOD.get(part, "forward")

    def init(self, *args, **kwargs):
        base.__init__(self, *args, **kwargs)
        self._ctor = _ctor_args(part, args, kwargs)
        if isinstance(self, nn.Module):
            self.constant = nn.Parameter(torch.tensor(0.7))
        else:  # a trainer: a tensor that would receive gradients
            self.constant = torch.tensor(0.7, requires_grad=True)

    def graded(self, *args, **kwargs):
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
        out = torch.empty(SHAPES[part](self._ctor, args), device=device)  # the shape only
        out = make(self, out, args)
        return (out, self.constant) if part in PAIRED else out

    cls = type(f"{name}{base.__name__}", (base,), {"__init__": init, method: graded, "__doc__": doc,
                                                   "__module__": __name__})
    ENTRIES.append(Entry(part, cls.__name__, "trivial", cls, None, doc))
    return cls


KINDS = {
    "Zeros": ("right-shaped zeros", lambda self, out, args: torch.zeros_like(out).requires_grad_()),
    "Ones": ("right-shaped ones", lambda self, out, args: torch.ones_like(out).requires_grad_()),
    "Noise": ("right-shaped uniform noise", lambda self, out, args: torch.rand_like(out).requires_grad_()),
    "Constant": ("a learned constant broadcast to the output's shape",
                 lambda self, out, args: torch.zeros_like(out) + self.constant),
}


def _register():
    from cfgflow.course import PARTS

    for part in PARTS:
        for name, (doc, make) in KINDS.items():
            _stub(part, name, doc, make)
        if part in ECHO:
            _stub(part, "Echo", "the first input echoed back", lambda self, out, args: args[0])


_register()
