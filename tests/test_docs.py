"""The documentation's examples run as tests ("README code blocks run as tests").

Every fenced code block of ``README.md`` and ``docs/*.md`` that a reader would run is a
test, in document order, with the id ``FILE:N`` (``README.md:3`` is the third such block
of the README, ``docs/serving.md:1`` the first of that page):

* ``python`` (``py``, ``python3``) blocks run in-process; the blocks of one file share one
  namespace, the way a reader pastes them into one session.
* ``console`` blocks are terminal sessions: each line starting with ``$ `` is a command
  (a line ending in ``\\`` continues on the next), the lines after it up to the next
  ``$ `` are its shown output. A ``console`` block without any ``$ `` command is refused:
  tag output alone ``text``.
* ``bash``, ``sh`` and ``shell`` blocks run as one script each; their output is not
  checked.

Other tags (``text``, ``yaml``, ``json``, ...) are not run. The flows of
``examples/churn/README.md`` (a run, a rerun, a worse model, bad data, a retraining run,
reproduce) are run by ``tests/pipelines/test_churn_example.py``. Commands must be fenced: an
indented (unfenced) code block that starts with a command (``modelhost``, ``curl``,
``make``, ...) is refused, so no command list escapes the test.

**One reader, one terminal.** The blocks of a file run in order in one fresh temporary
working directory holding a copy of the repository's ``examples/`` (as in a clone), with
``MODELHOST_HOME`` set to another temporary folder, every other ``MODELHOST_*`` variable
unset, and the virtualenv's ``bin`` first on ``PATH`` (``modelhost`` and ``python`` are
the project's). Each command runs in ``bash`` with ``pipefail``, from the folder the
previous command left (``cd`` carries over, also to Python blocks), with the variables
earlier commands assigned (``KEY=$(...)`` carries over) and ``$?`` of the previous
command. Python blocks see the same folder and home.

**Servers.** A command ``modelhost serve ...`` (or ``modelhost quickstart`` without
``--no-serve``, which serves at its end) starts a real server in the background, on a
free port given as ``--port``, and the test waits until ``/readyz`` answers 200. Later
commands and Python blocks reach it: ``localhost:PORT``, ``127.0.0.1:PORT`` and
``0.0.0.0:PORT`` (``PORT`` being the documented port, 8000 by default) are rewritten to
the real address. A server started while another runs replaces it (the reader pressed
Ctrl+C); servers stop when the file is done. The test never listens beyond loopback: a
``--host`` that is not a loopback address runs as ``--host 127.0.0.1`` with
``MODELHOST_AUTH=required``, which behaves the same (keys on every route but the probes).

**Shown output is checked loosely.** If it starts with ``{`` or ``[``, the command's
stdout must be JSON holding every key shown, and every shown string value that is not
``"..."`` (at any depth). Otherwise each shown line must match a line of the actual
output (stdout, then stderr), in order, others may come between: runs of spaces are
free, ``...`` stands for anything, and decimals (``0.9914``, ``127.0.0.1``), dates,
times and hex ids (run ids, key ids, digests) stand for any value of that kind; words
and whole numbers are literal. A lone ``...`` line is a visual gap.

**Exit codes.** A command must exit 0, unless its shown output has a line starting with
``error:`` or the next command is ``echo $?``: then it must fail (and ``echo $?`` shows
the exit code exactly).

**Markers**, each on the line just before a block's opening fence:

* ``<!-- no-test: reason -->`` skips the block (reported as skipped with the reason).
  Only for what cannot run here; every such block is listed below, and a test checks
  the list.
* ``<!-- template -->``: a reference list of commands with placeholders and
  alternatives (``modelhost models list | show NAME | versions NAME``,
  ``modelhost alias set|delete ...``, ``[--reason TEXT]``). It is not run; each
  ``modelhost`` command in it must exist (``modelhost ... --help`` answers, with the
  alternatives after `` | `` and ``a|b`` words expanded and a command after `` ; `` read
  as ``modelhost ...``), and each ``--option`` it names must be an option of it (or a
  global one).
* ``<!-- output-not-checked: reason -->``: the block runs (exit codes included) but its
  shown output is not compared.

Blocks marked ``no-test`` today:

* ``README.md:1``: ``make demo`` and ``make test`` create ``.venv``, install the project
  and (``make test``) run the whole suite; the docs test runs what ``make demo`` runs,
  ``modelhost quickstart``, in README.md:2.

Selecting a later block alone (``-k "README.md:4"``) first runs the blocks before it;
once a block fails, the later blocks of that file are skipped, naming the failed block.
A traceback points at the Markdown file and line of the failing Python statement; a
failing command is reported with its line, exit code and output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
from typer.testing import CliRunner

import modelhost
import modelhost.fluent
from modelhost import Client
from tests.serving.server import free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.prefix) / "bin"
PYTHON_TAGS = frozenset({"python", "py", "python3"})
CONSOLE_TAGS = frozenset({"console"})
SCRIPT_TAGS = frozenset({"bash", "sh", "shell"})
COMMAND_WORDS = frozenset({"modelhost", "curl", "make", "python", "python3", "pip", "cd",
                           "source", "docker", "kubectl", "helm", "git", "$"})
DOC_PORT = 8000  # the port the documents use when a command names none
COMMAND_TIMEOUT_S = 180.0
SERVER_READY_TIMEOUT_S = 120.0

_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>no-test|template|output-not-checked)\s*"
                     r"(?::\s*(?P<reason>.*?))?\s*-->\s*$")
_NO_TEST = "no-test"
_TEMPLATE = "template"
_UNCHECKED = "output-not-checked"


@dataclass(frozen=True)
class Command:
    line: int  # line number of the command in the Markdown file
    text: str  # the command as bash reads it (continuations kept)
    shown: tuple[str, ...] = ()  # the output shown after it


@dataclass(frozen=True)
class DocBlock:
    file: str  # relative to the project root, e.g. "README.md" or "docs/tracking.md"
    index: int  # 1-based, among the runnable blocks of the file
    line: int  # line number of the first line of code
    tag: str  # "python", "console" or "bash" (also for sh and shell)
    source: str
    marker: str | None = None  # no-test, template or output-not-checked
    reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.index}"

    @property
    def skip_reason(self) -> str | None:
        if self.marker != _NO_TEST:
            return None
        return self.reason or "marked <!-- no-test -->"

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")

    @property
    def commands(self) -> list[Command]:
        if self.tag == "console":
            return parse_console(self.source, first_line=self.line)
        return [Command(line=self.line, text=self.source)]


def extract_blocks(path: Path, root: Path = ROOT) -> list[DocBlock]:
    """The runnable fenced blocks of a Markdown file, in order (CommonMark fence rules)."""
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
        kind = ("python" if tag in PYTHON_TAGS else "console" if tag in CONSOLE_TAGS
                else "bash" if tag in SCRIPT_TAGS else None)
        if kind is not None:
            body = [_strip_indent(ln, indent) for ln in lines[i + 1:end]]
            marker = _MARKER.match(lines[i - 1]) if i > 0 else None
            blocks.append(DocBlock(
                file=rel, index=len(blocks) + 1, line=i + 2, tag=kind,
                source="\n".join(body) + "\n",
                marker=marker["kind"] if marker else None,
                reason=marker["reason"] if marker else None))
        i = end + 1
    return blocks


def _strip_indent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading spaces, as CommonMark does for an indented fence."""
    stripped = len(line) - len(line.lstrip(" "))
    return line[min(indent, stripped):]


