"""The catalogue of hostile requests: data, one :class:`Hostile` per request.

Each entry says what is sent (method, raw path, headers, body, which key and how it is
presented) and what must come back (statuses, error shape and code). test_hostile.py
sends every entry to a real ``modelhost serve`` with ``MODELHOST_AUTH=required``,
``MODELHOST_MAX_BODY_BYTES=65536``, ``MODELHOST_MAX_UPLOAD_BYTES=1048576`` and
``MODELHOST_MAX_ROWS=100`` and also checks, for every entry, that nothing leaked
(traceback, path, SQL, secret) and nothing changed (database rows, artifact files, the
server's temporary folder; no pickle executed, no file written outside).

Paths are sent byte for byte: ``%2e%2e%2f`` arrives percent-encoded, a raw ``../`` or a
raw non-ASCII character arrives as it is. Placeholders, replaced before sending:

* ``<KEY>`` / ``<KEY_ID>``: the secret / id of the entry's key (for keys put where they
  must not be accepted, e.g. the query string);
* ``<ADMIN_ID>`` / ``<ADMIN_KEY>``: the id / secret of the admin key (the target of
  escalation attempts; a second credential).

The server holds: ``iris`` 1.0.0 (production) and 1.0.1 (none), an alias
``champion -> 1.0.0``; ``other`` 1.0.0 (staging); ``race`` 1.0.0 (production) and
1.0.1-1.0.5 (staging). Keys: see :data:`KEYS`. Entries with ``bug`` set describe a product
bug found by this suite (the test is a strict xfail until it is fixed).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# --- what the server knows --------------------------------------------------------------------

KEYS = {
    # real keys, created before the server starts
    "admin": "admin", "deployer": "deployer", "predictor": "predictor",
    "predictor_iris": "predictor limited to model iris", "viewer": "viewer",
    "limited": "a viewer key limited to 1 request/s",
    "expired": "an admin key past its expiry", "revoked": "a revoked admin key",
    # forgeries, derived from the real admin key by the test
    "forged_secret": "the admin key's id with a wrong secret",
    "unknown_id": "a well-formed key whose id does not exist",
    "malformed": "not a key at all",
    "truncated": "the admin key minus its last character",
    "extended": "the admin key plus one character",
    "uppercased": "the admin key in upper case",
}
COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
MAX_BODY_BYTES = 65536
MAX_ROWS = 100

MAX_UPLOAD_BYTES = 1 << 20

# The file a pickle payload would create if anything ever unpickled it.
MARKER = Path(tempfile.gettempdir()) / f"modelhost-security-pickle-ran-{os.getpid()}"
# Where uploads with traversing names try to write.
ESCAPE = Path(tempfile.gettempdir()) / f"modelhost-security-escaped-{os.getpid()}"
_CLIMB = "../" * 16 + str(ESCAPE).lstrip("/")


class _Exploit:
    """Unpickling this runs code: it writes :data:`MARKER`."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(MARKER)!r}, 'w').write('pwned')",))


PICKLE = pickle.dumps(_Exploit(), protocol=2)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


V1_OK = _json({"inputs": [ROW]})
V2_OK = _json({"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [v]}
                          for c, v in ROW.items()]})
MLFLOW_OK = _json({"dataframe_records": [ROW]})
JSON = ("Content-Type", "application/json")


def _v2_binary(name: str, payload: bytes, datatype: str = "BYTES") -> tuple[bytes, str]:
    """A Triton binary-tensor request carrying ``payload`` as the raw data of one input."""
    raw = struct.pack("<I", len(payload)) + payload if datatype == "BYTES" else payload
    header = _json({"inputs": [{"name": name, "shape": [1], "datatype": datatype,
                                "parameters": {"binary_data_size": len(raw)}}]})
    return header + raw, str(len(header))


