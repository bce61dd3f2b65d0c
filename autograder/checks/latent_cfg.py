"""PLACEHOLDER (instructor side)."""
from cfgflow.checks import latent_cfg as visible

LATENT_CFG_LOSS = visible.LATENT_CFG_LOSS
LATENT_SAMPLER = visible.LATENT_SAMPLER
