"""``python -m autograder.catalog [--markdown] [--part PART]``: run every catalog entry through
the checks (visible and hidden mode) and print a summary, or the markdown table of
``docs/grading-checks.md``."""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import dataclass
from typing import List

from autograder.checks import PARTS, run_check

from . import Entry, entries


@dataclass
class Outcome:
    entry: Entry
    visible: float       # fraction earned
    hidden: float
    text: str            # failure text of both modes

    @property
    def ok(self) -> bool:
        e = self.entry
        if e.kind == "alternative":
            return self.visible == 1.0 and self.hidden == 1.0
        lost = self.visible < 1.0 or self.hidden < 1.0
        return lost and e.expect.lower() in self.text.lower()

    @property
    def first_message(self) -> str:
        for line in self.text.splitlines():
            if self.entry.expect and self.entry.expect.lower() in line.lower():
                return line
        return self.text.splitlines()[0] if self.text else ""


def evaluate(entry: Entry) -> Outcome:
    sink = io.StringIO()
    vis = run_check(entry.part, entry.cls, points=1, hidden=False, out=sink)
    hid = run_check(entry.part, entry.cls, points=1, hidden=True, out=sink)
    return Outcome(entry, vis.fraction, hid.fraction, "\n".join(vis.failures + hid.failures))


def markdown(outcomes: List[Outcome]) -> str:
    lines = ["| part | mutant | what it does | visible | hidden | message it gets |",
             "|---|---|---|---|---|---|"]
    for o in outcomes:
        if o.entry.kind == "mutant":
            msg = o.first_message.replace("|", "\\|")
            lines.append(f"| {o.entry.part} | {o.entry.name} | {o.entry.doc} | {o.visible:.0%} | "
                         f"{o.hidden:.0%} | {msg} |")
    lines += ["", "| part | accepted alternative | what differs | visible | hidden |",
              "|---|---|---|---|---|"]
    for o in outcomes:
        if o.entry.kind == "alternative":
            lines.append(f"| {o.entry.part} | {o.entry.name} | {o.entry.doc} | {o.visible:.0%} | "
                         f"{o.hidden:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--markdown", action="store_true", help="print the markdown tables")
    ap.add_argument("--part", choices=sorted(PARTS), help="only this part")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    outcomes = [evaluate(e) for e in entries(args.part)]
    wall = time.perf_counter() - start
    if args.markdown:
        print(markdown(outcomes))
    bad = [o for o in outcomes if not o.ok]
    mut = [o for o in outcomes if o.entry.kind == "mutant"]
    alt = [o for o in outcomes if o.entry.kind == "alternative"]
    summary = (f"mutants caught {sum(o.ok for o in mut)}/{len(mut)}, alternatives accepted "
               f"{sum(o.ok for o in alt)}/{len(alt)}, {wall:.1f} s")
    print(("\n" if args.markdown else "") + summary, file=sys.stdout if not args.markdown else sys.stderr)
    for o in bad:
        print(f"NOT OK {o.entry.part}/{o.entry.name} ({o.entry.kind}): visible {o.visible:.2f} hidden "
              f"{o.hidden:.2f}\n  {o.text[:600]}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
