"""Parallel batch autograding with nbgrader, each submission in its own sandbox.

``python -m autograder.grade SUBMISSIONS_DIR --assignment 01_cfg --workers N --out OUTDIR``

The package, by concern (docs/grading.md has the instructor's view):

* :mod:`~autograder.grade.config` -- :class:`GradeConfig`, the one config object: the CLI options
  of this command and of ``python -m autograder.pipeline`` are generated from its fields, and the
  traitlets config handed to nbgrader derives from it.
* :mod:`~autograder.grade.engine` -- the template course (``nbgrader generate_assignment`` once),
  one private course copy and one sandboxed worker process per submission, ``N`` at once.
* :mod:`~autograder.grade.worker` -- the worker: ``nbgrader autograde`` and ``generate_feedback``
  for one student.
* :mod:`~autograder.grade.preprocessors` -- the engine's steps inside nbgrader's chains: metadata
  repair, the judge (:mod:`autograder.judge`), the feedback banner (rendered by the nbconvert
  template ``templates/feedback/cfgflow_feedback.html.j2``).
* :mod:`~autograder.grade.records` -- each submission's record, kept when its worker ends (a rerun
  grades only what is missing or changed).
* :mod:`~autograder.grade.outputs` -- results, ``grades.csv``, plain feedback pages, score table.
* :mod:`~autograder.grade.merge` -- the batch gradebook, and joining ``--shard`` runs (``--merge``).
* :mod:`~autograder.grade.cli` -- the command line.

A submission that cannot be read, crashes the grader, times out or is killed for memory still gets
a row: 0 for every cell not graded and a ``status`` / ``reason``. Results do not depend on the
number of workers (rows sorted by student; each grading is independent).
"""

# The public names, imported on first use (PEP 562): a worker process imports only what it runs
# (``python -m autograder.grade --worker-job`` must not pay for the engine's imports).
_EXPORTS = {
    "cli": ("main",),
    "config": (
        "CHECKS_MODULE",
        "COURSE_ID",
        "DEFAULT_IGNORE_PATTERN",
        "DEFAULT_SOURCE",
        "GUARD_MODULE",
        "ISOLATION_BWRAP",
        "ISOLATION_NONE",
        "JUDGE_PACKAGES",
        "REPO_ROOT",
        "SANDBOX_KERNEL",
        "STATUS_OK",
        "Status",
        "IsolationRequired",
        "GradeConfig",
        "add_config_options",
        "config_from_args",
        "parse_shard",
        "shard_students",
    ),
    "engine": (
        "NO_ISOLATION_WARNING",
        "Sources",
        "build_template",
        "find_submissions",
        "grade_one",
        "grade_submissions",
        "sandbox_binds",
        "source_notebooks",
        "write_outputs",
    ),
    "merge": ("merge_gradebook", "merge_shards"),
    "outputs": (
        "CellInfo",
        "StudentResult",
        "csv_columns",
        "plain_feedback_page",
        "score_table",
        "write_csv",
    ),
    "worker": ("TAMPER_NOTE",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
