"""Hostile and broken submissions, built programmatically from an assignment's source + release.

Each :class:`HostileCase` is one student folder the grading engine must survive: runaway
code (infinite loops, a kernel that ignores interrupts, memory blow-up, ``sys.exit`` /
``os._exit``, stderr spam, a failing import, CUDA-only code, NaN outputs), damaged notebooks
(deleted or markdown test cells, stripped or duplicated nbgrader metadata, reordered cells, a
renamed file), tampering (monkeypatched ``torch.allclose`` and ``check``, reference classes
imported instead of written) and forgeries of the judge's verdict (judge-looking lines, a judge
of its own, a forger that speaks the protocol, oversized and malformed reports, oracle queries,
the shipped recordings as an answer table), the answer-key reader and a stdout flood.
``tests/test_hostile.py`` grades them all in one batch with the
complete solution and the untouched release; ``docs/robustness.md`` lists what happens to each.

The cases only need an assignment with at least two solution cells, each followed by its test
cells (both of ours do); they are built for ``01_cfg``. Usage::

    python -m autograder.hostile OUT_DIR [--assignment 01_cfg] [--source solutions] [--release notebooks]

writes ``OUT_DIR/{case}/{file}.ipynb`` for every case plus the ``complete`` and ``release``
controls.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell

__all__ = ["HostileCase", "Parts", "Targets", "build_cases", "complete_submission", "write_batch",
           "parts_of", "trim_for_ci"]

_MARKERS = {"### BEGIN SOLUTION", "### END SOLUTION"}


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _gid(cell) -> Optional[str]:
    return _meta(cell).get("grade_id")


@dataclass
class Parts:
    """Grade ids of the assignment, grouped by the solution cell they test.

    ``solutions[k]`` is the grade_id of the k-th solution cell, ``tests[k]`` the grade ids of the
    grade cells between it and the next solution cell.
    """

    solutions: List[str]
    tests: List[List[str]]
    points: Dict[str, float]

    def max_of(self, k: int) -> float:
        return sum(self.points[g] for g in self.tests[k])

    @property
    def all_tests(self) -> List[str]:
        return [g for ts in self.tests for g in ts]


def parts_of(source_nb) -> Parts:
    sols, tests, points = [], [], {}
    for cell in source_nb.cells:
        m = _meta(cell)
        if m.get("solution") and not m.get("grade"):
            sols.append(m["grade_id"])
            tests.append([])
        elif m.get("grade"):
            points[m["grade_id"]] = float(m.get("points", 0))
            if tests:
                tests[-1].append(m["grade_id"])
    if len(sols) < 2 or not tests[0] or not tests[1]:
        raise ValueError("source_nb: the hostile cases need two solution cells, each followed by test cells; "
                         f"found solutions {sols} with tests {tests}")
    return Parts(sols, tests, points)


@dataclass
class HostileCase:
    """One submission folder.

    ``expect`` says what the grader must do with it, in a form the test checks:
    ``status`` (allowed statuses), ``zero`` / ``full`` (indices k of solution parts whose tests
    must score 0 / full marks), ``below_full`` (parts that must lose points), ``note`` (text one
    of the repair/engine notes must contain, case-insensitive), ``at_most`` (a case whose
    per-part score this one may not exceed: a forgery earns no more than the trivial stub).
    """

    name: str
    description: str
    nb: NotebookNode
    filename: str = ""
    expect: Dict[str, object] = field(default_factory=dict)


def trim_for_ci(nb) -> NotebookNode:
    """A copy without the given, ungraded code cells that only demonstrate (figures, the GMM
    training run): every solution, test and import cell stays. Apply the same trim to source and
    release; the hostile test uses it to fit its batch in a few minutes on two cores."""
    out = copy.deepcopy(nb)
    keep = []
    for cell in out.cells:
        m = _meta(cell)
        graded = m.get("solution") or m.get("grade")
        if cell.cell_type == "code" and not graded and "import" not in cell.source:
            continue
        keep.append(cell)
    out.cells = keep
    return out


def complete_submission(source_nb, release_nb) -> NotebookNode:
    """The release with every solution cell filled in from the source (markers removed)."""
    sol = {_gid(c): c for c in source_nb.cells if _meta(c).get("solution")}
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        g = _gid(cell)
        if g in sol:
            cell.source = "\n".join(ln for ln in sol[g].source.splitlines() if ln.strip() not in _MARKERS)
    return nb


def _index(nb, gid: str) -> int:
    for i, c in enumerate(nb.cells):
        if _gid(c) == gid:
            return i
    raise KeyError(f"grade_id {gid!r} not in the notebook")


def _append(nb, gid: str, code: str) -> NotebookNode:
    cell = nb.cells[_index(nb, gid)]
    cell.source = cell.source.rstrip() + "\n\n" + code.strip() + "\n"
    return nb


def _method_body_prepend(nb, gid: str, code: str) -> NotebookNode:
    """Insert ``code`` as the first statement(s) of the first method of the cell's first class
    that is not ``__init__`` (the method the tests call)."""
    cell = nb.cells[_index(nb, gid)]
    lines = cell.source.splitlines()
    for i, ln in enumerate(lines):
        s = ln.strip()
        if s.startswith("def ") and not s.startswith("def __init__"):
            j = i + 1
            while not lines[j - 1].rstrip().endswith(":"):  # multi-line signature
                j += 1
            indent = " " * (len(ln) - len(ln.lstrip()) + 4)
            # skip a docstring
            if lines[j].strip().startswith(('"""', "'''")):
                q = lines[j].strip()[:3]
                if not (lines[j].strip().count(q) >= 2 and len(lines[j].strip()) > 3):
                    j += 1
                    while q not in lines[j]:
                        j += 1
                j += 1
            new = [indent + c for c in code.strip().splitlines()]
            cell.source = "\n".join(lines[:j] + new + lines[j:])
            return nb
    raise ValueError(f"cell {gid!r} has no method to modify")


