"""The engine's steps inside nbgrader's conversion chains, one step one preprocessor.

nbgrader 0.9's ``Autograde`` converter runs every submitted notebook through two chains:
``sanitize_preprocessors`` (submitted -> autograded folder: ClearOutput, DeduplicateIds, ...,
OverwriteCells restoring the instructor's test cells) and ``autograde_preprocessors`` (Execute,
IgnorePattern, ..., SaveAutoGrades writing the scores to the gradebook). ``GenerateFeedback``
renders the autograded notebook with ``preprocessors`` and an nbconvert template. :func:`configure`
inserts ours into those lists through the traitlets config:

* :class:`RepairMetadata` -- first of the sanitize chain: restores lost or duplicated nbgrader
  metadata from the instructor's source notebook (:func:`autograder.repair.repair_submission`)
  before nbgrader looks at any grade id.
* :class:`~autograder.judge.preprocessors.JudgedExecute` -- in place of nbgrader's ``Execute``:
  the judge beside the kernel scores every graded test cell (autograder/judge), followed by
  :class:`~autograder.judge.preprocessors.CapOutputs`.
* :class:`FeedbackBanner` -- in the feedback chain: hands the engine's notes (status, points,
  repairs, tampering, time-outs) to the ``cfgflow_feedback.html.j2`` page template, which shows them at
  the top of the notebook (templates/feedback/, extending nbgrader's ``feedback`` template).

Each writes what it did as one JSON line to the worker's ``report`` file (:func:`read_report`),
which the worker turns into the student's notes; the judge writes its records to ``records``.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Unicode

from autograder.grade.config import FEEDBACK_TEMPLATE, TEMPLATES

STEP_REPAIR = "repair"


def _report(path: str, step: str, notebook: str, **data) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "notebook": notebook, **data}) + "\n")


def read_report(path: Path) -> list[dict]:
    """The records the steps wrote, in order (``[]`` when none ran)."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


class RepairMetadata(NbGraderPreprocessor):
    """Restore the submission's nbgrader metadata from the instructor's source notebook."""

    source_notebooks = Dict(help="notebook name -> path of its source notebook").tag(config=True)
    report = Unicode("", help="JSON-lines file the repair notes are appended to").tag(config=True)

    def preprocess(self, nb, resources):
        import nbformat

        from autograder.repair import repair_submission

        name = resources["nbgrader"]["notebook"]
        if name not in self.source_notebooks:
            return nb, resources
        try:
            source_nb = nbformat.read(self.source_notebooks[name], as_version=4)
            nb, notes = repair_submission(nb, source_nb)
            notes = [str(n) for n in notes]
        except Exception as exc:  # a repair bug must not cost the submission: graded as is
            notes = [f"metadata repair failed ({type(exc).__name__}: {exc}); graded as submitted"]
        _report(self.report, STEP_REPAIR, name, notes=notes)
        return nb, resources


class FeedbackBanner(NbGraderPreprocessor):
    """Give the feedback template the engine's box: ``resources['cfgflow_banner']``."""

    banner = Dict(help="assignment, total, max_total, status, reason, notes (banner_data)").tag(config=True)

    def preprocess(self, nb, resources):
        resources["cfgflow_banner"] = dict(self.banner)
        return nb, resources


def template_filters() -> dict:
    """Jinja filters of the feedback templates (the nbconvert page and the plain page)."""
    return {"escape_html": html.escape}


def nbgrader_template_dir() -> str:
    """nbgrader's own templates (its ``feedback`` template, which ours extends)."""
    import nbgrader

    return os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader",
                        "templates")


def configure(c, cfg, *, report: str, source_notebooks: dict, records: str = "", socket_dir: str = "",
              service: str = "", banner: dict | None = None) -> None:
    """Insert the steps into nbgrader's chains in the traitlets config ``c`` (``cfg``: the
    :class:`~autograder.grade.config.GradeConfig`; repair only with ``cfg.repair``, the banner
    template only with a ``banner``). The judge (``records``: its JSON-lines file; ``socket_dir``:
    a folder the kernel sees; ``service``: the engine's planner, :mod:`autograder.judge.planner`)
    always runs."""
    from nbgrader.converters import Autograde, GenerateFeedback

    from autograder.judge.preprocessors import install

    sanitize = list(Autograde.class_traits()["sanitize_preprocessors"].default())
    if cfg.repair:
        sanitize.insert(0, RepairMetadata)
        c.RepairMetadata.source_notebooks = {k: str(v) for k, v in source_notebooks.items()}
        c.RepairMetadata.report = report
    c.Autograde.sanitize_preprocessors = sanitize
    install(c)
    c.JudgedExecute.source_notebooks = {k: str(v) for k, v in source_notebooks.items()}
    c.JudgedExecute.records = records
    c.JudgedExecute.socket_dir = socket_dir
    c.JudgedExecute.service = service
    if banner is not None:
        c.GenerateFeedback.preprocessors = [*GenerateFeedback.class_traits()["preprocessors"].default(),
                                           FeedbackBanner]
        c.FeedbackBanner.banner = banner
        # nbgrader's template is "feedback": our folder of that name (found first) adds the page
        # FEEDBACK_TEMPLATE, which extends nbgrader's feedback/index.html.j2
        c.HTMLExporter.template_name = "feedback"
        c.HTMLExporter.template_file = FEEDBACK_TEMPLATE
        c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), nbgrader_template_dir()]
        c.HTMLExporter.filters = template_filters()
