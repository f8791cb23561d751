"""The one exception tree of modelhost.

Every error a user can cause or meet derives from :class:`ModelhostError`. Each class
builds its own message from the values it is given, so callers never format messages
and every message says what was wrong, the offending value and what to do next.

``code`` is a stable, machine-readable identifier. The serving layer maps it to an
HTTP status and the CLI maps it to an exit code, each in one table of its own; this
module knows neither. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class ModelhostError(Exception):
    """Root of every modelhost error."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, details: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = list(details)

    def to_dict(self) -> dict[str, Any]:
        """The error as the ``error`` object of PRODUCT.md §3.6 (without request id)."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


# --- invalid input -------------------------------------------------------------------


class InvalidInputError(ModelhostError):
    """The caller gave a value that can never be valid."""

    code = "invalid_input"


class InvalidNameError(InvalidInputError):
    def __init__(self, kind: str, value: str, rule: str) -> None:
        super().__init__(f"invalid {kind} name {value!r}: {rule}")
        self.value = value


class InvalidVersionError(InvalidInputError):
    def __init__(self, value: str) -> None:
        super().__init__(
            f"invalid version {value!r}: expected MAJOR.MINOR.PATCH, e.g. '1.2.0'"
        )


class SignatureViolationError(InvalidInputError):
    """Input that breaks a model signature; ``details`` lists every problem found."""

    def __init__(self, details: Sequence[dict[str, Any]], *, total: int | None = None) -> None:
        first = details[0]["message"] if details else "input does not match the signature"
        count = total if total is not None else len(details)
        suffix = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        super().__init__(first + suffix, details=details)
        self.total = count


class PathEscapeError(InvalidInputError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"path {path!r} is not allowed: it must be a relative path that stays inside "
            "the store (no '..', no absolute path, no link)"
        )


class UntrustedArtifactError(InvalidInputError):
    """A pickle-family file (or unknown skops types) offered without the trust flag."""

    code = "untrusted_artifact"

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} can run arbitrary code when loaded; refusing it. Re-run with "
            "--trust-pickle (Python: trust_pickle=True) only if you trust its author, or "
            "save the model with skops or ONNX instead"
        )


class UntrustedTypesError(UntrustedArtifactError):
    """A skops file holding types outside skops' default safe list, without the trust flag."""

    def __init__(self, types: Sequence[str]) -> None:
        InvalidInputError.__init__(
            self,
            f"the skops file holds types that skops does not trust by default: "
            f"{', '.join(types)}; loading them can run code from their modules. If you trust "
            "the file's author, re-run with --trust-pickle (Python: trust_pickle=True, "
            "server: MODELHOST_TRUST_PICKLE=true), which trusts exactly these types for "
            "this version"
        )
        self.types = list(types)


class UnknownFlavorError(InvalidInputError):
    def __init__(self, flavor: str, known: Sequence[str]) -> None:
        super().__init__(
            f"unknown flavor {flavor!r}. Known flavors: {', '.join(sorted(known))}"
        )


class FlavorDetectionError(InvalidInputError):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"cannot tell which flavor {what} is; pass --flavor "
            "(sklearn, onnx, python or mlflow)"
        )


class ModelLoadError(InvalidInputError):
    """An artifact that does not load or does not predict as its flavor promises."""

    code = "model_load_failed"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} could not be loaded: {reason}")


# --- not found -----------------------------------------------------------------------


class NotFoundError(ModelhostError):
    """Something named that does not exist. Where an HTTP route lists what exists, the
    message names that route and ``cli_message`` names the command instead."""

    code = "not_found"
    cli_message: str | None = None


class ModelNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} not found; see GET /v1/models")
        self.cli_message = f"model {name!r} not found; see 'modelhost models list'"


class VersionNotFoundError(NotFoundError):
    def __init__(self, name: str, ref: str) -> None:
        what = f"model {name!r} has no version or alias {ref!r}"
        super().__init__(f"{what}; see GET /v1/models/{name}/versions")
        self.cli_message = f"{what}; see 'modelhost models versions {name}'"


class AliasNotFoundError(NotFoundError):
    def __init__(self, name: str, alias: str) -> None:
        super().__init__(f"model {name!r} has no alias {alias!r}")


class ExperimentNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"experiment {name!r} not found")


