"""Who wrote what like whom: the graded parts' code of every hand-in, fingerprinted and compared.

The comparison is ``copydetect``'s (winnowed k-gram fingerprints of the tokenised code, as MOSS
does, offline): nothing here decides what is similar, this module only chooses *what* is compared:

* each hand-in's **graded code**: its solution cells that belong to a graded part (the source
  notebook's solution cells with ``cfgflow.part`` metadata, found in the hand-in by nbgrader
  ``grade_id``; a hand-in whose metadata is gone contributes all its code cells);
* the **known solutions**: the instructor's reference (the source notebook's same cells) and every
  notebook or ``.py`` file under ``--against DIR`` (e.g. the lab's public solutions);
* the **boilerplate**: every code cell of the release (given code, stubs, test cells), so code
  that every hand-in got from the release never counts.

Everything is kept as files under ``OUT/similarity/`` (``code/{student}.py``, ``known/*.py``,
``boilerplate.py``), so ``--merge`` compares the students of all shards with each other. The
pairs are ranked by the larger of the two directions' shares (how much of one's code is found in
the other); each of the top pairs gets a side-by-side page (``OUT/similarity/pairs/*.html``) with
the matched spans highlighted. Two hand-ins that are both as close to one known solution are not
listed as a pair (each is listed with that solution). Every pair is screened by its shared
fingerprints; the likely ones are compared exactly (:data:`SCREEN`, :data:`PER_STUDENT`). A high
score is a reason to look, never a verdict: short parts written the natural way look alike.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

SIMILARITY = "similarity"  # OUT/similarity/
NOISE_T = 25  # copydetect's defaults: matches shorter than NOISE_T tokens are ignored, ...
GUARANTEE_T = 25  # ... matches of GUARANTEE_T tokens or more are always found
TOP = 40  # pairs kept in the report (and side-by-side pages written)
SCREEN = 4  # exact comparisons for the SCREEN * TOP pairs sharing the most fingerprints ...
PER_STUDENT = 3  # ... and for each hand-in's PER_STUDENT best
EXPLAINED_SLACK = 0.02  # a pair of hand-ins both this close to one known solution is not listed
REFERENCE = "[reference]"  # the instructor's source notebook, always among the known solutions
KNOWN_PREFIX = "[known] "  # a file of --against DIR


def solution_parts(source_nb) -> Dict[str, str]:
    """``grade_id -> part`` of the source notebook's graded solution cells."""
    from cfgflow.course import cell_part

    found = {}
    for cell in source_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and cell_part(cell):
            found[meta["grade_id"]] = cell_part(cell)
    return found


_MARKER = re.compile(r"^\s*###\s*(BEGIN|END) SOLUTION\s*$", re.M)


def graded_code(nb, parts: Dict[str, str]) -> str:
    """The code of ``nb``'s cells whose ``grade_id`` is in ``parts``, in notebook order, each
    under a ``# part: NAME`` line; no such cell (metadata stripped): every code cell."""
    chunks = []
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("cell_type") == "code" and gid in parts:
            chunks.append(f"# part: {parts[gid]}\n{_MARKER.sub('', cell.source)}\n")
    if not chunks:
        chunks = [c.source + "\n" for c in nb.cells if c.get("cell_type") == "code"]
    return "\n".join(chunks)


def all_code(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.get("cell_type") == "code")


def _read_nb(path: Path):
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except Exception:  # an unreadable hand-in: nothing to compare
        return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "_"


def extract(out_dir: Path, submissions: Dict[str, List[Path]], source_nbs: dict, release_nbs: Iterable,
            against: Optional[Path] = None) -> Path:
    """Write ``OUT/similarity/``: ``code/{student}.py`` of every hand-in, ``known/`` (the reference
    and ``against``'s files), ``boilerplate.py`` (the release's code) and ``parts.json``."""
    root = Path(out_dir) / SIMILARITY
    for sub in ("code", "known"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    parts: Dict[str, str] = {}
    for nb in source_nbs.values():
        parts.update(solution_parts(nb))
    (root / "parts.json").write_text(json.dumps(parts, indent=1))
    # the release's code as a whole and as its graded cells alone (the k-grams across two cells)
    release_nbs = list(release_nbs)
    (root / "boilerplate.py").write_text("\n".join([all_code(nb) for nb in release_nbs]
                                                   + [graded_code(nb, parts) for nb in release_nbs]),
                                         encoding="utf-8")
    (root / "known" / f"{_safe(REFERENCE)}.py").write_text(
        "\n".join(graded_code(nb, parts) for nb in source_nbs.values()), encoding="utf-8")
    for student, files in submissions.items():
        nbs = [nb for nb in (_read_nb(p) for p in files) if nb is not None]
        (root / "code" / f"{student}.py").write_text("\n".join(graded_code(nb, parts) for nb in nbs),
                                                     encoding="utf-8")
    if against is not None:
        add_known(root, Path(against), parts)
    return root


def add_known(root: Path, against: Path, parts: Optional[Dict[str, str]] = None) -> None:
    """Copy the known solutions of ``against`` (``*.ipynb``: their graded cells, ``*.py``: the
    whole file; searched recursively) into ``root/known/``."""
    if not Path(against).is_dir():
        raise NotADirectoryError(f"--against {against}: not a folder")
    if parts is None:
        p = root / "parts.json"
        parts = json.loads(p.read_text()) if p.exists() else {}
    (root / "known").mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(against).rglob("*")):
        if path.suffix not in (".ipynb", ".py") or ".ipynb_checkpoints" in path.parts:
            continue
        rel = str(path.relative_to(against))
        if path.suffix == ".py":
            text = path.read_text(encoding="utf-8", errors="replace")
        else:
            nb = _read_nb(path)
            if nb is None:
                continue
            text = graded_code(nb, parts)
        (root / "known" / f"{_safe(KNOWN_PREFIX + rel)}.py").write_text(text, encoding="utf-8")


