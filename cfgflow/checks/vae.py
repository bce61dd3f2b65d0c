"""PLACEHOLDER (replaced by the checks of reparameterize and vae_loss)."""
from ._core import CheckTable

REPARAMETERIZE = CheckTable("reparameterize", [], {"seed": 0})
VAE_LOSS = CheckTable("vae_loss", [], {"seed": 0})
