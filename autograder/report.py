"""The class report: what the class got wrong, from the judge's records (verdicts as data).

Every grading run with ``--out`` (and every ``--merge``) writes ``OUT/report.html``, one
self-contained page (plots embedded as PNG), and ``OUT/report.json`` with the same numbers:

* per part: the distribution of the part's points (histogram), each sub-check's failure rate in
  the visible and the hidden test cell, and the **named mistakes**: the judge's failure messages,
  normalised (:func:`normalise`: numbers become ``#``, so ``got 0.31`` and ``got 0.29`` are one
  mistake), ranked by how many students made them, with the students' ids;
* per submission: status, isolation, wall time, peak memory, total;
* the similarity of the graded code (:mod:`autograder.similarity`), most similar pairs first,
  each linked to its side-by-side view. The report accuses nobody.

Rebuild it from a run's records: ``python -m autograder.report OUT``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

FORMAT = "cfgflow-report-1"
MAX_IDS_SHOWN = 12  # student ids shown inline per mistake (all of them in the JSON and a fold-out)
NO_VERDICT = "(no verdict)"  # the sub-check column of a test cell the judge never judged
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|(?<![\w.])-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?!\w)")
DISCLAIMER = ("Similar code is a reason to look, not proof of copying: this report accuses nobody. "
              "Short parts written the natural way look alike, and students may have worked together "
              "as allowed. Read the side-by-side views and decide.")


def normalise(message: str) -> str:
    """One mistake, whatever numbers its message quotes: numbers -> ``#``, whitespace collapsed."""
    return " ".join(_NUMBER.sub("#", str(message)).split())[:400]


# --------------------------------------------------------------------------------------------
# the numbers


def _get(r, name, default=None):
    return r.get(name, default) if isinstance(r, dict) else getattr(r, name, default)


def _cells(cells) -> List[dict]:
    out = []
    for c in cells:
        if isinstance(c, dict):
            out.append(dict(c))
        else:
            out.append({"notebook": c.notebook, "grade_id": c.grade_id, "max_score": float(c.max_score)})
    for c in out:
        c["key"] = f"{c['notebook']}/{c['grade_id']}"
    return out


def _hist(values: Sequence[float], top: float, bins: int = 10) -> dict:
    top = float(top) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(float(v) / top * bins)))] += 1
    return {"edges": [round(top * i / bins, 4) for i in range(bins + 1)], "counts": counts}


