"""The judge: where a graded score is born, outside the student's kernel.

A grading kernel runs the student's code; nothing in it can vouch for a grade. The judge runs in
the process that executes the notebook (nbgrader's, with the engine or without it), holds the
reference and the hidden configurations, and talks to the kernel over a Unix socket
(:mod:`.server`): for each graded test cell, while that cell runs and once, it sends the inputs
it chose, receives the probes' observations (data only: :mod:`cfgflow.checks._wire`), computes
the expectations with the reference, the verdicts and the points, and records them. The cell's
output is then replaced by the judge's record (:mod:`.preprocessors`), so nbgrader's gradebook
and the feedback page show the judge's words and points, not what the kernel printed.
"""

from autograder.judge.server import CellRecord, CellSpec, Judge

__all__ = ["Judge", "CellSpec", "CellRecord"]
