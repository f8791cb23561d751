"""The documentation's Python examples run as tests ("README code blocks run as tests").

Every fenced code block tagged ``python`` (or ``py`` / ``python3``) in ``README.md`` and
``docs/*.md`` is one test, with the id ``FILE:N`` (``README.md:2`` is the second Python
block of the README; files under ``docs/`` are named ``docs/tracking.md:1``). Blocks
tagged otherwise (``console``, ``bash``, ``text``, ...) and indented blocks are not run.

The blocks of one file run in document order and share one namespace, the way a reader
would paste them into one session: the README's second block uses ``X`` from its first.
Selecting a later block alone (``-k "README.md:2"``) first runs the blocks before it, and
once a block fails the later blocks of that file are skipped, naming the failed block.

Each file starts from a clean environment: a fresh temporary working directory,
``MODELHOST_HOME`` set to another temporary folder, every other ``MODELHOST_*`` variable
unset, and no default client (``modelhost.set_client(None)``) nor current experiment left
over from another file. When the file is done, the default client and every ``Client`` the
blocks left in their namespace are closed.

A traceback points at the Markdown file and line of the failing statement.

To keep one Python block from running (it needs a server, or shows a fragment), put the
marker on the line just before its opening fence, optionally with a reason::

    <!-- no-test -->
    ```python
    ...
    ```

    <!-- no-test: needs an S3 bucket -->

The block is then reported as skipped. No other way of skipping a block exists.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import modelhost
import modelhost.fluent
from modelhost import Client

ROOT = Path(__file__).resolve().parent.parent
PYTHON_TAGS = frozenset({"python", "py", "python3"})

_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_NO_TEST = re.compile(r"^\s*<!--\s*no-test\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$")


@dataclass(frozen=True)
class DocBlock:
    file: str  # relative to the project root, e.g. "README.md" or "docs/tracking.md"
    index: int  # 1-based, among the Python blocks of the file
    line: int  # line number of the first line of code
    source: str
    skip_reason: str | None  # set when the block carries a no-test marker

    @property
    def id(self) -> str:
        return f"{self.file}:{self.index}"

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")


def extract_python_blocks(path: Path, root: Path = ROOT) -> list[DocBlock]:
    """The fenced Python blocks of a Markdown file, in order (CommonMark fence rules)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(root).as_posix()
    blocks: list[DocBlock] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        tag = (opening["info"].split() or [""])[0].lower()
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if tag in PYTHON_TAGS:
            body = [_strip_indent(ln, indent) for ln in lines[i + 1:end]]
            marker = _NO_TEST.match(lines[i - 1]) if i > 0 else None
            skip_reason = None
            if marker is not None:
                skip_reason = marker["reason"] or "marked <!-- no-test -->"
            blocks.append(DocBlock(file=rel, index=len(blocks) + 1, line=i + 2,
                                   source="\n".join(body) + "\n", skip_reason=skip_reason))
        i = end + 1
    return blocks


def _strip_indent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading spaces, as CommonMark does for an indented fence."""
    stripped = len(line) - len(line.lstrip(" "))
    return line[min(indent, stripped):]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


BLOCKS: dict[str, list[DocBlock]] = {
    path.relative_to(ROOT).as_posix(): extract_python_blocks(path) for path in doc_files()
}
ALL_BLOCKS = [block for blocks in BLOCKS.values() for block in blocks]


@dataclass
class DocSession:
    """The state the blocks of one file share: namespace, folders, progress."""

    file: str
    workdir: Path
    home: Path
    module: types.ModuleType
    done: int = 0  # blocks 1..done have been handled (run or skipped)
    failed: DocBlock | None = None
    saved_experiment: str = field(default=modelhost.fluent.DEFAULT_EXPERIMENT)

    @property
    def namespace(self) -> dict[str, object]:
        return self.module.__dict__


class DocSessions:
    """At most one open session, so that files never see each other's state."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._factory = tmp_path_factory
        self.current: DocSession | None = None

    def open(self, file: str) -> DocSession:
        if self.current is not None and self.current.file == file:
            return self.current
        self.close()
        slug = re.sub(r"\W", "_", file)
        base = self._factory.mktemp(slug)
        (base / "work").mkdir()
        module = types.ModuleType(f"modelhost_docs_{slug}")
        module.__file__ = str(ROOT / file)
        # Registered so that classes defined in a block can be pickled / skops-loaded.
        sys.modules[module.__name__] = module
        session = DocSession(file=file, workdir=base / "work", home=base / "modelhost-home",
                             module=module, saved_experiment=modelhost.fluent._experiment)
        modelhost.set_client(None)
        modelhost.fluent._experiment = modelhost.fluent.DEFAULT_EXPERIMENT
        self.current = session
        return session

    def close(self) -> None:
        session, self.current = self.current, None
        if session is None:
            return
        clients = [v for v in session.namespace.values() if isinstance(v, Client)]
        # The default client is only read, never created here (get_client() would build one).
        default = modelhost.fluent._client
        if default is not None:
            clients.append(default)
        modelhost.set_client(None)
        modelhost.fluent._experiment = session.saved_experiment
        sys.modules.pop(session.module.__name__, None)
        session.namespace.clear()
        for client in {id(c): c for c in clients}.values():
            client.close()


