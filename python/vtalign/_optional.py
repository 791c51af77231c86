"""The one place vtalign imports packages that a plain install may lack.

Every such import goes through `require`, so a missing package always surfaces
as `MissingDependency`: an ImportError whose message is one line naming what
needed the package and the `pip install` that brings it back. The CLI prints
that line and exits 2; API callers get the same error.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    """A package (or the compiled core) that a feature needs cannot be imported.

    `str(err)` is a single line: what needed it, and how to install it.
    """


def install_hint(package: str, extra: str | None) -> str:
    """The command that installs `package`: the vtalign extra when one lists it,
    else the package itself."""
    return f'pip install "vtalign[{extra}]"' if extra else f"pip install {package}"


def require(module: str, extra: str | None, purpose: str, *, package: str | None = None) -> ModuleType:
    """Import `module` or raise `MissingDependency` with a one-line message.

    Args:
        module: dotted module name to import (e.g. "safetensors.torch").
        extra: the vtalign extra that installs it, or None when the package is
            installed directly (named by `package`).
        purpose: what needs it, as the subject of "... needs <package>"
            (e.g. "reading .safetensors files").
        package: the distribution name for the message; defaults to the
            top-level module name.

    Returns:
        The imported module.

    Raises:
        MissingDependency: `module` (or something it imports) cannot be imported.
    """
    package = package or module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"{purpose} needs {package}: {install_hint(package, extra)}"
        # A package that is present but whose own import fails (a broken wheel, a
        # missing transitive dependency) needs a different fix; say so, on the same line.
        missing = getattr(exc, "name", None) or ""
        if missing and missing.split(".")[0] != module.split(".")[0]:
            msg += f" (it is installed but failed to import: {' '.join(str(exc).split())})"
        raise MissingDependency(msg, name=module) from exc


__all__ = ["MissingDependency", "install_hint", "require"]