def _stats(values: Sequence[float]) -> dict:
    if not values:
        return {"mean": 0.0, "median": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": round(statistics.fmean(values), 3), "median": round(statistics.median(values), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def summarize(results, cells, assignment: str, similarity=None) -> dict:
    """The report's numbers (``report.json``) from the results (StudentResult or their dicts)."""
    cells = _cells(cells)
    part_of: Dict[str, str] = {}
    for r in results:
        for rec in _get(r, "judge", []) or []:
            part_of.setdefault(rec.get("grade_id"), rec.get("part"))
    order: List[str] = []
    for c in cells:
        c["part"] = part_of.get(c["grade_id"]) or c["grade_id"]
        if c["part"] not in order:
            order.append(c["part"])
    n = len(results)
    max_total = sum(c["max_score"] for c in cells)
    parts = []
    for part in order:
        pcells = [c for c in cells if c["part"] == part]
        keys = {c["key"] for c in pcells}
        gids = {c["grade_id"] for c in pcells}
        points = sum(c["max_score"] for c in pcells)
        scores = {_get(r, "student"): round(sum(float((_get(r, "scores") or {}).get(k, 0.0))
                                                for k in keys), 4) for r in results}
        sub: Dict[str, dict] = {}
        # one mistake per normalised message, whichever sub-checks reported it (a method that
        # raises fails them all with one message)
        mistakes: Dict[str, set] = defaultdict(set)
        reported_by: Dict[str, set] = defaultdict(set)
        seen = {"visible": 0, "hidden": 0}  # test cells of the part, judged or not
        for r in results:
            student = _get(r, "student")
            for rec in _get(r, "judge", []) or []:
                if rec.get("grade_id") not in gids:
                    continue
                mode = "hidden" if rec.get("hidden") else "visible"
                seen[mode] += 1
                if rec.get("status") != "judged":
                    first = next((ln for ln in rec.get("lines", []) if "FAIL" in ln), rec.get("status", ""))
                    text = first.split("FAIL", 1)[-1].strip() if "FAIL" in first else first
                    mistakes[normalise(text)].add(student)
                    reported_by[normalise(text)].add(NO_VERDICT)
                    s = sub.setdefault(NO_VERDICT, {"name": NO_VERDICT, "weight": 0.0, "visible": [0, 0],
                                                    "hidden": [0, 0]})
                    s[mode][0] += 1
                    continue
                for res in rec.get("results", []):
                    s = sub.setdefault(res["name"], {"name": res["name"],
                                                     "weight": float(res.get("weight", 0)),
                                                     "visible": [0, 0], "hidden": [0, 0]})
                    s[mode][1] += 1
                    if not res.get("passed"):
                        s[mode][0] += 1
                        text = normalise(res.get("message", "")) or f"{res['name']} failed"
                        mistakes[text].add(student)
                        reported_by[text].add(res["name"])
        subchecks = []
        if NO_VERDICT in sub:  # of every test cell of the part; the sub-checks: of the judged ones
            for mode in seen:
                sub[NO_VERDICT][mode][1] = seen[mode]
        for s in sub.values():
            row = {"name": s["name"], "weight": s["weight"]}
            for mode in ("visible", "hidden"):
                failed, judged = s[mode]
                row[mode] = {"failed": failed, "judged": judged,
                             "rate": round(failed / judged, 4) if judged else None}
            subchecks.append(row)
        ranked = sorted(mistakes.items(), key=lambda kv: (-len(kv[1]), sorted(reported_by[kv[0]]), kv[0]))
        parts.append({
            "part": part, "points": points, "cells": [c["key"] for c in pcells],
            "score": _stats(list(scores.values())),
            "full_marks": sum(1 for v in scores.values() if v >= points - 1e-9),
            "histogram": _hist(list(scores.values()), points),
            "subchecks": subchecks,
            "mistakes": [{"subcheck": ", ".join(sorted(reported_by[k])), "message": k, "students": sorted(v),
                          "count": len(v), "share": round(len(v) / n, 4) if n else 0.0} for k, v in ranked],
        })
    nearest = similarity.nearest if similarity is not None else {}
    subs = []
    for r in results:
        scores = _get(r, "scores") or {}
        subs.append({"student": _get(r, "student"), "status": str(_get(r, "status")),
                     "reason": _get(r, "reason", ""), "isolation": _get(r, "isolation", ""),
                     "wall_s": round(float(_get(r, "wall_s", 0.0) or 0.0), 2),
                     "peak_rss_mb": round(float(_get(r, "peak_rss_mb", 0.0) or 0.0), 1),
                     "total": round(sum(float(scores.get(c["key"], 0.0)) for c in cells), 4),
                     "nearest_similarity": nearest.get(_get(r, "student"))})
    totals = [s["total"] for s in subs]
    status: Dict[str, int] = defaultdict(int)
    isolation: Dict[str, int] = defaultdict(int)
    for s in subs:
        status[s["status"]] += 1
        isolation[s["isolation"] or "?"] += 1
    return {
        "format": FORMAT, "assignment": assignment, "students": n, "max_total": max_total,
        "total": {**_stats(totals), "histogram": _hist(totals, max_total)},
        "status": dict(status), "isolation": dict(isolation),
        "wall_s": _stats([s["wall_s"] for s in subs]),
        "peak_rss_mb": _stats([s["peak_rss_mb"] for s in subs]),
        "parts": parts, "submissions": subs,
        "similarity": None if similarity is None else {**similarity.to_json(), "disclaimer": DISCLAIMER},
    }


# --------------------------------------------------------------------------------------------
# the plots


BLUE, ORANGE, RED, GREY = "#3b6ea8", "#e8873a", "#c0392b", "#8a94a6"


# matplotlib's own copy of seaborn's "whitegrid" style (no seaborn import: its scipy costs the
# engine about 2 s per batch), at the sizes of seaborn's "talk" context scaled by 0.72
STYLE = ("seaborn-v0_8-whitegrid", {
    "font.size": 13, "axes.labelsize": 13, "axes.titlesize": 13, "legend.fontsize": 12,
    "xtick.labelsize": 12, "ytick.labelsize": 12, "axes.linewidth": 1.875, "grid.linewidth": 1.5,
    "patch.edgecolor": "white", "patch.force_edgecolor": True,
    "axes.spines.top": False, "axes.spines.right": False, "grid.color": "#e6e9ef",
    "axes.edgecolor": "#c3c9d4", "axes.titleweight": "bold"})


def _theme():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.style

    matplotlib.style.use(STYLE)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _bars_hist(ax, hist: dict, points: float, color: str, title: str) -> None:
    edges, counts = hist["edges"], hist["counts"]
    width = edges[1] - edges[0]
    ax.bar(edges[:-1], counts, width=width * 0.92, align="edge", color=color, edgecolor="white")
    ax.set_xlim(0, points)
    ax.set_xlabel("points")
    ax.set_ylabel("students")
    ax.set_title(title, loc="left")
    ax.yaxis.get_major_locator().set_params(integer=True)


def overview_png(data: dict) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1.3, 1]})
    _bars_hist(axes[0], data["total"]["histogram"], data["max_total"], BLUE,
               f"Total score ({data['students']} hand-ins)")
    m = data["total"]["mean"]
    axes[0].axvline(m, color=ORANGE, lw=2, ls="--", label=f"mean {m:.1f}")
    axes[0].legend(loc="upper left", fontsize=10, frameon=False)
    ax = axes[1]
    parts = data["parts"]
    names = [p["part"] for p in parts][::-1]
    means = [p["score"]["mean"] / p["points"] if p["points"] else 0 for p in parts][::-1]
    ax.barh(names, [1] * len(names), color="#eef1f6", height=0.6)
    ax.barh(names, means, color=BLUE, height=0.6)
    for i, v in enumerate(means):
        ax.text(min(v, 0.86) + 0.02, i, f"{v:.0%}", va="center", fontsize=10,
                color="white" if v > 0.86 else "#1d2433")
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:.0%}"))
    ax.set_title("Mean share of each part's points", loc="left")
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return _png(fig)


