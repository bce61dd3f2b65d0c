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
* :class:`VerifySignatures` -- right after ``SaveAutoGrades``: a test cell that scored points
  without a line signed with the submission's key (cfgflow/checks/_signing.py) gets
  ``manual_score = 0`` in the gradebook, so nbgrader's totals and feedback follow.
* :class:`FeedbackBanner` -- in the feedback chain: hands the engine's notes (status, points,
  repairs, tampering, time-outs) to the ``cfgflow_feedback.html.j2`` page template, which shows them at
  the top of the notebook (templates/feedback/, extending nbgrader's ``feedback`` template).

Each writes what it did as one JSON line to the worker's ``report`` file (:func:`read_report`),
which the worker turns into the student's notes.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Unicode

from autograder.grade.config import CHECKS_MODULE, FEEDBACK_TEMPLATE, TEMPLATES

STEP_REPAIR, STEP_SIGNATURES = "repair", "signatures"


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


def _stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def signing_module():
    """``cfgflow.checks._signing`` (standard library only), loaded from its file: importing it
    through its package would run ``cfgflow/checks/__init__.py`` and with it torch, 2 s of the
    worker's CPU per submission for a module that needs neither."""
    import importlib.util
    import sys

    name = "_cfgflow_grade_signing"
    if name not in sys.modules:
        top, _, rest = CHECKS_MODULE.partition(".")
        spec = importlib.util.find_spec(top)  # locates the package without importing it
        path = Path(spec.submodule_search_locations[0], *rest.split("."), "_signing.py")
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


class VerifySignatures(NbGraderPreprocessor):
    """Zero every test cell that scored points without a matching signed check line.

    For each test cell that calls ``check`` (``check_cells``) and got an auto score > 0, its stdout
    in the executed notebook must hold a line signed with ``key`` for one of the cell's parts, with
    the cell's points and an earned value equal to the score (nbgrader caps it at the points).
    Otherwise the genuine check did not produce that score (it was replaced or did not run): the
    grade gets ``manual_score = 0``. Reports ``{"{notebook}/{grade_id}": auto_score}``.
    """

    key = Unicode("", help="the submission's grading key (hex)").tag(config=True)
    check_cells = Dict(help="notebook name -> {grade_id: [part names]}").tag(config=True)
    report = Unicode("", help="JSON-lines file the zeroed cells are appended to").tag(config=True)

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        _signing = signing_module()
        info = resources["nbgrader"]
        cells = self.check_cells.get(info["notebook"])
        if not cells or not self.key:
            return nb, resources
        outputs = {}
        for cell in nb.cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in cells:
                outputs[gid] = _stdout_of(cell)
        tampered = {}
        with Gradebook(info["db_url"]) as gb:
            sub = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            for g in sub.grades:
                if g.name not in cells or not g.auto_score or g.auto_score <= 0:
                    continue
                lines = _signing.valid_lines(outputs.get(g.name, ""), self.key.encode())
                if not _signing.matches(lines, float(g.auto_score), float(g.max_score), set(cells[g.name])):
                    tampered[f"{info['notebook']}/{g.name}"] = float(g.auto_score)
                    g.manual_score = 0.0
                    g.needs_manual_grade = False
            gb.db.commit()
        _report(self.report, STEP_SIGNATURES, info["notebook"], tampered=tampered)
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


def configure(c, cfg, *, report: str, source_notebooks: dict, check_cells: dict | None = None,
              key: str | None = None, banner: dict | None = None) -> None:
    """Insert the steps into nbgrader's chains in the traitlets config ``c`` (``cfg``: the
    :class:`~autograder.grade.config.GradeConfig`; repair only with ``cfg.repair``, the signature
    check only with a ``key``, the banner template only with a ``banner``)."""
    from nbgrader.converters import Autograde, GenerateFeedback
    from nbgrader.preprocessors import SaveAutoGrades

    sanitize = list(Autograde.class_traits()["sanitize_preprocessors"].default())
    if cfg.repair:
        sanitize.insert(0, RepairMetadata)
        c.RepairMetadata.source_notebooks = {k: str(v) for k, v in source_notebooks.items()}
        c.RepairMetadata.report = report
    autograde = list(Autograde.class_traits()["autograde_preprocessors"].default())
    if key:
        autograde.insert(autograde.index(SaveAutoGrades) + 1, VerifySignatures)
        c.VerifySignatures.key = key
        c.VerifySignatures.check_cells = check_cells or {}
        c.VerifySignatures.report = report
    c.Autograde.sanitize_preprocessors = sanitize
    c.Autograde.autograde_preprocessors = autograde
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
