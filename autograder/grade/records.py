"""Each submission's record, written when its worker ends: a run killed at any point loses no
finished submission, and the same command run again grades only what is missing.

``OUT/records/{student}.json`` holds the student's
:class:`~autograder.grade.outputs.StudentResult` and a digest of everything the grade depends on:
the hand-in's files (names and bytes), the instructor's source notebooks, the grading code and the
settings that change a grade. A rerun reuses a record whose digest still matches (its feedback
page is already in ``OUT/feedback/``) and grades every other student: a changed hand-in, a changed
source or setting, a student with no record. The CSV, the gradebook and the plain feedback pages
are then written for everyone, from the records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable, Optional

from autograder.grade.outputs import StudentResult

RECORDS = "records"
FORMAT = "cfgflow-record-1"
# the settings that can change a grade (not how many workers, where outputs go or the progress bar)
GRADE_SETTINGS = ("assignment", "cell_timeout_s", "submission_timeout_s", "mem_mb", "repair",
                  "ignore_pattern", "isolation", "require_isolation", "tmpfs_mb", "max_procs",
                  "threads_per_worker")


def code_digest() -> str:
    """The grading code's files (the probes and verdicts, the judge's recorders and the
    reference): a change to any of them grades everyone again."""
    from importlib.util import find_spec

    # found, not imported: importing cfgflow or the reference would cost the engine torch's 2 s
    cfgflow, autograder, ref = (Path(find_spec(n).submodule_search_locations[0])
                                for n in ("cfgflow", "autograder", "cfgflow_ref"))
    h = hashlib.sha256()
    roots = [cfgflow / "checks", autograder / "checks", autograder / "judge", ref]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".json"):
                h.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def digest(cfg, sources: Iterable[Path], files: Iterable[Path], code: str = "") -> str:
    """What a grade depends on, hashed: the format, the grading code (:func:`code_digest`), the
    grade settings of ``cfg``, the source notebooks' bytes and the hand-in's file names and bytes."""
    h = hashlib.sha256((FORMAT + code).encode())
    settings = {k: v for k, v in cfg.to_json().items() if k in GRADE_SETTINGS}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for group in (sorted(sources), sorted(files)):
        h.update(b"\0group")
        for path in group:
            h.update(Path(path).name.encode() + b"\0")
            h.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()


def _path(out_dir: Path, student: str) -> Path:
    return Path(out_dir) / RECORDS / f"{student}.json"


def write(out_dir: Path, result: StudentResult, key: str) -> None:
    """Write ``result`` atomically (a killed run leaves the old record or the new one, never half)."""
    path = _path(out_dir, result.student)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "digest": key, "result": data}), encoding="utf-8")
    os.replace(tmp, path)


def read(out_dir: Path, student: str, key: str) -> Optional[StudentResult]:
    """The student's record when it exists and its digest is ``key`` (else None: grade again)."""
    path = _path(out_dir, student)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("digest") != key:
        return None
    fields = {f.name for f in dataclasses.fields(StudentResult)}
    data = {k: v for k, v in raw["result"].items() if k in fields}
    result = StudentResult(**data)
    if result.feedback_path is not None:
        result.feedback_path = Path(result.feedback_path)
        if not result.feedback_path.exists():  # its page is gone: grade again
            return None
    return result


def load(path: Path) -> Optional[StudentResult]:
    """The result of the record file ``path``, whatever its digest (None: not a record)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    fields = {f.name for f in dataclasses.fields(StudentResult)}
    return StudentResult(**{k: v for k, v in raw["result"].items() if k in fields})


def load_all(out_dir: Path) -> list:
    """Every record of ``out_dir`` (the report's input), sorted by student."""
    found = (load(p) for p in sorted((Path(out_dir) / RECORDS).glob("*.json")))
    return sorted((r for r in found if r is not None), key=lambda r: r.student)


def reusable(out_dir: Optional[Path], keys: Dict[str, str]) -> Dict[str, StudentResult]:
    """``student -> record`` of every student in ``keys`` whose record can be reused."""
    if out_dir is None:
        return {}
    found = {s: read(out_dir, s, k) for s, k in keys.items()}
    return {s: r for s, r in found.items() if r is not None}
