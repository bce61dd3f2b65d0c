"""encoder and decoder, instructor side: the hidden sizes (other latent channel counts, three
stages and one, other head counts, batch size 2). Nothing is recorded: the verdicts compare the
student's outputs with each other (:mod:`cfgflow.checks.autoencoder`), and the probes draw their
inputs from the config's seed, which the judge replaces with its own in a graded cell.
"""

from __future__ import annotations

from cfgflow.checks import autoencoder as visible

# [latent_channels, hidden_channels, heads]: heads divides the attention's channels (the encoder's
# last hidden entry, the decoder's first); channel counts of at most 8 or multiples of 8 (GroupNorm)
ENCODER_CONFIG = {"seed": 13, "b": 2, "variants": [[3, [8, 8, 16], 4], [5, [16], 2]]}
DECODER_CONFIG = {"seed": 14, "b": 2, "variants": [[3, [16, 8, 8], 4], [5, [16], 2]]}

ENCODER = visible.ENCODER.replaced(ENCODER_CONFIG)
DECODER = visible.DECODER.replaced(DECODER_CONFIG)