def top_mistakes_png(data: dict, top: int = 10) -> Optional[str]:
    """The lecture slide: the most common mistakes of all parts, each labelled above its bar."""
    import matplotlib.pyplot as plt

    rows = [(m["share"], m["count"], p["part"], _short(m["message"] or m["subcheck"], 110))
            for p in data["parts"] for m in p["mistakes"]]
    rows = sorted(rows, key=lambda r: -r[0])[:top]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(12, 0.62 * len(rows) + 0.6))
    xmax = max(r[0] for r in rows) * 1.12 + 0.02
    for i, (share, count, part, text) in enumerate(rows):
        y = -i
        ax.barh(y - 0.18, xmax, height=0.3, color="#eef1f6")
        ax.barh(y - 0.18, share, height=0.3, color=RED)
        ax.text(0, y + 0.12, f"{part}  ·  {text}", fontsize=11, va="bottom", color="#1d2433")
        ax.text(share + xmax * 0.008, y - 0.18, f"{share:.0%}  ({count})", va="center", fontsize=10,
                color="#1d2433")
    ax.set_xlim(0, xmax)
    ax.set_ylim(-len(rows) + 0.4, 0.75)
    ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def part_png(part: dict) -> str:
    import matplotlib.pyplot as plt

    subs = part["subchecks"]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(2.8, 0.5 * len(subs) + 1.2)),
                             gridspec_kw={"width_ratios": [1, 1.2]})
    _bars_hist(axes[0], part["histogram"], part["points"], BLUE, "Points on this part")
    ax = axes[1]
    names = [s["name"] for s in subs][::-1]
    y = list(range(len(names)))
    for off, mode, color in ((-0.2, "visible", BLUE), (0.2, "hidden", ORANGE)):
        rates = [(s[mode]["rate"] or 0.0) for s in subs][::-1]
        ax.barh([v + off for v in y], rates, height=0.38, color=color, label=f"{mode} test")
        for v, rate in zip(y, rates):
            ax.text(rate + 0.01, v + off, f"{rate:.0%}", va="center", fontsize=8.5, color="#5b6473")
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:.0%}"))
    ax.set_title("Failure rate per sub-check", loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9, frameon=False)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return _png(fig)