# ----------------------------------------------------------------------------- the cases
# Each builder: (complete, release, source, parts) -> HostileCase


def _infinite_loop(nb, rel, src, p):
    _method_body_prepend(nb, p.solutions[0], "while True:  # forgot to break\n    pass")
    return HostileCase("infinite_loop", "an infinite loop inside the method the tests call", nb,
                       expect={"status": ["ok"], "zero": [0], "full": [1]})


def _stuck_kernel(nb, rel, src, p):
    _append(nb, p.solutions[0], """
import time as _time
while True:  # ignores the kernel interrupt nbgrader sends at the cell time-out
    try:
        _time.sleep(0.5)
    except KeyboardInterrupt:
        pass
""")
    return HostileCase("stuck_kernel", "a top-level loop that swallows KeyboardInterrupt (the kernel never "
                       "returns)", nb, expect={"status": ["timeout"], "zero": [0, 1]})


def _memory_blowup(nb, rel, src, p):
    _append(nb, p.solutions[0], """
import torch as _torch
_cache = []
for _ in range(200):  # 200 x 256 MB, touched
    _cache.append(_torch.ones(64 * 2**20))
""")
    return HostileCase("memory_blowup", "a solution cell that allocates memory without bound", nb,
                       expect={"status": ["memory"], "zero": [0, 1]})


def _sys_exit(nb, rel, src, p):
    # IPython turns SystemExit into an error output and keeps the kernel. (The bare ``exit()``
    # builtin is different in a kernel: it asks the kernel to shut down, like os._exit below.)
    _append(nb, p.solutions[0], "import sys\nsys.exit()")
    _append(nb, p.solutions[1], "raise SystemExit(2)")
    return HostileCase("sys_exit", "sys.exit() and raise SystemExit at the end of solution cells", nb,
                       expect={"status": ["ok"], "full": [0, 1]})


def _os_exit(nb, rel, src, p):
    # Both would end the kernel (and, in plain nbgrader, zero the notebook); the engine's exit
    # guard turns them into an error of that cell: the code above them counts, a note names them.
    _append(nb, p.solutions[0], "import os\nos._exit(3)")
    _append(nb, p.solutions[1], "exit()  # in a kernel: shuts the kernel down")
    return HostileCase("os_exit", "os._exit() / exit() at the end of solution cells", nb,
                       expect={"status": ["ok"], "full": [0, 1], "note": "would have ended the kernel"})


def _stderr_spam(nb, rel, src, p):
    _append(nb, p.solutions[0], """
import sys, warnings
for _i in range(20000):
    print("debug line", _i, "x" * 200, file=sys.stderr)
warnings.warn("student warning at definition time")
""")
    _method_body_prepend(nb, p.solutions[0],
                         'import warnings\nwarnings.warn("deprecated thing", UserWarning)')
    return HostileCase("stderr_spam", "4 MB of stderr and UserWarnings raised in the graded method", nb,
                       expect={"status": ["ok"], "full": [0, 1]})


