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
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from ..course import REFERENCE_CLASSES as _GRADED_REFERENCE_NAMES  # refused: be, subclass, contain
from . import _integrity


class Fail(Exception):
    """A sub-check failed; the message names the likely mistake."""


@dataclass(frozen=True)
class SubCheck:
    name: str                      # short id, e.g. "shape"
    description: str               # what is checked, printed on every line
    weight: float                  # share of the part's points
    fn: Callable[["Context"], None]


@dataclass
class Part:
    name: str
    subchecks: Sequence[SubCheck]
    config: Dict[str, Any]                     # sizes and seeds of this table's mode
    hints: Dict[str, str] = field(default_factory=dict)  # exception-text substring -> hint
    rationale: str = ""  # why the weights are what they are (docs/grading-checks.md, weighting rubric)

    def replaced(self, config: Dict[str, Any], **fns: Callable[["Context"], None]) -> "Part":
        """The same table (names, descriptions, weights, hints) with other sizes and seeds and the
        sub-checks named in ``fns`` computed another way (the hidden checks: against the reference)."""
        unknown = set(fns) - {s.name for s in self.subchecks}
        if unknown:
            raise ValueError(f"{self.name} has no sub-checks {sorted(unknown)}")
        subs = [SubCheck(s.name, s.description, s.weight, fns.get(s.name, s.fn)) for s in self.subchecks]
        return Part(self.name, subs, dict(config), dict(self.hints), self.rationale)


@dataclass
class Result:
    name: str
    description: str
    weight: float
    passed: bool
    message: str = ""


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


class Context:
    """What a sub-check sees: the student's class, the mode's config, a per-part cache."""

    def __init__(self, part: str, cls: type, hidden: bool, cfg: Dict[str, Any]):
        self.part, self.cls, self.hidden, self.cfg = part, cls, hidden, cfg
        self.cache: Dict[str, Any] = {}

    def __getitem__(self, key: str):
        return self.cfg[key]

    def new(self, *args, **kwargs):
        """Construct the student's class; modules go to eval mode (dropout off: the checks grade
        the function) and may not be built from graded reference modules."""
        obj = self.cls(*args, **kwargs)
        if isinstance(obj, nn.Module):
            obj.eval()
            if not getattr(self, "allow_reference", False):
                why = reference_submodule(obj)
                if why:
                    raise Fail(why)
        return obj


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


def shape_of(x) -> str:
    if isinstance(x, torch.Tensor):
        return str(tuple(x.shape))
    return type(x).__name__


def expect_shape(out, shape, what: str = "output", hint: str = ""):
    if not isinstance(out, torch.Tensor):
        raise Fail(f"{what} should be a tensor of shape {tuple(shape)}, got {type(out).__name__}")
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
# the runner

def run_part(part: Part, cls, *, points: float, hidden: bool = False,
             allow_reference: bool = False, out=None) -> Report:
    """Run every sub-check of ``part`` on ``cls``; print one line each to ``out`` (stdout)."""
    out = out if out is not None else sys.stdout
    report = Report(part.name, float(points), hidden, [])
    tag = f"[{part.name}{' hidden' if hidden else ''}]"
    problems = _integrity.tampering()
    if problems:
        report.refused = ("the functions the checks rely on were replaced (" + ", ".join(problems)
                          + "): restart the kernel and run the notebook without monkeypatching")
    elif not allow_reference:
        report.refused = reference_use(cls)
    if report.refused:
        emit(f"{tag} FAIL  refused: {report.refused}", out, tag)
        return report
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and fair to a shared machine
    try:
        _run_subchecks(part, cls, hidden, allow_reference, report, tag, out)
    finally:
        torch.set_num_threads(threads)
    if _integrity.tampering():  # patched during the run
        report.refused = "the functions the checks rely on were replaced while the checks ran"
        emit(f"{tag} FAIL  refused: {report.refused}", out, tag)
    print(f"{tag} score {report.earned:g} / {points:g}", file=out)
    return report


LINE_WIDTH = 96  # check lines are wrapped at spaces: a browser would otherwise break them mid-word


_SHORT_PARENS = re.compile(r"\([^()]{1,24}\)")  # "(b, 1, 1, 1)": kept on one line


def emit(line: str, out, tag: str) -> None:
    """Print ``line`` (it starts with ``tag`` and a PASS/FAIL word) wrapped at spaces to
    ``LINE_WIDTH`` columns, continuation lines indented under the text after ``{tag} FAIL  ``; a
    short parenthesis such as a shape is never split."""
    kept = _SHORT_PARENS.sub(lambda m: m.group(0).replace(" ", "\0"), line)
    indent = " " * (len(tag) + len(" FAIL  "))
    text = textwrap.fill(kept, LINE_WIDTH, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)
    print(text.replace("\0", " "), file=out)


def _run_subchecks(part: Part, cls, hidden: bool, allow_reference: bool, report: Report, tag: str, out):
    cfg = part.config
    ctx = Context(part.name, cls, hidden, cfg)
    ctx.allow_reference = allow_reference
    base_seed = int(cfg.get("seed", 0))
    for i, sub in enumerate(part.subchecks):
        noise = io.StringIO()
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stderr(noise), contextlib.redirect_stdout(noise):
            warnings.simplefilter("always")
            torch.manual_seed(base_seed * 1000 + i)
            try:
                sub.fn(ctx)
                res = Result(sub.name, sub.description, sub.weight, True)
            except Fail as e:
                res = Result(sub.name, sub.description, sub.weight, False, str(e))
            except Exception as e:  # noqa: BLE001 - any student error is a failed sub-check
                res = Result(sub.name, sub.description, sub.weight, False,
                             describe_exception(e, part.hints))
        report.results.append(res)
        line = f"{tag} PASS  {sub.description}" if res.passed else \
            f"{tag} FAIL  {sub.description}: {res.message}"
        emit(line, out, tag)
        extra = noise.getvalue().strip()
        if extra:
            emit(f"{tag}   (your code printed: {extra[:200]!r})", out, tag)
        for w in caught[:3]:
            emit(f"{tag}   (warning: {w.category.__name__}: {str(w.message)[:200]})", out, tag)


_integrity.register_own(sys.modules[__name__], "max_err", "close", "run_part", "reference_use",
                        "reference_submodule", "describe_exception", "expect_shape")