def runs_png(data: dict) -> Optional[str]:
    import matplotlib.pyplot as plt

    subs = data["submissions"]
    if not subs:
        return None
    fig, ax = plt.subplots(figsize=(12, 3.2))
    palette = {"ok": BLUE}
    for status in sorted({s["status"] for s in subs}, key=lambda s: s != "ok"):
        pts = [s for s in subs if s["status"] == status]
        ax.scatter([s["wall_s"] for s in pts], [s["peak_rss_mb"] for s in pts], s=28, alpha=0.8,
                   color=palette.get(status, RED if status != "no_submission" else GREY),
                   label=f"{status} ({len(pts)})", marker="o" if status == "ok" else "X")
    ax.set_xlabel("wall time per hand-in (s)")
    ax.set_ylabel("peak memory (MB)")
    ax.set_title("Grading runs: time and memory of each hand-in", loc="left")
    ax.legend(fontsize=9, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _png(fig)


def similarity_png(sim: dict) -> Optional[str]:
    import matplotlib.pyplot as plt

    values = [v for v in (sim.get("nearest") or {}).values()]
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(12, 2.6))
    ax.hist(values, bins=[i / 20 for i in range(21)], color=GREY, edgecolor="white")
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:.0%}"))
    ax.set_xlabel("each hand-in's highest similarity to another hand-in or a known solution")
    ax.set_ylabel("hand-ins")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("How alike the graded code is", loc="left")
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------------
# the page


CSS = """
:root{--ink:#1d2433;--muted:#5b6473;--line:#e2e6ee;--blue:#3b6ea8;--red:#c0392b}
*{box-sizing:border-box} body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);margin:0;background:#f4f6fa}
main{max-width:1240px;margin:0 auto;padding:28px 36px 60px}
header h1{font-size:30px;margin:0} header p{color:var(--muted);margin:6px 0 0}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:14px;margin:22px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card .v{font-size:22px;font-weight:700;white-space:nowrap}
.card .k{color:var(--muted);font-size:13px;margin-top:2px}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:20px 24px;margin:18px 0}
section h2{font-size:21px;margin:0 0 10px} section h2 small{color:var(--muted);font-weight:400;font-size:15px}
img{max-width:100%;display:block;margin:6px 0 10px}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12.5px;text-transform:uppercase;letter-spacing:.03em}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:inline-block;height:9px;background:var(--red);border-radius:4px;vertical-align:middle;
margin-right:6px}
.ids{color:var(--muted);font-size:12.5px} code{font-size:12.5px;background:#f1f3f7;padding:1px 4px;
border-radius:3px} details summary{cursor:pointer;color:var(--blue)}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e8f0fa}
.pill.bad{background:#fbe3e0;color:#8b1e12} .note{background:#fff8e6;border:1px solid #f2dca6;
border-radius:8px;padding:10px 14px;color:#5c4708}
.scroll{max-height:560px;overflow-y:auto}
"""


