"""What crosses between a grading kernel and the judge: data only, as JSON.

A probe's report (:func:`cfgflow.checks._core.probe_part`) and the judge's inputs are trees of
dicts (string keys), lists, strings, numbers, booleans, ``None`` and tensors. A tensor travels as
``{"__tensor__": dtype, "shape": [...], "values": [...]}`` (float values as Python floats: float32
and float64 round-trip exactly; NaN and infinities as JSON's ``NaN`` / ``Infinity``). No pickle:
decoding builds nothing but these types, and checks sizes before it allocates (:class:`Limits`);
anything else is a :class:`WireError`, which the judge turns into that sub-check's failure.

Self-check mode sends every report through :func:`encode` / :func:`decode` as well, so the
verdicts see the same data in both modes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

TENSOR = "__tensor__"
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
           "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}
_NAMES = {v: k for k, v in _DTYPES.items()}


class WireError(ValueError):
    """A message that is not data of the agreed form, or too large."""


@dataclass(frozen=True)
class Limits:
    bytes: int = 64 * 2**20        # one message's JSON text
    numel: int = 2_000_000         # entries of all its tensors together
    tensor_dims: int = 8
    depth: int = 12
    string: int = 100_000          # characters of one string


LIMITS = Limits()


def _enc(x: Any, depth: int) -> Any:
    if depth > LIMITS.depth:
        raise WireError("nested too deeply")
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.to("cpu") if t.device.type != "meta" else torch.zeros(())
        if t.dtype not in _NAMES:
            t = t.double() if t.is_floating_point() or t.is_complex() else t.long()
        name = _NAMES[t.dtype]
        flat = t.reshape(-1)
        values = flat.double().tolist() if t.is_floating_point() else flat.tolist()
        return {TENSOR: name, "shape": list(t.shape), "values": values}
    if isinstance(x, dict):
        return {str(k): _enc(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_enc(v, depth + 1) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, torch.Size):
        return list(x)
    raise WireError(f"cannot send a {type(x).__name__}: only tensors, numbers, strings, lists and dicts")


def encode(x: Any) -> str:
    """The JSON text of ``x`` (one line)."""
    text = json.dumps(_enc(x, 0), separators=(",", ":"), allow_nan=True)
    if len(text) > LIMITS.bytes:
        raise WireError(f"message of {len(text):,} bytes, over the limit of {LIMITS.bytes:,}")
    return text


class _Budget:
    def __init__(self):
        self.numel = 0


def _dec(x: Any, depth: int, budget: _Budget) -> Any:
    if depth > LIMITS.depth:
        raise WireError("nested too deeply")
    if isinstance(x, dict):
        if TENSOR in x:
            return _tensor(x, budget)
        return {k: _dec(v, depth + 1, budget) for k, v in x.items()}
    if isinstance(x, list):
        return [_dec(v, depth + 1, budget) for v in x]
    if isinstance(x, str):
        if len(x) > LIMITS.string:
            raise WireError(f"string of {len(x):,} characters, over the limit of {LIMITS.string:,}")
        return x
    if x is None or isinstance(x, (bool, int, float)):
        return x
    raise WireError(f"unexpected {type(x).__name__}")


def _tensor(x: dict, budget: _Budget) -> torch.Tensor:
    dtype, shape, values = _DTYPES.get(x.get(TENSOR)), x.get("shape"), x.get("values")
    if dtype is None:
        raise WireError(f"unknown tensor dtype {x.get(TENSOR)!r}")
    if not isinstance(shape, list) or len(shape) > LIMITS.tensor_dims or \
            not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape):
        raise WireError(f"bad tensor shape {shape!r}")
    numel = 1
    for n in shape:
        numel *= n
    budget.numel += numel
    if budget.numel > LIMITS.numel:
        raise WireError(f"tensors of over {LIMITS.numel:,} entries in one message")
    if not isinstance(values, list) or len(values) != numel:
        got = len(values) if isinstance(values, list) else "?"
        raise WireError(f"tensor of shape {shape} with {got} values")
    if not all(isinstance(v, (int, float)) for v in values):
        raise WireError("tensor values must be numbers")
    try:
        t = torch.tensor(values, dtype=torch.float64 if dtype.is_floating_point else torch.int64)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise WireError(f"bad tensor values: {e}") from e
    return t.to(dtype).reshape(shape)


def send(stream, message: Any) -> None:
    """Write ``message`` as one line to a binary stream (a socket's file) and flush it."""
    stream.write((encode(message) + "\n").encode())
    stream.flush()


def receive(stream) -> Any:
    """Read one line written by :func:`send`; :class:`WireError` when nothing arrives, the line is
    over the size limit or it is not data of the agreed form."""
    return parse(stream.readline(LIMITS.bytes + 1))


def parse(line: bytes) -> Any:
    """The data of one line read by :func:`receive` (at most ``LIMITS.bytes + 1`` bytes: the judge's
    server reads the kernel's lines itself and hands them here); :class:`WireError` as there."""
    if not line:
        raise WireError("nothing arrived (the other side closed the connection)")
    if len(line) > LIMITS.bytes:
        raise WireError(f"message over the limit of {LIMITS.bytes:,} bytes")
    return decode(line.decode("utf-8", errors="replace"))


def decode(text: str) -> Any:
    """The data of a JSON text written by :func:`encode`; :class:`WireError` for anything else."""
    if not isinstance(text, str) or len(text) > LIMITS.bytes:
        raise WireError("message missing or over the size limit")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise WireError(f"not JSON: {str(e)[:200]}") from e
    return _dec(raw, 0, _Budget())
