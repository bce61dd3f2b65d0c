"""PLACEHOLDER (instructor side)."""
from cfgflow.checks import vae as visible

REPARAMETERIZE = visible.REPARAMETERIZE
VAE_LOSS = visible.VAE_LOSS
