"""The check runner: one table of weighted sub-checks per part, run in order on fresh inputs.

A sub-check is a function ``fn(ctx)`` that returns on success and raises :class:`Fail` with a
message naming the likely mistake. Any other exception counts as a failure whose message names
the exception type and text (and a hint for the common ones).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..course import REFERENCE_CLASSES as _GRADED_REFERENCE_NAMES  # refused: be, subclass, contain


class Fail(Exception):
    """A sub-check failed; the message names the likely mistake."""


Observation = Dict[str, Any]
"""What a probe reports: tensors, numbers, strings, booleans, ``None`` and lists / dicts of them
(:mod:`._wire` carries it across the kernel's boundary as JSON; no object of the student's)."""


@dataclass(frozen=True)
class SubCheck:
    """One weighted sub-check: a probe that runs the student's code and reports what came out, and
    a verdict, a pure function from that observation and the expectations to pass (returns) or
    fail (raises :class:`Fail` naming the mistake). A probe may raise :class:`Fail` itself when it
    could not probe (no weights found); a student's exception in the probe is a failure too."""

    name: str                      # short id, e.g. "shape"
    description: str               # what is checked, printed on every line
    weight: float                  # share of the part's points
    probe: Callable[["Context"], Observation]
    verdict: Callable[[Observation, "Expect"], None]


@dataclass
class CheckTable:
    """A check table. ``given`` names the recorded tensors and values the probes receive (inputs,
    canonical weights); every other recorded entry is an expectation only verdicts read. ``record``
    (instructor side only) makes a recording ``(values, tensors)`` for a config and a seed: the
    judge's fresh inputs and the reference's expectations."""

    name: str
    subchecks: Sequence[SubCheck]
    config: Dict[str, Any]                     # sizes and seeds of this table's mode
    hints: Dict[str, str] = field(default_factory=dict)  # exception-text substring -> hint
    rationale: str = ""  # why the weights are what they are (docs/grading-checks.md, weighting rubric)
    given: Tuple[str, ...] = ()
    record: Optional[Callable[[Dict[str, Any], int], Tuple[Dict[str, float], Dict[str, torch.Tensor]]]] = None

    def replaced(self, config: Dict[str, Any], record=None) -> "CheckTable":
        """The same table (sub-checks, weights, hints) with other sizes and seeds and a recorder
        (the hidden tables)."""
        return CheckTable(self.name, list(self.subchecks), dict(config), dict(self.hints), self.rationale,
                    tuple(self.given), record if record is not None else self.record)


@dataclass
class Result:
    name: str
    description: str
    weight: float
    passed: bool
    message: str = ""
    printed: str = ""                                   # what the student's code printed in the probe
    warnings: List[str] = field(default_factory=list)  # warnings it raised


@dataclass
class Report:
    part: str
    points: float
    hidden: bool
    results: List[Result]
    refused: Optional[str] = None

    @property
    def fraction(self) -> float:
        if self.refused:
            return 0.0
        total = sum(r.weight for r in self.results)
        return sum(r.weight for r in self.results if r.passed) / total if total else 0.0

    @property
    def earned(self) -> float:
        """Points earned, to two decimals: what people read (``3.11 / 4``) and what nbgrader adds up."""
        return round(self.points * self.fraction, 2)

    @property
    def failures(self) -> List[str]:
        if self.refused:
            return [self.refused]
        return [f"{r.description}: {r.message}" for r in self.results if not r.passed]

    @property
    def text(self) -> str:
        return "\n".join(self.failures)

    @property
    def tag(self) -> str:
        return f"[{self.part}{' hidden' if self.hidden else ''}]"

    def lines(self) -> List[str]:
        """The lines a test cell shows: one per sub-check (wrapped), what the code printed or
        warned, and the score."""
        tag, out = self.tag, []
        if self.refused:
            return wrap(f"{tag} FAIL  refused: {self.refused}", tag)
        for r in self.results:
            out += wrap(f"{tag} PASS  {r.description}" if r.passed else
                        f"{tag} FAIL  {r.description}: {r.message}", tag)
            if r.printed:
                out += wrap(f"{tag}   (your code printed: {r.printed[:200]!r})", tag)
            for w in r.warnings[:3]:
                out += wrap(f"{tag}   (warning: {w})", tag)
        out.append(f"{tag} score {self.earned:g} / {self.points:g}")
        return out


