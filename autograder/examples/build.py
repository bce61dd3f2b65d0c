"""Build the example submissions from the release, by programmatic edits (so they stay in sync).

    python -m autograder.examples.build                 # into autograder/examples/ (git-ignored)
    python -m autograder.examples.build --out /tmp/ex   # somewhere else

They are built where they are used, never committed: the pipeline builds them from its fresh
release, the tests from the sources (the ``examples`` fixture of tests/conftest.py).

For each assignment ``A`` it writes ``{out}/{A}/{student}/{A}.ipynb`` (the layout
``python -m autograder.grade`` reads) for three students:

* ``complete``  -- the release with every solution region filled in from the source (markers
  removed): what a student who did everything right hands in;
* ``untouched`` -- the release exactly as handed out (every stub still raises);
* ``buggy``     -- ``complete`` with realistic bugs from real submissions,
  listed in :data:`BUGS` with the check part each one breaks.

An edit whose text is not found raises ``ValueError``: a change to the solutions that would
silently leave an example correct fails loudly instead.
"""

from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import nbformat

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
STUDENTS = ("complete", "untouched", "buggy")


@dataclass(frozen=True)
class Bug:
    cell: str  # grade_id of the solution cell edited
    old: str  # exact text replaced
    new: str
    part: str  # the check part (check("<part>", ...)) whose test cells must lose points
    why: str


BUGS: Dict[str, List[Bug]] = {
    "01_cfg": [
        Bug("cfg_trainer", "< self.eta", ">= self.eta", "cfg_loss",
            "null mask inverted: labels dropped with probability 1 - eta"),
        Bug("cfg_trainer", "return F.mse_loss(self.model(x, t, y), target)",
            "return ((self.model(x, t, y) - target) ** 2).sum()", "cfg_loss",
            "loss summed over the batch instead of averaged"),
    ],
    "02_dit": [
        Bug("fourier_encoder", "freqs = 2 * math.pi * t[:, None]", "freqs = t[:, None]",
            "fourier_encoder", "Fourier features without the 2 pi factor"),
        Bug("mha", "* self.head_dim**-0.5", "* self.dim**-0.5", "mha",
            "attention scaled by dim**-0.5 instead of head_dim**-0.5"),
    ],
    "03_latent": [
        Bug("reparameterize", "torch.exp(0.5 * self.logvar) * noise", "torch.exp(self.logvar) * noise",
            "reparameterize", "variance used as the standard deviation (the 1/2 missing)"),
        Bug("latent_sampler", "self.vae.decode(z / self.scale)", "self.vae.decode(z)", "latent_sampler",
            "latents decoded without undoing the scale"),
    ],
}

_MARKER = re.compile(r"^\s*###\s*(BEGIN|END) SOLUTION\s*$")


def _gid(cell) -> Optional[str]:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def fill_solutions(release, source):
    """The release notebook with each solution cell's source taken from ``source``."""
    nb = copy.deepcopy(release)
    src = {_gid(c): c for c in source.cells if _gid(c)}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in src:
            lines = src[meta["grade_id"]].source.splitlines()
            cell.source = "\n".join(ln for ln in lines if not _MARKER.match(ln))
    return nb


def apply_bugs(nb, bugs: Sequence[Bug]):
    nb = copy.deepcopy(nb)
    for bug in bugs:
        cells = [c for c in nb.cells if _gid(c) == bug.cell]
        if len(cells) != 1 or bug.old not in cells[0].source:
            raise ValueError(f"bug '{bug.why}': text {bug.old!r} not found in cell '{bug.cell}'; "
                             "update BUGS in autograder/examples/build.py to the new solution")
        cells[0].source = cells[0].source.replace(bug.old, bug.new)
    return nb


def buggy_parts(assignment: str) -> List[str]:
    return sorted({b.part for b in BUGS.get(assignment, [])})


def build(release_dir: Path, source_dir: Path, out_dir: Path,
          assignments: Optional[Sequence[str]] = None) -> Dict[str, Path]:
    """Write the examples of ``assignments`` (default: every one in ``BUGS``) under ``out_dir``.

    ``release_dir`` / ``source_dir`` hold ``{A}/{A}.ipynb``. Returns ``{A: out_dir / A}``.
    """
    written = {}
    for a in assignments or list(BUGS):
        release = nbformat.read(str(Path(release_dir) / a / f"{a}.ipynb"), as_version=4)
        source = nbformat.read(str(Path(source_dir) / a / f"{a}.ipynb"), as_version=4)
        complete = fill_solutions(release, source)
        nbs = {"complete": complete, "untouched": release, "buggy": apply_bugs(complete, BUGS[a])}
        for student, nb in nbs.items():
            path = Path(out_dir) / a / student / f"{a}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(path))
        written[a] = Path(out_dir) / a
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder.examples.build",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("assignments", nargs="*")
    p.add_argument("--release", type=Path, default=REPO_ROOT / "notebooks")
    p.add_argument("--source", type=Path, default=REPO_ROOT / "solutions")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    for a, path in build(args.release, args.source, args.out, args.assignments or None).items():
        print(f"{a}: {', '.join(STUDENTS)} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