def parse_console(source: str, *, first_line: int = 1) -> list[Command]:
    """The ``$ `` commands of a console block with the output shown after each."""
    commands: list[Command] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if not commands and lines[i].strip():
                raise ValueError(f"line {first_line + i}: output before the first '$ ' "
                                 "command")
            i += 1
            continue
        start, text = i, lines[i][2:]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text += "\n" + lines[i]
        i += 1
        shown: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        while shown and not shown[-1].strip():
            shown.pop()
        commands.append(Command(line=first_line + start, text=text, shown=tuple(shown)))
    return commands


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


BLOCKS: dict[str, list[DocBlock]] = {
    path.relative_to(ROOT).as_posix(): extract_blocks(path) for path in doc_files()
}
ALL_BLOCKS = [block for blocks in BLOCKS.values() for block in blocks]


# --- loose output matching ------------------------------------------------------------

_FREE_TOKENS = re.compile(
    r"(?P<ellipsis>\.\.\.)"
    r"|(?P<date>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)"
    r"|(?P<time>\b\d{1,2}:\d{2}(?::\d{2})?\b)"
    r"|(?P<hex>(?<![0-9a-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{6,}(?![0-9a-z]))"
    r"|(?P<decimal>[-+]?\d+(?:\.\d+)+(?:e[-+]?\d+)?)"
    r"|(?P<space>\s+)")
