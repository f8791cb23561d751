"""The errors of pipelines, rooted in :mod:`modelhost.errors` like every other error.

A step that raises, a failed validation or a failed gate are *results* of a run, not
errors: they end up in :class:`~modelhost.pipelines.result.PipelineResult`. These
classes are for what stops a pipeline before or between its steps: a broken spec, a step
that cannot be imported, a lock file that cannot be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelhost.errors import InvalidInputError


class PipelineSpecError(InvalidInputError):
    """``modelhost.yaml`` is not valid; the message and ``details`` list every problem."""

    code = "invalid_pipeline"

    def __init__(self, file: str, problems: Sequence[str]) -> None:
        listed = "; ".join(problems) if problems else "invalid pipeline"
        super().__init__(f"{file}: {listed}", details=[{"message": p} for p in problems])
        self.problems = list(problems)


class StepLoadError(InvalidInputError):
    """A step's ``module:function`` cannot be imported."""

    code = "invalid_pipeline"

    def __init__(self, step: str, call: str, reason: str) -> None:
        super().__init__(f"step {step!r}: cannot load {call!r}: {reason}")


class PipelineStateError(InvalidInputError):
    """The lock file exists but cannot be used."""

    code = "invalid_pipeline"

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file} cannot be read ({reason}); delete it to rebuild every step")


class ReproduceError(InvalidInputError):
    """A model version that cannot be reproduced (no pipeline run in its lineage, ...)."""

    code = "not_reproducible"

    def __init__(self, what: str, reason: str, *, details: Sequence[dict[str, Any]] = ()
                 ) -> None:
        super().__init__(f"cannot reproduce {what}: {reason}", details=details)
