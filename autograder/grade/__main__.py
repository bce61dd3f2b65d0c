"""``python -m autograder.grade ...`` (see :mod:`autograder.grade.cli`)."""

import sys

from autograder.grade.cli import main

sys.exit(main())