_ANY = {"ellipsis": ".*?", "date": r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?",
        "time": r"\d{1,2}:\d{2}(?::\d{2})?", "hex": r"[0-9a-f]{6,}",
        "decimal": r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?", "space": r"\s+"}


def line_pattern(shown: str) -> re.Pattern[str]:
    """A shown output line as a regular expression (see the module docstring)."""
    parts: list[str] = []
    pos = 0
    for match in _FREE_TOKENS.finditer(shown.strip()):
        parts.append(re.escape(shown.strip()[pos:match.start()]))
        parts.append(_ANY[match.lastgroup or "space"])
        pos = match.end()
    parts.append(re.escape(shown.strip()[pos:]))
    return re.compile("".join(parts))


def check_text_output(shown: tuple[str, ...], actual: str) -> str | None:
    """None when every shown line matches an actual line in order, else the first miss."""
    lines = [ln.strip() for ln in actual.splitlines()]
    at = 0
    for want in shown:
        if not want.strip() or want.strip() == "...":
            continue
        pattern = line_pattern(want)
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return want.strip()
        at += 1
    return None


def _json_items(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key), item
            yield from _json_items(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_items(item)


_JSON_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*(?:"((?:[^"\\]|\\.)*)")?')


def check_json_output(shown: tuple[str, ...], actual: str) -> str | None:
    """None when ``actual`` is JSON with the shown keys and string values, else why not."""
    try:
        data = json.loads(actual)
    except ValueError:
        return "the output is not JSON"
    items = list(_json_items(data))
    keys = {k for k, _ in items}
    for match in _JSON_KEY.finditer("\n".join(shown)):
        key, value = match[1], match[2]
        if key not in keys:
            return f"no key {key!r}"
        if value is not None and "..." not in value and (key, value) not in {
                (k, v) for k, v in items if isinstance(v, str)}:
            return f"{key!r} is not {value!r}"
    return None


# --- templates ------------------------------------------------------------------------


