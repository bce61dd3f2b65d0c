"""nbgrader configuration of the course (a traitlets config file).

nbgrader reads it as ``nbgrader_config.py``; :mod:`autograder.release` and the grading
engine load it with :func:`load_config`. It can also be imported: ``c`` is then a plain
``traitlets.config.Config``.

Layout: sources in ``solutions/<assignment>/``, the student release in
``notebooks/<assignment>/`` (nbgrader's ``{root}/{release_directory}/{assignment_id}``), both
relative to the repository root. The gradebook database is NOT in the repository: callers
set ``CourseDirectory.db_url`` to a temporary or git-ignored path.
"""

import os

try:
    c = get_config()  # noqa: F821  (defined when traitlets loads this file)
except NameError:
    from traitlets.config import Config

    c = Config()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.root = REPO_ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.course_id = "cfgflow"
# Only the notebook travels with an assignment (no helper files in the assignment folders). The
# paired text source solutions/<id>/<id>.py holds the solutions: without "*.py" generate_assignment
# would copy it into the release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "*.py", "__pycache__", "feedback", "runs", "*.pt"]

# Per-cell execution limit (validate / autograde). Training cells run the TINY configuration
# while NBGRADER_EXECUTION is set, so every cell finishes in seconds; the limit only stops
# runaway student code (an infinite loop, a huge model).
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True

# Stubs that replace the ### BEGIN SOLUTION ... ### END SOLUTION regions.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# Release notebooks carry no outputs.
c.ClearOutput.enabled = True

# Graded test cells are judged outside the student's kernel (autograder/judge): nbgrader's Execute
# step becomes JudgedExecute, and every cell's output is capped for the feedback page.
import sys  # noqa: E402

if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
from autograder.judge.preprocessors import install  # noqa: E402

install(c)