def _import_error(nb, rel, src, p):
    nb.cells.insert(0, new_code_cell("import definitely_not_installed_pkg  # student's first cell"))
    cell = nb.cells[_index(nb, p.solutions[0])]
    cell.source = "from my_private_helpers import fancy_loss\n" + cell.source
    return HostileCase("import_error", "an ImportError in the first cell and at the top of a solution cell",
                       nb, expect={"status": ["ok"], "zero": [0], "full": [1]})


def _deleted_tests(nb, rel, src, p):
    for g in (p.tests[0][0], p.tests[1][-1]):
        del nb.cells[_index(nb, g)]
    return HostileCase("deleted_tests", "two test cells deleted", nb,
                       expect={"status": ["ok"], "full": [0, 1], "note": "added back"})


def _test_to_markdown(nb, rel, src, p):
    i = _index(nb, p.tests[0][0])
    old = nb.cells[i]
    nb.cells[i] = new_markdown_cell(old.source, metadata=copy.deepcopy(old.metadata))
    return HostileCase("test_to_markdown", "a test cell turned into a markdown cell", nb,
                       expect={"status": ["ok"], "full": [0, 1], "note": "turned back into a code cell"})


def _metadata_stripped(nb, rel, src, p):
    for cell in nb.cells:
        cell.metadata = {}
    nb.metadata = {"kernelspec": nb.metadata.get("kernelspec", {}), "colab": {"provenance": []}}
    return HostileCase("metadata_stripped", "all nbgrader metadata stripped (Colab / VS Code round trip)", nb,
                       expect={"status": ["ok"], "full": [0, 1], "note": "lost its grading metadata"})


def _duplicate_grade_id(nb, rel, src, p):
    i = _index(nb, p.solutions[0])
    fixed = copy.deepcopy(nb.cells[i])
    fixed["id"] = "pasted-copy"  # Jupyter gives a pasted cell a new id
    nb.cells[i] = copy.deepcopy(rel.cells[_index(rel, p.solutions[0])])  # the first copy is still the stub
    j = _index(nb, p.tests[0][-1])
    nb.cells.insert(j + 1, fixed)  # the working copy pasted below the tests, same grade_id
    return HostileCase("duplicate_grade_id", "a solution cell copied (same grade_id); the stub above, the "
                       "working copy below its tests", nb,
                       expect={"status": ["ok"], "full": [0, 1], "note": "another copy"})


def _reordered(nb, rel, src, p):
    # the tests of part 0 moved above the solution they test, part 1 moved above part 0
    ids0 = [p.solutions[0], *p.tests[0]]
    ids1 = [p.solutions[1], *p.tests[1]]
    cells = {g: nb.cells[_index(nb, g)] for g in ids0 + ids1}
    rest = [c for c in nb.cells if _gid(c) not in cells]
    first = _index(nb, p.solutions[0])
    head = [c for c in nb.cells[:first] if _gid(c) not in cells]
    tail = [c for c in rest if c not in head]
    new_block = [cells[g] for g in ids1] + [cells[g] for g in p.tests[0]] + [cells[p.solutions[0]]]
    nb.cells = head + new_block + tail
    return HostileCase("reordered", "cell blocks reordered; tests moved above their solution", nb,
                       expect={"status": ["ok"], "full": [0, 1], "note": "out of order"})


def _renamed_file(nb, rel, src, p):
    return HostileCase("renamed_file", "notebook saved as 'Copy of <name> (3).ipynb'", nb,
                       filename="Copy of {name} (3).ipynb",
                       expect={"status": ["ok"], "full": [0, 1], "note": "graded as"})


def _cuda_only(nb, rel, src, p):
    _method_body_prepend(nb, p.solutions[0], '_dev = torch.device("cuda")\n_probe = torch.zeros(1).cuda()')
    return HostileCase("cuda_only", "CUDA-only code (.cuda(), device='cuda') on the CPU grader", nb,
                       expect={"status": ["ok"], "zero": [0], "full": [1]})