@pytest.fixture(scope="module")
def doc_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocSessions]:
    sessions = DocSessions(tmp_path_factory)
    yield sessions
    sessions.close()


def _isolate(session: DocSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(session.workdir)
    for var in [v for v in os.environ if v.startswith("MODELHOST_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MODELHOST_HOME", str(session.home))


def _run_block(session: DocSession, block: DocBlock) -> None:
    # Padding with newlines makes tracebacks name the Markdown line of the statement.
    __tracebackhide__ = True
    filename = str(ROOT / block.file)
    try:
        code = compile("\n" * (block.line - 1) + block.source, filename, "exec")
        exec(code, session.namespace)
    except BaseException as exc:
        session.failed = block
        if not isinstance(exc, Exception):  # KeyboardInterrupt and the like
            raise
        where = [f.lineno for f in traceback.extract_tb(exc.__traceback__)
                 if f.filename == filename]
        if isinstance(exc, SyntaxError) and exc.filename == filename:
            where.append(exc.lineno)
        at = f", at line {where[-1]}" if where else ""
        pytest.fail(f"{block.id} (from line {block.line}: {block.first_line!r}) raised "
                    f"{type(exc).__name__}{at}: {exc}")


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.id)
def test_doc_block(block: DocBlock, doc_sessions: DocSessions,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    session = doc_sessions.open(block.file)
    _isolate(session, monkeypatch)
    blocks = BLOCKS[block.file]
    try:
        # Earlier blocks first (when this one was selected alone), then this one.
        while session.done < block.index and session.failed is None:
            current = blocks[session.done]
            session.done += 1
            if current.skip_reason is None:
                _run_block(session, current)
        if session.failed is not None and session.failed is not block:
            pytest.skip(f"{session.failed.id} failed ({session.failed.first_line!r})")
        if block.skip_reason is not None:
            pytest.skip(f"{block.id}: {block.skip_reason}")
    finally:
        if block.index == len(blocks):
            doc_sessions.close()


def test_documents_are_found() -> None:
    """Guards against a parser or path slip that would silently test nothing."""
    assert "README.md" in BLOCKS
    assert BLOCKS["README.md"], "README.md has no ```python block"


def test_extract_python_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n"
        "```python\nx = 1\n```\n"
        "```console\n$ ls\n```\n"
        "<!-- no-test -->\n"
        "```python\nraise SystemExit\n```\n"
        "<!-- no-test: needs S3 -->\n"
        "```py title='t'\ny = 2\n```\n"
        "<!-- no-test -->\n\n"
        "~~~~python\n```\nz = 3\n~~~~\n"
        "1. item\n\n   ```python\n   if x:\n       w = 4\n   ```\n",
        encoding="utf-8")
    blocks = extract_python_blocks(doc, root=tmp_path)
    assert [(b.id, b.line, b.skip_reason) for b in blocks] == [
        ("doc.md:1", 3, None),
        ("doc.md:2", 10, "marked <!-- no-test -->"),
        ("doc.md:3", 14, "needs S3"),
        ("doc.md:4", 19, None),
        ("doc.md:5", 25, None),
    ]
    assert [b.source for b in blocks] == ["x = 1\n", "raise SystemExit\n", "y = 2\n",
                                          "```\nz = 3\n", "if x:\n    w = 4\n"]
