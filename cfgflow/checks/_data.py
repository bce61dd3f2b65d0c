"""Recorded check data (``cfgflow/checks/data/<part>.json``): fixed inputs, canonical weights and
the outputs the reference (and its known-wrong variants) gave on them.

Written by the instructors' ``python -m autograder.checks.record`` (which runs the reference);
read here by the visible checks, which load the canonical weights into the student's own module
and compare its output with the recorded one. A file holds the sizes it was recorded for
(``config``), plain numbers (``values``) and tensors (``tensors``: shape and flat values, 9
significant digits, so float32 values round-trip exactly).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import torch

DATA_DIR = Path(__file__).resolve().parent / "data"


def path_of(part: str) -> Path:
    return DATA_DIR / f"{part}.json"


def dumps(config: Dict[str, Any], values: Dict[str, Any], tensors: Dict[str, torch.Tensor]) -> str:
    """The file text for ``part`` (deterministic: rebuilding from the same numbers gives the same
    bytes)."""
    def num(v: float) -> str:
        return "NaN" if v != v else f"{v:.9g}"

    rounded = {k: float(num(float(v))) for k, v in values.items()}
    lines = ["{", f'  "config": {json.dumps(config, sort_keys=True)},',
             f'  "values": {json.dumps(rounded, sort_keys=True)},', '  "tensors": {']
    names = sorted(tensors)
    for i, name in enumerate(names):
        t = tensors[name].detach().double().reshape(-1).tolist()
        shape = list(tensors[name].shape)
        sep = "," if i < len(names) - 1 else ""
        lines.append(f'    {json.dumps(name)}: {{"shape": {json.dumps(shape)}, "values": ['
                     + ", ".join(num(v) for v in t) + f"]}}{sep}")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def decode(text: str) -> Dict[str, Any]:
    raw = json.loads(text)
    tensors = {name: torch.tensor(t["values"], dtype=torch.float64).reshape(t["shape"])
               for name, t in raw["tensors"].items()}
    return {"config": raw["config"], "values": raw["values"], "tensors": tensors}


def load(part: str, config: Dict[str, Any]) -> Dict[str, Any]:
    """The recorded data of ``part``; ``config`` must be the sizes it was recorded for."""
    path = path_of(part)  # read on every call (small): no cache a notebook cell could edit
    if not path.exists():
        raise FileNotFoundError(f"recorded check data {path} is missing: reinstall the course package")
    data = decode(path.read_text(encoding="utf-8"))
    if data["config"] != json.loads(json.dumps(config)):
        raise RuntimeError(f"{path_of(part)} was recorded for {data['config']}, the checks use {config}: "
                           "re-record it (python -m autograder.checks.record)")
    return data


def tensor(data: Dict[str, Any], name: str, dtype=torch.float32) -> torch.Tensor:
    """A fresh copy of a recorded tensor (a check may write into it)."""
    return data["tensors"][name].to(dtype).clone()