class Context:
    """What a probe sees: the student's class, the mode's config, the given inputs, a per-part
    cache (probes of one part may share one expensive run)."""

    def __init__(self, part: str, cls: type, hidden: bool, cfg: Dict[str, Any],
                 given: Optional[Dict[str, Any]] = None, allow_reference: bool = False):
        self.part, self.cls, self.hidden, self.cfg = part, cls, hidden, cfg
        self.given = given or {"values": {}, "tensors": {}}
        self.allow_reference = allow_reference
        self.cache: Dict[str, Any] = {}

    def __getitem__(self, key: str):
        return self.cfg[key]

    def tensor(self, name: str, dtype=torch.float32) -> torch.Tensor:
        """A fresh copy of a given tensor (a probe may write into it)."""
        return self.given["tensors"][name].to(dtype).clone()

    def value(self, name: str):
        return self.given["values"][name]

    def new(self, *args, **kwargs):
        """Construct the student's class; modules go to eval mode (dropout off: the checks grade
        the function) and may not be built from graded reference modules."""
        obj = self.cls(*args, **kwargs)
        if isinstance(obj, nn.Module):
            obj.eval()
            if not self.allow_reference:
                why = reference_submodule(obj)
                if why:
                    raise Fail(why)
        return obj


class Expect:
    """What a verdict compares with: the config, and the recorded (self-check) or the judge's
    (graded) expectations."""

    def __init__(self, cfg: Dict[str, Any], data: Optional[Dict[str, Any]] = None):
        self.cfg = cfg
        data = data or {}
        self.values: Dict[str, float] = dict(data.get("values", {}))
        self.tensors: Dict[str, torch.Tensor] = dict(data.get("tensors", {}))

    def __getitem__(self, key: str):
        return self.cfg[key]

    def tensor(self, name: str, dtype=torch.float64) -> torch.Tensor:
        return self.tensors[name].to(dtype).clone()

    def value(self, name: str) -> float:
        return self.values[name]


# --------------------------------------------------------------------------------------------
# comparison helpers (own code: never torch.allclose, which a student could patch)

def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| in float64; inf when the shapes differ."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return float("inf")
    d = (a.detach().double() - b.detach().double()).abs()
    return float(d.max().item()) if d.numel() else 0.0


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    """``max |a - b| <= tol * (1 + max |b|)``: absolute near 0, relative for large values."""
    if not isinstance(b, torch.Tensor) or not isinstance(a, torch.Tensor) or a.shape != b.shape:
        return False
    scale = float(b.detach().double().abs().max().item()) if b.numel() else 0.0
    err = max_err(a, b)
    return err == err and err <= tol * (1.0 + scale)  # err == err: NaN fails


def as_obs(x):
    """A student's return value as an observation: a tensor as it is, anything else by its type
    name (a string)."""
    return x if isinstance(x, torch.Tensor) else type(x).__name__


def shape_of(x) -> str:
    """The shape of a tensor, or the type name of anything else (an :func:`as_obs` string as it is)."""
    if isinstance(x, torch.Tensor):
        return str(tuple(x.shape))
    return x if isinstance(x, str) else type(x).__name__


def expect_shape(out, shape, what: str = "output", hint: str = ""):
    """Fail unless ``out`` (a tensor, or an :func:`as_obs` type name) has ``shape``."""
    if not isinstance(out, torch.Tensor):
        raise Fail(f"{what} should be a tensor of shape {tuple(shape)}, got {shape_of(out)}")
    if tuple(out.shape) != tuple(shape):
        extra = f" ({hint})" if hint else ""
        raise Fail(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}{extra}")


