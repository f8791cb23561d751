"""Importing the step functions ``module:function`` from the pipeline's folder.

The folder goes first on ``sys.path`` for the duration of a run. Modules that live in it
are imported fresh for every run and forgotten afterwards, so an edited ``steps.py`` is
what runs (and two pipelines with a ``steps.py`` each never see each other's).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelhost.pipelines.errors import StepLoadError
from modelhost.pipelines.hashing import combine, file_digest, tree_digest
from modelhost.pipelines.spec import Pipeline


@dataclass(frozen=True)
class LoadedStep:
    name: str
    call: str
    function: Callable[..., Any]
    source: Path | None  # the file of the function's module, when it has one


@contextmanager
def user_code(folder: Path, modules: Iterable[str] = ()) -> Iterator[None]:
    """Make the modules of ``folder`` importable (fresh) until the block ends."""
    folder = folder.resolve()
    tops = {m.split(".")[0] for m in modules}
    shadowed = {t for t in tops if (folder / f"{t}.py").exists() or (folder / t).is_dir()}
    _forget(shadowed, sys.modules)
    before = set(sys.modules)
    entry = str(folder)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)
        _forget(shadowed, sys.modules)
        prefix = entry + os.sep
        for name in set(sys.modules) - before:
            file = getattr(sys.modules.get(name), "__file__", None)
            if file and os.path.realpath(file).startswith(prefix):
                del sys.modules[name]


def _forget(tops: set[str], loaded: dict[str, ModuleType]) -> None:
    """Drop imported modules (and their submodules) whose top-level name is in ``tops``."""
    for name in [n for n in loaded if n.split(".")[0] in tops]:
        del loaded[name]


def load_steps(pipeline: Pipeline) -> dict[str, LoadedStep]:
    """Import every step function (inside :func:`user_code`).

    Raises:
        StepLoadError: a module that does not import, a missing or non-callable function.
    """
    loaded: dict[str, LoadedStep] = {}
    for name, step in pipeline.spec.steps.items():
        module_name, _, attr = step.call.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                reason = (f"no module {exc.name!r}; put {exc.name}.py next to "
                          f"{pipeline.file.name} or install the package")
            else:
                reason = f"its import failed: ModuleNotFoundError: {exc}"
            raise StepLoadError(name, step.call, reason) from exc
        except Exception as exc:  # user code may raise anything on import
            raise StepLoadError(name, step.call, f"importing {module_name!r} raised "
                                                 f"{type(exc).__name__}: {exc}") from exc
        function = getattr(module, attr, None)
        if function is None:
            raise StepLoadError(name, step.call, f"module {module_name!r} has no {attr!r}")
        if not callable(function):
            raise StepLoadError(name, step.call, f"{attr!r} is not a function")
        file = getattr(module, "__file__", None)
        loaded[name] = LoadedStep(name=name, call=step.call, function=function,
                                  source=Path(file) if file else None)
    return loaded


def code_digest(step: LoadedStep, pipeline: Pipeline) -> str:
    """The step's code: its module's source, its ``deps`` files and the call itself."""
    parts = [step.call]
    if step.source is not None and step.source.is_file():
        parts.append(file_digest(step.source))
    for dep in pipeline.spec.steps[step.name].deps:
        parts.append(f"{dep}={tree_digest(pipeline.path(dep))}")
    return combine(*parts)


def module_digest(*modules: ModuleType) -> str:
    """The code of built-in steps: the source of the modelhost modules they run (every
    ``.py`` file of a package)."""
    parts = []
    for module in modules:
        file = Path(module.__file__) if module.__file__ else None
        if file is None:
            digest = ""
        elif file.name == "__init__.py":
            digest = combine(*(f"{p.name}={file_digest(p)}"
                               for p in sorted(file.parent.rglob("*.py"))))
        else:
            digest = file_digest(file)
        parts.append(f"{module.__name__}={digest}")
    return combine(*parts)


__all__ = ["LoadedStep", "code_digest", "load_steps", "module_digest", "user_code"]
