"""cfgflow autograder: the check library that nbgrader test cells call (``autograder.checks``),
the catalogs of wrong and correct implementations that prove it (``autograder.catalog``), and
the grading engine (release, grade, pipeline, repair, sandbox).

Kept free of heavy imports so ``python -m autograder.<tool>`` starts fast.
"""
