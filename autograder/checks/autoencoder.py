"""PLACEHOLDER (instructor side)."""
from cfgflow.checks import autoencoder as visible

ENCODER = visible.ENCODER
DECODER = visible.DECODER