def describe_exception(e: BaseException, hints: Dict[str, str]) -> str:
    if isinstance(e, NotImplementedError):
        return "your code raised NotImplementedError: did you fill in the cell?"
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    msg = f"your code raised {type(e).__name__}: {text[:300]}"
    for needle, hint in hints.items():
        if needle.lower() in str(e).lower():
            msg += f" -> {hint}"
            break
    return msg


BATCH1_HINT = ("something drops the batch axis when b = 1 (t.squeeze() does, and so does .squeeze() "
               "on an embedding): use t.reshape(-1) or t.reshape(-1, 1)")


T4_HINT = "reshape t to (b,) or (b, 1) first, whatever shape it comes in: t.reshape(-1)"


def raising_as(when: str, hint: str, fn, *args):
    """Call ``fn(*args)``; an exception becomes a failure that says under which input it happened
    (``when``) and what usually causes it (``hint``)."""
    try:
        return fn(*args)
    except (Fail, NotImplementedError):
        raise
    except Exception as e:  # noqa: BLE001 - the student's error, reported with a hint
        raise Fail(f"{when} {describe_exception(e, {})} -> {hint}") from e


def on_meta(run: Callable[[], Any], errors: Tuple[type, ...] = (RuntimeError,),
            names_device: Callable[[BaseException], bool] = lambda e: "device" in str(e).lower()
            ) -> Tuple[Optional[str], Optional[str]]:
    """Run ``run()``: the student's code on meta-device tensors, the stand-in for a GPU where there
    is none. ``(the exception's type name, None)`` when it raised one of ``errors`` that
    ``names_device`` takes for a device mismatch (by default: its text names a device), else
    ``(None, the device type of the result)`` (None when the result is no tensor). Any other
    exception is the student's own and propagates."""
    try:
        out = run()
    except errors as e:
        if names_device(e):
            return type(e).__name__, None
        raise
    return None, out.device.type if isinstance(out, torch.Tensor) else None


def at_batch1(fn, *args):
    """Call ``fn(*args)`` on batch-size-1 inputs whose ``t`` has shape ``(1,)`` (the other t shape
    has its own sub-check); an exception becomes a failure that names batch size 1."""
    return raising_as("at batch size 1 (t of shape (1,))", BATCH1_HINT, fn, *args)


def with_t4(fn, *args):
    """Call ``fn(*args)`` whose ``t`` has shape ``(b, 1, 1, 1)``; an exception names that shape."""
    return raising_as("with t of shape (b, 1, 1, 1)", T4_HINT, fn, *args)


@torch.no_grad()
def rerandomize(module: nn.Module, seed: int, skip=()):
    """Give every parameter fresh random values so zero-initialised layers (adaLN-Zero,
    zero-initialised heads) stop hiding the computation. Weights ~ N(0, 1/fan_in),
    vectors ~ N(0, 0.3^2) (norm gains become 1 + N(0, 0.1^2))."""
    g = torch.Generator().manual_seed(seed)
    skip_ids = {id(p) for p in skip}
    for name, p in module.named_parameters():
        if id(p) in skip_ids or not p.dtype.is_floating_point:
            continue
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if p.dim() >= 2:
            fan_in = max(1, p[0].numel())
            p.copy_(r / fan_in**0.5)
        elif isinstance(_owner(module, name), _NORMS) and name.endswith("weight"):
            p.copy_(1 + 0.1 * r)
        else:
            p.copy_(0.3 * r)


