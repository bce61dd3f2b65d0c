"""``cfgflow_ref.plotting`` is :mod:`cfgflow.plotting` (the same module object), imported only
when asked for: it pulls matplotlib."""

import sys

from cfgflow import plotting

sys.modules[__name__] = plotting
