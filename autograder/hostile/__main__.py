"""``python -m autograder.hostile OUT_DIR``: write the hostile batch (see the package docstring)."""

import sys

from autograder.hostile import main

sys.exit(main())