def _short(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _ids(students: List[str]) -> str:
    e = html.escape
    shown = ", ".join(e(s) for s in students[:MAX_IDS_SHOWN])
    if len(students) <= MAX_IDS_SHOWN:
        return f"<span class='ids'>{shown}</span>"
    return (f"<details class='ids'><summary>{shown}, … ({len(students)} in all)</summary>"
            f"{', '.join(e(s) for s in students)}</details>")


def _img(b64: Optional[str], alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>" if b64 else ""


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def render(data: dict, max_mistakes: int = 12) -> str:
    """The page of :func:`summarize`'s numbers."""
    _theme()
    e = html.escape
    n = data["students"]
    ok = data["status"].get("ok", 0)
    cards = [(f"{n}", "hand-ins"), (f"{data['total']['mean']:.1f} / {data['max_total']:g}", "mean total"),
             (f"{data['total']['median']:.1f}", "median total"), (f"{ok} / {n}", "graded without incident"),
             (f"{data['wall_s']['median']:.0f} s · {data['peak_rss_mb']['median']:.0f} MB",
              "median time · memory")]
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(data['assignment'])}: "
           f"class report</title><style>{CSS}</style></head><body><main>",
           f"<header><h1>{e(data['assignment'])}: what the class got wrong</h1><p>From the judge's verdicts "
           f"on {n} hand-ins. Mistakes are the judge's failure messages with numbers replaced by "
           "<code>#</code>, counted once per student.</p></header>",
           "<div class='cards'>" + "".join(f"<div class='card'><div class='v'>{e(v)}</div>"
                                           f"<div class='k'>{e(k)}</div></div>" for v, k in cards) + "</div>",
           "<section><h2>Scores</h2>", _img(overview_png(data), "score overview"), "</section>"]
    top = top_mistakes_png(data)
    if top:
        out += ["<section><h2>The most common mistakes</h2>", _img(top, "top mistakes"), "</section>"]
    for p in data["parts"]:
        out.append(f"<section><h2>{e(p['part'])} <small>{p['points']:g} points · mean "
                   f"{p['score']['mean']:.2f} · full marks {p['full_marks']} / {n}</small></h2>")
        out.append(_img(part_png(p), f"{p['part']} scores and failure rates"))
        if p["mistakes"]:
            rows = []
            for m in p["mistakes"][:max_mistakes]:
                bar = f"<span class='bar' style='width:{int(60 * m['share'])}px'></span>"
                rows.append(f"<tr><td class='n'>{bar}{m['count']} ({m['share']:.0%})</td>"
                            f"<td><code>{e(m['subcheck'])}</code></td>"
                            f"<td>{e(_short(m['message'], 300)) or '<i>(no message)</i>'}</td>"
                            f"<td>{_ids(m['students'])}</td></tr>")
            more = len(p["mistakes"]) - max_mistakes
            out.append("<table><tr><th>students</th><th>sub-check</th><th>mistake</th><th>who</th></tr>"
                       + "".join(rows) + "</table>"
                       + (f"<p class='ids'>{more} rarer mistakes in report.json</p>" if more > 0 else ""))
        else:
            out.append("<p>No failed sub-check.</p>")
        out.append("</section>")
    sim = data.get("similarity")
    if sim is not None:
        out.append("<section><h2>Similar code <small>the graded parts only; code given in the release "
                   f"does not count; {sim['students']} hand-ins, known solutions: "
                   f"{e(', '.join(sim['known']) or 'none')}</small></h2>")
        out.append(f"<p class='note'>{e(DISCLAIMER)}</p>")
        out.append(_img(similarity_png(sim), "similarity distribution"))
        if sim["pairs"]:
            rows = [f"<tr><td class='n'>{i}</td><td>{e(p['a'])}</td><td>{e(p['b'])}</td>"
                    f"<td class='n'><b>{p['score']:.0%}</b></td><td class='n'>{p['a_in_b']:.0%} / "
                    f"{p['b_in_a']:.0%}</td><td class='n'>{p['tokens']}</td><td>"
                    + (f"<a href='{e(p['page'])}'>side by side</a>" if p.get("page") else "") + "</td></tr>"
                    for i, p in enumerate(sim["pairs"], 1)]
            out.append("<div class='scroll'><table><tr><th>#</th><th>hand-in</th><th>compared with</th>"
                       "<th>similarity</th><th>a in b / b in a</th><th>matched tokens</th><th></th></tr>"
                       + "".join(rows) + "</table></div>")
        else:
            out.append("<p>No two hand-ins share graded code beyond the release's.</p>")
        if sim.get("explained"):
            out.append(f"<p class='ids'>{sim['explained']} pair(s) of hand-ins not listed: both are as "
                       "close to one known solution, and are listed with it.</p>")
        if sim.get("empty"):
            out.append(f"<p class='ids'>No graded code of their own (compared with nothing): "
                       f"{e(', '.join(sim['empty']))}</p>")
        out.append("</section>")
    out.append("<section><h2>Grading runs</h2>")
    out.append(_img(runs_png(data), "wall time and memory"))
    subs = sorted(data["submissions"], key=lambda s: (s["status"] == "ok", s["student"]))
    rows = []
    for s in subs:
        cls = "pill" if s["status"] == "ok" else "pill bad"
        iso = s["isolation"] or "?"
        near = s.get("nearest_similarity")
        rows.append(f"<tr><td>{e(s['student'])}</td><td class='n'>{s['total']:g}</td>"
                    f"<td><span class='{cls}'>{e(s['status'])}</span> <span class='ids'>"
                    f"{e(_short(s['reason'], 90))}</span></td><td>"
                    f"<span class='{'pill' if iso == 'bwrap' else 'pill bad'}'>{e(iso)}</span></td>"
                    f"<td class='n'>{s['wall_s']:.1f}</td><td class='n'>{s['peak_rss_mb']:.0f}</td>"
                    f"<td class='n'>{_pct(near)}</td></tr>")
    out.append("<div class='scroll'><table><tr><th>student</th><th>total</th><th>status</th>"
               "<th>isolation</th><th>wall s</th><th>peak MB</th><th>nearest similarity</th></tr>"
               + "".join(rows) + "</table></div></section>")
    out.append("</main></body></html>")
    return "\n".join(out)


