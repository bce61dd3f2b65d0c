"""The check runner's contract: stdout only, float or AssertionError, partial credit, refusals,
no side effects on the caller's RNG and thread settings; the verdicts judge data only (whatever
a report holds, every sub-check gets a result and the judge never raises); the wire codec."""

from __future__ import annotations

import io
import math
import sys
import warnings

import pytest
import torch
import torch.nn as nn

import cfgflow_ref as ref
from autograder import checks
from autograder.catalog.components import Fourier
from autograder.catalog.components import MNISTDiT as GoodMNIST
from autograder.checks import run_check
from cfgflow.checks import CheckFailed, _core, _wire, check


class ZerosFourier(Fourier):
    """Right shape, wrong values: earns the shape sub-checks only."""

    def forward(self, t):
        return torch.zeros(t.shape[0], 2 * self.weights.numel()) + 0 * self.weights.sum()


class NoisyFourier(Fourier):
    """Correct, but warns and writes to stderr while it runs."""

    def forward(self, t):
        warnings.warn("a student's warning", UserWarning, stacklevel=2)
        print("debug print", file=sys.stderr)
        return super().forward(t)


def test_full_marks_return_float(capsys):
    got = check("fourier_encoder", Fourier, points=2)
    assert got == 2.0 and isinstance(got, float)
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.count("PASS") == len(checks.HIDDEN["fourier_encoder"].subchecks)


def test_partial_credit_is_a_float_between():
    got = check("fourier_encoder", ZerosFourier, points=4)
    assert isinstance(got, float) and 0 < got < 4


def test_zero_raises_listing_failures(capsys):
    class Broken(nn.Module):
        def __init__(self, dim):
            super().__init__()

        def forward(self, t):
            return t[:, None, None] @ t  # shape error

    with pytest.raises(AssertionError) as info:
        check("fourier_encoder", Broken, points=2)
    assert "RuntimeError" in str(info.value) or "IndexError" in str(info.value)
    assert capsys.readouterr().err == ""


def test_failing_cell_shows_one_short_line_not_a_traceback(capsys):
    """Jupyter renders an exception through ``_render_traceback_``: a failing test cell shows the
    FAIL lines and this one line; nbgrader still sees an error output (0 points); the exception's
    text keeps the full list for plain Python and pytest."""
    class Stub(nn.Module):
        def __init__(self, dim):
            raise NotImplementedError()

    with pytest.raises(CheckFailed) as info:
        check("fourier_encoder", Stub, points=2)
    assert isinstance(info.value, AssertionError)
    (line,) = info.value._render_traceback_()
    assert "fourier_encoder: 0 / 2 points" in line and "FAIL lines above" in line
    assert "did you fill in the cell?" in str(info.value)
    out = capsys.readouterr().out
    assert out.count("FAIL") == len(checks.HIDDEN["fourier_encoder"].subchecks)
    assert all(len(row) <= 96 for row in out.splitlines()), "check lines are wrapped at 96 columns"


def test_partial_score_reads_to_two_decimals(capsys):
    """4.5 of 4.75 weights earned on 4 points: 3.79 (not 3.7895), returned and printed."""
    from autograder.catalog.real import RealNoEps

    assert check("cfg_loss", RealNoEps, points=4) == 3.79
    assert "[cfg_loss] score 3.79 / 4" in capsys.readouterr().out


def test_nothing_reaches_stderr(capsys):
    assert check("fourier_encoder", NoisyFourier, points=1) == 1.0
    out = capsys.readouterr()
    assert out.err == ""
    assert "a student's warning" in out.out


def test_refuses_reference_class_and_subclass_and_submodule():
    class Sub(ref.FourierEncoder):
        pass

    class Wraps(GoodMNIST):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.patchifier = ref.Patchifier(32, a[0] if a else k["patch_size"], k.get("dim", 16))

    for cls in (ref.FourierEncoder, Sub):
        rep = run_check("fourier_encoder", cls, points=1, out=io.StringIO())
        assert rep.refused and rep.earned == 0
    with pytest.raises(AssertionError, match="cfgflow_ref"):
        check("fourier_encoder", ref.FourierEncoder, points=1)
    rep = run_check("mnist_dit", Wraps, points=1, out=io.StringIO())
    assert rep.earned < 1 and "reference Patchifier" in rep.text


def test_abstract_reference_bases_are_allowed():
    # the notebooks import ConditionalVectorField / Trainer from cfgflow_ref
    assert check("mnist_dit", GoodMNIST, points=1) == 1.0


def _report(part, cls):
    return _core.probe_part(checks.VISIBLE[part], cls, checks.VISIBLE[part].config,
                            _core.given_of(checks.VISIBLE[part], _core.recorded(checks.VISIBLE[part],
                                                                               checks.VISIBLE[part].config)))