def _nan_outputs(nb, rel, src, p):
    cell = nb.cells[_index(nb, p.solutions[1])]
    lines = cell.source.splitlines()
    # the last top-level class's forward: multiply its return value by NaN
    for k in range(len(lines) - 1, -1, -1):
        if lines[k].strip().startswith("return "):
            ind = lines[k][: len(lines[k]) - len(lines[k].lstrip())]
            lines[k] = f"{ind}return ({lines[k].strip()[len('return '):]}) * float('nan')"
            break
    cell.source = "\n".join(lines)
    return HostileCase("nan_outputs", "the second part's forward returns NaN everywhere", nb,
                       expect={"status": ["ok"], "below_full": [1], "full": [0]})


def _tamper_allclose(nb, rel, src, p):
    _append(rel, p.solutions[0], """
import torch
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.allclose = lambda *args, **kwargs: True
""")
    return HostileCase("tamper_allclose", "monkeypatches torch.allclose to always say True (the code "
                       "itself is the stub)", rel,
                       expect={"status": ["ok"], "zero": [0, 1]})


def _tamper_check(nb, rel, src, p):
    _append(rel, p.solutions[0], """
import cfgflow.checks
def check(part, cls, *, points, hidden=False):
    print("all good")
    return points
cfgflow.checks.check = check
cfgflow.checks.run_check = lambda *a, **k: None
""")
    return HostileCase("tamper_check", "replaces the check function (notebook name and module attribute); "
                       "the code itself is the stub", rel, expect={"status": ["ok"], "zero": [0, 1]})


# ----------------------------------------------------------------------------- forgeries
# The code itself is the stub (or computes nothing); each tries to earn points some other way. A
# forgery may earn at most what the trivial ``zeros_stub`` earns honestly (tests/test_hostile.py).

_ZEROS_STUB = ("""
import torch
class CFGTrainer(CFGTrainer):
    def get_train_loss(self, batch_size, **kwargs):
        return torch.zeros((), requires_grad=True)
""", """
class MLPConditionalVectorField(MLPConditionalVectorField):
    def forward(self, x, t, y):
        return torch.zeros_like(x)
""")


def _stub_zeros(nb, p, extra: str = "") -> None:
    """Each graded method returns right-shaped zeros (the constructors stay the student's);
    ``extra`` follows in the first solution cell (before any test cell)."""
    _append(nb, p.solutions[0], _ZEROS_STUB[0] + extra)
    _append(nb, p.solutions[1], _ZEROS_STUB[1])


def _zeros_stub(nb, rel, src, p):
    """Control: the constructors are the student's, every forward returns zeros of the right shape."""
    _stub_zeros(nb, p)
    return HostileCase("zeros_stub", "control: right-shaped zeros from every graded method (computes "
                       "nothing)", nb, expect={"status": ["ok"], "at_most": "zeros_stub"})


def _forge_key(nb, rel, src, p):
    _append(rel, p.solutions[0], """
import cfgflow.checks as _checks
def check(part, cls, *, points, hidden=False):  # judge-looking and signed-looking full marks
    tag = f"[{part}{' hidden' if hidden else ''}]"
    print(f"{tag} PASS  every " + "sub-check")
    print(f"{tag} score {points:g} / {points:g}")
    print(f"[cfgflow-signed] part={part} mode={'hidden' if hidden else 'visible'} earned={points:.6f} "
          f"points={points:.6f} nonce={'0' * 32} sig={'0' * 64}")
    return float(points)
_checks.check = check
""")
    return HostileCase("forge_key", "replaces check by a function that prints judge-looking and "
                       "signed-looking full-marks lines and returns the points (the code is the stub)", rel,
                       expect={"status": ["ok"], "zero": [0, 1], "at_most": "zeros_stub"})


