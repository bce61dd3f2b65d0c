"""PLACEHOLDER (replaced by the checks of encoder and decoder)."""
from ._core import CheckTable

ENCODER = CheckTable("encoder", [], {"seed": 0})
DECODER = CheckTable("decoder", [], {"seed": 0})
