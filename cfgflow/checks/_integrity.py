"""Tamper resistance: what the checks rely on must be what it was at import time.

A student cell can monkeypatch ``torch.allclose``, ``builtins.isinstance`` or this library's own
functions. The checks never call ``torch.allclose``/``torch.testing`` (they use their own
comparison, :func:`cfgflow.checks._core.max_err`), and before every check we verify that the
torch and builtin functions the comparison uses are still the objects captured at import *and*
still C functions (a patch made before this module was imported is caught by the type test).
"""

from __future__ import annotations

import builtins
import types
from typing import Callable, Dict, List, Tuple

import torch

_C_TYPES = (types.BuiltinFunctionType, types.BuiltinMethodType, types.MethodDescriptorType,
            types.WrapperDescriptorType, types.MethodWrapperType, type)

_TORCH_FUNCS = ["allclose", "isclose", "equal", "cat", "stack", "abs", "randn", "rand", "randint",
                "zeros", "ones", "where"]
_TENSOR_METHODS = ["abs", "max", "min", "sum", "mean", "item", "__sub__", "__add__", "__mul__",
                   "double", "detach", "clone", "reshape", "float", "__lt__", "__gt__", "__eq__",
                   "softmax", "__matmul__", "transpose"]
_BUILTINS = ["abs", "isinstance", "issubclass", "len", "float", "int", "max", "min", "print",
             "getattr", "hasattr", "type", "range", "sum", "any", "all", "round", "id"]


def _lookup() -> Dict[str, object]:
    found = {f"torch.{n}": getattr(torch, n) for n in _TORCH_FUNCS}
    found.update({f"torch.Tensor.{n}": getattr(torch.Tensor, n) for n in _TENSOR_METHODS})
    found.update({f"builtins.{n}": getattr(builtins, n) for n in _BUILTINS})
    found["torch.testing.assert_close"] = torch.testing.assert_close
    found["torch.nn.functional.linear"] = torch.nn.functional.linear
    return found


_CAPTURED = _lookup()
_OWN: List[Tuple[object, str, Callable]] = []  # (module, attribute, original)


def register_own(module, *names: str):
    """Remember this library's own functions so a replacement is noticed."""
    for name in names:
        _OWN.append((module, name, getattr(module, name)))


_INVARIANTS: List[Tuple[str, Callable, object]] = []  # (name, getter, value at registration)


def register_invariant(name: str, getter: Callable):
    """Remember ``getter()`` now; a different value later counts as tampering."""
    _INVARIANTS.append((name, getter, getter()))


def tampering() -> List[str]:
    """Names of replaced functions (empty when nothing was patched)."""
    problems = []
    now = _lookup()
    for name, obj in now.items():
        if obj is not _CAPTURED[name]:
            problems.append(name)
        elif not isinstance(obj, _C_TYPES):
            # Python-level torch functions (manual_seed, assert_close): must still live in torch
            home = name.rsplit(".", 1)[0].split(".")[0]
            if not str(getattr(obj, "__module__", "")).startswith(home):
                problems.append(name)
    for module, name, original in _OWN:
        if getattr(module, name, None) is not original:
            problems.append(f"{module.__name__}.{name}")
    for name, getter, value in _INVARIANTS:
        try:
            same = getter() == value
        except Exception:  # noqa: BLE001 - a broken getter means something was replaced
            same = False
        if not same:
            problems.append(name)
    return problems


def _definitions(module) -> Dict[str, object]:
    """The functions and classes ``module`` defines, and the attributes of those classes."""
    found: Dict[str, object] = {}
    for name, obj in list(vars(module).items()):
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if isinstance(obj, types.FunctionType):
            found[name] = obj
        elif isinstance(obj, type):
            found[name] = obj
            for attr, value in list(vars(obj).items()):
                found[f"{name}.{attr}"] = value
    return found


def register_definitions(*modules):
    """Every function and class of ``modules`` (and every class attribute) must stay the object
    it was at registration: replacing a helper the checks call through a module global (or a
    property such as ``Report.earned``) counts as tampering."""
    for module in modules:
        register_invariant(f"the functions of {module.__name__}",
                           lambda module=module: _definitions(module))