def _judge(part, sent):
    table = checks.VISIBLE[part]
    return _core.judge_part(table, sent, _core.Expect(table.config, _core.recorded(table, table.config)),
                            points=1, hidden=False)


@pytest.mark.parametrize("sent", [None, [], "x", {}, {"probes": []}, {"probes": {"values": 3}},
                                  {"probes": {"values": {"obs": None}, "shape": {"obs": {"out": "zzz"}}}},
                                  {"probes": {s: {"obs": {"out": [1, 2], "numel": "many"}}
                                              for s in ("shape", "values", "learnable", "t_shapes",
                                                        "batch1")}},
                                  {"malformed": "not JSON"}, {"refused": 7}])
def test_judge_never_raises_on_any_report(sent):
    """Whatever a kernel sends, each sub-check gets a result (here: all fail) with a message."""
    rep = _judge("fourier_encoder", sent)
    assert rep.earned == 0
    assert rep.refused or all(not r.passed and r.message for r in rep.results)


def test_judge_reads_a_genuine_report_through_the_wire():
    sent = _wire.decode(_wire.encode(_report("fourier_encoder", Fourier)))
    assert _judge("fourier_encoder", sent).earned == 1.0


def test_wire_round_trip_is_exact_and_refuses_what_is_not_data():
    x = {"a": torch.randn(3, 2), "b": [1, 2.5, "s", None, True], "c": torch.arange(3, dtype=torch.int64),
         "d": torch.tensor([True, False]), "e": (torch.tensor(float("nan")),)}
    y = _wire.decode(_wire.encode(x))
    assert torch.equal(y["a"], x["a"]) and y["a"].dtype == torch.float32 and y["b"] == x["b"]
    assert torch.equal(y["c"], x["c"]) and y["d"].dtype == torch.bool and math.isnan(float(y["e"][0]))
    with pytest.raises(_wire.WireError, match="cannot send"):
        _wire.encode({"module": nn.Linear(2, 2)})
    for text in ('{"__tensor__": "float32", "shape": [100000, 100000], "values": []}',
                 '{"__tensor__": "pickle", "shape": [1], "values": [1]}',
                 '{"__tensor__": "float32", "shape": [-1], "values": []}',
                 '{"__tensor__": "float32", "shape": [2], "values": [1, "x"]}', "not json",
                 "[" * 100 + "]" * 100):
        with pytest.raises(_wire.WireError):
            _wire.decode(text)


def test_graded_cells_use_the_judges_inputs_not_the_shipped_ones():
    """The shipped recording is public: a graded visible cell draws other inputs (instructor-side
    seed), the same on every regrade."""
    for part, table in checks.VISIBLE.items():
        if not table.given:
            continue
        shipped = _core.recorded(table, table.config)["tensors"]
        _, cfg, data = checks.plan(part, hidden=False)
        again = checks.plan(part, hidden=False)[2]
        for name in set(table.given) & set(data["tensors"]):
            if name in shipped and shipped[name].numel() > 1:
                assert not torch.equal(data["tensors"][name].double(), shipped[name].double()), (part, name)
            assert torch.equal(data["tensors"][name], again["tensors"][name]), (part, name)
        assert data["values"] == again["values"], part


def test_the_engines_planner_answers_as_this_process_would(tmp_path):
    """The engine's planner service (one per batch) gives a worker's judge the same plan line and
    verdicts as planning in-process; a hello that is no data is a ValueError (the session is
    incomplete) and a judge error keeps its type's name, as in-process."""
    from autograder.judge.planner import Planner, Remote, Service

    service = Service(str(tmp_path / "p.sock"), warm=[("fourier_encoder", True)])
    try:
        remote, local = Remote(service.path), Planner()
        hello = (_wire.encode({"hello": {}}) + "\n").encode()
        plan = remote.plan("fourier_encoder", True, hello)
        assert plan == local.plan("fourier_encoder", True, hello) and remote.max_bytes == local.max_bytes
        given = _wire.decode(plan)
        table = checks.HIDDEN["fourier_encoder"]
        sent = _core.probe_part(table, Fourier, given["config"], given["given"], hidden=True)
        line = (_wire.encode({"report": sent}) + "\n").encode()
        verdict = remote.verdict("fourier_encoder", True, 3.0, line)
        assert verdict == local.verdict("fourier_encoder", True, 3.0, line) and verdict["earned"] == 3.0
        assert remote.verdict("fourier_encoder", True, 3.0, b"")["earned"] == 0  # nothing arrived
        with pytest.raises(ValueError):
            remote.plan("fourier_encoder", True, b"not json\n")
    finally:
        service.stop()

    class Broken(Planner):  # the instructor's bug in a recorder or a verdict
        def verdict(self, *args):
            raise KeyError("wo")

    service = Service(str(tmp_path / "b.sock"), planner=Broken())
    try:
        with pytest.raises(RuntimeError) as err:
            Remote(service.path).verdict("fourier_encoder", True, 3.0, line)
        assert type(err.value).__name__ == "KeyError" and str(err.value) == "'wo'"
    finally:
        service.stop()