def template_commands(source: str) -> list[tuple[int, list[str]]]:
    """Each modelhost command of a template block: (line offset, its words after
    ``modelhost``), alternatives expanded."""
    found: list[tuple[int, list[str]]] = []
    for offset, raw in enumerate(source.splitlines()):
        text = raw[2:] if raw.startswith("$ ") else raw
        text = text.split("  #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        seen_modelhost = False
        for segment in re.split(r"\s+(?:;|&&)\s+", text):
            base: list[str] = []
            for n, alternative in enumerate(re.split(r"\s+\|\s+", segment)):
                words = alternative.split()
                if words and words[0] == "modelhost":
                    words = words[1:]
                elif seen_modelhost:
                    # "models list | show NAME": the alternative replaces the last word
                    # of the first; "keys create ... ; keys list": a modelhost command.
                    words = base + words if n else words
                else:
                    break  # not a modelhost command (curl, cd, ...)
                if n == 0:
                    base = words[:-1]
                seen_modelhost = True
                for expanded in _expand(words):
                    found.append((offset, expanded))
    return found


def _expand(words: list[str]) -> list[list[str]]:
    """``alias set|delete X`` -> ``alias set X`` and ``alias delete X``."""
    results: list[list[str]] = [[]]
    for word in words:
        options = word.split("|") if re.fullmatch(r"[a-z-]+(\|[a-z-]+)+", word) else [word]
        results = [[*r, o] for r in results for o in options]
    return results


def _is_group(command: Any) -> bool:
    return hasattr(command, "get_command") and hasattr(command, "list_commands")


def check_template_command(words: list[str]) -> str | None:
    """None when ``modelhost WORDS`` names an existing command with those options."""
    from modelhost.cli import app

    root = typer.main.get_command(app)
    command: Any = root
    ctx = typer.Context(root, info_name="modelhost")
    path = ["modelhost"]
    rest = list(words)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            return f"'{' '.join(path)}' has no command {rest[0]!r}"
        path.append(rest.pop(0))
        command = sub
        ctx = typer.Context(command, parent=ctx, info_name=path[-1])
    if _is_group(command):
        return f"'{' '.join(path)}' needs a command"
    known = {opt for param in [*command.params, *root.params] for opt in param.opts}
    known |= {"--help"}
    for word in rest:
        option = word.strip("[]").split("=", 1)[0]
        if option.startswith("--") and option not in known:
            return f"'{' '.join(path)}' has no option {option}"
    result = CliRunner().invoke(app, [*path[1:], "--help"])
    if result.exit_code != 0:
        return f"'{' '.join(path)} --help' exited {result.exit_code}"
    return None


# --- the session of one file ----------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    doc_port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass
class DocSession:
    """The state the blocks of one file share: namespace, folders, shell, servers."""

    file: str
    base: Path
    workdir: Path
    home: Path
    module: types.ModuleType
    cwd: Path
    done: int = 0  # blocks 1..done have been handled (run or skipped)
    failed: DocBlock | None = None
    saved_experiment: str = field(default=modelhost.fluent.DEFAULT_EXPERIMENT)
    last_rc: int = 0
    server: Server | None = None
    ports: dict[int, int] = field(default_factory=dict)  # documented -> real port

    @property
    def namespace(self) -> dict[str, object]:
        return self.module.__dict__

    @property
    def env_file(self) -> Path:
        return self.base / "shell.env"

    def substitute(self, text: str) -> str:
        """Point the documented server address at the real one."""
        for doc_port, port in self.ports.items():
            text = re.sub(rf"\b(?:localhost|127\.0\.0\.1|0\.0\.0\.0):{doc_port}\b",
                          f"127.0.0.1:{port}", text)
        return text

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
        env.update(MODELHOST_HOME=str(self.home), PYTHONUNBUFFERED="1",
                   PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
        env.pop("VIRTUAL_ENV", None)
        return env

    def script(self, command: str) -> str:
        """The bash script that runs ``command`` as the next one in the reader's shell."""
        load = f". {shlex.quote(str(self.env_file))}\n" if self.env_file.exists() else ""
        return (f"set -a -o pipefail\n{load}cd {shlex.quote(str(self.cwd))}\n"
                f"(exit {self.last_rc})\n{command}\n")

    def run_command(self, command: str, *, source: str = "bash") -> tuple[int, str, str]:
        state = self.base / "state"
        script = (self.script(command)
                  + f"__rc=$?\npwd > {shlex.quote(str(state))}\n"
                    f"declare -px | grep -v -e ' -[a-z]*r[a-z]* ' "
                    f"> {shlex.quote(str(self.env_file))}\nexit $__rc\n")
        done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script],
                              env=self.environment(), capture_output=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
        if state.exists():
            self.cwd = Path(state.read_text(encoding="utf-8").strip())
        self.last_rc = done.returncode
        return (done.returncode, done.stdout.decode(errors="replace"),
                done.stderr.decode(errors="replace"))

    def start_server(self, command: str, words: list[str], line: int) -> Server:
        if self.server is not None:
            self.server.stop()  # the reader pressed Ctrl+C before starting another
            self.server = None
        command = re.sub(r"\s+#[^'\"]*$", "", command)  # a trailing comment
        port = free_port()
        env = self.environment()
        doc_port = DOC_PORT
        if "--port" in words:
            doc_port = int(words[words.index("--port") + 1])
            command = re.sub(rf"--port[ =]{doc_port}\b", f"--port {port}", command)
        else:
            command += f" --port {port}"
        if "--host" in words:
            host = words[words.index("--host") + 1]
            if host not in ("127.0.0.1", "localhost", "::1"):
                command = re.sub(rf"--host[ =]{re.escape(host)}(?=\s|$)",
                                 "--host 127.0.0.1", command)
                env["MODELHOST_AUTH"] = "required"
        log = self.base / f"server-{line}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", self.script(f"exec {command}")],
                env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        server = Server(process=process, port=port, doc_port=doc_port, log=log)
        self.server = server
        self.ports[doc_port] = port
        _wait_ready(server, https="--ssl-certfile" in words)
        return server


