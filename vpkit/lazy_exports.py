"""A package whose names are imported from its modules on first use (PEP 562), so that a caller loads only the
modules behind the names it uses: `vpkit data check` starts without torch, and `from vpkit.runs import
lock_run_dir` does not load the checkpoint format."""
from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """(__getattr__, __dir__) for `package`, given {module: names it exports}; a package assigns both and keeps
    its own __all__ (spelled out for tools that read it)."""
    module_of = {name: module for module, names in exports.items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value  # the next lookup finds it without calling this again
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(module_of))

    return __getattr__, __dir__