def _multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, filename or None for a text field, content)."""
    boundary = "modelhost-hostile-boundary"
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 + ("Content-Type: application/octet-stream\r\n" if filename is not None
                    else "") + "\r\n").encode("utf-8", "surrogateescape")
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _tar(members: Iterable[tuple[str, bytes, str]], mode: str = "w:gz") -> bytes:
    """A tar archive of (name, data, kind): kind is file, dir, symlink, hardlink or fifo
    (for links, ``data`` is the link target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = data.decode()
            tar.addfile(info)
    return buffer.getvalue()


def _zip(members: Iterable[tuple[str, bytes, int]]) -> bytes:
    """A zip archive of (name, data, unix mode bits)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _skops_exploit() -> bytes:
    """A skops file whose object calls ``os.system`` (skops refuses the type unless
    trusted)."""
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    return bytes(skops.io.dumps(FunctionTransformer(func=os.system)))


def _gzip_bomb(inner: bytes = b" ") -> bytes:
    """~10 KB that inflates to 10 MB (150 times the body limit)."""
    return gzip.compress(b"[" + inner * 10_000_000 + b"]", compresslevel=9)


# --- the entry type ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One hostile request and the answer it must get.

    Attributes:
        id: a unique, readable test id.
        family: what kind of attack (traversal, pickle, upload, size, json, types,
            unicode, headers, sql, auth, roles).
        method, path: sent as given (see the module docstring for placeholders).
        status: the acceptable statuses.
        shapes: acceptable body shapes: ``v1`` (§3.6 error object, code checked against
            ``codes`` or the status' usual code), ``v2`` (``{"error": "..."}``), ``mlflow``
            (``{"error_code", "message"}``), ``json`` (any JSON), ``empty`` (no body),
            ``text``, ``transport`` (refused by the HTTP layer before the app).
        codes: acceptable v1 error codes; empty means the usual code of the status.
        key: which key (a name in :data:`KEYS`) or None for no key.
        auth: how the key is presented: ``bearer``, ``x-api-key`` or ``none`` (the entry
            puts it somewhere itself, e.g. with ``<KEY>`` in the query string).
        headers, body: sent as given.
        audited: True: a denied attempt at a privileged route, so exactly one
            ``access.denied`` audit entry with the request's id must appear; False: no
            audit entry at all; None: either (the path is ambiguous on purpose).
        changes: tables an *accepted* hostile request may change (e.g. a key created
            with a hostile name); every other table must stay exactly as it was.
        forbid: strings that must not appear anywhere in the response, even though the
            request contains them (e.g. a reflected Host).
        expect_json: the exact JSON body, when it matters (e.g. ``[]`` for an injected
            filter).
        bug: a known product bug; the test is ``xfail(strict=True)`` with this reason.
    """

    id: str
    family: str
    method: str
    path: str
    status: frozenset[int]
    shapes: frozenset[str]
    codes: frozenset[str] = frozenset()
    key: str | None = "admin"
    auth: str = "bearer"
    headers: tuple[tuple[str, str | bytes], ...] = ()
    body: bytes = b""
    audited: bool | None = False
    changes: frozenset[str] = frozenset()
    forbid: tuple[str, ...] = ()
    expect_json: Any = None
    bug: str | None = None
    sets_request_id: bool = False  # the entry sends its own X-Request-Id


USUAL_CODES: dict[int, frozenset[str]] = {
    400: frozenset({"malformed_request"}),
    401: frozenset({"unauthorized"}),
    403: frozenset({"forbidden"}),
    404: frozenset({"not_found"}),
    405: frozenset({"method_not_allowed"}),
    409: frozenset({"conflict"}),
    413: frozenset({"payload_too_large"}),
    415: frozenset({"unsupported_media_type"}),
    422: frozenset({"invalid_input"}),
    429: frozenset({"rate_limited"}),
}

_ENTRIES: list[Hostile] = []


def _add(id: str, family: str, method: str, path: str, status: int | Iterable[int],
         shapes: str | Iterable[str] = "v1", **kwargs: Any) -> None:
    statuses = frozenset({status} if isinstance(status, int) else status)
    shape_set = frozenset({shapes} if isinstance(shapes, str) else shapes)
    for name in ("codes", "changes"):
        if name in kwargs:
            kwargs[name] = frozenset(kwargs[name])
    headers = tuple(kwargs.pop("headers", ()))
    kwargs["sets_request_id"] = any(k.lower() == "x-request-id" for k, _ in headers)
    _ENTRIES.append(Hostile(id=f"{family}:{id}", family=family, method=method, path=path,
                            status=statuses, shapes=shape_set, headers=headers, **kwargs))


# Route-not-found answers come from the framework in the v1 shape, on every prefix.
REFUSED = frozenset({400, 404, 405, 422})

# --- 1. path traversal ------------------------------------------------------------------------

# (label, what goes into a URL path segment, what goes into a header or JSON string)
TRAVERSALS: tuple[tuple[str, str, str], ...] = (
    ("dotdot", "..", ".."),
    ("raw-dotdot-slash", "../../etc/passwd", "../../etc/passwd"),
    ("pct", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
    ("pct-upper", "%2E%2E%2F%2E%2E%2Fetc", "%2E%2E%2F"),
    ("pct-dots-only", "%2e%2e", "%2e%2e"),
    ("double-encoded", "%252e%252e%252fetc%252fpasswd", "%252e%252e%252fetc%252fpasswd"),
    ("backslash", "..%5c..%5cwindows%5cwin.ini", "..\\..\\windows\\win.ini"),
    ("raw-backslash", "..\\..\\windows", "..\\..\\windows"),
    ("fullwidth", "%EF%BC%8E%EF%BC%8E%EF%BC%8Fetc", "\uff0e\uff0e\uff0fetc"),
    ("one-dot-leaders", "%E2%80%A4%E2%80%A4%E2%80%A4", "\u2024\u2024\u2024"),
    ("overlong-utf8", "%c0%ae%c0%ae%c0%af", "%c0%ae%c0%ae%c0%af"),
    ("overlong-3byte", "%e0%80%ae%e0%80%ae%e0%80%af", "%e0%80%ae%e0%80%ae"),
    ("nul", "iris%00.json", "iris%00"),
    ("absolute", "%2fetc%2fpasswd", "/etc/passwd"),
    ("unc", "%5c%5cattacker%5cshare", "\\\\attacker\\share"),
    ("raw-unc", "\\\\attacker\\share", "\\\\attacker\\share"),
    ("dot", "%2e", "."),
    ("drive", "C:%5cWindows", "C:\\Windows"),
)

_UPLOAD = _multipart(("file", "model.skops", b"not a model"))

# (family label, method, template with {slot}, body, content type, key, shapes)
# {model} / {version} / {alias} mark the slot the traversal goes into.
_PATH_ROUTES: tuple[tuple[str, str, str, bytes, str | None, str, str], ...] = (
    ("v1.predict", "POST", "/v1/models/{model}/predict", V1_OK, "application/json",
     "admin", "v1"),
    ("v1.predict-version", "POST", "/v1/models/iris/versions/{version}/predict", V1_OK,
     "application/json", "admin", "v1"),
    ("v1.invocations", "POST", "/v1/models/{model}/invocations", MLFLOW_OK,
     "application/json", "admin", "mlflow"),
    ("v2.infer", "POST", "/v2/models/{model}/infer", V2_OK, "application/json", "admin", "v2"),
    ("v2.infer-version", "POST", "/v2/models/iris/versions/{version}/infer", V2_OK,
     "application/json", "admin", "v2"),
    ("v2.metadata", "GET", "/v2/models/{model}", b"", None, "admin", "v2"),
    ("v2.metadata-version", "GET", "/v2/models/iris/versions/{version}", b"", None,
     "admin", "v2"),
    ("v2.ready-version", "GET", "/v2/models/iris/versions/{version}/ready", b"", None,
     "admin", "v2"),
    ("mgmt.model", "GET", "/v1/models/{model}", b"", None, "viewer", "v1"),
    ("mgmt.versions", "GET", "/v1/models/{model}/versions", b"", None, "viewer", "v1"),
    ("mgmt.version", "GET", "/v1/models/iris/versions/{version}", b"", None, "viewer", "v1"),
    ("mgmt.card", "GET", "/v1/models/iris/versions/{version}/card", b"", None, "viewer", "v1"),
    # Writes with the deployer key: a traversal that resolved to a real version would
    # archive it or move an alias, and the snapshot would see it.
    ("mgmt.stage", "POST", "/v1/models/iris/versions/{version}/stage",
     _json({"stage": "archived"}), "application/json", "deployer", "v1"),
    ("mgmt.stage-model", "POST", "/v1/models/{model}/versions/1.0.0/stage",
     _json({"stage": "archived"}), "application/json", "deployer", "v1"),
    ("mgmt.alias-set", "PUT", "/v1/models/iris/aliases/{alias}", _json({"version": "1.0.1"}),
     "application/json", "deployer", "v1"),
    ("mgmt.alias-model", "PUT", "/v1/models/{model}/aliases/champion",
     _json({"version": "1.0.1"}), "application/json", "deployer", "v1"),
    ("mgmt.alias-delete", "DELETE", "/v1/models/iris/aliases/{alias}", b"", None, "deployer",
     "v1"),
    ("keys.revoke", "DELETE", "/v1/keys/{key}", b"", None, "admin", "v1"),
    # An upload that a traversing name let through would add a version.
    ("upload", "POST", "/v1/models/{model}/versions", _UPLOAD[0], _UPLOAD[1], "deployer",
     "v1"),
)


def _traversals() -> None:
    for label, segment, _text in TRAVERSALS:
        for route, method, template, body, ctype, key, shape in _PATH_ROUTES:
            path = (template.replace("{model}", segment).replace("{version}", segment)
                    .replace("{alias}", segment).replace("{key}", segment))
            headers = [("Content-Type", ctype)] if ctype else []
            _add(f"{route}:{label}", "traversal", method, path, REFUSED, {shape, "v1"},
                 codes={"invalid_input", "not_found", "malformed_request",
                        "method_not_allowed"}, key=key, headers=headers, body=body)
    # Raw non-ASCII and control bytes in the request target never reach the app.
    for label, segment in (("raw-fullwidth", "\uff0e\uff0e\uff0fetc"),
                           ("raw-nul", "iris\x00"), ("raw-space", "iris .."),
                           ("raw-newline", "iris\n.."), ("raw-overlong", "\udcc0\udcae")):
        _add(f"v1.predict:{label}", "traversal", "POST", f"/v1/models/{segment}/predict", 400,
             "transport", headers=[JSON], body=V1_OK)
    # The same strings where a version or alias travels in a header or a JSON body.
    for label, _segment, text in TRAVERSALS:
        if not any(c in text for c in "\x00\r\n"):
            _add(f"x-model-version:{label}", "traversal", "POST", "/v1/models/iris/predict",
                 404, codes={"not_found"}, headers=[JSON, ("X-Model-Version", text)],
                 body=V1_OK)
        _add(f"alias-body-version:{label}", "traversal", "PUT",
             "/v1/models/iris/aliases/champion", 404, key="deployer",
             headers=[JSON], body=_json({"version": text}))
        _add(f"key-models:{label}", "traversal", "POST", "/v1/keys", 422,
             headers=[JSON], body=_json({"name": "t", "role": "predictor", "models": [text]}))
        _add(f"v2-output-name:{label}", "traversal", "POST", "/v2/models/iris/infer", 400,
             "v2", headers=[JSON],
             body=_json({**json.loads(V2_OK), "outputs": [{"name": text}]}))


# --- 2. pickle payloads -----------------------------------------------------------------------


def _pickles() -> None:
    for ctype in ("application/octet-stream", "application/python-pickle",
                  "application/x-pickle", "application/json", None):
        label = ctype.split("/")[1] if ctype else "no-content-type"
        headers = [("Content-Type", ctype)] if ctype else []
        _add(f"v1.predict:{label}", "pickle", "POST", "/v1/models/iris/predict", {400, 415},
             headers=headers, body=PICKLE)
        _add(f"v1.invocations:{label}", "pickle", "POST", "/v1/models/iris/invocations",
             {400, 415}, "mlflow", headers=headers, body=PICKLE)
        _add(f"v2.infer:{label}", "pickle", "POST", "/v2/models/iris/infer", {400, 415}, "v2",
             headers=headers, body=PICKLE)
    compressed = gzip.compress(PICKLE)
    _add("v1.predict:gzip", "pickle", "POST", "/v1/models/iris/predict", {400, 415},
         headers=[JSON, ("Content-Encoding", "gzip")], body=compressed)
    _add("v2.infer:gzip", "pickle", "POST", "/v2/models/iris/infer", {400, 415}, "v2",
         headers=[JSON, ("Content-Encoding", "gzip")], body=compressed)
    body, length = _v2_binary("sepal_length", PICKLE)
    _add("v2.infer:binary-bytes-tensor", "pickle", "POST", "/v2/models/iris/infer",
         {400, 422}, "v2", headers=[("Content-Type", "application/octet-stream"),
                                    ("Inference-Header-Content-Length", length)], body=body)
    body, length = _v2_binary("sepal_length", PICKLE[:8].ljust(8, b"\0"), "FP64")
    _add("v2.infer:binary-fp64-tensor", "pickle", "POST", "/v2/models/iris/infer",
         {200, 400, 422}, {"v2", "json"},
         headers=[("Content-Type", "application/octet-stream"),
                  ("Inference-Header-Content-Length", length)], body=body)
    _add("v1.invocations:csv", "pickle", "POST", "/v1/models/iris/invocations", 400, "mlflow",
         headers=[("Content-Type", "text/csv")], body=PICKLE)
    _add("v1.predict:json-string", "pickle", "POST", "/v1/models/iris/predict", 422,
         headers=[JSON], body=_json({"inputs": [{**ROW, "sepal_length": PICKLE.hex()}]}))
    # Routes that take no upload at all.
    for method, path in (("PUT", "/v1/models/iris/versions"), ("POST", "/v1/models"),
                         ("PUT", "/v1/models/evil"),
                         ("POST", "/v1/models/iris/versions/9.9.9"),
                         ("PUT", "/v1/models/iris/versions/9.9.9")):
        body, ctype = _multipart(("file", "model.pkl", PICKLE))
        _add(f"not-an-upload-route:{method}:{path}", "pickle", method, path, {404, 405},
             key="deployer", headers=[("Content-Type", ctype)], body=body)


# --- 2b. model uploads (POST /v1/models/{name}/versions) ---------------------------------


def _upload(label: str, parts: Iterable[tuple[str, str | None, bytes]], status: int |
            Iterable[int], codes: Iterable[str] = (), *, name: str = "evil",
            key: str | None = "deployer", audited: bool | None = False) -> None:
    body, ctype = _multipart(*parts)
    _add(label, "upload", "POST", f"/v1/models/{name}/versions", status, key=key,
         codes=codes, headers=[("Content-Type", ctype)], body=body, audited=audited)


def _uploads() -> None:
    untrusted = {"untrusted_artifact"}
    refused = {"invalid_input", "untrusted_artifact", "model_load_failed"}
    mlmodel = (b"artifact_path: model\nflavors:\n  sklearn:\n    pickled_model: model.pkl\n"
               b"    serialization_format: cloudpickle\n    sklearn_version: 1.5.0\n"
               b"  python_function:\n    loader_module: mlflow.sklearn\n"
               b"    model_path: model.pkl\n    python_version: 3.11.0\n")
    pyfunc = (b"artifact_path: model\nflavors:\n  python_function:\n"
              b"    loader_module: this\n    python_version: 3.11.0\n")
    skops_exploit = _skops_exploit()
    # Pickles in every wrapping: refused unless the *server* trusts pickles.
    for label, filename, flavor in (("pickle", "model.pkl", None),
                                    ("pickle-as-sklearn", "model.pkl", "sklearn"),
                                    ("joblib", "model.joblib", None),
                                    ("pickle-as-skops-name", "model.skops", None),
                                    ("pickle-as-python", "model.pkl", "python"),
                                    ("pickle-as-onnx", "model.onnx", "onnx")):
        parts = [("file", filename, PICKLE)]
        if flavor:
            parts.append(("flavor", None, flavor.encode()))
        _upload(label, parts, 422, untrusted if flavor is None and filename != "model.skops"
                else refused)
    _upload("pickle-in-tar", [("file", "model.tar.gz", _tar([("model.pkl", PICKLE, "file")]))],
            422, untrusted)
    _upload("pickle-in-zip", [("file", "model.zip", _zip([("m/model.joblib", PICKLE, 0)]))],
            422, untrusted)
    _upload("mlflow-cloudpickle", [("file", "model.tar.gz", _tar([
        ("model/MLmodel", mlmodel, "file"), ("model/model.pkl", PICKLE, "file")]))],
        422, untrusted)
    _upload("mlflow-loader-module", [("file", "model.tar.gz", _tar([
        ("model/MLmodel", pyfunc, "file"), ("model/data", b"x", "file")]))], 422, refused)
    _upload("skops-untrusted-type", [("file", "model.skops", skops_exploit)], 422, untrusted)
    _upload("skops-untrusted-type-python", [("file", "model.skops", skops_exploit),
                                            ("flavor", None, b"python")], 422, refused)
    _upload("trust-field", [("file", "model.pkl", PICKLE), ("trust_pickle", None, b"true")],
            422, {"invalid_input"})
    _upload("force-pickle", [("file", "model.pkl", PICKLE), ("force", None, b"true")], 422,
            untrusted)
    # Names that climb out of the upload folder.
    for label, filename in (("climb", _CLIMB), ("absolute", str(ESCAPE)),
                            ("backslash", "..\\..\\" + ESCAPE.name),
                            ("encoded", "%2e%2e%2f" * 16 + str(ESCAPE).lstrip("/")),
                            ("fullwidth", "\uff0e\uff0e\uff0f" * 16 + ESCAPE.name),
                            ("nul", "model.skops\x00.txt")):
        _upload(f"filename-{label}", [("file", filename, b"x"), ("file", "b.txt", b"y")],
                {400, 422}, {"invalid_input", "malformed_request"})
    _upload("filename-twice", [("file", "a/model.txt", b"x"), ("file", "A/MODEL.txt", b"y")],
            422)
    for label, members in (("member-climb", [(_CLIMB, b"x", "file")]),
                           ("member-absolute", [(str(ESCAPE), b"x", "file")]),
                           ("member-dir-climb", [("../../x/", b"", "dir")]),
                           ("symlink", [("model.skops", b"/etc/passwd", "symlink")]),
                           ("symlink-then-write", [("d", str(ESCAPE.parent).encode(),
                                                    "symlink"),
                                                   (f"d/{ESCAPE.name}", b"x", "file")]),
                           ("hardlink", [("model.skops", b"/etc/passwd", "hardlink")]),
                           ("fifo", [("model.skops", b"", "fifo")])):
        # Plain tar, so the member names the server may quote are in the request as sent.
        _upload(f"tar-{label}", [("file", "model.tar", _tar(members, mode="w"))], 422)
    for label, members in (("member-climb", [(_CLIMB, b"x", 0o100644)]),
                           ("member-absolute", [(str(ESCAPE), b"x", 0o100644)]),
                           ("member-backslash", [("..\\..\\" + ESCAPE.name, b"x", 0)]),
                           ("symlink", [("model.skops", b"/etc/passwd", 0o120777)])):
        _upload(f"zip-{label}", [("file", "model.zip", _zip(members))], 422)
    zeros = b"\0" * (2 * MAX_UPLOAD_BYTES)  # compresses to a few KB
    _upload("zip-bomb", [("file", "model.zip", _zip([("model.skops", zeros, 0)]))], 413)
    _upload("tar-bomb", [("file", "model.tar.gz", _tar([("model.skops", zeros, "file")]))],
            413)
    _upload("tar-truncated", [("file", "model.tar.gz", _tar([("a", b"x" * 5000, "file")])[:60])],
            422)
    _upload("not-an-archive", [("file", "model.tar.gz", b"not a tar")], 422)
    # Fields and names.
    _upload("version-climb", [("file", "model.pkl", PICKLE), ("version", None, b"../../1.0.0")],
            422, refused)
    _add("input-example-deep", "upload", "POST", "/v1/models/evil/versions", {400, 422},
         codes=refused | {"malformed_request"}, key="deployer",
         headers=[("Content-Type", _multipart(("file", "model.pkl", PICKLE))[1])],
         body=_multipart(("file", "model.pkl", PICKLE),
                         ("input_example", None, b"[" * 30_000 + b"]" * 30_000))[0])
    _upload("input-example-not-records", [("file", "model.pkl", PICKLE),
                                          ("input_example", None, b'{"a": 1}')], 422)
    _upload("input-example-nan", [("file", "model.pkl", PICKLE),
                                  ("input_example", None, b'[{"a": NaN, "b": 1e999}]')], 422,
            refused)
    _upload("no-file", [("flavor", None, b"sklearn")], 422)
    _upload("file-as-text-field", [("file", None, PICKLE)], 422)
    _upload("name-dotdot", [("file", "model.pkl", PICKLE)], 422, name="%2e%2e")
    _upload("name-climb", [("file", "model.pkl", PICKLE)], 404, name="..%2f..%2firis")
    _upload("name-sql", [("file", "model.pkl", PICKLE)], 422,
            name="x%27%3BDROP%20TABLE%20models%3B--")
    body, _ = _multipart(("file", "model.pkl", PICKLE))
    _add("not-multipart", "upload", "POST", "/v1/models/evil/versions", 415, key="deployer",
         headers=[("Content-Type", "application/octet-stream")], body=PICKLE)
    _add("multipart-without-boundary", "upload", "POST", "/v1/models/evil/versions",
         {400, 415, 422}, codes={"malformed_request", "unsupported_media_type",
                                 "invalid_input", "error"},
         key="deployer", headers=[("Content-Type", "multipart/form-data")], body=body)
    _add("declared-over-limit", "upload", "POST", "/v1/models/evil/versions", 413,
         key="deployer", headers=[("Content-Type", "multipart/form-data; boundary=x"),
                                  ("Content-Length", str(MAX_UPLOAD_BYTES + 1))], body=b"--x")
    # Who may upload.
    for key, status, audited in (("predictor", 403, True), ("viewer", 403, True),
                                 ("predictor_iris", 403, True), (None, 401, True),
                                 ("forged_secret", 401, True)):
        _upload(f"as-{key or 'no-key'}", [("file", "model.pkl", PICKLE)], status,
                key=key, audited=audited)


# --- 3. size ----------------------------------------------------------------------------------

_FAST = (("v1.predict", "/v1/models/iris/predict", "v1"),
         ("v1.invocations", "/v1/models/iris/invocations", "mlflow"),
         ("v2.infer", "/v2/models/iris/infer", "v2"))


def _sizes() -> None:
    big = _json({"inputs": [ROW] * 1000})  # ~80 KB of valid JSON
    assert len(big) > MAX_BODY_BYTES
    bomb = _gzip_bomb()
    for route, path, shape in _FAST:
        _add(f"{route}:body-over-limit", "size", "POST", path, 413, shape,
             headers=[JSON], body=big)
        _add(f"{route}:declared-1tb", "size", "POST", path, 413, shape,
             headers=[JSON, ("Content-Length", str(10**12))], body=b"{}")
        _add(f"{route}:gzip-bomb", "size", "POST", path, 413, shape,
             headers=[JSON, ("Content-Encoding", "gzip")], body=bomb)
        _add(f"{route}:gzip-truncated", "size", "POST", path, 400, shape,
             headers=[JSON, ("Content-Encoding", "gzip")], body=gzip.compress(V1_OK)[:-9])
        _add(f"{route}:gzip-twice-declared", "size", "POST", path, 400, shape,
             headers=[JSON, ("Content-Encoding", "gzip, gzip")], body=gzip.compress(V1_OK))
        chunk = b"a" * 40_000
        chunked = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                           for _ in range(3)) + b"0\r\n\r\n"
        _add(f"{route}:chunked-over-limit", "size", "POST", path, 413, shape,
             headers=[JSON, ("Transfer-Encoding", "chunked")], body=chunked)
    # Request smuggling: framing the HTTP parser must refuse rather than guess.
    smuggled = b"0\r\n\r\nPOST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    for label, headers in (
            ("content-length-and-chunked", [("Content-Length", str(len(smuggled))),
                                            ("Transfer-Encoding", "chunked")]),
            ("two-content-lengths", [("Content-Length", "5"),
                                     ("Content-Length", str(len(smuggled)))]),
            ("chunked-not-last", [("Transfer-Encoding", "chunked, identity")])):
        _add(f"v1.predict:smuggle-{label}", "size", "POST", "/v1/models/iris/predict", 400,
             "transport", headers=[JSON, *headers], body=smuggled)
    rows = [ROW] * (MAX_ROWS + 1)
    _add("v1.predict:rows-over-limit", "size", "POST", "/v1/models/iris/predict", 413,
         headers=[JSON], body=_json({"inputs": rows}))
    _add("v1.predict:columns-over-limit", "size", "POST", "/v1/models/iris/predict", 413,
         headers=[JSON], body=_json({"inputs": {c: [v] * (MAX_ROWS + 1)
                                                for c, v in ROW.items()}}))
    _add("v1.invocations:rows-over-limit", "size", "POST", "/v1/models/iris/invocations",
         413, "mlflow", headers=[JSON], body=_json({"dataframe_records": rows}))
    _add("v2.infer:rows-over-limit", "size", "POST", "/v2/models/iris/infer", 413, "v2",
         headers=[JSON], body=_json({"inputs": [
             {"name": c, "shape": [MAX_ROWS + 1], "datatype": "FP64",
              "data": [v] * (MAX_ROWS + 1)} for c, v in ROW.items()]}))
    _add("v2.infer:shape-4g", "size", "POST", "/v2/models/iris/infer", {400, 413, 422}, "v2",
         headers=[JSON], body=_json({"inputs": [{"name": "sepal_length", "shape": [2**32],
                                                 "datatype": "FP64", "data": [1.0]}]}))
    _add("v2.infer:shape-product-overflow", "size", "POST", "/v2/models/iris/infer",
         {400, 413, 422}, "v2", headers=[JSON],
         body=_json({"inputs": [{"name": "sepal_length", "shape": [2**40, 2**40, 2**40],
                                 "datatype": "FP64", "data": [1.0]}]}))
    body, _ = _v2_binary("sepal_length", b"\0" * 8, "FP64")
    _add("v2.infer:binary-header-length-past-body", "size", "POST", "/v2/models/iris/infer",
         400, "v2", headers=[("Content-Type", "application/octet-stream"),
                             ("Inference-Header-Content-Length", "99999999")], body=body)
    header = _json({"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64",
                                "parameters": {"binary_data_size": 2**40}}]})
    _add("v2.infer:binary-size-past-body", "size", "POST", "/v2/models/iris/infer",
         {400, 413, 422}, "v2", headers=[("Content-Type", "application/octet-stream"),
                                         ("Inference-Header-Content-Length", str(len(header)))],
         body=header + b"\0" * 8)
    # Management routes: a 100,000-deep document is over the limit, gzip is not theirs.
    _add("keys.create:gzip-bomb", "size", "POST", "/v1/keys", {400, 413, 415},
         codes={"malformed_request", "payload_too_large", "unsupported_media_type", "error"},
         headers=[JSON, ("Content-Encoding", "gzip")], body=bomb)
    # PRODUCT.md §3.6: 413 when a body is larger than the limits -- for every route.
    over = _json({"version": "1.0.1", "pad": "x" * (MAX_BODY_BYTES + 1000)})
    _add("alias-set:body-over-limit", "size", "PUT", "/v1/models/iris/aliases/champion", 413,
         key="deployer", headers=[JSON], body=over)
    _add("stage:body-over-limit", "size", "POST", "/v1/models/iris/versions/1.0.1/stage", 413,
         key="deployer", headers=[JSON],
         body=_json({"stage": "archived", "reason": "x" * (MAX_BODY_BYTES + 1000)}))
    _add("keys.create:body-over-limit", "size", "POST", "/v1/keys", 413, headers=[JSON],
         body=_json({"name": "big", "role": "viewer", "pad": "x" * (MAX_BODY_BYTES + 1000)}))
    # Headers: a server must bound them (nginx 8 KB, h11 16 KB); refused before any key
    # is checked.
    _add("header:1mb-without-key", "size", "GET", "/v1/models", {400, 413, 431},
         {"transport", "v1", "text"},
         codes={"malformed_request", "payload_too_large", "headers_too_large"},
         key=None, headers=[("X-Padding", "a" * 1_000_000)])


