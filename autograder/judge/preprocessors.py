"""The judge's steps in nbgrader's autograde chain (the engine's and plain nbgrader's alike).

* :class:`JudgedExecute` replaces nbgrader's ``Execute``: it starts a :class:`~.server.Judge`,
  tells the kernel where it is (:data:`cfgflow.checks.JUDGE_ENV`), runs the notebook, opens the
  judge for each graded test cell while that cell runs, and then replaces the cell's outputs
  with the judge's record: its lines on stdout and its points as the cell's value (an error
  output when it gave none). nbgrader's ``SaveAutoGrades`` then reads the judge's points.
* :class:`CapOutputs` keeps what a feedback page can hold of any cell.

Which cells are judged, with which part, mode and points, comes from the instructor's source
notebook (``source_notebooks``; by default the course's source folder), never from the
submission.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Dict, Integer, Unicode

from autograder.judge.planner import Remote
from autograder.judge.server import CellRecord, CellSpec, Judge

HIDDEN_MARKER = "BEGIN HIDDEN TESTS"


def _course():
    """:mod:`cfgflow.course` (names and points only), loaded from its file when the package is not
    imported: importing ``cfgflow`` imports torch, which a grading worker does without."""
    import importlib.util
    import sys

    if "cfgflow.course" in sys.modules:
        return sys.modules["cfgflow.course"]
    folder = importlib.util.find_spec("cfgflow").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("cfgflow.course", os.path.join(folder, "course.py"))
    module = sys.modules["cfgflow.course"] = importlib.util.module_from_spec(spec)  # the same module
    spec.loader.exec_module(module)  # when the package is imported later
    return module


def graded_cells(source_nb) -> dict:
    """``grade_id -> CellSpec`` of the test cells of an instructor's source notebook that name a
    part (``cfgflow.part`` metadata): graded code cells that are not solution cells."""
    cell_part = _course().cell_part
    found = {}
    for cell in source_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        part = cell_part(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution") and part:
            found[meta["grade_id"]] = CellSpec(meta["grade_id"], part, HIDDEN_MARKER in cell.source,
                                               float(meta.get("points", 0)))
    return found


def judged_outputs(record: CellRecord) -> list:
    """A test cell's outputs from the judge's record: the lines, then the points as the cell's
    value (nbgrader's partial credit), or an error output when the cell earned nothing."""
    outputs = [new_output("stream", name="stdout", text="\n".join(record.lines) + "\n")]
    if record.earned > 0:
        outputs.append(new_output("execute_result", data={"text/plain": f"{record.earned:g}"},
                                  execution_count=None))
    else:
        outputs.append(new_output("error", ename="CheckFailed",
                                  evalue=f"{record.part}: 0 / {record.points:g} points",
                                  traceback=[f"\x1b[0;31mCheckFailed\x1b[0m: {record.part}: 0 / "
                                             f"{record.points:g} points (the FAIL lines above say what "
                                             "is wrong)"]))
    return outputs


class JudgedExecute(Execute):
    """nbgrader's ``Execute`` with the judge beside the kernel (see the module docstring)."""

    source_notebooks = Dict(help="notebook name -> path of its source notebook (default: the course's "
                            "source folder)").tag(config=True)
    socket_dir = Unicode("", help="folder of the judge's socket; it must be visible to the kernel (the "
                         "engine binds it into the sandbox). Empty: a fresh temporary folder"
                         ).tag(config=True)
    records = Unicode("", help="JSON-lines file the judge's records are appended to").tag(config=True)
    service = Unicode("", help="Unix socket of the engine's planner (autograder.judge.planner.Service), "
                      "which plans once per batch and gives the verdicts. Empty: this process plans "
                      "and judges (plain nbgrader)").tag(config=True)

    def _source_nb(self, resources):
        name = resources["nbgrader"]["notebook"]
        path = self.source_notebooks.get(name)
        if path is None:
            from nbgrader.coursedir import CourseDirectory

            coursedir = CourseDirectory(parent=self)
            path = Path(coursedir.format_path(coursedir.source_directory, ".",
                                              resources["nbgrader"]["assignment"])) / f"{name}.ipynb"
        return nbformat.read(str(path), as_version=4)

    def preprocess(self, nb, resources):
        JUDGE_ENV = _course().JUDGE_ENV
        self._specs = graded_cells(self._source_nb(resources))
        folder = self.socket_dir or tempfile.mkdtemp(prefix="cfgflow-judge-")
        planner = Remote(self.service) if self.service else None  # None: this process's
        self._judge = Judge(os.path.join(folder, "judge.sock"), planner)
        before = os.environ.get(JUDGE_ENV)
        os.environ[JUDGE_ENV] = self._judge.path  # the kernel, started below, inherits it
        try:
            return super().preprocess(nb, resources)
        finally:
            if before is None:
                os.environ.pop(JUDGE_ENV, None)
            else:
                os.environ[JUDGE_ENV] = before
            self._judge.stop()
            self._write_records(resources)

    def preprocess_cell(self, cell, resources, index):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        spec = self._specs.get(meta.get("grade_id")) if cell.cell_type == "code" else None
        if spec is None or meta.get("solution"):
            return super().preprocess_cell(cell, resources, index)
        self._judge.open_cell(spec)
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        finally:
            record = self._judge.close_cell()
        cell["outputs"] = judged_outputs(record)  # in place: the chain keeps this cell object
        return cell, resources

    def _write_records(self, resources) -> None:
        if not self.records:
            return
        done = {r.grade_id for r in self._judge.records}
        missing = [CellRecord(s.grade_id, s.part, s.hidden, s.points, lines=[]) for s in self._specs.values()
                   if s.grade_id not in done]  # a cell that never ran (the kernel died before it)
        with open(self.records, "a", encoding="utf-8") as f:
            for r in self._judge.records + missing:
                f.write(json.dumps({"notebook": resources["nbgrader"]["notebook"], **r.to_json()}) + "\n")


class CapOutputs(NbGraderPreprocessor):
    """Cap what the graded notebook (and so the feedback page) keeps of each cell: text outputs to
    ``max_chars`` characters in all, any other output (images, HTML) over ``max_chars`` bytes
    dropped; the cell then says what was cut. A cell that floods stdout cannot make a page of
    100 MB."""

    max_chars = Integer(20_000, help="characters a cell's outputs keep").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.get("outputs"):
            return cell, resources
        budget, kept, cut = self.max_chars, [], 0
        for out in cell.outputs:
            if out.get("output_type") == "error":  # kept (it decides a grade), its traceback capped
                lines, size = [], 0
                for line in out.get("traceback", []):
                    size += len(line)
                    if size > self.max_chars:
                        cut += len(line)
                        continue
                    lines.append(line)
                out["traceback"] = lines
                kept.append(out)
                continue
            if out.get("output_type") == "stream":
                text = out.get("text", "")
                if len(text) > budget:
                    cut += len(text) - budget
                    out["text"] = text[:budget]
                budget -= len(out["text"])
                if out["text"]:
                    kept.append(out)
                continue
            size = sum(len(v) if isinstance(v, str) else len(json.dumps(v))
                       for v in out.get("data", {}).values())
            if size > self.max_chars:
                cut += size
                continue
            kept.append(out)
        if cut:
            kept.append(new_output("stream", name="stdout",
                                   text=f"\n[the grader cut {cut:,} characters of this cell's output: a "
                                        f"feedback page keeps at most {self.max_chars:,} per cell]\n"))
        cell["outputs"] = kept
        return cell, resources


def install(c) -> None:
    """Put the judge into nbgrader's autograde chain in the traitlets config ``c``: nbgrader's
    ``Execute`` becomes :class:`JudgedExecute`, followed by :class:`CapOutputs`."""
    from nbgrader.converters import Autograde

    chain = []
    for step in Autograde.class_traits()["autograde_preprocessors"].default():
        chain += [JudgedExecute, CapOutputs] if step is Execute else [step]
    c.Autograde.autograde_preprocessors = chain