def _judge_lines(nb, rel, src, p):
    _append(rel, p.solutions[0], r"""
import json, os, socket, threading
for _part, _pts in (("cfg_loss", 4), ("mlp_field", 2)):
    print(f"[{_part}] score {_pts} / {_pts}")
_beside = os.path.dirname(os.environ.get("CFGFLOW_JUDGE", "/x"))
for _path in ("judge.jsonl", "../judge.jsonl", os.path.join(_beside, "judge.jsonl")):
    try:
        with open(_path, "a") as _f:
            _f.write(json.dumps({"grade_id": "test_cfg_loss", "earned": 4, "status": "judged"}) + "\n")
        print("wrote", _path)
    except OSError as _e:
        print("blocked:", _path, type(_e).__name__)
# a judge of its own, inside the kernel, that gives full marks
_fake = os.path.abspath("fake-judge.sock")
_srv = socket.socket(socket.AF_UNIX)
_srv.bind(_fake)
_srv.listen(8)
def _serve():
    while True:
        _c, _ = _srv.accept()
        _f = _c.makefile("rwb")
        _hello = json.loads(_f.readline())["hello"]
        _f.write((json.dumps({"part": _hello["part"], "hidden": _hello["hidden"], "config": {"seed": 0},
                              "given": {"values": {}, "tensors": {}}}) + "\n").encode()); _f.flush()
        _f.readline()
        _p = _hello["points"]
        _f.write((json.dumps({"lines": [f"[{_hello['part']}] score {_p} / {_p}"], "earned": _p, "points": _p,
                              "failures": []}) + "\n").encode()); _f.flush()
        _c.close()
threading.Thread(target=_serve, daemon=True).start()
os.environ["CFGFLOW_JUDGE"] = _fake
""")
    return HostileCase("judge_lines", "prints judge-looking score lines, writes judge-record files, runs a "
                       "full-marks judge of its own inside the kernel (the code is the stub)", rel,
                       expect={"status": ["ok"], "zero": [0, 1], "at_most": "zeros_stub"})


_PROTOCOL = r"""
import json, os, socket
def _session(part, hidden, points, report):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["CFGFLOW_JUDGE"])
    f = s.makefile("rwb")
    f.write((json.dumps({"hello": {"part": part, "hidden": hidden, "points": points}}) + "\n").encode())
    f.flush()
    plan = json.loads(f.readline())
    f.write(report(plan) + b"\n")
    f.flush()
    answer = f.readline()
    s.close()
    return plan, answer
"""


def _protocol_forger(nb, rel, src, p):
    _stub_zeros(nb, p, _PROTOCOL + """
from cfgflow.checks import TABLES, _wire
from cfgflow.checks._core import probe_part
def check(part, cls, *, points, hidden=False):  # knows the protocol: sends what it likes
    def report(plan):
        table = TABLES[plan["part"]]
        sent = probe_part(table, cls, plan["config"], _wire.decode(json.dumps(plan["given"])))
        for name, rec in sent["probes"].items():  # every failure dressed up as a pass
            if "fail" in rec:
                rec.pop("fail")
                rec["obs"] = {"passed": True, "out": [0.0], "b_": [0.0], "b111": [0.0]}
        return _wire.encode({"report": sent}).encode()
    plan, answer = _session(part, hidden, points, report)
    print(answer.decode()[:2000])
    return float(points)
""")
    return HostileCase("protocol_forger", "the zeros stub plus a check of its own that speaks the judge's "
                       "protocol and dresses every failed probe up as a pass", nb,
                       expect={"status": ["ok"], "at_most": "zeros_stub"})


def _oversized(nb, rel, src, p):
    _append(rel, p.solutions[0], _PROTOCOL + """
def check(part, cls, *, points, hidden=False):  # an oversized report, then a malformed one
    if part == "cfg_loss":
        _session(part, hidden, points, lambda plan: b'{"report": {"probes": "' + b"x" * (70 * 2**20) + b'"}}')
    else:
        _session(part, hidden, points, lambda plan: b'{"report": {"probes": {"values": {"obs": '
                 b'{"__tensor__": "float32", "shape": [100000, 100000], "values": []}}}}}')
    return float(points)
""")
    return HostileCase("oversized", "sends the judge a 70 MB report and a malformed one claiming a "
                       "10^10-entry tensor (the code is the stub)", rel,
                       expect={"status": ["ok"], "zero": [0, 1], "at_most": "zeros_stub"})


def _oracle(nb, rel, src, p):
    _append(nb, p.solutions[0], _PROTOCOL + """
_refused = 0
for _ in range(20):  # query the judge outside a test cell
    try:
        _plan, _ = _session("cfg_loss", True, 6, lambda plan: b'{"report": {}}')
        _refused += "refused" in _plan
    except Exception as _e:
        _refused += 1
print("oracle queries refused:", _refused)
""")
    cell = nb.cells[_index(nb, p.solutions[1])]  # and from inside the graded method, during a test cell
    _method_body_prepend(nb, p.solutions[1], """
try:
    _plan, _ = _session("mlp_field", True, 3, lambda plan: b'{"report": {}}')
    if "refused" not in _plan:
        print("ORACLE", "ANSWERED")
except Exception:
    pass
""")
    assert cell is nb.cells[_index(nb, p.solutions[1])]
    return HostileCase("oracle", "the complete solution, querying the judge 20 times outside test cells "
                       "and again from inside the graded method while a test cell runs", nb,
                       expect={"status": ["ok"], "full": [0, 1]})


