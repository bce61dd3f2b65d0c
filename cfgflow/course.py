"""The course manifest: assignments, their graded parts and the points of each part.

Everything that lists the parts reads this module: the visible checks (:mod:`cfgflow.checks`)
and the hidden checks (:mod:`autograder.checks`) load each part's check table from
:attr:`Part.module`, the catalogs (:mod:`autograder.catalog`) likewise, the release, the
pipeline and the grading engine take the assignments from :data:`ASSIGNMENTS`, the tests
parametrise over it and ``python -m autograder.docs`` writes docs/CONTRACTS.md from it. A part
reaches the grader through its cells' metadata (``"cfgflow": {"part": NAME}`` next to
``"nbgrader"`` on the solution cell and both test cells); tests/test_release.py checks that the
sources, their points and the intro's points table agree with this file.

It is a Python module, not TOML: the student package imports it (the visible checks need the
part list) on Python 3.9 and 3.10 too, where there is no ``tomllib``, and it is shipped with
the student package like any other module (it holds names and points only, nothing a student
may not read). Adding a part: docs/authoring.md, "Adding a part".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class Part:
    name: str            # check("<name>", ...) in the test cells and their "cfgflow" metadata
    question: str        # the intro table's first column, e.g. "Q1"
    what: str            # the intro table's second column (markdown)
    student_class: str   # the class the student writes (the reference one is refused)
    visible: int         # points of the visible test cell
    hidden: int          # points of the hidden test cell
    module: str          # cfgflow.checks.<module>, autograder.checks.<module>, autograder.catalog.<module>
    table: str = "PART"  # the attribute of the check modules that holds the part's table
    also_refused: Tuple[str, ...] = ()  # reference subclasses of student_class, refused as well

    @property
    def points(self) -> int:
        return self.visible + self.hidden


@dataclass(frozen=True)
class Assignment:
    id: str              # solutions/<id>/<id>.py, notebooks/<id>/<id>.ipynb
    parts: Tuple[Part, ...]

    @property
    def points(self) -> int:
        return sum(p.points for p in self.parts)


ASSIGNMENTS: Dict[str, Assignment] = {a.id: a for a in (
    Assignment("01_cfg", (
        Part("cfg_loss", "Q1", "`CFGTrainer.get_train_loss`: the CFG flow-matching loss", "CFGTrainer",
             4, 6, "cfg_loss", also_refused=("MNISTCFGTrainer",)),
        Part("mlp_field", "Q2", "`MLPConditionalVectorField.forward`", "MLPConditionalVectorField",
             2, 3, "mlp_field"),
    )),
    Assignment("02_dit", (
        Part("fourier_encoder", "Q1", "`FourierEncoder`: time features", "FourierEncoder", 2, 3, "fourier"),
        Part("patchifier", "Q2", "`Patchifier`: image to tokens", "Patchifier", 2, 3, "patches",
             "PATCHIFIER"),
        Part("mha", "Q3", "`MHA`: multi-head self-attention", "MHA", 3, 5, "attention"),
        Part("dit_layer", "Q4", "`DiffusionTransformerLayer`: adaLN-Zero block", "DiffusionTransformerLayer",
             3, 5, "dit", "DIT_LAYER"),
        Part("dit", "Q5", "`DiffusionTransformer`: positions + layers", "DiffusionTransformer", 2, 3,
             "dit", "DIT"),
        Part("depatchifier", "Q6", "`Depatchifier`: tokens to image", "Depatchifier", 2, 3, "patches",
             "DEPATCHIFIER"),
        Part("mnist_dit", "Q7", "`MNISTDiffusionTransformer`: the whole model", "MNISTDiffusionTransformer",
             4, 5, "dit", "MNIST_DIT"),
    )),
    Assignment("03_latent", (
        Part("reparameterize", "Q1", "`DiagonalGaussian.sample`: the reparameterised sample",
             "DiagonalGaussian", 2, 3, "vae", "REPARAMETERIZE"),
        Part("vae_loss", "Q2", "`VAELoss`: the beta-weighted negative ELBO", "VAELoss", 3, 5, "vae",
             "VAE_LOSS"),
        Part("encoder", "Q3", "`Encoder`: image to latent mean and log-variance", "Encoder", 3, 4,
             "autoencoder", "ENCODER"),
        Part("decoder", "Q4", "`Decoder`: latent to image mean and log-variance", "Decoder", 3, 4,
             "autoencoder", "DECODER"),
        Part("latent_cfg_loss", "Q5", "`LatentCFGTrainer.get_train_loss`: CFG in the latent space",
             "LatentCFGTrainer", 3, 5, "latent_cfg", "LATENT_CFG_LOSS"),
        Part("latent_sampler", "Q6", "`LatentCFGSampler.sample`: guided latents, decoded", "LatentCFGSampler",
             2, 3, "latent_cfg", "LATENT_SAMPLER"),
    )),
)}

PARTS: Dict[str, Part] = {p.name: p for a in ASSIGNMENTS.values() for p in a.parts}
"""Every part, in notebook order (part names are unique across assignments)."""

REFERENCE_CLASSES: Tuple[str, ...] = tuple(
    name for p in PARTS.values() for name in (p.student_class, *p.also_refused))
"""The graded reference classes: a submission may not be, subclass or contain one of them."""

META_KEY = "cfgflow"
"""Cell metadata key (next to ``nbgrader``) of the part a cell belongs to: ``{"part": NAME}``."""

JUDGE_ENV = "CFGFLOW_JUDGE"
"""Names the judge's Unix socket in a graded kernel (:mod:`cfgflow.checks`; set by the grader's
``JudgedExecute``, which reads it here: this module imports nothing heavy)."""


def cell_part(cell) -> str:
    """The part a notebook cell belongs to (its ``cfgflow.part`` metadata), or ``""``."""
    return str(cell.get("metadata", {}).get(META_KEY, {}).get("part", ""))


def tables(package: str) -> Dict[str, object]:
    """``{part: table}``: each part's :attr:`Part.table` from ``<package>.<module>`` (the modules
    are imported here), checked to carry the part's name."""
    found = {}
    for p in PARTS.values():
        table = getattr(importlib.import_module(f"{package}.{p.module}"), p.table)
        if getattr(table, "name", None) != p.name:
            raise ImportError(f"{package}.{p.module}.{p.table} is part {getattr(table, 'name', None)!r}, "
                              f"but cfgflow/course.py names it {p.name!r}")
        found[p.name] = table
    return found
