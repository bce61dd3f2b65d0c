"""Match a damaged submission back to the assignment and restore its nbgrader metadata.

Students hand in notebooks that went through Colab, VS Code, copy-paste and accidents. nbgrader
grades by cell metadata (``metadata.nbgrader.grade_id``), so a notebook whose metadata was
stripped scores zero and one whose ``grade_id`` appears twice makes ``nbgrader autograde`` fail
outright (nbgrader issues #424, #1398, #1941). :func:`repair_submission` runs before autograde
and fixes what it can, by comparing the submission with the instructor's source (or release)
notebook:

* **stripped metadata** -- each graded cell of the source is matched by content. Locked and
  test cells by exact or fuzzy (``difflib``) source match, hidden tests ignored; solution cells
  by the text around the ``### BEGIN SOLUTION`` / stub markers and the top-level ``def`` /
  ``class`` names they define; solution cells that are all solution (no text of ours left in
  the release) by position between matched neighbours.
* **duplicated grade_id** -- for a solution cell the LAST matching copy (the student's latest
  edit) keeps the metadata; for a test cell the closest copy does. The other copies lose the
  ``grade_id`` and run as ordinary cells.
* **test cell turned into markdown** -- converted back to a code cell.
* **cells reordered** -- graded cells go back to the source order; each student-added cell
  travels with the graded cell it followed.
* **deleted test / locked cells** -- re-added from the source at their place. (nbgrader's
  own ``OverwriteCells.add_missing_cells`` in 0.9.6 looks up the *previous source cell* among
  the submission's graded cells and raises ``KeyError`` when that neighbour is an ordinary
  cell, so we do not rely on it.) Deleted *solution* cells are never re-added: the stub would
  overwrite the student's code.

Every action appends one plain-language note, meant for the student's feedback. The function
is pure: no I/O, the inputs are not modified.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Set, Tuple

import nbformat
from nbformat import NotebookNode

__all__ = ["repair_submission", "solution_skeleton", "strip_hidden_tests"]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
_STUB_LINES = {"# YOUR CODE HERE", "raise NotImplementedError()", "raise NotImplementedError",
               "YOUR ANSWER HERE"}
_NOTICE_RE = re.compile(r"^#? ?This cell \(id:[\w-]+\) was missing from the submission\..*$")
_TOPLEVEL_NAME_RE = re.compile(r"^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.M)

LOCKED_THRESHOLD = 0.8    # difflib ratio for a locked / test cell to count as the same cell
SOLUTION_THRESHOLD = 0.5  # skeleton coverage / name overlap for a solution cell


# ----------------------------------------------------------------------------- text helpers


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _norm_lines(text: str) -> List[str]:
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if line.strip() and not _NOTICE_RE.match(line.strip()):
            out.append(line)
    return out


def strip_hidden_tests(text: str) -> str:
    """The source text without its ``### BEGIN/END HIDDEN TESTS`` blocks (what students see)."""
    out, hidden = [], False
    for line in text.splitlines():
        s = line.strip()
        if s == BEGIN_HIDDEN:
            hidden = True
        elif s == END_HIDDEN:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


def solution_skeleton(text: str) -> List[str]:
    """The lines of a solution cell the student received unchanged (outside the solution
    blocks, without markers or stub lines), stripped of surrounding whitespace."""
    out, inside = [], False
    for line in text.splitlines():
        s = line.strip()
        if s == BEGIN_SOLUTION:
            inside = True
        elif s == END_SOLUTION:
            inside = False
        elif not inside and s and s not in _STUB_LINES:
            out.append(s)
    return out


def _toplevel_names(text: str) -> Set[str]:
    return set(_TOPLEVEL_NAME_RE.findall(text))


def _ratio(a: str, b: str) -> float:
    if a == b:
        return 1.0
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if sm.real_quick_ratio() < LOCKED_THRESHOLD or sm.quick_ratio() < LOCKED_THRESHOLD:
        return sm.quick_ratio() * 0.5
    return sm.ratio()


# ----------------------------------------------------------------------------- source model