# --- 4. JSON: depth, non-finite numbers, wrong types ------------------------------------------


def _json_entries() -> None:
    deep_under = 30_000  # 60 KB: under the body limit, so the parser sees it
    for route, path, shape in _FAST:
        wrap = {"v1": '{"inputs":@}', "mlflow": '{"dataframe_records":@}',
                "v2": '{"inputs":@}'}[shape]
        for depth, status in ((100_000, 413), (deep_under, 400)):
            nested = "[" * depth + "]" * depth
            _add(f"{route}:nested-{depth}", "json", "POST", path, status, shape,
                 headers=[JSON], body=wrap.replace("@", nested).encode())
        objects = '{"a":' * 10_000 + "1" + "}" * 10_000  # 60 KB
        _add(f"{route}:nested-objects-10000", "json", "POST", path, 400, shape,
             headers=[JSON], body=objects.encode())
        for literal in ("1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1" + "0" * 400,
                        "0x10", "1_000"):
            if shape == "v1":
                body = ('{"inputs":[{"sepal_length":@,"sepal_width":3.5,"petal_length":1.4,'
                        '"petal_width":0.2}]}')
            elif shape == "mlflow":
                body = ('{"dataframe_records":[{"sepal_length":@,"sepal_width":3.5,'
                        '"petal_length":1.4,"petal_width":0.2}]}')
            else:
                body = ('{"inputs":[{"name":"sepal_length","shape":[1],"datatype":"FP64",'
                        '"data":[@]}]}')
            _add(f"{route}:number-{literal[:12]}", "json", "POST", path, {400, 422}, shape,
                 headers=[JSON], body=body.replace("@", literal).encode())
        for label, raw in (("invalid-utf8", b'{"inputs":"\xff\xfe"}'),
                           ("lone-surrogate", b'{"inputs":[{"sepal_length":"\\ud800"}]}'),
                           ("empty", b""),
                           ("truncated", V1_OK[:-3]), ("trailing-garbage", V1_OK + b"}x"),
                           ("comment", b'{"inputs": /* hi */ []}'),
                           ("single-quotes", b"{'inputs': []}")):
            _add(f"{route}:{label}", "json", "POST", path, {400, 422}, shape,
                 headers=[JSON], body=raw)
    # Management bodies go through the framework's parser.
    for label, raw, status in (
            ("nested-30000", b"[" * deep_under + b"]" * deep_under, {400, 422}),
            ("nested-objects", ('{"a":' * 10_000 + "1" + "}" * 10_000).encode(),
             {400, 422}),
            ("rate-1e999", b'{"name":"x","role":"predictor","rate_limit":1e999}', 422),
            ("rate-nan", b'{"name":"x","role":"predictor","rate_limit":NaN}', 422),
            ("rate-negative-infinity", b'{"name":"x","role":"predictor","rate_limit":-Infinity}',
             422),
            ("invalid-utf8", b'{"name":"\xff","role":"viewer"}', {400, 422}),
            ("not-json", b"name=x&role=admin", {400, 422})):
        _add(f"keys.create:{label}", "json", "POST", "/v1/keys", status,
             codes={"invalid_input", "malformed_request", "error"}, headers=[JSON], body=raw)
    _add("stage:nested", "json", "POST", "/v1/models/iris/versions/1.0.1/stage", {400, 422},
         codes={"invalid_input", "malformed_request", "error"}, key="deployer",
         headers=[JSON], body=b'{"stage":' + b"[" * deep_under + b"]" * deep_under + b"}")
    _add("stage:nan", "json", "POST", "/v1/models/iris/versions/1.0.1/stage", 422,
         key="deployer", headers=[JSON], body=b'{"stage":NaN}')


