"""cfgflow_ref: the complete reference package of the cfgflow course (instructor side).

It holds the reference implementations of the graded parts (``CFGTrainer``, the MLP field,
the DiT and its parts, the VAE's parts, the latent CFG trainer and sampler) and re-exports the
given code of the student package :mod:`cfgflow`, so ``from cfgflow_ref import X`` works for
every X of either. The given modules are the same module objects under both names
(``cfgflow_ref.data is cfgflow.data``): patching one patches the other. Never shipped to
students (docs/grading.md, "Deployment").

The names are imported on first use (PEP 562, the table :data:`_EXPORTS`): the judge's recorders
need ``cfgflow_ref.MHA``, not matplotlib (``cfgflow.plotting``).
"""

import importlib
import sys

import cfgflow
from cfgflow import configs, data, distributions, metrics, paths, simulation

# The given modules, importable under their old names (``cfgflow_ref.data``, ...); plotting is
# heavy and comes through its own module file (cfgflow_ref/plotting.py) when first imported.
for _module in (configs, data, distributions, metrics, paths, simulation):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module

# module -> the names it exports here (a name is imported with its module on first use)
_EXPORTS = {
    "cfgflow.distributions": ("GMM", "IsotropicGaussian", "LabeledSampleable", "Sampleable"),
    "cfgflow.paths": ("Alpha", "Beta", "ConditionalProbabilityPath", "GaussianConditionalProbabilityPath",
                      "LinearAlpha", "LinearBeta"),
    "cfgflow.simulation": ("ODE", "SDE", "CFGVectorFieldODE", "EulerMaruyamaSimulator", "EulerSimulator",
                           "HeunSimulator", "Simulator", "record_every", "sample_cfg"),
    ".models": ("MHA", "MLP", "ConditionalVectorField", "Depatchifier", "DiffusionTransformer",
                "DiffusionTransformerLayer", "FourierEncoder", "MLPConditionalVectorField",
                "MNISTDiffusionTransformer", "Patchifier", "attention"),
    ".latent": ("AttentionBlock", "Decoder", "DiagonalGaussian", "Encoder", "LatentCFGSampler",
                "LatentCFGTrainer", "ResidualBlock", "VAELoss"),
    ".training": ("EMA", "CFGTrainer", "MNISTCFGTrainer", "SampleGridCheckpoints", "Trainer", "model_size_b",
                  "with_sample_grids"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__version__ = cfgflow.__version__
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    elif name == "plotting":
        value = importlib.import_module(f"{__name__}.plotting")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE) | {"plotting"})