def _wait_ready(server: Server, *, https: bool = False) -> None:
    """Until /readyz answers 200 (over HTTPS for a server given a certificate: whether
    the document's clients trust it is for its own commands to show)."""
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    url = f"{'https' if https else 'http'}://127.0.0.1:{server.port}/readyz"
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited {server.process.returncode} before it was "
                        f"ready:\n{server.output()[-3000:]}")
        try:
            answer = httpx.get(url, timeout=2.0, verify=not https)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:300]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    pytest.fail(f"the server was not ready within {SERVER_READY_TIMEOUT_S:.0f} s "
                f"(/readyz: {last}):\n{server.output()[-3000:]}")


def _server_words(command: str) -> list[str] | None:
    """The words of a command that starts a server, else None."""
    try:
        words = shlex.split(command.replace("\\\n", " "), comments=True)
    except ValueError:
        return None
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    if len(words) < 2 or words[0] != "modelhost" or "--help" in words:
        return None
    if words[1] == "serve" or (words[1] == "quickstart" and "--no-serve" not in words):
        return words
    return None


class DocSessions:
    """At most one open session, so that files never see each other's state."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._factory = tmp_path_factory
        self.current: DocSession | None = None

    def open(self, file: str) -> DocSession:
        if self.current is not None and self.current.file == file:
            return self.current
        self.close()
        assert (VENV_BIN / "modelhost").is_file(), f"no modelhost command in {VENV_BIN}"
        slug = re.sub(r"\W", "_", file)
        base = self._factory.mktemp(slug)
        workdir = base / "work"
        workdir.mkdir()
        _copy_examples(workdir)
        module = types.ModuleType(f"modelhost_docs_{slug}")
        module.__file__ = str(ROOT / file)
        # Registered so that classes defined in a block can be pickled / skops-loaded.
        sys.modules[module.__name__] = module
        session = DocSession(file=file, base=base, workdir=workdir,
                             home=base / "modelhost-home", module=module, cwd=workdir,
                             saved_experiment=modelhost.fluent._experiment)
        modelhost.set_client(None)
        modelhost.fluent._experiment = modelhost.fluent.DEFAULT_EXPERIMENT
        self.current = session
        return session

    def close(self) -> None:
        session, self.current = self.current, None
        if session is None:
            return
        if session.server is not None:
            session.server.stop()
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


def _copy_examples(workdir: Path) -> None:
    """The tracked files of examples/, as a fresh clone has them."""
    listed = subprocess.run(["git", "ls-files", "-z", "examples"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())


@pytest.fixture(scope="module")
def doc_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocSessions]:
    sessions = DocSessions(tmp_path_factory)
    yield sessions
    sessions.close()


def _isolate(session: DocSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(session.cwd)
    for var in [v for v in os.environ if v.startswith("MODELHOST_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MODELHOST_HOME", str(session.home))


# --- running blocks -------------------------------------------------------------------


def _run_python(session: DocSession, block: DocBlock) -> None:
    # Padding with newlines makes tracebacks name the Markdown line of the statement.
    __tracebackhide__ = True
    filename = str(ROOT / block.file)
    os.chdir(session.cwd)
    try:
        code = compile("\n" * (block.line - 1) + session.substitute(block.source), filename,
                       "exec")
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


def _expects_failure(command: Command, following: Command | None) -> bool:
    shown_error = any(ln.lstrip().startswith("error:") for ln in command.shown)
    echo_next = following is not None and following.text.strip() == "echo $?"
    return shown_error or echo_next


def _run_shell(session: DocSession, block: DocBlock) -> None:
    __tracebackhide__ = True
    commands = block.commands
    for n, command in enumerate(commands):
        following = commands[n + 1] if n + 1 < len(commands) else None
        text = session.substitute(command.text)
        where = f"{block.file}, line {command.line}: $ {command.text}"
        words = _server_words(text)
        if words is not None:
            server = session.start_server(text, words, command.line)
            rc, stdout, stderr = 0, "", server.output()
        else:
            rc, stdout, stderr = session.run_command(text)
        output = f"{stdout}{stderr}"
        if command.text.strip() == "echo $?":
            expected = "\n".join(command.shown).strip()
            if stdout.strip() != expected:
                _fail(session, block, f"{where}\nthe previous command exited "
                                      f"{stdout.strip()}, the document shows {expected}")
            continue
        failing = _expects_failure(command, following)
        if failing and rc == 0:
            _fail(session, block, f"{where}\nexited 0 where the document shows a failure"
                                  f"\n{output[-3000:]}")
        if not failing and rc != 0:
            _fail(session, block, f"{where}\nexited {rc}\n{output[-3000:]}")
        if block.marker == _UNCHECKED or block.tag != "console" or not command.shown:
            continue
        shown = tuple(session.substitute(ln) for ln in command.shown)
        first = next(ln.strip() for ln in shown if ln.strip())
        if first.startswith(("{", "[")):
            problem = check_json_output(shown, stdout)
        else:
            missing = check_text_output(shown, output)
            problem = None if missing is None else f"no output line matches {missing!r}"
        if problem is not None:
            _fail(session, block, f"{where}\nthe output does not match what the document "
                                  f"shows: {problem}\n--- actual output ---\n"
                                  f"{output[-3000:]}")


def _run_template(session: DocSession, block: DocBlock) -> None:
    __tracebackhide__ = True
    commands = template_commands(block.source)
    if not commands:
        _fail(session, block, f"{block.id}: a template block without any modelhost command")
    for offset, words in commands:
        problem = check_template_command(words)
        if problem is not None:
            _fail(session, block, f"{block.file}, line {block.line + offset}: "
                                  f"modelhost {' '.join(words)}: {problem}")


def _fail(session: DocSession, block: DocBlock, message: str) -> None:
    __tracebackhide__ = True
    session.failed = block
    pytest.fail(message, pytrace=False)


def _run_block(session: DocSession, block: DocBlock) -> None:
    __tracebackhide__ = True
    if block.marker == _TEMPLATE:
        _run_template(session, block)
    elif block.tag == "python":
        _run_python(session, block)
    else:
        try:
            _run_shell(session, block)
        except subprocess.TimeoutExpired as exc:
            _fail(session, block, f"{block.id}: {exc.cmd!r} timed out")


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
                try:
                    _run_block(session, current)
                except BaseException:
                    session.failed = current
                    raise
        if session.failed is not None and session.failed is not block:
            pytest.skip(f"{session.failed.id} failed ({session.failed.first_line!r})")
        if block.skip_reason is not None:
            pytest.skip(f"{block.id}: {block.skip_reason}")
    finally:
        if block.index == len(blocks):
            doc_sessions.close()


# --- the parser and the conventions themselves ----------------------------------------


def test_documents_are_found() -> None:
    """Guards against a parser or path slip that would silently test nothing."""
    assert "README.md" in BLOCKS
    tags = {b.tag for b in BLOCKS["README.md"]}
    assert {"python", "console"} <= tags, tags


def test_every_no_test_block_is_listed_in_the_docstring() -> None:
    assert __doc__ is not None
    section = __doc__.split("Blocks marked ``no-test`` today:", 1)[1].split("\n\n\n", 1)[0]
    section = section.split("\nSelecting", 1)[0]
    listed = set(re.findall(r"``([\w./-]+\.md:\d+)``", section))
    marked = {b.id for b in ALL_BLOCKS if b.marker == _NO_TEST}
    assert marked == listed, "update the list of no-test blocks in the module docstring"
    assert all(b.reason for b in ALL_BLOCKS if b.marker == _NO_TEST), \
        "a no-test marker needs a reason: <!-- no-test: why -->"


def test_console_blocks_have_commands_and_commands_are_fenced() -> None:
    for path in doc_files():
        rel = path.relative_to(ROOT).as_posix()
        for block in BLOCKS[rel]:
            if block.tag == "console":
                assert parse_console(block.source, first_line=block.line), \
                    f"{block.id} has no '$ ' command; tag output alone 'text'"
        fenced = False
        previous_blank = True
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _FENCE_OPEN.match(line) or (fenced and re.match(r"^ {0,3}(`{3,}|~{3,})", line)):
                fenced = not fenced
            elif not fenced and previous_blank and line.startswith("    "):
                first = line.split()[0] if line.split() else ""
                assert first not in COMMAND_WORDS, (
                    f"{rel}:{number}: an indented command list; fence it as ```console "
                    "so that it runs")
            previous_blank = not line.strip() or (previous_blank and line.startswith("    "))


def test_extract_blocks(tmp_path: Path) -> None:
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
        "1. item\n\n   ```python\n   if x:\n       w = 4\n   ```\n"
        "<!-- template -->\n```sh\nmodelhost models list | show NAME\n```\n"
        "```yaml\na: 1\n```\n",
        encoding="utf-8")
    blocks = extract_blocks(doc, root=tmp_path)
    assert [(b.id, b.tag, b.line, b.skip_reason, b.marker) for b in blocks] == [
        ("doc.md:1", "python", 3, None, None),
        ("doc.md:2", "console", 6, None, None),
        ("doc.md:3", "python", 10, "marked <!-- no-test -->", "no-test"),
        ("doc.md:4", "python", 14, "needs S3", "no-test"),
        ("doc.md:5", "python", 19, None, None),
        ("doc.md:6", "python", 25, None, None),
        ("doc.md:7", "bash", 30, None, "template"),
    ]
    assert [b.source for b in blocks[:6]] == ["x = 1\n", "$ ls\n", "raise SystemExit\n",
                                              "y = 2\n", "```\nz = 3\n", "if x:\n    w = 4\n"]


def test_parse_console() -> None:
    source = ("$ modelhost serve --port 8000\n"
              "$ curl -s localhost:8000/x \\\n    -d '{}'\n"
              '{"a": 1}\n\n'
              "$ echo $?\n1\n")
    assert parse_console(source, first_line=10) == [
        Command(line=10, text="modelhost serve --port 8000"),
        Command(line=11, text="curl -s localhost:8000/x \\\n    -d '{}'",
                shown=('{"a": 1}',)),
        Command(line=15, text="echo $?", shown=("1",)),
    ]
    with pytest.raises(ValueError, match="output before the first"):
        parse_console("Registered\n$ ls\n")


def test_loose_output_matching() -> None:
    actual = ("Pipeline churn (modelhost.yaml)\n"
              "  validate     ran      0.52s  churn@1: passed\n"
              "  features     ran      0.10s  train_rows=1500\n"
              "Run 0d1f2e3c4b5a69788796a5b4c3d2e1f0 (experiment churn)\n"
              "Created key 9a8b7c6d5e4f (ci, deployer, expires 2027-03-01 10:00 UTC)\n")
    assert check_text_output(("Pipeline churn (modelhost.yaml)",
                              "  validate     ran    0.45s  churn@1: passed",
                              "  ...",
                              "Run 5c6242620983476b9fbc7cd3d45cf1b4 (experiment churn)",
                              "Created key 3f9c2a71d0be (ci, deployer, expires 2027-02-19 "
                              "11:00 UTC)"), actual) is None
    assert check_text_output(("  features  ran  0.1s  train_rows=1400",), actual) == \
        "features  ran  0.1s  train_rows=1400"  # whole numbers are literal
    assert check_text_output(("  validate ran 0.4s churn@1: FAILED",), actual) is not None
    # order matters
    assert check_text_output(("  features ran 0.1s train_rows=1500",
                              "  validate ran 0.4s churn@1: passed"), actual) is not None
    assert check_text_output(("Pipeline ... (modelhost.yaml)",), actual) is None

    answer = json.dumps({"model": "iris", "version": "1.0.0", "request_id": "ab",
                         "predictions": [0], "probabilities": [[0.9, 0.1]]})
    assert check_json_output(('{"model":"iris","version":"1.0.0","request_id":"...",'
                              '"predictions":[0],...}',), answer) is None
    assert check_json_output(('{"model":"iris","version":"1.0.1"}',), answer) == \
        "'version' is not '1.0.1'"
    assert check_json_output(('{"model":"iris","flavor":"sklearn"}',), answer) == \
        "no key 'flavor'"
    assert check_json_output(('{"model":"iris"}',), "Registered") == "the output is not JSON"


def test_template_commands_are_read_with_their_alternatives() -> None:
    source = ("$ modelhost models list | show NAME | versions NAME\n"
              "$ modelhost alias set|delete NAME ALIAS [VERSION]\n"
              "$ modelhost keys create --name N ; keys list ; keys revoke ID   # comment\n"
              "$ curl -s localhost:8000/readyz\n")
    assert template_commands(source) == [
        (0, ["models", "list"]), (0, ["models", "show", "NAME"]),
        (0, ["models", "versions", "NAME"]),
        (1, ["alias", "set", "NAME", "ALIAS", "[VERSION]"]),
        (1, ["alias", "delete", "NAME", "ALIAS", "[VERSION]"]),
        (2, ["keys", "create", "--name", "N"]), (2, ["keys", "list"]),
        (2, ["keys", "revoke", "ID"]),
    ]
    assert check_template_command(["models", "show", "NAME"]) is None
    assert check_template_command(["pipeline", "run", "[--reason", '"x"]']) is None
    assert check_template_command(["models", "lisst"]) == "'modelhost models' has no " \
                                                          "command 'lisst'"
    assert check_template_command(["stage", "a", "1.0.0", "staging", "--resaon", "x"]) == \
        "'modelhost stage' has no option --resaon"
    assert check_template_command(["models"]) == "'modelhost models' needs a command"


def test_server_commands_are_recognised() -> None:
    assert _server_words("modelhost serve --port 8000 --workers 2") is not None
    assert _server_words("MODELHOST_AUTH=off modelhost serve") is not None
    assert _server_words("modelhost quickstart") is not None
    assert _server_words("modelhost quickstart --no-serve") is None
    assert _server_words("modelhost serve --help") is None
    assert _server_words("modelhost keys create --name serve") is None


def test_shell_commands_share_folder_variables_and_exit_code(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    session = DocSession(file="doc.md", base=tmp_path, workdir=work, home=tmp_path / "home",
                         module=types.ModuleType("doc"), cwd=work)
    assert session.run_command("cd sub && KEY=$(echo secret)")[0] == 0
    assert session.cwd == work / "sub"
    assert session.run_command('echo "$KEY $MODELHOST_HOME"')[1] == \
        f"secret {tmp_path / 'home'}\n"
    assert session.run_command("command -v modelhost")[1].strip() == \
        str(VENV_BIN / "modelhost")
    assert session.run_command("false | cat")[0] == 1  # pipefail
    assert session.run_command("echo $?")[1] == "1\n"
