"""Catalogs that prove the checks: realistic WRONG implementations (mutants) of every graded
part, each with the message substring its failure must contain, genuinely different CORRECT
implementations (alternatives) that must earn full marks, and TRIVIAL stubs that compute nothing
(zeros, ones, noise, the input echoed, a learned constant: :mod:`.trivial`), which may earn at
most the share of the part's output-shape sub-check.

``ENTRIES`` lists them all; ``python -m autograder.catalog --markdown`` prints the table of
``docs/grading-checks.md`` (it runs every check on every entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class Entry:
    part: str
    name: str
    kind: str               # "mutant", "alternative" or "trivial"
    cls: type
    expect: Optional[str]   # substring the failure text must contain (mutants)
    doc: str                # one line: what it does
    fraction: Optional[float] = None  # share of the points it must earn in both modes (real-style)


ENTRIES: List[Entry] = []
CROSS_PART_MODULES = ("real", "trivial")  # catalog modules with entries of several parts


def _doc(cls) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


def mutant(part: str, expect: str, fraction: Optional[float] = None):
    """Register a class as a wrong implementation of ``part`` whose failure mentions ``expect``;
    with ``fraction``, it must also earn that share of the points (to two decimals) in both modes."""
    def deco(cls):
        ENTRIES.append(Entry(part, cls.__name__, "mutant", cls, expect, _doc(cls), fraction))
        return cls
    return deco


def alternative(part: str):
    """Register a class as a correct implementation of ``part`` (must get full marks)."""
    def deco(cls):
        ENTRIES.append(Entry(part, cls.__name__, "alternative", cls, None, _doc(cls)))
        return cls
    return deco


def trivial(part: str):
    """Register a class as a trivial stub of ``part``: it may earn at most the share of the part's
    ``shape`` sub-check, in every mode (:func:`shape_share`)."""
    def deco(cls):
        ENTRIES.append(Entry(part, cls.__name__, "trivial", cls, None, _doc(cls)))
        return cls
    return deco


def shape_share(part: str) -> float:
    """The share of ``part``'s points its ``shape`` sub-check carries (0 when it has none): what a
    right-shaped output that computes nothing may earn."""
    from autograder.checks import VISIBLE

    subs = VISIBLE[part].subchecks
    return sum(s.weight for s in subs if s.name == "shape") / sum(s.weight for s in subs)


def entries(part: Optional[str] = None, kind: Optional[str] = None) -> List[Entry]:
    _load()
    from autograder.checks import HIDDEN

    order = {name: i for i, name in enumerate(HIDDEN)}
    chosen = [e for e in ENTRIES if (part is None or e.part == part) and (kind is None or e.kind == kind)]
    return sorted(chosen, key=lambda e: (order.get(e.part, 99), e.kind != "mutant"))


def _load():
    import importlib

    from cfgflow.course import PARTS

    # each part's module (cfgflow/course.py), then the modules with entries of several parts
    for module in dict.fromkeys([p.module for p in PARTS.values()] + list(CROSS_PART_MODULES)):
        importlib.import_module(f"{__name__}.{module}")  # importing registers the entries