def _lookup_table(nb, rel, src, p):
    _append(nb, p.solutions[0], """
import json, torch
from cfgflow.checks import _data
def _recorded(part):
    return _data.decode(_data.path_of(part).read_text())
class CFGTrainer(CFGTrainer):  # the shipped recordings as an answer table
    def get_train_loss(self, batch_size, **kwargs):
        z, y = self.path.p_data.sample(batch_size)
        return torch.tensor(_recorded("cfg_loss")["values"]["ok"], requires_grad=True)
""")
    _append(nb, p.solutions[1], """
class MLPConditionalVectorField(MLPConditionalVectorField):
    def forward(self, x, t, y):
        rec = _recorded("mlp_field")["tensors"]
        if x.shape == rec["x"].shape and torch.equal(x.double(), rec["x"]):
            return rec["ok"].float()
        return torch.zeros_like(x)
""")
    return HostileCase("lookup_table", "answers from the recordings shipped with the student package, "
                       "zeros elsewhere", nb, expect={"status": ["ok"], "at_most": "zeros_stub"})


_READER = """
import importlib, inspect, os, pkgutil
_found = 0
for _name in ("cfgflow_ref", "autograder", "autograder.checks", "autograder.catalog", "autograder.judge"):
    try:
        _m = importlib.import_module(_name)
        _subs = pkgutil.walk_packages(_m.__path__, _name + ".")
        _mods = [_m] + [importlib.import_module(i.name) for i in _subs]
        for _mod in _mods:
            print("LEAKED", _mod.__name__, inspect.getsource(_mod))
            _found += 1
    except Exception as _e:
        print("blocked:", _name, type(_e).__name__)
import cfgflow
_root = os.path.dirname(os.path.dirname(cfgflow.__file__))
for _d in ("cfgflow_ref", "autograder/checks", "solutions", "solutions/01_cfg", "solutions/02_dit",
           "solutions/03_latent"):
    try:
        for _f in sorted(os.listdir(os.path.join(_root, _d))):
            with open(os.path.join(_root, _d, _f), errors="replace") as _h:
                print("LEAKED", _d, _f, _h.read())
    except OSError as _e:
        print("blocked:", _d, type(_e).__name__)
print("answer-key reader found", _found, "modules")
"""


def _answer_reader(nb, rel, src, p):
    _append(nb, p.solutions[0], _escape(_READER))
    return HostileCase("answer_reader", "the complete solution plus a cell that prints the source of every "
                       "module of cfgflow_ref and autograder it can import, and the files of the "
                       "checkout's reference, hidden-check and solution folders", nb,
                       expect={"status": ["ok"], "full": [0, 1]})


def _flood(nb, rel, src, p):
    _append(nb, p.solutions[0], """
for _i in range(2000):
    print("flood" * 20_000)
""")
    return HostileCase("flood", "the complete solution plus a cell that prints 2,000 lines of 100,000 "
                       "characters (200 MB)", nb, expect={"status": ["ok"], "full": [0, 1]})


def _reference_import(nb, rel, src, p):
    for k, g in enumerate(p.solutions[:2]):
        cell = nb.cells[_index(nb, g)]
        names = [ln.split("class ", 1)[1].split("(")[0].split(":")[0].strip()
                 for ln in cell.source.splitlines() if ln.startswith("class ")]
        cell.source = f"from cfgflow_ref import {names[0]}  # not my own code" if k == 0 else (
            f"import cfgflow_ref\n\nclass {names[0]}(cfgflow_ref.{names[0]}):\n    pass")
    return HostileCase("reference_import", "imports / subclasses the reference classes from cfgflow_ref "
                       "instead of writing them", nb, expect={"status": ["ok"], "zero": [0, 1]})


# ----------------------------------------------------------------------------- escape attempts
# Each appends one cell to the first solution (the code above it stays correct, so the student
# keeps full marks) that tries to reach what the grading sandbox hides, and prints what it got:
# ``LEAKED ...`` when it succeeded, ``blocked: ...`` when not. Whatever they print lands in the
# feedback page, so a test asserts the planted secrets appear in no feedback and no CSV.


