"""One connection to a modelhost server: requests, and their error answers raised as
the modelhost errors of their codes (``not_found`` as NotFoundError, ...), with the
server's message. A server that cannot be reached is a StoreUnavailableError. The API
key, when given, goes in the ``Authorization: Bearer`` header and is never shown in a
message or ``repr``."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from modelhost.errors import InvalidInputError, ModelhostError, StoreUnavailableError


def path(*parts: str) -> str:
    """A route from its segments, each quoted (a name with a ``/`` stays one segment)."""
    return "/".join(quote(p, safe="") for p in parts)


class Http:
    """httpx's client with the server's address, key, timeout and certificate checks."""

    def __init__(self, url: str, *, api_key: str | None, timeout_s: float,
                 verify: bool | str | ssl.SSLContext, transport: Any = None) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"a server address starts with http:// or https://, "
                                    f"got {url!r}")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s,
                                    verify=verify, transport=transport)

    def call(self, method: str, route: str, *, json: Any = None,
             params: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, files: Any = None,
             data: Mapping[str, str] | None = None) -> Any:
        """The answer's JSON body (None when it has none)."""
        answer = self._send(method, route, json=json, params=params, headers=headers,
                            files=files, data=data)
        body = _json(answer.content)
        if answer.status_code >= 400:
            _raise_for(answer.status_code, body, answer.reason_phrase)
        return body

    def text(self, route: str, *, params: Mapping[str, Any] | None = None) -> str:
        answer = self._send("GET", route, params=params)
        if answer.status_code >= 400:
            _raise_for(answer.status_code, _json(answer.content), answer.reason_phrase)
        return str(answer.text)

    def stream(self, route: str) -> Iterator[bytes]:
        """The answer's body in chunks, as they arrive (a job's result can be large)."""
        import httpx

        try:
            with self._client.stream("GET", route) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    _raise_for(answer.status_code, _json(answer.content),
                               answer.reason_phrase)
                yield from answer.iter_bytes()
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from exc

    def _send(self, method: str, route: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._client.request(method, route, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from exc

    def close(self) -> None:
        self._client.close()


def _json(content: bytes) -> Any:
    import json

    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _error_classes() -> dict[str, type[ModelhostError]]:
    """code -> the class that introduces it (NotFoundError for ``not_found``, not one of
    its subclasses): every error a server may answer with. Where two classes introduce
    one code (``model_load_failed``), the one of ``modelhost.errors`` wins, whatever
    else happens to be imported: the answer must not depend on import order."""
    found: dict[str, type[ModelhostError]] = {"error": ModelhostError}
    pending: list[type[ModelhostError]] = [ModelhostError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            code = sub.__dict__.get("code")
            if code is not None and (code not in found or (
                    sub.__module__ == ModelhostError.__module__
                    and found[code].__module__ != ModelhostError.__module__)):
                found[code] = sub
            pending.append(sub)
    return found


def _raise_for(status: int, body: Any, reason: str) -> None:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
        details = error.get("details") or ()
    else:  # not a modelhost answer (a proxy in between, or another server)
        code, message, details = "error", f"the server answered {status} {reason}", ()
    cls = _error_classes().get(code, ModelhostError)
    raise with_message(cls, message, details if isinstance(details, list) else [])


def _unreachable(url: str, exc: Exception) -> ModelhostError:
    return with_message(StoreUnavailableError,
                        f"the modelhost server at {url} could not be reached "
                        f"({type(exc).__name__}); is it running?")


def with_message(cls: type[ModelhostError], message: str,
                 details: Sequence[dict[str, Any]] = ()) -> ModelhostError:
    """An error of ``cls`` that says ``message``: the classes' own constructors build
    their message from values, which a client does not have, only the server's words."""
    error = cls.__new__(cls)
    ModelhostError.__init__(error, message, details=details)
    return error