def write(out_dir: Path, results, cells, assignment: str, similarity=None) -> dict:
    """``OUT/report.json`` and ``OUT/report.html``; returns the numbers."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = summarize(results, cells, assignment, similarity)
    (out_dir / "report.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    (out_dir / "report.html").write_text(render(data), encoding="utf-8")
    return data


# --------------------------------------------------------------------------------------------
# from a run's folder


def cells_of(results) -> list:
    """The grade cells of a batch from its results: the scores' keys, the judge's points."""
    from autograder.grade.outputs import CellInfo

    points: Dict[str, float] = {}
    keys: List[str] = []
    for r in results:
        for k in (_get(r, "scores") or {}):
            if k not in keys:
                keys.append(k)
        for rec in _get(r, "judge", []) or []:
            points.setdefault(rec.get("grade_id"), float(rec.get("points", 0)))
    return [CellInfo(k.split("/", 1)[0], k.split("/", 1)[1], points.get(k.split("/", 1)[1], 0.0))
            for k in keys]


def main(argv=None) -> int:
    from autograder import similarity
    from autograder.grade import records

    p = argparse.ArgumentParser(prog="python -m autograder.report",
                                description="Rebuild OUT/report.html and report.json from OUT/records.")
    p.add_argument("out", type=Path)
    p.add_argument("--assignment", default=None)
    args = p.parse_args(argv)
    results = records.load_all(args.out)
    if not results:
        p.error(f"no records in {args.out / records.RECORDS}")
    cells = cells_of(results)
    assignment = args.assignment or (cells[0].notebook if cells else "")
    root = args.out / similarity.SIMILARITY
    sim = similarity.compare(root) if (root / "code").is_dir() else None
    write(args.out, results, cells, assignment, sim)
    print(f"wrote {args.out / 'report.html'} and {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