def test_probes_receive_only_given_inputs():
    """The expectations stay with the verdicts: a probe reading one fails in every mode."""
    for part, table in checks.VISIBLE.items():
        data = _core.recorded(table, table.config)
        given = _core.given_of(table, data)
        assert set(given["tensors"]) | set(given["values"]) <= set(table.given), part
        expected = (set(data["tensors"]) | set(data["values"])) - set(table.given)
        assert not expected & (set(given["tensors"]) | set(given["values"])), part


def test_rng_and_threads_untouched():
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    check("fourier_encoder", Fourier, points=1)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))
    assert torch.get_num_threads() == threads


def test_hidden_uses_other_sizes():
    for name in checks.HIDDEN:
        assert checks.HIDDEN[name].config != checks.VISIBLE[name].config, name


def test_unknown_part():
    with pytest.raises(ValueError, match="part must be one of"):
        check("nope", Fourier, points=1)


def test_close_is_own_code():
    a = torch.tensor([1.0, 2.0])
    assert _core.close(a, a + 1e-6)
    assert not _core.close(a, a + 1e-2)
    assert not _core.close(a, torch.tensor([math.nan, 2.0]))
    assert not _core.close(a, a[:1])


# --------------------------------------------------------------------------------------------
# the student runtime (cfgflow.checks): no reference, recorded data, one check for both modes

_STUDENT_SCRIPT = r"""
import importlib.abc, math, sys

class Block(importlib.abc.MetaPathFinder):  # a student install: neither package exists
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cfgflow_ref", "autograder"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Block())
import torch, torch.nn as nn
from cfgflow.checks import check

class FourierEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t):
        f = 2 * math.pi * t.reshape(-1, 1) * self.weights[None]
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)

print("EARNED", check("fourier_encoder", FourierEncoder, points=2))
Fake = type("FourierEncoder", (FourierEncoder,), {"__module__": "cfgflow_ref.models"})
try:
    check("fourier_encoder", Fake, points=2)
except AssertionError as e:
    print("REFUSED", "comes from cfgflow_ref" in str(e))
try:
    check("fourier_encoder", FourierEncoder, points=3, hidden=True)
except RuntimeError as e:
    print("HIDDEN", type(e).__name__, e)
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("cfgflow_ref", "autograder")))
"""


def test_student_runtime_runs_without_reference_or_autograder():
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    env.pop("CFGFLOW_JUDGE", None)
    proc = subprocess.run([sys.executable, "-c", _STUDENT_SCRIPT], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "EARNED 2.0" in proc.stdout and "REFUSED True" in proc.stdout
    hidden = ("HIDDEN HiddenChecksNotHere fourier_encoder: the hidden checks run only when the notebook "
              "is graded")
    assert hidden in proc.stdout
    assert "LOADED []" in proc.stdout


def test_student_runtime_computes_no_part():
    """The student runtime's code uses none of the operations the graded parts are made of
    (attention's softmax and products, the Fourier features' cos / sin / pi, mse_loss or norms)
    and imports
    neither the reference nor the instructors' package: the recorded data holds the numbers."""
    import ast
    from pathlib import Path

    import cfgflow.checks as rt

    banned = {"softmax", "cos", "sin", "pi", "mse_loss", "l1_loss", "scaled_dot_product_attention", "norm",
              "matmul", "bmm", "einsum", "baddbmm"}
    for path in Path(rt.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("cfgflow_ref", "autograder", "math") for n in names), \
                    f"{path.name}:{node.lineno} imports {names}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in banned, f"{path.name}:{node.lineno} uses .{node.attr}"
            if isinstance(node, ast.BinOp):
                assert not isinstance(node.op, ast.MatMult), f"{path.name}:{node.lineno} uses @"


def test_recorded_data_is_up_to_date():
    from autograder.checks import record

    assert record.stale() == {}


def test_recorded_data_staleness_ignores_last_bits_only():
    """Another CPU changes the last float32 bits of a recorded output (seen: 6e-8); a real change
    of the recording (a number, a shape, a config entry) is still stale."""
    from autograder.checks import record
    from cfgflow.checks import _data

    text = _data.path_of("mlp_field").read_text(encoding="utf-8")
    data = _data.decode(text)

    def edited(**tensors):
        return _data.dumps(data["config"], data["values"], {**data["tensors"], **tensors})

    ok = data["tensors"]["ok"]
    assert not record._differs(text, edited(ok=ok + 6e-8))
    assert record._differs(text, edited(ok=ok + 1e-4))
    assert record._differs(text, edited(ok=ok.reshape(-1)))
    assert record._differs(text, _data.dumps({**data["config"], "b": 5}, data["values"], data["tensors"]))