def _types() -> None:
    v1 = "/v1/models/iris/predict"
    for label, document in (
            ("inputs-string", {"inputs": "x"}), ("inputs-number", {"inputs": 1}),
            ("inputs-null", {"inputs": None}), ("inputs-bool", {"inputs": True}),
            ("inputs-empty", {"inputs": []}), ("rows-of-lists", {"inputs": [[1, 2, 3, 4]]}),
            ("value-string", {"inputs": [{**ROW, "sepal_length": "5.1"}]}),
            ("value-object", {"inputs": [{**ROW, "sepal_length": {"$gt": 1}}]}),
            ("value-list", {"inputs": [{**ROW, "sepal_length": [1]}]}),
            ("value-bool", {"inputs": [{**ROW, "sepal_length": True}]}),
            ("value-null", {"inputs": [{**ROW, "sepal_length": None}]}),
            ("missing-column", {"inputs": [{k: v for k, v in ROW.items()
                                            if k != "petal_width"}]}),
            ("extra-column", {"inputs": [{**ROW, "__proto__": 1}]}),
            ("ragged-columns", {"inputs": {"sepal_length": [1, 2], "sepal_width": [1],
                                           "petal_length": [1], "petal_width": [1]}}),
            ("params-list", {"inputs": [ROW], "params": [1]}),
            ("extra-field", {"inputs": [ROW], "model": "../other"}),
            ("top-level-list", [ROW]), ("top-level-string", "inputs"),
            ("top-level-null", None)):
        _add(f"v1.predict:{label}", "types", "POST", v1, {400, 422}, headers=[JSON],
             body=_json(document))
    v2 = "/v2/models/iris/infer"
    tensor = {"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1.0]}
    for label, document in (
            ("inputs-object", {"inputs": {"a": 1}}), ("inputs-missing", {}),
            ("tensor-string", {"inputs": ["x"]}),
            ("name-missing", {"inputs": [{k: v for k, v in tensor.items() if k != "name"}]}),
            ("name-number", {"inputs": [{**tensor, "name": 1}]}),
            ("shape-string", {"inputs": [{**tensor, "shape": "1"}]}),
            ("shape-negative", {"inputs": [{**tensor, "shape": [-1]}]}),
            ("shape-float", {"inputs": [{**tensor, "shape": [1.5]}]}),
            ("datatype-unknown", {"inputs": [{**tensor, "datatype": "FP999"}]}),
            ("datatype-lower", {"inputs": [{**tensor, "datatype": "object"}]}),
            ("data-object", {"inputs": [{**tensor, "data": {"a": 1}}]}),
            ("data-string", {"inputs": [{**tensor, "data": ["x"]}]}),
            ("data-nested-ragged", {"inputs": [{**tensor, "shape": [2, 2],
                                                "data": [[1.0], [1.0, 2.0]]}]}),
            ("parameters-list", {"inputs": [tensor], "parameters": [1]}),
            ("outputs-string", {"inputs": [tensor], "outputs": "predict"}),
            ("id-object", {"id": {"$ne": 1}, "inputs": [tensor]})):
        _add(f"v2.infer:{label}", "types", "POST", v2, {400, 422}, "v2", headers=[JSON],
             body=_json(document))
    inv = "/v1/models/iris/invocations"
    for label, document in (
            ("split-mismatch", {"dataframe_split": {"columns": list(COLUMNS),
                                                    "data": [[1, 2]]}}),
            ("split-columns-object", {"dataframe_split": {"columns": {"a": 1}, "data": []}}),
            ("instances-strings", {"instances": ["a", "b"]}),
            ("two-orients", {"dataframe_records": [ROW], "instances": [[1, 2, 3, 4]]}),
            ("unknown-orient", {"records": [ROW]}),
            ("params-list", {"dataframe_records": [ROW], "params": [1]}),
            ("records-of-objects", {"dataframe_records": [{"a": {"b": 1}}]})):
        _add(f"v1.invocations:{label}", "types", "POST", inv, 400, "mlflow", headers=[JSON],
             body=_json(document))
    for label, document, status in (
            ("stage-number", {"stage": 1}, 422), ("stage-unknown", {"stage": "prod"}, 422),
            ("stage-list", {"stage": ["production"]}, 422), ("stage-missing", {}, 422),
            ("skip-to-production", {"stage": "production"}, 409)):
        _add(f"stage:{label}", "types", "POST", "/v1/models/iris/versions/1.0.1/stage",
             status, key="deployer", headers=[JSON], body=_json(document))
    for label, alias, document, status in (
            ("version-null", "champion", {"version": None}, 422),
            ("version-number", "champion", {"version": 1}, 422),
            ("reserved-latest", "latest", {"version": "1.0.1"}, 409),
            ("semver-like", "2.0.0", {"version": "1.0.1"}, 409),
            ("version-of-other-model", "champion", {"version": "other:1.0.0"}, {404, 422})):
        _add(f"alias:{label}", "types", "PUT", f"/v1/models/iris/aliases/{alias}", status,
             key="deployer", headers=[JSON], body=_json(document))
    for label, document in (
            ("role-list", {"name": "x", "role": ["admin"]}),
            ("role-unknown", {"name": "x", "role": "root"}),
            ("role-padded", {"name": "x", "role": "admin\u0000"}),
            ("models-for-admin", {"name": "x", "role": "admin", "models": ["iris"]}),
            ("expiry-past", {"name": "x", "role": "viewer",
                             "expires_at": "2000-01-01T00:00:00Z"}),
            ("expiry-naive", {"name": "x", "role": "viewer",
                              "expires_at": "2999-01-01T00:00:00"}),
            ("expiry-year-99999", {"name": "x", "role": "viewer",
                                   "expires_at": "99999-01-01T00:00:00Z"}),
            ("rate-zero", {"name": "x", "role": "viewer", "rate_limit": 0}),
            ("rate-huge", {"name": "x", "role": "viewer", "rate_limit": 1e300}),
            ("name-empty", {"name": "", "role": "viewer"}),
            ("name-65", {"name": "x" * 65, "role": "viewer"}),
            ("body-list", [{"name": "x", "role": "admin"}])):
        _add(f"keys.create:{label}", "types", "POST", "/v1/keys", 422, headers=[JSON],
             body=_json(document))
    _add("alias:body-not-json", "json", "PUT", "/v1/models/iris/aliases/champion", 400,
         codes={"malformed_request"}, key="deployer", headers=[JSON], body=b'{"version":')
    _add("keys.create:text-plain", "types", "POST", "/v1/keys", {415, 422},
         codes={"invalid_input", "unsupported_media_type"},
         headers=[("Content-Type", "text/plain")], body=_json({"name": "x", "role": "viewer"}))
    _add("audit:limit-huge", "types", "GET", "/v1/audit?limit=99999999999999999999999", 422)
    _add("audit:limit-negative", "types", "GET", "/v1/audit?limit=-1", 422)
    _add("card:format", "types", "GET", "/v1/models/iris/versions/1.0.0/card?format=..%2fetc",
         422, key="viewer")


# --- 5. unicode and control characters --------------------------------------------------------

NAMES: tuple[tuple[str, str], ...] = (
    ("fullwidth", "%EF%BD%89%EF%BD%92%EF%BD%89%EF%BD%93"),  # ｉｒｉｓ, NFKC -> iris
    ("cyrillic-i", "%D1%96ris"),                              # іris
    ("dotless-i", "%C4%B1r%C4%B1s"),                          # ırıs
    ("rtl-override", "%E2%80%AEsiri"),
    ("zero-width-joiner", "ir%E2%80%8Dis"),
    ("combining", "iri%CC%81s"),
    ("upper", "IRIS"), ("trailing-space", "iris%20"), ("newline", "iris%0a"),
    ("tab", "iris%09"), ("del", "iris%7f"), ("escape", "iris%1b%5b2J"),
    ("65-chars", "a" * 65), ("4000-chars", "a" * 4000), ("emoji", "%F0%9F%94%A5"),
    ("lone-surrogate-cesu", "%ED%A0%80"),
)


def _unicode() -> None:
    for label, name in NAMES:
        _add(f"v1.predict:{label}", "unicode", "POST", f"/v1/models/{name}/predict", 422,
             headers=[JSON], body=V1_OK)
        _add(f"v2.infer:{label}", "unicode", "POST", f"/v2/models/{name}/infer", 422, "v2",
             headers=[JSON], body=V2_OK)
        _add(f"v1.invocations:{label}", "unicode", "POST", f"/v1/models/{name}/invocations",
             400, "mlflow", headers=[JSON], body=MLFLOW_OK)
        _add(f"alias-set:{label}", "unicode", "PUT", f"/v1/models/iris/aliases/{name}", 422,
             key="deployer", headers=[JSON], body=_json({"version": "1.0.1"}))
        _add(f"mgmt.model:{label}", "unicode", "GET", f"/v1/models/{name}", 422, key="viewer")
    for label, name in (("nul", "a\u0000b"), ("rtl-override", "\u202eadmin"),
                        ("newline", "admin\nroot"), ("zero-width", "ad\u200bmin"),
                        ("bell", "\u0007")):
        _add(f"keys.create-name:{label}", "unicode", "POST", "/v1/keys", 422, headers=[JSON],
             body=_json({"name": name, "role": "viewer"}))
    # Headers: a request id that is not sane is replaced, never echoed.
    for label, value in (("traversal", "../../etc/passwd"), ("long", "r" * 10_000),
                         ("unicode", "\u202eid"), ("html", "<script>alert(1)</script>"),
                         ("crlf-encoded", "%0d%0aSet-Cookie:%20x=1")):
        _add(f"x-request-id:{label}", "headers", "POST", "/v1/models/iris/predict", 200,
             "json", headers=[JSON, ("X-Request-Id", value)], body=V1_OK, forbid=(value,))
    for label, name, value in (
            ("x-routing-key-unicode", "X-Routing-Key", "\u202e\u0627\U0001f525"),
            ("x-routing-key-long", "X-Routing-Key", "k" * 8000),
            ("content-type-utf7", "Content-Type", "application/json; charset=utf-7"),
            ("accept-weird", "Accept", "*/*;q=NaN")):
        headers = [(name, value)] if name == "Content-Type" else [JSON, (name, value)]
        _add(f"v1.predict:{label}", "headers", "POST", "/v1/models/iris/predict",
             {200, 415}, {"json", "v1"}, headers=headers, body=V1_OK)
    for label, value in (("1e999", "1e999"), ("negative", "-5"), ("nan", "NaN"),
                         ("hex", "0x10"), ("huge", "9" * 400)):
        _add(f"x-request-timeout-ms:{label}", "headers", "POST", "/v1/models/iris/predict",
             422, headers=[JSON, ("X-Request-Timeout-Ms", value)], body=V1_OK)
    for label, value in (("negative", "-1"), ("float", "1e3"), ("huge", "9" * 30),
                         ("text", "abc")):
        _add(f"inference-header-content-length:{label}", "headers", "POST",
             "/v2/models/iris/infer", 400, "v2",
             headers=[JSON, ("Inference-Header-Content-Length", value)], body=V2_OK)
    _add("v1.invocations:content-type-huge", "headers", "POST", "/v1/models/iris/invocations",
         415, "mlflow", headers=[("Content-Type", "application/json;" + "a=b;" * 2000)],
         body=MLFLOW_OK)
    _add("v1.invocations:charset-latin1", "headers", "POST", "/v1/models/iris/invocations",
         415, "mlflow", headers=[("Content-Type", "application/json; charset=latin-1")],
         body=MLFLOW_OK)
    # Control characters in header values never reach the app.
    for label, value in (("nul", b"a\x00b"), ("bell", b"a\x07b"), ("vertical-tab", b"a\x0bb")):
        _add(f"header-control:{label}", "headers", "POST", "/v1/models/iris/predict", 400,
             "transport", headers=[JSON, ("X-Routing-Key", value)], body=V1_OK)
    _add("authorization-nul", "headers", "GET", "/v1/models", 400, "transport", key=None,
         headers=[("Authorization", b"Bearer mh_\x00")])
    # A redirect must not send the client to another host named in the request.
    _add("trailing-slash-redirect-host", "headers", "GET", "/v1/models/iris/", {307, 308, 404},
         {"empty", "v1"}, key="viewer", headers=[("Host", "evil.example")],
         forbid=("evil.example",))


# --- 6. SQL metacharacters --------------------------------------------------------------------


def _sql() -> None:
    for label, query in (("or-true", "action=%27%20OR%201%3D1%20--"),
                         ("union", "actor=x%27%20UNION%20SELECT%20secret_hash%2C1%2C1%2C1%2C1"
                                   "%2C1%2C1%2C1%2C1%2C1%20FROM%20api_keys--"),
                         ("like-wildcard", "target=%25"), ("like-underscore", "action=_%25"),
                         ("comment", "action=key.create%27--"),
                         ("stacked", "action=x%27%3B%20DELETE%20FROM%20audit_log%3B--"),
                         ("double-param", "action=%27%20OR%20%271&action=x%27%20OR%20%271")):
        _add(f"audit-filter:{label}", "sql", "GET", f"/v1/audit?{query}", 200, "json",
             expect_json=[])
    _add("audit-limit", "sql", "GET", "/v1/audit?limit=1%3BDROP%20TABLE%20audit_log", 422)
    _add("keys-include-revoked", "sql", "GET",
         "/v1/keys?include_revoked=true%27%20OR%20%271%27%3D%271", 422)
    drop = "x%27%3BDROP%20TABLE%20models%3B--"
    for label, method, path, key, shape, status, body in (
            ("model-get", "GET", f"/v1/models/{drop}", "viewer", "v1", 422, b""),
            ("model-versions", "GET", f"/v1/models/{drop}/versions", "viewer", "v1", 422, b""),
            ("version-get", "GET", "/v1/models/iris/versions/1%27%20OR%20%271%27%3D%271",
             "viewer", "v1", 404, b""),
            ("card", "GET", "/v1/models/iris/versions/1.0.0%27%3B--/card", "viewer", "v1",
             404, b""),
            ("predict-model", "POST", f"/v1/models/{drop}/predict", "admin", "v1", 422, V1_OK),
            ("predict-version", "POST",
             "/v1/models/iris/versions/1.0.0%27%20OR%20%271%27%3D%271/predict", "admin", "v1",
             404, V1_OK),
            ("infer-model", "POST", f"/v2/models/{drop}/infer", "admin", "v2", 422, V2_OK),
            ("v2-metadata-version", "GET", "/v2/models/iris/versions/1%27%20OR%20%271",
             "admin", "v2", 404, b""),
            ("invocations-model", "POST", f"/v1/models/{drop}/invocations", "admin", "mlflow",
             400, MLFLOW_OK),
            ("alias-name", "PUT", "/v1/models/iris/aliases/a%27%20OR%201%3D1--", "deployer",
             "v1", 422, _json({"version": "1.0.1"})),
            ("alias-delete", "DELETE", "/v1/models/iris/aliases/champion%27%20OR%20%271",
             "deployer", "v1", 404, b""),
            ("stage-model", "POST", f"/v1/models/{drop}/versions/1.0.0/stage", "deployer", "v1",
             422, _json({"stage": "archived"})),
            ("key-revoke", "DELETE", "/v1/keys/%27%20OR%201%3D1--", "admin", "v1", 404, b"")):
        headers = [JSON] if body else []
        _add(label, "sql", method, path, status, shape, key=key, headers=headers, body=body)
    for label, document, status in (
            ("stage-value", {"stage": "archived'; DROP TABLE models;--"}, 422),
            ("stage-reason-on-illegal", {"stage": "production",
                                         "reason": "'); DELETE FROM stage_history;--"}, 409)):
        _add(label, "sql", "POST", "/v1/models/iris/versions/1.0.1/stage", status,
             key="deployer", headers=[JSON], body=_json(document))
    _add("alias-version", "sql", "PUT", "/v1/models/iris/aliases/champion", 404,
         key="deployer", headers=[JSON], body=_json({"version": "1.0.0' OR '1'='1"}))
    _add("x-model-version", "sql", "POST", "/v1/models/iris/predict", 404,
         headers=[JSON, ("X-Model-Version", "1.0.0' OR '1'='1")], body=V1_OK)
    _add("key-models", "sql", "POST", "/v1/keys", 422, headers=[JSON],
         body=_json({"name": "x", "role": "predictor", "models": ["iris' OR 1=1--"]}))
    # Accepted: the name is data. Exactly one key and its audit entry are added, the id,
    # secret and creator are the server's own, whatever the body says.
    _add("key-name-stored-verbatim", "sql", "POST", "/v1/keys", 201, "json",
         headers=[JSON], changes={"api_keys", "audit_log"}, forbid=("000000000000", "attacker"),
         body=_json({"name": "x'); DROP TABLE api_keys;--", "role": "viewer",
                     "id": "000000000000", "secret_hash": "0" * 64, "created_by": "attacker",
                     "revoked_at": None, "last_used_at": None}))


# --- 7. authentication: forged, misplaced, expired and revoked keys ---------------------------

_PRIVILEGED = (("keys.list", "GET", "/v1/keys", b""),
               ("audit.list", "GET", "/v1/audit", b""),
               ("alias.set", "PUT", "/v1/models/iris/aliases/champion",
                _json({"version": "1.0.1"})),
               ("stage", "POST", "/v1/models/iris/versions/1.0.1/stage",
                _json({"stage": "archived"})),
               ("keys.create", "POST", "/v1/keys", _json({"name": "x", "role": "admin"})),
               ("keys.revoke", "DELETE", "/v1/keys/<ADMIN_ID>", b""),
               ("unknown-write", "POST", "/v1/nothing-here", b"{}"))
_UNPRIVILEGED = (("models.list", "GET", "/v1/models", b"", "v1"),
                 ("unknown-read", "GET", "/v1/nothing-here", b"", "v1"),
                 ("openapi", "GET", "/openapi.json", b"", "v1"),
                 ("docs", "GET", "/docs", b"", "v1"),
                 ("metrics", "GET", "/metrics", b"", "v1"),
                 ("v1.predict", "POST", "/v1/models/iris/predict", V1_OK, "v1"),
                 ("v1.invocations", "POST", "/v1/models/iris/invocations", MLFLOW_OK, "mlflow"),
                 ("v2.infer", "POST", "/v2/models/iris/infer", V2_OK, "v2"),
                 ("v2.metadata", "GET", "/v2/models/iris", b"", "v2"),
                 ("feedback", "POST", "/v1/feedback", b"{}", "v1"))


def _auth() -> None:
    bad_keys = ("forged_secret", "unknown_id", "malformed", "truncated", "extended",
                "uppercased", "expired", "revoked")
    # Without a key: every kind of route. With a bad key: a few of each kind.
    for key in (None, *bad_keys):
        who = key or "no-key"
        for label, method, path, body in _PRIVILEGED:
            if key is None or label in ("keys.list", "alias.set", "keys.create"):
                _add(f"{who}:{label}", "auth", method, path, 401, key=key,
                     headers=[JSON] if body else [], body=body, audited=True)
        for label, method, path, body, shape in _UNPRIVILEGED:
            if key is None or label in ("models.list", "v1.predict", "v1.invocations",
                                        "v2.infer"):
                _add(f"{who}:{label}", "auth", method, path, 401, shape, key=key,
                     headers=[JSON] if body else [], body=body)
    for key in ("forged_secret", "expired", "revoked"):
        _add(f"x-api-key:{key}", "auth", "GET", "/v1/keys", 401, key=key, auth="x-api-key",
             audited=True)
    # A key anywhere but the two headers is no key at all.
    for label, path in (("query-api_key", "/v1/keys?api_key=<KEY>"),
                        ("query-key", "/v1/keys?key=<KEY>"),
                        ("query-access_token", "/v1/keys?access_token=<KEY>"),
                        ("query-token", "/v1/keys?token=<KEY>"),
                        ("query-authorization", "/v1/keys?authorization=Bearer%20<KEY>")):
        _add(label, "auth", "GET", path, 401, auth="none", audited=True)
    _add("path-param", "auth", "GET", "/v1/keys;api_key=<KEY>", 401, auth="none")
    _add("query-on-predict", "auth", "POST", "/v1/models/iris/predict?api_key=<KEY>", 401,
         auth="none", headers=[JSON], body=V1_OK)
    _add("query-on-infer", "auth", "POST", "/v2/models/iris/infer?api_key=<KEY>", 401, "v2",
         auth="none", headers=[JSON], body=V2_OK)
    _add("cookie", "auth", "GET", "/v1/keys", 401, auth="none",
         headers=[("Cookie", "api_key=<KEY>; session=<KEY>")], audited=True)
    _add("in-body", "auth", "POST", "/v1/models/iris/predict", 401, auth="none",
         headers=[JSON], body=_json({"api_key": "<KEY>", "inputs": [ROW]}))
    for label, value in (("empty-bearer", "Bearer "), ("bearer-only", "Bearer"),
                         ("basic", "Basic <KEY>"), ("no-scheme", "<KEY>"),
                         ("token-scheme", "Token <KEY>"), ("bearer-comma", "Bearer ,<KEY>"),
                         ("two-tokens", "Bearer x <KEY>"),
                         ("non-ascii", "Bearer \u00e9\u00e9\u00e9"),
                         ("8kb", "Bearer " + "A" * 8000),
                         ("sql", "Bearer mh_' OR '1'='1_x"),
                         ("format-wildcard", "Bearer mh_%_%")):
        _add(f"authorization:{label}", "auth", "GET", "/v1/keys", 401, auth="none",
             headers=[("Authorization", value)], audited=True)
    _add("x-api-key-empty", "auth", "GET", "/v1/keys", 401, auth="none",
         headers=[("X-API-Key", "")], audited=True)
    # Two credentials: the first one presented decides; a weaker key first never
    # borrows the rights of a stronger one after it.
    _add("two-authorizations", "auth", "GET", "/v1/keys", {400, 401, 403}, key="viewer",
         headers=[("Authorization", "Bearer <ADMIN_KEY>")], audited=None)
    _add("forged-then-real", "auth", "GET", "/v1/keys", {400, 401}, key="forged_secret",
         headers=[("X-API-Key", "<ADMIN_KEY>")], audited=None)


# --- 8. roles: escalation attempts ------------------------------------------------------------


def _roles() -> None:
    stage = _json({"stage": "archived"})
    alias = _json({"version": "1.0.1"})
    for key, label, method, path, body, audited in (
            ("predictor", "stage", "POST", "/v1/models/iris/versions/1.0.0/stage", stage, True),
            ("predictor", "alias.set", "PUT", "/v1/models/iris/aliases/champion", alias, True),
            ("predictor", "alias.delete", "DELETE", "/v1/models/iris/aliases/champion", b"",
             True),
            ("predictor", "keys.list", "GET", "/v1/keys", b"", True),
            ("predictor", "keys.create", "POST", "/v1/keys",
             _json({"name": "mine", "role": "admin"}), True),
            ("predictor", "keys.revoke-admin", "DELETE", "/v1/keys/<ADMIN_ID>", b"", True),
            ("predictor", "audit.list", "GET", "/v1/audit", b"", True),
            ("predictor", "audit.verify", "GET", "/v1/audit/verify", b"", True),
            ("predictor", "models.list", "GET", "/v1/models", b"", False),
            ("predictor", "card", "GET", "/v1/models/iris/versions/1.0.0/card", b"", False),
            ("predictor", "metrics", "GET", "/metrics", b"", False),
            ("predictor", "openapi", "GET", "/openapi.json", b"", False),
            ("predictor", "stage-via-dotdot", "POST",
             "/v1/models/iris/predict/../versions/1.0.0/stage", stage, True),
            ("viewer", "keys.create", "POST", "/v1/keys", _json({"name": "x", "role": "admin"}),
             True),
            ("viewer", "keys.list", "GET", "/v1/keys", b"", True),
            ("viewer", "keys.list-trailing-slash", "GET", "/v1/keys/", b"", True),
            ("viewer", "stage", "POST", "/v1/models/iris/versions/1.0.0/stage", stage, True),
            ("viewer", "alias.set", "PUT", "/v1/models/iris/aliases/champion", alias, True),
            ("viewer", "audit.list", "GET", "/v1/audit", b"", True),
            ("viewer", "feedback", "POST", "/v1/feedback", b"{}", False),
            ("viewer", "v1.predict", "POST", "/v1/models/iris/predict", V1_OK, False),
            ("deployer", "keys.create-admin", "POST", "/v1/keys",
             _json({"name": "root", "role": "admin"}), True),
            ("deployer", "keys.create-deployer", "POST", "/v1/keys",
             _json({"name": "twin", "role": "deployer"}), True),
            ("deployer", "keys.list", "GET", "/v1/keys", b"", True),
            ("deployer", "keys.revoke-admin", "DELETE", "/v1/keys/<ADMIN_ID>", b"", True),
            ("deployer", "audit.list", "GET", "/v1/audit", b"", True),
            ("deployer", "audit.verify", "GET", "/v1/audit/verify", b"", True),
            ("deployer", "v1.predict", "POST", "/v1/models/iris/predict", V1_OK, False),
            ("predictor_iris", "other.predict", "POST", "/v1/models/other/predict", V1_OK,
             False),
            ("predictor_iris", "other.predict-version", "POST",
             "/v1/models/other/versions/1.0.0/predict", V1_OK, False),
            ("predictor_iris", "other.predict-upper", "POST", "/v1/models/OTHER/predict", V1_OK,
             False),
            ("predictor_iris", "invocations-unpinned", "POST", "/invocations", MLFLOW_OK,
             False)):
        shape = "mlflow" if path.endswith("invocations") else "v1"
        _add(f"{key}:{label}", "roles", method, path, 403, shape, key=key,
             headers=[JSON] if body else [], body=body, audited=audited)
    # Not the keys route by another spelling (the framework then has no such route).
    _add("viewer:keys.list-double-slash", "roles", "GET", "//v1//keys", {403, 404},
         key="viewer", audited=None)
    # A model-limited predictor may send feedback (for its models' requests only, which
    # tests/serving/test_feedback_route.py checks): this empty body is refused as such.
    _add("predictor_iris:feedback", "roles", "POST", "/v1/feedback", {422},
         key="predictor_iris", headers=[JSON], body=b"{}")
    for label, method, path, body in (
            ("other.invocations", "POST", "/v1/models/other/invocations", MLFLOW_OK),
            ("other.infer", "POST", "/v2/models/other/infer", V2_OK),
            ("other.infer-version", "POST", "/v2/models/other/versions/1.0.0/infer", V2_OK),
            ("other.metadata", "GET", "/v2/models/other", b""),
            ("other.ready", "GET", "/v2/models/other/versions/1.0.0/ready", b"")):
        shape = "mlflow" if path.endswith("invocations") else "v2"
        _add(f"predictor_iris:{label}", "roles", method, path, 403, shape,
             key="predictor_iris", headers=[JSON] if body else [], body=body)
    # Paths that smuggle another model past a per-model check: refused, or answered as
    # the model named first (never a prediction from "other").
    for label, path in (("dotdot-pct", "/v1/models/iris%2f..%2fother/predict"),
                        ("dotdot-raw", "/v1/models/iris/../other/predict"),
                        ("double-slash", "/v1/models//other/predict"),
                        ("versions-dotdot", "/v1/models/iris/versions/..%2f..%2fother/predict"),
                        ("trailing-slash", "/v1/models/other/predict/")):
        _add(f"predictor_iris:smuggle-{label}", "roles", "POST", path, {403, 404, 405, 422},
             key="predictor_iris", headers=[JSON], body=V1_OK, audited=None)
    # A predictor may predict, but not escalate through a version header.
    _add("predictor_iris:x-model-version-other", "roles", "POST", "/v1/models/iris/predict",
         404, key="predictor_iris", headers=[JSON, ("X-Model-Version", "other:1.0.0")],
         body=V1_OK)


def _build() -> tuple[Hostile, ...]:
    _traversals()
    _pickles()
    _uploads()
    _sizes()
    _json_entries()
    _types()
    _unicode()
    _sql()
    _auth()
    _roles()
    ids = [e.id for e in _ENTRIES]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, duplicates
    return tuple(_ENTRIES)


CATALOGUE: tuple[Hostile, ...] = _build()

