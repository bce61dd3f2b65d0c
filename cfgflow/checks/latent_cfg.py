"""PLACEHOLDER (replaced by the checks of latent_cfg_loss and latent_sampler)."""
from ._core import CheckTable

LATENT_CFG_LOSS = CheckTable("latent_cfg_loss", [], {"seed": 0})
LATENT_SAMPLER = CheckTable("latent_sampler", [], {"seed": 0})