@dataclass
class _SrcCell:
    index: int            # position in the source notebook
    grade_id: str
    kind: str             # "solution" | "locked"
    cell: NotebookNode
    visible: str = ""     # normalised text the student saw (locked cells)
    skeleton: List[str] = field(default_factory=list)
    names: Set[str] = field(default_factory=set)

    @property
    def is_test(self) -> bool:
        return bool(self.cell.metadata["nbgrader"].get("grade")) and self.kind == "locked"

    def label(self) -> str:
        what = "test cell" if self.is_test else ("read-only cell" if self.kind == "locked" else "answer cell")
        return f"{what} '{self.grade_id}'"


def _source_cells(source_nb: NotebookNode) -> List[_SrcCell]:
    cells = []
    for i, cell in enumerate(source_nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if not gid or not any(meta.get(k) for k in ("solution", "grade", "locked", "task")):
            continue
        text = _source(cell)
        if meta.get("solution") or meta.get("task"):
            sc = _SrcCell(i, gid, "solution", cell, skeleton=solution_skeleton(text),
                          names=_toplevel_names(text))
        else:
            sc = _SrcCell(i, gid, "locked", cell, visible="\n".join(_norm_lines(strip_hidden_tests(text))))
        cells.append(sc)
    return cells


def _content_score(cell: NotebookNode, src: _SrcCell) -> float:
    """How much ``cell`` looks like source cell ``src`` (0..1), ignoring metadata."""
    text = _source(cell)
    if src.kind == "locked":
        return _ratio("\n".join(_norm_lines(text)), src.visible)
    if cell.get("cell_type") != src.cell.get("cell_type"):
        return 0.0
    lines = {ln.strip() for ln in text.splitlines() if ln.strip()}
    coverage = sum(ln in lines for ln in src.skeleton) / len(src.skeleton) if src.skeleton else 0.0
    if not src.names:
        return coverage
    # the names it defines decide: a cell of another class shares generic lines
    # (``super().__init__()``, ``def forward(self, x):``) but not the class name
    named = len(src.names & _toplevel_names(text)) / len(src.names)
    return 0.5 * named + 0.5 * (coverage if src.skeleton else named)


# ----------------------------------------------------------------------------- main entry


def _as_notebook(nb, name: str) -> NotebookNode:
    if not isinstance(nb, Mapping) or "cells" not in nb:
        raise TypeError(f"{name} must be a notebook (a dict with 'cells'), got {type(nb).__name__}")
    return nbformat.from_dict(copy.deepcopy(dict(nb)))


def _stub_for_student(src: _SrcCell) -> NotebookNode:
    """A fresh copy of a locked source cell as nbgrader would have released it."""
    cell = copy.deepcopy(src.cell)
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    cell.metadata.setdefault("editable", False)
    cell.metadata.setdefault("deletable", False)
    return cell


def _set_type(cell: NotebookNode, cell_type: str) -> None:
    if cell.cell_type == cell_type:
        return
    cell.cell_type = cell_type
    if cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
        cell.pop("attachments", None)
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def repair_submission(submitted_nb, source_nb) -> Tuple[NotebookNode, List[str]]:
    """Restore nbgrader metadata, cell types, order and deleted test cells of a submission.

    Args:
        submitted_nb: the student's notebook (``NotebookNode`` or plain dict, nbformat 4).
        source_nb: the instructor's source notebook or the release notebook of the same
            assignment; its cells carry the nbgrader metadata.

    Returns:
        ``(nb, notes)``: a repaired deep copy of the submission and one human-readable note per
        action taken (empty when the submission was intact).
    """
    nb = _as_notebook(submitted_nb, "submitted_nb")
    src_nb = _as_notebook(source_nb, "source_nb")
    srcs = _source_cells(src_nb)
    by_id: Dict[str, _SrcCell] = {s.grade_id: s for s in srcs}
    notes: List[str] = []
    cells: List[NotebookNode] = list(nb.cells)

    def where(i: int) -> str:
        return f"cell {i + 1}"

    # 1. what each cell claims through its metadata --------------------------------------
    claimed: Dict[int, str] = {}
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta:
            continue
        gid = meta.get("grade_id")
        if gid in by_id:
            claimed[i] = gid
        else:
            del cell.metadata["nbgrader"]
            notes.append(f"{where(i).capitalize()} carried grading metadata for an unknown id {gid!r}; "
                         "it was removed and the cell runs as an ordinary cell.")

    scores: Dict[Tuple[int, str], float] = {}
    exact: Dict[str, List[str]] = {}
    for s in srcs:
        if s.kind == "locked":
            exact.setdefault(s.visible, []).append(s.grade_id)
    for i, cell in enumerate(cells):
        same = exact.get("\n".join(_norm_lines(_source(cell))), [])
        for s in srcs:
            if s.kind == "locked" and same:  # an exact copy: no fuzzy matching needed
                scores[(i, s.grade_id)] = 1.0 if s.grade_id in same else 0.0
            else:
                scores[(i, s.grade_id)] = _content_score(cell, s)

    assigned: Dict[str, int] = {}       # grade_id -> submission cell index
    how: Dict[str, str] = {}            # grade_id -> "metadata" | "content" | "position"
    taken: Set[int] = set()

    # 2. solution cells: metadata or content; duplicates keep the last copy --------------
    sol_srcs = [s for s in srcs if s.kind == "solution"]
    locked_srcs = [s for s in srcs if s.kind == "locked"]
    groups: Dict[str, List[int]] = {s.grade_id: [] for s in sol_srcs}
    for i, cell in enumerate(cells):
        if i in claimed:
            if by_id[claimed[i]].kind == "solution":
                groups[claimed[i]].append(i)
            continue
        if cell.get("cell_type") != "code" and not any(
                s.cell.get("cell_type") == cell.get("cell_type") for s in sol_srcs):
            continue
        best_sol = max(sol_srcs, key=lambda s: scores[(i, s.grade_id)], default=None)
        if best_sol is None or scores[(i, best_sol.grade_id)] < SOLUTION_THRESHOLD:
            continue
        best_locked = max((scores[(i, s.grade_id)] for s in locked_srcs), default=0.0)
        if best_locked >= max(LOCKED_THRESHOLD, scores[(i, best_sol.grade_id)]):
            continue  # it is (a copy of) a test cell
        groups[best_sol.grade_id].append(i)

    for s in sol_srcs:
        group = groups[s.grade_id]
        if not group:
            continue
        matching = [i for i in group if scores[(i, s.grade_id)] >= SOLUTION_THRESHOLD]
        keep = (matching or group)[-1]
        assigned[s.grade_id] = keep
        how[s.grade_id] = "metadata" if claimed.get(keep) == s.grade_id else "content"
        taken.add(keep)
        for i in group:
            if i == keep:
                continue
            if claimed.get(i) == s.grade_id:
                del cells[i].metadata["nbgrader"]
                claimed.pop(i)
            notes.append(f"{where(i).capitalize()} is another copy of the {s.label()}; the last copy "
                         f"({where(keep)}) is graded, this one runs as an ordinary cell.")

    # 3. locked / test cells: best content match, metadata breaks ties -------------------
    pairs = []
    for s in locked_srcs:
        for i in range(len(cells)):
            if i in taken or (i in claimed and claimed[i] != s.grade_id):
                continue
            sc = scores[(i, s.grade_id)]
            meta_ok = claimed.get(i) == s.grade_id
            if sc >= LOCKED_THRESHOLD or meta_ok:
                pairs.append((sc + (0.5 if meta_ok else 0.0), i, s.grade_id))
    pairs.sort(key=lambda p: (-p[0], -p[1]))
    for _sc, i, gid in pairs:
        if gid in assigned or i in taken:
            continue
        assigned[gid] = i
        taken.add(i)
        how[gid] = "metadata" if claimed.get(i) == gid else "content"
    for i, gid in list(claimed.items()):
        if by_id[gid].kind == "locked" and assigned.get(gid) != i:
            del cells[i].metadata["nbgrader"]
            claimed.pop(i)
            notes.append(f"{where(i).capitalize()} is an extra copy of the {by_id[gid].label()}; it is not "
                         "graded and runs as an ordinary cell.")

    # 4. solution cells still unmatched: by position between matched neighbours ----------
    def neighbours(s: _SrcCell) -> Tuple[int, int]:
        """The stretch of the submission after the matched cell that precedes ``s`` in the
        source, up to the next matched cell (cells may have been reordered around it)."""
        lo = -1
        for o in srcs:
            if o.index < s.index and o.grade_id in assigned:
                lo = assigned[o.grade_id]  # the last one before s in source order
        hi = min((i for i in assigned.values() if i > lo), default=len(cells))
        return lo, hi

    def source_offset(s: _SrcCell) -> int:
        prev = [o.index for o in srcs if o.index < s.index and o.grade_id in assigned]
        return s.index - (max(prev) if prev else -1)

    for s in sol_srcs:
        if s.grade_id in assigned or s.names or s.skeleton:
            continue  # a cell with text or names of its own must match by content
        lo, hi = neighbours(s)
        gap = [i for i in range(lo + 1, hi) if i not in taken and i not in claimed
               and cells[i].get("cell_type") == s.cell.get("cell_type")]
        # other unmatched solution cells competing for the same gap, in source order
        rivals = [o for o in sol_srcs if o.grade_id not in assigned and not (o.names or o.skeleton)
                  and neighbours(o) == (lo, hi)]
        if not gap or lo >= hi:
            continue
        if len(rivals) == len(gap):
            pick = gap[rivals.index(s)]
        elif len(rivals) == 1:  # the code cell nearest to where the source has it
            k = source_offset(s)
            pick = min(gap, key=lambda i: (abs(i - lo - k), i))
        else:
            continue
        assigned[s.grade_id] = pick
        how[s.grade_id] = "position"
        taken.add(pick)

    # 5. write metadata and cell types back; notes for each restoration -------------------
    readonly_restored: List[int] = []
    for gid, i in assigned.items():
        s = by_id[gid]
        cell = cells[i]
        if cell.get("cell_type") != s.cell.get("cell_type"):
            old = cell.get("cell_type")
            _set_type(cell, s.cell.cell_type)
            notes.append(f"{where(i).capitalize()} ({s.label()}) had been turned into a {old} cell; it was "
                         f"turned back into a {s.cell.cell_type} cell so it can run.")
        if how[gid] != "metadata":
            cell.metadata["nbgrader"] = copy.deepcopy(s.cell.metadata["nbgrader"])
            for key in ("editable", "deletable"):
                if key in s.cell.metadata:
                    cell.metadata[key] = s.cell.metadata[key]
            reason = {"content": "by its content", "position": "by its position"}[how[gid]]
            if s.kind == "locked" and not s.is_test:
                readonly_restored.append(i)  # one summary note for these, below
            else:
                notes.append(f"{where(i).capitalize()} had lost its grading metadata; it was matched "
                             f"{reason} to the {s.label()} and graded as such.")
        else:
            want = s.cell.metadata["nbgrader"]
            have = cell.metadata["nbgrader"]
            for key in ("grade", "solution", "locked", "points", "task"):
                if key in want and have.get(key) != want[key]:
                    have[key] = want[key]
        if s.is_test and scores[(i, gid)] < 1.0:
            notes.append(f"{where(i).capitalize()} ({s.label()}) had been edited; the original version "
                         "is used for grading.")

    if readonly_restored:
        notes.append(f"{len(readonly_restored)} read-only cell(s) of the assignment (cells "
                     + ", ".join(str(i + 1) for i in sorted(readonly_restored))
                     + ") had lost their metadata and were matched by their content.")

    # 6. order: graded cells in source order, student cells follow their anchor -----------
    anchor_of = {i: gid for gid, i in assigned.items()}
    prefix: List[NotebookNode] = []
    segments: Dict[str, List[NotebookNode]] = {}
    current: Optional[str] = None
    for i, cell in enumerate(cells):
        if i in anchor_of:
            current = anchor_of[i]
            segments[current] = [cell]
        elif current is None:
            prefix.append(cell)
        else:
            segments[current].append(cell)
    order_before = [anchor_of[i] for i in sorted(anchor_of)]
    missing_locked = [s for s in locked_srcs if s.grade_id not in assigned]
    for s in missing_locked:
        segments[s.grade_id] = [_stub_for_student(s)]
        notes.append(f"The {s.label()} was missing from the notebook; it was added back from the assignment.")
    order_after = [s.grade_id for s in srcs if s.grade_id in segments]
    if [g for g in order_after if g in assigned] != order_before:
        moved = [g for g, h in zip(order_before, [g for g in order_after if g in assigned]) if g != h]
        notes.append("Graded cells were out of order (" + ", ".join(f"'{g}'" for g in moved) +
                     "); they were put back in the assignment's order, each with the cells that followed it.")
    for s in sol_srcs:
        if s.grade_id not in assigned:
            notes.append(f"No cell of the notebook matches the {s.label()}; the tests that need it will "
                         "fail. Keep the answer cells of the assignment and write your code inside them.")
    nb.cells = prefix + [c for gid in order_after for c in segments[gid]]
    return nb, notes