class RunNotFoundError(NotFoundError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found; see 'modelhost runs list'")


class RunIdTooShortError(InvalidInputError):
    def __init__(self, prefix: str, minimum: int) -> None:
        super().__init__(f"run id prefix {prefix!r} is too short: give at least {minimum} "
                         "characters of the id")


class AmbiguousRunIdError(InvalidInputError):
    def __init__(self, prefix: str, candidates: Sequence[str], *, more: bool = False) -> None:
        listed = ", ".join(candidates) + (", ..." if more else "")
        super().__init__(f"run id prefix {prefix!r} matches several runs ({listed}); give "
                         "more characters of the id")
        self.candidates = list(candidates)


class DatasetNotFoundError(NotFoundError):
    def __init__(self, name: str, version: int | None = None) -> None:
        what = f"dataset {name!r}" if version is None else f"dataset {name!r} version {version}"
        super().__init__(f"{what} not found; see 'modelhost data versions {name}'")


class ArtifactMissingError(NotFoundError):
    code = "artifact_missing"

    def __init__(self, digest: str) -> None:
        super().__init__(
            f"artifact sha256:{digest[:12]} is missing from the artifact store; "
            "restore it from a backup or register the model again"
        )


class FileNotFoundInputError(NotFoundError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no such file or folder: {path!r}")


# --- conflicts -----------------------------------------------------------------------


class ConflictError(ModelhostError):
    code = "conflict"


class NothingToRollBackError(ConflictError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"nothing to roll back for {name!r}: {why}")


class VersionExistsError(ConflictError):
    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"model {name!r} already has version {version}")


class SemverRuleError(ConflictError):
    def __init__(self, name: str, version: str, required: str, reason: str) -> None:
        super().__init__(
            f"version {version} of {name!r} breaks the semver rule: {reason}, which needs "
            f"at least version {required}; use it, omit --version to auto-bump, or pass --force"
        )


class IllegalTransitionError(ConflictError):
    def __init__(self, name: str, version: str, source: str, target: str,
                 allowed: Sequence[str]) -> None:
        options = ", ".join(allowed) if allowed else "none"
        super().__init__(
            f"{name} {version} cannot move from stage {source!r} to {target!r}; "
            f"allowed from {source!r}: {options}"
        )


class ReservedAliasError(ConflictError):
    def __init__(self, alias: str) -> None:
        super().__init__(f"alias {alias!r} is reserved; choose another name")


# --- gone, integrity, infrastructure --------------------------------------------------


class VersionSunsetError(ModelhostError):
    code = "gone"

    def __init__(self, name: str, version: str, sunset: str) -> None:
        super().__init__(f"{name} {version} reached its sunset on {sunset} and is retired")


class ArtifactCorruptedError(ModelhostError):
    """Stored bytes whose sha256 no longer matches: never loaded, never served."""

    code = "artifact_corrupted"

    def __init__(self, digest: str, actual: str) -> None:
        super().__init__(
            f"artifact sha256:{digest[:12]} failed its integrity check (its content now "
            f"hashes to sha256:{actual[:12]}); refusing to load it. Restore the file from "
            "a backup or register the model again"
        )


class StoreUnavailableError(ModelhostError):
    """The metadata database or artifact store cannot be reached or is locked."""

    code = "unavailable"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} is unavailable: {reason}; try again shortly")


class PortInUseError(ModelhostError):
    """Another process already listens on the port a server was asked to use."""

    code = "port_in_use"

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is in use; stop the process that holds it or "
                         "choose another with --port")
        self.port = port


class BindError(InvalidInputError):
    """An address a server cannot listen on: unknown, not this machine's, or privileged."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")


# --- serving --------------------------------------------------------------------------


class MalformedRequestError(ModelhostError):
    """A body that cannot be parsed at all (not JSON, bad binary framing)."""

    code = "malformed_request"


class PayloadTooLargeError(ModelhostError):
    code = "payload_too_large"

    def __init__(self, what: str, limit: int, unit: str) -> None:
        super().__init__(f"{what} exceeds the limit of {limit:,} {unit}")


class UnsupportedMediaTypeError(ModelhostError):
    code = "unsupported_media_type"

    def __init__(self, content_type: str, supported: Sequence[str]) -> None:
        super().__init__(f"content type {content_type!r} is not supported; "
                         f"use {', '.join(supported)}")


class OverloadedError(ModelhostError):
    """The prediction queue is full; the client should retry after ``retry_after`` s."""

    code = "overloaded"

    def __init__(self, what: str, retry_after: float = 1.0) -> None:
        super().__init__(f"{what} is overloaded; retry shortly")
        self.retry_after = retry_after


class ModelNotReadyError(ModelhostError):
    code = "not_ready"

    def __init__(self, name: str, version: str, retry_after: float = 1.0) -> None:
        super().__init__(f"{name} {version} is not loaded yet; retry shortly")
        self.retry_after = retry_after


class DeadlineExceededError(ModelhostError):
    code = "deadline_exceeded"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the prediction did not finish within its deadline of {seconds:g} s")


class PredictionFailedError(ModelhostError):
    """The model itself raised or returned nonsense; the message is sanitized."""

    code = "prediction_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the model failed to predict: {reason}")


class MissingDependencyError(ModelhostError):
    code = "missing_dependency"

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs an optional dependency; install it with "
            f"\"pip install 'modelhost[{extra}]'\""
        )


class UnauthorizedError(ModelhostError):
    """No key, or a key that is unknown, wrong, expired or revoked: one message for all,
    so that an answer never tells which keys exist."""

    code = "unauthorized"

    def __init__(self) -> None:
        super().__init__("a valid API key is required (Authorization: Bearer <key>)")


class HeadersTooLargeError(ModelhostError):
    code = "headers_too_large"

    def __init__(self, limit_bytes: int, limit_count: int) -> None:
        super().__init__(f"the request headers exceed {limit_bytes:,} bytes or "
                         f"{limit_count} fields")


class ForbiddenError(ModelhostError):
    code = "forbidden"


class RateLimitedError(ModelhostError):
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many requests for this API key; slow down")
        self.retry_after = retry_after