def gather(out_dir: Path, shards: Iterable[Path]) -> Path:
    """``--merge``: every shard's ``similarity/`` files in ``out_dir/similarity/``."""
    root = Path(out_dir) / SIMILARITY
    for shard in shards:
        src = Path(shard) / SIMILARITY
        if not src.is_dir() or src.resolve() == root.resolve():
            continue
        for sub in ("code", "known"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            for f in (src / sub).glob("*.py"):
                shutil.copyfile(f, root / sub / f.name)
        for name in ("boilerplate.py", "parts.json"):
            if (src / name).exists() and not (root / name).exists():
                shutil.copyfile(src / name, root / name)
    return root


@dataclass
class Pair:
    a: str  # a student
    b: str  # a student, or a known solution ([reference], [known] ...)
    kind: str  # "students" or "known"
    a_in_b: float  # the share of a's graded code (tokens) found in b
    b_in_a: float
    tokens: int  # matched tokens
    page: str = ""  # side-by-side view, relative to OUT/

    @property
    def score(self) -> float:
        return max(self.a_in_b, self.b_in_a)


@dataclass
class Similarity:
    pairs: List[Pair] = field(default_factory=list)  # the top pairs, most similar first
    compared: int = 0  # pairs screened (every pair)
    exact: int = 0  # pairs compared exactly (the candidates of the screening)
    students: int = 0
    known: List[str] = field(default_factory=list)
    nearest: Dict[str, float] = field(default_factory=dict)  # student -> best score with anyone
    empty: List[str] = field(default_factory=list)  # hand-ins with no code of their own
    explained: int = 0  # pairs of hand-ins not listed: both as close to one known solution

    def to_json(self) -> dict:
        d = asdict(self)
        for p, q in zip(d["pairs"], self.pairs):
            p["score"] = q.score
        return d


def _fingerprint(name: str, text: str, boilerplate):
    from copydetect import CodeFingerprint

    # the name's .py suffix picks the Python tokenizer; fp= keeps it in memory
    return CodeFingerprint(f"{name}.py", NOISE_T, GUARANTEE_T - NOISE_T + 1, boilerplate=boilerplate,
                           fp=io.StringIO(text))


def compare(root: Path, top: int = TOP, pages: bool = True) -> Similarity:
    """Compare every ``code/*.py`` with every other and with every ``known/*.py`` (boilerplate:
    ``boilerplate.py``); keep the ``top`` pairs and write their side-by-side pages."""
    import warnings

    from copydetect import compare_files

    root = Path(root)
    bp_path = root / "boilerplate.py"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bp = (_fingerprint("boilerplate", bp_path.read_text(encoding="utf-8"), []).hashes
              if bp_path.exists() else [])
        bp = list(bp)
        students = {p.stem: _fingerprint(p.stem, p.read_text(encoding="utf-8"), bp)
                    for p in sorted((root / "code").glob("*.py"))}
        known = {_known_name(p.stem): _fingerprint(p.stem, p.read_text(encoding="utf-8"), bp)
                 for p in sorted((root / "known").glob("*.py"))}
    sim = Similarity(students=len(students), known=sorted(known),
                     empty=sorted(s for s, f in students.items() if not f.hashes))
    names = list(students)
    # Screening: the share of shared fingerprints (set intersection, cheap) for every pair; the
    # exact comparison (copydetect's matched spans) for the pairs that can matter: the best
    # SCREEN * top of the class and each hand-in's PER_STUDENT best (its nearest).
    screened: Dict[tuple, float] = {}
    for i, a in enumerate(names):
        fa = students[a]
        others = [(b, students[b], "students") for b in names[i + 1:]]
        others += [(k, f, "known") for k, f in known.items()]
        for b, fb, kind in others:
            sim.compared += 1
            shared = len(fa.hashes & fb.hashes)
            if shared:
                screened[(a, b, kind)] = shared / max(1, min(len(fa.hashes), len(fb.hashes)))
    best = sorted(screened, key=lambda k: -screened[k])
    chosen = set(best[:SCREEN * top])
    per: Dict[str, List[tuple]] = {}
    for key in best:
        for s in key[:2]:
            if s in students and len(per.setdefault(s, [])) < PER_STUDENT:
                per[s].append(key)
                chosen.add(key)
    found: List[Pair] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, b, kind in sorted(chosen):
            fb = students[b] if kind == "students" else known[b]
            tokens, (s1, s2), _ = compare_files(students[a], fb)
            sim.exact += 1
            if tokens <= 0:
                continue
            pair = Pair(a, b, kind, round(float(s1), 4), round(float(s2), 4), int(tokens))
            found.append(pair)
            for s in (a, b):
                if s in students:
                    sim.nearest[s] = max(sim.nearest.get(s, 0.0), pair.score)
    # two hand-ins that both match one known solution as closely as each other: the pair says
    # nothing new (ten copies of the reference would fill the list with 45 pairs); counted only
    kbest: Dict[str, Dict[str, float]] = {}
    for p in found:
        if p.kind == "known":
            kbest.setdefault(p.a, {})[p.b] = p.score
    explained = [p for p in found if p.kind == "students" and any(
        min(kbest.get(p.a, {}).get(k, 0.0), kbest.get(p.b, {}).get(k, 0.0)) >= p.score - EXPLAINED_SLACK
        for k in known)]
    sim.explained = len(explained)
    found = [p for p in found if p not in explained]
    found.sort(key=lambda p: (-p.score, -p.tokens, p.a, p.b))
    sim.pairs = found[:top]
    if pages:
        pdir = root / "pairs"
        shutil.rmtree(pdir, ignore_errors=True)
        pdir.mkdir(parents=True)
        for i, p in enumerate(sim.pairs, 1):
            fb = students.get(p.b) or known[p.b]
            name = f"{i:03d}_{_safe(p.a)}__{_safe(p.b)}.html"
            (pdir / name).write_text(side_by_side(p, students[p.a], fb), encoding="utf-8")
            p.page = f"{SIMILARITY}/pairs/{name}"
    return sim


def _known_name(stem: str) -> str:
    if stem == _safe(REFERENCE):
        return REFERENCE
    prefix = _safe(KNOWN_PREFIX)
    return KNOWN_PREFIX + stem[len(prefix):] if stem.startswith(prefix) else stem


PAGE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2433}
h1{font-size:22px;margin:0 0 6px} .note{color:#555;max-width:70em}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;margin-top:16px}
.col h2{font-size:16px;margin:0 0 6px}
pre{background:#f7f8fa;border:1px solid #dde1e8;border-radius:6px;padding:10px;font-size:12.5px;
    line-height:1.45;overflow-x:auto;white-space:pre}
mark{background:#ffd58a;border-radius:2px}
"""


def _highlighted(fp, slices) -> str:
    from copydetect.utils import highlight_overlap

    if slices is None or len(slices) == 0 or slices.shape[-1] == 0:
        return html.escape(fp.raw_code)
    text, _ = highlight_overlap(fp.raw_code, slices, "\x00", "\x01")
    return html.escape(text).replace("\x00", "<mark>").replace("\x01", "</mark>")


def side_by_side(pair: Pair, fa, fb) -> str:
    """A self-contained page: both graded codes, the spans copydetect matched highlighted."""
    import warnings

    from copydetect import compare_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, (sa, sb) = compare_files(fa, fb)
        left, right = _highlighted(fa, sa), _highlighted(fb, sb)
    e = html.escape
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(pair.a)} / {e(pair.b)}</title>"
            f"<style>{PAGE_CSS}</style></head><body>"
            f"<h1>{e(pair.a)} &nbsp;&harr;&nbsp; {e(pair.b)}</h1>"
            f"<p class='note'>{pair.a_in_b:.0%} of {e(pair.a)}'s graded code is found in {e(pair.b)}'s, "
            f"{pair.b_in_a:.0%} the other way ({pair.tokens} matched tokens; code given in the release "
            "does not count). Highlighted: the matched spans. Similar code is a reason to look, not "
            "proof of copying: short parts written the natural way look alike.</p>"
            f"<div class='cols'><div class='col'><h2>{e(pair.a)}</h2><pre>{left}</pre></div>"
            f"<div class='col'><h2>{e(pair.b)}</h2><pre>{right}</pre></div></div></body></html>")
