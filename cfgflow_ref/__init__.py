"""cfgflow_ref: the reference implementation of the cfgflow course (flow matching with
classifier-free guidance and a diffusion transformer on MNIST).

Modules mirror the notebooks' parts: distributions, paths, simulation, training, models,
data, metrics, plotting.
"""

from .distributions import GMM, IsotropicGaussian, LabeledSampleable, Sampleable
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
from .training import EMA, CFGTrainer, MNISTCFGTrainer, Trainer, model_size_b

__version__ = "0.1.0"

__all__ = [
    "Alpha", "Beta", "CFGTrainer", "CFGVectorFieldODE", "ConditionalProbabilityPath",
    "ConditionalVectorField", "Depatchifier", "DiffusionTransformer",
    "DiffusionTransformerLayer", "EMA", "EulerMaruyamaSimulator", "EulerSimulator", "FourierEncoder",
    "GMM", "GaussianConditionalProbabilityPath", "HeunSimulator", "IsotropicGaussian",
    "LabeledSampleable", "LinearAlpha", "LinearBeta", "MHA", "MLP", "MLPConditionalVectorField",
    "MNISTCFGTrainer", "MNISTDiffusionTransformer", "ODE", "Patchifier", "SDE", "Sampleable",
    "Simulator", "Trainer", "attention", "model_size_b", "record_every", "sample_cfg",
]