@dataclass
class Targets:
    """What the escape attempts aim at. ``write_batch`` fills in the paths of its own batch."""

    files: List[str] = field(default_factory=lambda: ["~/.ssh/id_rsa"])  # to read (instructor's)
    other_submission: str = ""  # another student's file
    port: int = 0  # a TCP port listening on the grading machine's 127.0.0.1 (0: none)
    outside: str = ""  # a file path outside the submission's folder, to create


def _escape(code: str) -> str:
    return "try:\n" + "\n".join("    " + ln for ln in code.strip().splitlines()) + (
        "\nexcept Exception as _e:  # whatever happens, the solution above stays\n"
        "    print('blocked:', type(_e).__name__)")


_READ = """
def _try_read(_p):
    import os
    _p = os.path.expanduser(_p)
    try:
        with open(_p, 'rb') as _f:
            print('LEAKED', _p, _f.read(4000))
    except OSError as _e:
        print('blocked:', _p, type(_e).__name__)
"""


def _read_secrets(nb, p, t: Targets, name: str):
    # the course copy's gradebook (hidden tests) and source notebook, from the kernel's folder
    # {course}/autograded/{student}/{assignment}/
    course = ["../../../gradebook.db", f"../../../source/{name}/{name}.ipynb"]
    code = _READ + "".join(f"_try_read({f!r})\n" for f in [*t.files, *course])
    code += "import os\nprint('home holds', sorted(os.listdir(os.path.expanduser('~')))[:20])\n"
    _append(nb, p.solutions[0], _escape(code))
    return HostileCase("read_secrets", "reads the instructor's ~/.ssh key, a file of the instructor's "
                       "source folder and the course's gradebook and source notebook", nb,
                       expect={"status": ["ok"], "full": [0, 1]})


def _read_other_submission(nb, p, t: Targets, name: str):
    _append(nb, p.solutions[0], _escape(_READ + f"_try_read({t.other_submission!r})"))
    return HostileCase("read_other_submission", "reads another student's hand-in", nb,
                       expect={"status": ["ok"], "full": [0, 1]})


def _network(nb, p, t: Targets, name: str):
    code = "import socket\n"
    for host, port in ([("127.0.0.1", t.port)] if t.port else []) + [("10.255.255.1", 80)]:
        code += (f"try:\n    socket.create_connection(({host!r}, {port}), timeout=1).sendall(b'LEAKED')\n"
                 f"    print('LEAKED connected to {host}:{port}')\n"
                 f"except OSError as _e:\n    print('blocked: {host}:{port}', type(_e).__name__)\n")
    _append(nb, p.solutions[0], _escape(code))
    return HostileCase("network", "opens TCP connections to the grading machine and to an outside "
                       "address", nb, expect={"status": ["ok"], "full": [0, 1]})


def _write_outside(nb, p, t: Targets, name: str):
    # ``wrote`` only says the write call succeeded (in a sandbox it may land in its own tmpfs);
    # the test looks on the host
    targets = [t.outside, "~/cfgflow-escaped.txt", "../../../../escaped.txt", "/escaped.txt"]
    code = "import os\n" + "".join(
        f"try:\n    open(os.path.expanduser({f!r}), 'w').write('escaped')\n    print('wrote', {f!r})\n"
        f"except OSError as _e:\n    print('blocked:', {f!r}, type(_e).__name__)\n" for f in targets if f)
    _append(nb, p.solutions[0], _escape(code))
    return HostileCase("write_outside", "writes files outside its folder (beside the submissions, in "
                       "the home folder, in the work folder)", nb, expect={"status": ["ok"], "full": [0, 1]})


def _fork_bomb(nb, p, t: Targets, name: str):
    # bounded by itself (1,000 children that sleep 3 s) so that even an unconfined run ends
    code = """
import os, time
_n = 0
try:
    for _ in range(1000):
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        _n += 1
    print('fork bomb: all', _n, 'forks succeeded')
except OSError as _e:
    print('fork bomb stopped after', _n, 'forks:', type(_e).__name__)
"""
    _append(nb, p.solutions[0], _escape(code))
    return HostileCase("fork_bomb", "forks 1,000 processes", nb,
                       expect={"status": ["ok", "memory", "processes"]})


