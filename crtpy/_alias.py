"""The import hook behind :func:`crtpy.install_as_awscrt`.

``awscrt`` becomes a small facade module that forwards attribute access to ``crtpy``
(it reports the awscrt API version crtpy implements, which is what dependents such as
botocore check), and ``awscrt.X`` becomes the very module object ``crtpy.X``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

_ALIAS = "awscrt"
_TARGET = "crtpy"
_lock = threading.Lock()


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, module: types.ModuleType) -> None:
        self._module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self._module

    def exec_module(self, module: types.ModuleType) -> None:
        # The target module is already executed; nothing more to do.
        return None


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == _ALIAS:
            module = _facade()
        elif fullname.startswith(_ALIAS + "."):
            module = importlib.import_module(_TARGET + fullname[len(_ALIAS):])
        else:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(module),
                                              is_package=hasattr(module, "__path__"))
        return spec


def _facade() -> types.ModuleType:
    import crtpy

    facade = types.ModuleType(_ALIAS, crtpy.__doc__)
    facade.__path__ = []  # a package, so that submodule imports come back to the finder
    facade.__version__ = crtpy.__awscrt_version__  # type: ignore[attr-defined]
    facade.__all__ = list(crtpy.__all__)  # type: ignore[attr-defined]
    facade.NativeResource = crtpy.NativeResource  # type: ignore[attr-defined]
    facade.install_as_awscrt = crtpy.install_as_awscrt  # type: ignore[attr-defined]

    def __getattr__(name: str) -> Any:
        try:
            return getattr(crtpy, name)
        except AttributeError:
            pass
        if name in crtpy.__all__:
            return importlib.import_module(f"{_ALIAS}.{name}")
        raise AttributeError(f"module {_ALIAS!r} has no attribute {name!r}")

    # A PEP 562 module-level __getattr__; typeshed declares ModuleType.__getattr__ a method.
    facade.__getattr__ = __getattr__  # type: ignore[method-assign]
    return facade


def _installed() -> bool:
    return any(isinstance(f, _AliasFinder) for f in sys.meta_path)


def install() -> None:
    with _lock:
        if _installed():
            return
        existing = [name for name in sys.modules
                    if name in (_ALIAS, "_awscrt") or name.startswith(_ALIAS + ".")]
        if existing:
            raise RuntimeError(
                "crtpy.install_as_awscrt() must run before the real awscrt is imported "
                f"(already imported: {', '.join(sorted(existing))})")
        sys.meta_path.insert(0, _AliasFinder())
