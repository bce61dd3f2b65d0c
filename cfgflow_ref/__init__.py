"""cfgflow_ref: the complete reference package of the cfgflow course (instructor side).

It holds the reference implementations of the graded parts (``CFGTrainer``, the MLP field,
the DiT and its parts) and re-exports the given code of the student package :mod:`cfgflow`,
so ``from cfgflow_ref import X`` works for every X of either. The given modules are the
same module objects under both names (``cfgflow_ref.data is cfgflow.data``): patching one
patches the other. Never shipped to students (docs/grading.md, "Deployment").
"""

import sys

import cfgflow
from cfgflow import configs, data, distributions, metrics, paths, plotting, simulation
from cfgflow.distributions import GMM, IsotropicGaussian, LabeledSampleable, Sampleable
from cfgflow.paths import (
    Alpha,
    Beta,
    ConditionalProbabilityPath,
    GaussianConditionalProbabilityPath,
    LinearAlpha,
    LinearBeta,
)
from cfgflow.simulation import (
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

from .models import (
    MHA,
    MLP,
    ConditionalVectorField,
    Depatchifier,
    DiffusionTransformer,
    DiffusionTransformerLayer,
    FourierEncoder,
    MLPConditionalVectorField,
    MNISTDiffusionTransformer,
    Patchifier,
    attention,
)
from .latent import (
    AttentionBlock,
    Decoder,
    DiagonalGaussian,
    Encoder,
    LatentCFGSampler,
    LatentCFGTrainer,
    ResidualBlock,
    VAELoss,
)
from .training import (
    EMA,
    CFGTrainer,
    MNISTCFGTrainer,
    SampleGridCheckpoints,
    Trainer,
    model_size_b,
    with_sample_grids,
)

# The given modules, importable under their old names (``cfgflow_ref.data``, ...).
for _module in (configs, data, distributions, metrics, paths, plotting, simulation):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module

__version__ = cfgflow.__version__

__all__ = [
    "AttentionBlock", "Decoder", "DiagonalGaussian", "Encoder", "LatentCFGSampler", "LatentCFGTrainer",
    "ResidualBlock", "VAELoss", "Alpha", "Beta", "CFGTrainer", "CFGVectorFieldODE", "ConditionalProbabilityPath",
    "ConditionalVectorField", "Depatchifier", "DiffusionTransformer",
    "DiffusionTransformerLayer", "EMA", "EulerMaruyamaSimulator", "EulerSimulator", "FourierEncoder",
    "GMM", "GaussianConditionalProbabilityPath", "HeunSimulator", "IsotropicGaussian",
    "LabeledSampleable", "LinearAlpha", "LinearBeta", "MHA", "MLP", "MLPConditionalVectorField",
    "MNISTCFGTrainer", "MNISTDiffusionTransformer", "ODE", "Patchifier", "SDE", "Sampleable",
    "SampleGridCheckpoints", "Simulator", "Trainer", "attention", "model_size_b", "record_every",
    "sample_cfg", "with_sample_grids",
]