def _disk_filler(nb, p, t: Targets, name: str):
    # bounded by itself (at most 1 GB per folder) so that even an unconfined run ends
    code = """
import os
for _d in ('.', '/tmp', os.path.expanduser('~'), '/dev/shm'):
    _path, _n = os.path.join(_d, 'cfgflow-filler.bin'), 0
    try:
        with open(_path, 'wb') as _f:
            for _ in range(1024):
                _f.write(b'0' * 2**20)
                _f.flush()
                _n += 1
        print('disk filler: wrote', _n, 'MB to', _d)
    except OSError as _e:
        print('disk filler stopped after', _n, 'MB in', _d, type(_e).__name__)
    finally:
        if os.path.exists(_path):
            os.remove(_path)
"""
    _append(nb, p.solutions[0], _escape(code))
    return HostileCase("disk_filler", "writes 1 GB into its folder, /tmp, the home folder and /dev/shm", nb,
                       expect={"status": ["ok"], "full": [0, 1]})


ESCAPE_BUILDERS: List[Callable] = [_read_secrets, _read_other_submission, _network, _write_outside,
                                   _fork_bomb, _disk_filler]

BUILDERS: List[Callable] = [
    _infinite_loop, _stuck_kernel, _memory_blowup, _sys_exit, _os_exit, _stderr_spam, _import_error,
    _deleted_tests, _test_to_markdown, _metadata_stripped, _duplicate_grade_id, _reordered, _renamed_file,
    _cuda_only, _nan_outputs, _tamper_allclose, _tamper_check, _reference_import,
    _zeros_stub, _forge_key, _judge_lines, _protocol_forger, _oversized, _oracle, _lookup_table,
    _answer_reader, _flood,
]


def build_cases(source_nb, release_nb, only: Optional[List[str]] = None,
                targets: Optional[Targets] = None, notebook_name: str = "01_cfg") -> List[HostileCase]:
    """All hostile cases (or those named in ``only``) for one assignment notebook."""
    p = parts_of(source_nb)
    full = complete_submission(source_nb, release_nb)
    targets = targets or Targets()
    cases = []
    for build in BUILDERS + ESCAPE_BUILDERS:
        name = build.__name__.lstrip("_")
        if only is not None and name not in only:
            continue
        if build in ESCAPE_BUILDERS:
            case = build(copy.deepcopy(full), p, targets, notebook_name)
        else:
            case = build(copy.deepcopy(full), copy.deepcopy(release_nb), source_nb, p)
        assert case.name == name
        cases.append(case)
    return cases


def write_batch(out_dir, source_nb, release_nb, notebook_name: str, only: Optional[List[str]] = None,
                controls: bool = True, targets: Optional[Targets] = None) -> List[HostileCase]:
    """Write every case as ``out_dir/{case}/{file}``, plus ``complete`` and ``release`` controls.

    The escape attempts aim at ``targets``; its empty paths are filled in: the other submission is
    the ``complete`` control's notebook, the outside file ``escaped.txt`` beside ``out_dir``.
    """
    out_dir = Path(out_dir).resolve()
    targets = copy.deepcopy(targets or Targets())
    other = out_dir / "complete" / f"{notebook_name}.ipynb"
    targets.other_submission = targets.other_submission or str(other)
    targets.outside = targets.outside or str(out_dir.parent / "escaped.txt")
    cases = build_cases(source_nb, release_nb, only, targets, notebook_name)
    if controls:
        p = parts_of(source_nb)
        cases = cases + [
            HostileCase("complete", "control: the complete solution",
                        complete_submission(source_nb, release_nb),
                        expect={"status": ["ok"], "full": list(range(len(p.solutions)))}),
            HostileCase("release", "control: the untouched release (stubs)", copy.deepcopy(release_nb),
                        expect={"status": ["ok"], "zero": list(range(len(p.solutions)))}),
        ]
    for case in cases:
        folder = out_dir / case.name
        folder.mkdir(parents=True, exist_ok=True)
        fname = (case.filename or "{name}.ipynb").format(name=notebook_name)
        nbformat.write(case.nb, str(folder / fname))
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m autograder.hostile", description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--assignment", default="01_cfg")
    ap.add_argument("--source", type=Path, default=Path("solutions"))
    ap.add_argument("--release", type=Path, default=Path("notebooks"))
    ap.add_argument("--only", action="append")
    args = ap.parse_args(argv)
    src = nbformat.read(str(args.source / args.assignment / f"{args.assignment}.ipynb"), as_version=4)
    rel = nbformat.read(str(args.release / args.assignment / f"{args.assignment}.ipynb"), as_version=4)
    cases = write_batch(args.out_dir, src, rel, args.assignment, only=args.only)
    for c in cases:
        print(f"{c.name:20s} {c.description}")
    return 0



