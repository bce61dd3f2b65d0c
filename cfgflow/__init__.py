"""cfgflow: the given code of the cfgflow course (flow matching with classifier-free
guidance and a diffusion transformer on MNIST), the package students install.

Modules: distributions, paths, simulation (ODE/SDE solvers and CFG sampling), training
(the ``Trainer`` base with EMA and schedules), models (``MLP``, ``ConditionalVectorField``),
configs (the training configurations of Notebook 2), data (MNIST with an offline fallback),
metrics (the MNIST evaluator), plotting. The graded parts are the student's to write.
"""

from .distributions import GMM, IsotropicGaussian, LabeledSampleable, Sampleable
from .models import MLP, ConditionalVectorField
from .paths import (
    Alpha,
    Beta,
    ConditionalProbabilityPath,
    GaussianConditionalProbabilityPath,
    LinearAlpha,
    LinearBeta,
)
from .simulation import (
    ODE,
    SDE,
    CFGVectorFieldODE,
    EulerMaruyamaSimulator,
    EulerSimulator,
    HeunSimulator,
    Simulator,
    record_every,
    sample_cfg,
)
from .training import EMA, SampleGridCheckpoints, Trainer, model_size_b, with_sample_grids

__version__ = "0.1.0"

__all__ = [
    "Alpha", "Beta", "CFGVectorFieldODE", "ConditionalProbabilityPath", "ConditionalVectorField",
    "EMA", "EulerMaruyamaSimulator", "EulerSimulator", "GMM", "GaussianConditionalProbabilityPath",
    "HeunSimulator", "IsotropicGaussian", "LabeledSampleable", "LinearAlpha", "LinearBeta", "MLP",
    "ODE", "SDE", "SampleGridCheckpoints", "Sampleable", "Simulator", "Trainer", "model_size_b",
    "record_every", "sample_cfg", "with_sample_grids",
]
