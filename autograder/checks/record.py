"""``python -m autograder.checks.record [--check]``: record the data of the visible checks.

Runs each part's recorder (the hidden tables' ``record``: the reference on inputs drawn from a
seed) with the visible sizes and the seed in :data:`SEEDS`, and writes
``cfgflow/checks/data/<part>.json`` (committed: the student runtime ships them for self-checks;
graded cells never use them). ``--check`` writes nothing and exits 1 when a file differs from what
it would write. Re-record after changing a visible part's sizes (its ``CONFIG``), its recorded
variants or the reference.
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict

import torch

from cfgflow.checks import _data

from . import HIDDEN, VISIBLE

SEEDS = {"cfg_loss": 1000, "fourier_encoder": 1001, "mlp_field": 1002, "mha": 1004, "latent_cfg_loss": 1020,
         "latent_sampler": 1021, "reparameterize": 1030, "vae_loss": 1031}
"""The seed of each shipped recording (0 for a part not named here): every part whose hidden table
has a recorder ships the recording of its visible sizes."""


def texts() -> Dict[str, str]:
    """``part -> file text`` of every recorded part."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order: the same numbers on every run
    try:
        found = {}
        for part, table in HIDDEN.items():
            if table.record is None:
                continue
            cfg, seed = VISIBLE[part].config, SEEDS.get(part, 0)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                values, tensors = table.record(cfg, seed)
            found[part] = _data.dumps(cfg, values, tensors)
        return found
    finally:
        torch.set_num_threads(threads)


RTOL = 1e-6
"""Recorded numbers may differ in their last float32 bits from one CPU to another (other vector
instructions, other summation order inside a kernel); the visible checks compare at 1e-4, so a
file counts as stale only when a number differs by more than this (relative to the tensor's
largest entry, or 1)."""
def _differs(recorded: str, fresh: str) -> bool:
    if recorded == fresh:
        return False
    a, b = _data.decode(recorded), _data.decode(fresh)
    if a["config"] != b["config"] or set(a["values"]) != set(b["values"]) or \
            set(a["tensors"]) != set(b["tensors"]):
        return True
    for k, v in a["values"].items():
        w = b["values"][k]
        if (v != v) != (w != w) or (v == v and abs(v - w) > RTOL * max(1.0, abs(w))):
            return True
    for k, t in a["tensors"].items():
        u = b["tensors"][k]
        if t.shape != u.shape:
            return True
        if t.numel() and float((t - u).abs().max()) > RTOL * max(1.0, float(u.abs().max())):
            return True
    return False


def stale() -> Dict[str, str]:
    """``part -> why`` for every data file that differs from a fresh recording (beyond ``RTOL``)."""
    bad = {}
    for part, text in texts().items():
        path = _data.path_of(part)
        if not path.exists():
            bad[part] = f"{path} is missing"
        elif _differs(path.read_text(encoding="utf-8"), text):
            bad[part] = f"{path} differs from a fresh recording"
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare with the committed files")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for why in bad.values():
            print(why, file=sys.stderr)
        print("recorded check data up to date" if not bad else
              "re-record with: python -m autograder.checks.record")
        return 1 if bad else 0
    _data.DATA_DIR.mkdir(parents=True, exist_ok=True)
    for part, text in texts().items():
        path = _data.path_of(part)
        if path.exists() and not _differs(path.read_text(encoding="utf-8"), text):
            print(f"unchanged {path} (within {RTOL:g})")  # no last-bit churn from another CPU
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