_NORMS = (nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", nn.LayerNorm))


def _owner(module: nn.Module, param_name: str) -> nn.Module:
    parts = param_name.split(".")[:-1]
    m = module
    for part in parts:
        m = getattr(m, part)
    return m


def zero_parameters(module: nn.Module) -> List[str]:
    """Names of floating parameters that are exactly zero everywhere."""
    return [n for n, p in module.named_parameters()
            if p.dtype.is_floating_point and p.numel() and float(p.detach().abs().max()) == 0.0]


# --------------------------------------------------------------------------------------------
# dependence: a property is credited only where the output carries it (a constant output is the
# same at every t, in any batch, in any token order: it shows none of those properties)

def dependence(run: Callable[..., Any], args: Sequence[Any],
               changes: Optional[Dict[str, Sequence[Any]]] = None, weights: Optional[Any] = None,
               seed: int = 0) -> Observation:
    """The probe's side of :func:`expect_dependence`: ``run(*args)`` (``base``), the same call
    again (``again``: a function of its inputs gives the same output), the call with each entry of
    ``changes`` (a name, e.g. ``"t"``, and the arguments with that input changed), and, with
    ``weights`` (the module's parameters, or the tensors that play their part), the call once more
    with each of those tensors nudged by noise from its own generator (``weights``; restored
    afterwards, the global random state untouched). ``n_weights``: how many were nudged."""
    obs: Observation = {"base": as_obs(run(*args)), "again": as_obs(run(*args)), "changes": {},
                        "weights": None, "n_weights": 0}
    for name, other in (changes or {}).items():
        obs["changes"][name] = as_obs(run(*other))
    if weights is None:
        return obs
    seen, ws = set(), []
    for w in weights:
        if isinstance(w, torch.Tensor) and w.dtype.is_floating_point and w.numel() and id(w) not in seen:
            seen.add(id(w))
            ws.append(w)
    obs["n_weights"] = len(ws)
    if not ws:
        return obs
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        saved = [w.detach().clone() for w in ws]
        for w in ws:  # N(0, 1/fan_in) on a matrix, N(0, 0.3^2) on a vector: the output must move
            scale = 1 / max(1, w[0].numel()) ** 0.5 if w.dim() >= 2 else 0.3
            w.add_(scale * torch.randn(w.shape, generator=g, dtype=torch.float32).to(w.dtype))
    try:
        obs["weights"] = as_obs(run(*args))
    finally:
        with torch.no_grad():
            for w, old in zip(ws, saved):
                w.copy_(old)
    return obs


NO_DEPENDENCE = ("your output does not depend on {0}: changing {0} leaves it as it was, so this sub-check "
                 "has nothing to credit")
DEPENDENCE_TOL = 1e-6  # outputs closer than this (relative, :func:`close`) count as the same output


def _unchanged(other, base) -> bool:
    same_shape = isinstance(other, torch.Tensor) and other.shape == base.shape
    return same_shape and close(other, base, DEPENDENCE_TOL)


def expect_dependence(dep: Observation, on: Sequence[str] = (), weights: bool = True,
                      shown: Optional[Dict[str, bool]] = None) -> None:
    """The verdict's side of :func:`dependence`: fail unless the output is a function of the
    inputs (two calls on the same inputs agree), changes with every input named in ``on`` (keys
    of the probe's ``changes``: a missing one is a malformed observation) and every input of
    ``shown`` whose value is False (a dependence the verdict read off other outputs, e.g. basis
    responses), and, with ``weights``, changes when the module's weights do; in that order. Decides
    nothing when the output is not a finite tensor (the sub-check's own verdict names what is
    wrong with it)."""
    base = dep["base"]
    if not isinstance(base, torch.Tensor) or not bool(torch.isfinite(base.detach()).all()):
        return
    if not _unchanged(dep["again"], base):
        raise Fail("your output is not a function of the inputs: two calls on the same inputs gave different "
                   "outputs (random values?), so it shows none of the properties checked here")
    for name in on:
        if _unchanged(dep["changes"][name], base):
            raise Fail(NO_DEPENDENCE.format(name))
    for name, depends in (shown or {}).items():
        if not depends:
            raise Fail(NO_DEPENDENCE.format(name))
    if weights and (int(dep["n_weights"]) == 0 or _unchanged(dep["weights"], base)):
        raise Fail("your output does not change when the weights do: compute it with your module's own "
                   "layers (parameters), else this sub-check has nothing to credit")


# --------------------------------------------------------------------------------------------
# refusal of reference code (cfgflow_ref: the instructors' package; students do not have it)

def _graded_reference_classes():
    """The graded reference classes, when ``cfgflow_ref`` is loaded (never imported here: a class
    can only come from it once something imported it)."""
    ref = sys.modules.get("cfgflow_ref")
    if ref is None:
        return ()
    return tuple(c for c in (getattr(ref, n, None) for n in _GRADED_REFERENCE_NAMES) if isinstance(c, type))


def reference_use(cls) -> Optional[str]:
    """Why ``cls`` is reference code (None when it is not)."""
    if not isinstance(cls, type):
        return f"expected a class, got {type(cls).__name__}"
    if str(getattr(cls, "__module__", "")).startswith("cfgflow_ref"):
        return f"{cls.__name__} comes from cfgflow_ref: write your own class"
    graded = _graded_reference_classes()
    for base in cls.__mro__[1:]:
        if base in graded or (str(getattr(base, "__module__", "")).startswith("cfgflow_ref")
                              and base.__name__ in _GRADED_REFERENCE_NAMES):
            return f"{cls.__name__} subclasses the reference {base.__name__}: write your own class"
    return None


def reference_submodule(module) -> Optional[str]:
    """Why an instance is built from graded reference modules (None when it is not)."""
    if not isinstance(module, nn.Module):
        return None
    graded = _graded_reference_classes()
    for name, sub in module.named_modules():
        if name and isinstance(sub, graded):
            return f"submodule '{name}' is the reference {type(sub).__name__}: use your own classes"
    return None


# --------------------------------------------------------------------------------------------
# the runner: probes (the kernel's side), verdicts (the judge's, or the kernel's in self-check)

PROBE_TEXT_LIMIT = 1000  # characters of a probe's failure message, printed text or warning kept


def probe_part(part: CheckTable, cls, cfg: Dict[str, Any], given: Optional[Dict[str, Any]] = None, *,
               hidden: bool = False, allow_reference: bool = False) -> Dict[str, Any]:
    """Run every probe of ``part`` on ``cls`` with ``cfg`` and the ``given`` inputs: what the kernel
    sends to the judge, ``{"refused": why}`` or ``{"probes": {sub-check: record}}`` where a record
    is ``{"obs": observation}`` or ``{"fail": message}``, plus ``printed`` / ``warnings``."""
    if not allow_reference:
        why = reference_use(cls)
        if why:
            return {"refused": why}
    ctx = Context(part.name, cls, hidden, cfg, given, allow_reference)
    base_seed = int(cfg.get("seed", 0))
    records: Dict[str, Any] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and fair to a shared machine
    try:
        for i, sub in enumerate(part.subchecks):
            noise = io.StringIO()
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as caught, \
                    contextlib.redirect_stderr(noise), contextlib.redirect_stdout(noise):
                warnings.simplefilter("always")
                torch.manual_seed(base_seed * 1000 + i)
                try:
                    rec: Dict[str, Any] = {"obs": sub.probe(ctx)}
                except Fail as e:
                    rec = {"fail": str(e)[:PROBE_TEXT_LIMIT]}
                except Exception as e:  # noqa: BLE001 - any student error is a failed sub-check
                    rec = {"fail": describe_exception(e, part.hints)[:PROBE_TEXT_LIMIT]}
            printed = noise.getvalue().strip()
            if printed:
                rec["printed"] = printed[:PROBE_TEXT_LIMIT]
            if caught:
                rec["warnings"] = [f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught[:3]]
            records[sub.name] = rec
    finally:
        torch.set_num_threads(threads)
    return {"probes": records}


def _short_text(value, limit: int = PROBE_TEXT_LIMIT) -> str:
    return value[:limit] if isinstance(value, str) else ""


def judge_part(part: CheckTable, sent: Any, expect: Expect, *, points: float, hidden: bool) -> Report:
    """The verdicts: ``sent`` (what :func:`probe_part` returned, decoded from the wire) against
    ``expect``. Pure: runs no student code. Whatever ``sent`` holds, every sub-check gets a result;
    a missing or malformed record fails that sub-check with a message that says so."""
    report = Report(part.name, float(points), hidden, [])
    if not isinstance(sent, dict):
        sent = {}
    if "refused" in sent:
        report.refused = _short_text(sent["refused"]) or "refused"
        return report
    probes = sent.get("probes") if isinstance(sent.get("probes"), dict) else {}
    malformed = _short_text(sent.get("malformed"), 300)
    for sub in part.subchecks:
        rec = probes.get(sub.name)
        res = Result(sub.name, sub.description, sub.weight, False)
        if malformed:
            res.message = f"the probes' report could not be read ({malformed})"
        elif not isinstance(rec, dict) or not ("obs" in rec or "fail" in rec):
            res.message = "no observation arrived for this sub-check (the probe did not run)"
        elif "fail" in rec:
            res.message = _short_text(rec["fail"]) or "the probe failed"
        else:
            try:
                sub.verdict(rec["obs"], expect)
                res.passed = True
            except Fail as e:
                res.message = str(e)
            except Exception as e:  # noqa: BLE001 - a malformed observation fails this sub-check only
                res.message = (f"malformed observation ({type(e).__name__}: {str(e)[:200]}): the probe's "
                               "report did not have the expected form")
        if isinstance(rec, dict):
            res.printed = _short_text(rec.get("printed"))
            ws = rec.get("warnings")
            res.warnings = [_short_text(w, 300) for w in ws[:3]] if isinstance(ws, list) else []
        report.results.append(res)
    return report


def recorded(part: CheckTable, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The shipped recording of ``part`` (self-check mode), empty for a part without one."""
    from . import _data

    return _data.load(part.name, cfg) if _data.path_of(part.name).exists() else {"values": {}, "tensors": {}}


def given_of(part: CheckTable, data: Dict[str, Any]) -> Dict[str, Any]:
    """The entries of a recording that the probes receive (``part.given``); the rest stay with the
    verdicts."""
    return {"values": {k: v for k, v in data.get("values", {}).items() if k in part.given},
            "tensors": {k: v for k, v in data.get("tensors", {}).items() if k in part.given}}


def run_part(part: CheckTable, cls, *, points: float, hidden: bool = False,
             data: Optional[Dict[str, Any]] = None, allow_reference: bool = False, out=None) -> Report:
    """Probe and judge in this process (self-check mode, and the instructors' catalogs): the
    probes' report crosses the same wire encoding as in a graded run, then the verdicts run on it.
    ``data``: the recording (default: the shipped one). Prints the lines to ``out`` (stdout)."""
    from . import _wire

    out = out if out is not None else sys.stdout
    data = recorded(part, part.config) if data is None else data
    sent = probe_part(part, cls, part.config, given_of(part, data), hidden=hidden,
                      allow_reference=allow_reference)
    report = judge_part(part, _wire.decode(_wire.encode(sent)), Expect(part.config, data),
                        points=points, hidden=hidden)
    print("\n".join(report.lines()), file=out)
    return report


LINE_WIDTH = 96  # check lines are wrapped at spaces: a browser would otherwise break them mid-word


_SHORT_PARENS = re.compile(r"\([^()]{1,24}\)")  # "(b, 1, 1, 1)": kept on one line


def wrap(line: str, tag: str) -> List[str]:
    """``line`` (it starts with ``tag`` and a PASS/FAIL word) wrapped at spaces to ``LINE_WIDTH``
    columns, continuation lines indented under the text after ``{tag} FAIL  ``; a short parenthesis
    such as a shape is never split."""
    kept = _SHORT_PARENS.sub(lambda m: m.group(0).replace(" ", "\0"), line)
    indent = " " * (len(tag) + len(" FAIL  "))
    text = textwrap.fill(kept, LINE_WIDTH, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)
    return text.replace("\0", " ").split("\n")
