"""The README's 5-minute tour, run for real, so the README cannot drift.

Every ```console block between "## A 5-minute tour" and the next "## " heading
is run in order against a real `mcpctl dev` cluster (the Makefile's `make run`
recipe on free ports, its data in a tmp dir), and each command's output is
compared with what the README shows.

How the README's blocks read:

- ``$ CMD`` is a command (run with ``bash -c`` in a directory that mirrors the
  checkout, with the venv on PATH); the lines after it, up to the next ``$ ``,
  are its output, stdout and stderr together. A command shown printing an
  error (``mcpctl: ...``) must exit non-zero, every other one zero.
- ``…`` alone on a line stands for any lines (none included); inside a line,
  for any text.
- A trailing comment (two or more spaces, then ``# ``) on a command or output
  line is prose, not part of it.
- ``<!-- tour: background -->`` before a block: its one command (the watch)
  runs in the background; once the cluster counts one more open watch stream
  the next block runs, then the background output is compared.
- ``<!-- tour: retry -->`` before a block: read-only commands that show a
  state the cluster converges to (a killed node restarted and caught up); they
  are re-run until they match, within a bound.

What may differ, and nothing else: ports (the test's are translated to the
README's 7101.. before comparing; 4-digit ports keep table widths), ids
(``cluster_id``/``member_id``), times (ISO timestamps; the Raft term, a
logical clock that counts elections) and, in `mcpctl status` tables, the cells
that depend on timing: role, term, commit, applied, behind, lag, last contact.
Revisions are compared exactly.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.test_dev import clean_env, node_pids

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
TOUR_HEADING = "## A 5-minute tour"
# The ports the README shows: `make run` uses --port 7101 (Raft +100, metrics
# +200, console +300).
README_PORT = 7101
PORT_SPAN = 400
NODES = 3
# Port offsets `mcpctl dev` uses from --port: client, Raft, metrics, console.
DEV_OFFSETS = (0, 100, 200, 300)
READY_TIMEOUT_S = 75.0
COMMAND_TIMEOUT_S = 60.0
RETRY_TIMEOUT_S = 60.0
BACKGROUND_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
MARKERS = frozenset({"background", "retry"})
ANY = "…"

_COMMENT = re.compile(r"(?<=\S)\s{2,}# .*$")
_MARKER = re.compile(r"^<!-- tour: (\w+)\b.*-->$")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
_IDS = re.compile(r'"(cluster_id|member_id)": (?:"[^"]*"|[^,}]+)')
_TERM = re.compile(r'"raft_term": \d+')
_PORT = re.compile(r"127\.0\.0\.1:(\d+)")
# `mcpctl status` columns whose cells depend on timing (who won the election,
# how many no-op entries, how long ago a heartbeat was).
STATUS_VARYING = frozenset(
    {"role", "term", "commit", "applied", "behind", "lag ms", "last contact ms"}
)


# -- the README, parsed -------------------------------------------------------------


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int  # 1-based line of the opening fence in README.md
    marker: str | None
    steps: list[Step]


def strip_comment(line: str) -> str:
    return _COMMENT.sub("", line).rstrip()


def parse_tour(text: str) -> list[Block]:
    """The ```console blocks of the tour section, with their markers."""
    lines = text.splitlines()
    start = lines.index(TOUR_HEADING)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks: list[Block] = []
    i = start
    while i < end:
        if lines[i].strip() != "```console":
            i += 1
            continue
        before = next((lines[j] for j in range(i - 1, start, -1) if lines[j].strip()), "")
        found = _MARKER.match(before.strip())
        marker = found.group(1) if found else None
        assert marker is None or marker in MARKERS, f"README.md:{i}: unknown marker {marker!r}"
        close = lines.index("```", i + 1)
        steps: list[Step] = []
        for raw in lines[i + 1 : close]:
            if raw.startswith("$ "):
                steps.append(Step(strip_comment(raw[2:])))
            else:
                assert steps, f"README.md:{i + 1}: a console block must start with '$ '"
                steps[-1].expected.append(strip_comment(raw))
        blocks.append(Block(i + 1, marker, steps))
        i = close + 1
    return blocks


# -- comparing ----------------------------------------------------------------------


def translate_ports(text: str, port: int) -> str:
    """The test cluster's ports as the README's (same digits count, same widths)."""

    def swap(m: re.Match[str]) -> str:
        p = int(m.group(1))
        return f"127.0.0.1:{README_PORT + p - port}" if port <= p < port + PORT_SPAN else m[0]

    return _PORT.sub(swap, text)


def normalize(lines: list[str]) -> list[str]:
    """Ids, times and timing-dependent status cells replaced by placeholders."""
    out: list[str] = []
    columns: list[str] = []
    for line in lines:
        line = _TERM.sub('"raft_term": <term>', _IDS.sub(r'"\1": <id>', _TIME.sub("<time>", line)))
        if line.startswith("┃"):
            columns = [c.strip() for c in line.split("┃")]
        elif line.startswith("│") and columns:
            cells = line.split("│")
            line = "│".join(
                "<var>" if i < len(columns) and columns[i] in STATUS_VARYING else c.strip()
                for i, c in enumerate(cells)
            )
        out.append(line.rstrip())
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; a line ``…`` is any lines, ``…`` inside a line any text."""
    patterns = [
        None if e == ANY else re.compile(".*".join(re.escape(p) for p in e.split(ANY)))
        for e in expected
    ]

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        pattern = patterns[i]
        if pattern is None:
            return match(i + 1, j) or (j < len(actual) and match(i, j + 1))
        return j < len(actual) and bool(pattern.fullmatch(actual[j])) and match(i + 1, j + 1)

    return match(0, 0)


def mismatch(where: str, command: str, expected: list[str], actual: list[str]) -> str:
    diff = difflib.unified_diff(
        normalize(expected), normalize(actual), "README", "actual", lineterm=""
    )
    return "\n".join(
        [
            f"{where}: `{command}` printed other output than the README shows.",
            "Diff (ids, times and timing cells masked):",
            *diff,
            "It printed (ports as the README's):",
            *actual,
        ]
    )


# -- the cluster and the shell ------------------------------------------------------


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_tour_port() -> int:
    """A --port for dev with every port it uses free and 4 digits, like 7101.."""
    rng = random.SystemRandom()
    for _ in range(500):
        base = rng.randrange(1100, 10000 - max(DEV_OFFSETS) - NODES)
        if all(_port_free(base + off + i) for off in DEV_OFFSETS for i in range(NODES)):
            return base
    raise RuntimeError("no free 4-digit port range for the tour's cluster")


def make_run_recipe() -> str:
    """The command `make run` runs (and echoes), as the Makefile has it."""
    lines = MAKEFILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run:"))
    assert lines[start + 1].startswith("\t"), "the Makefile's `run` target has no recipe"
    command = lines[start + 1].strip().replace("$(VENV)", ".venv")
    assert f"--port {README_PORT}" in command, f"make run does not use --port {README_PORT}"
    return command


class Output:
    """The merged stdout/stderr of a background process, line by line, never blocking it."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, done: str, timeout_s: float) -> bool:
        """Collect lines until one starts with ``done`` (or the output ends / time runs out)."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                return False
            self.lines.append(line)
            if line.startswith(done):
                return True
        return False

    def drain(self) -> list[str]:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)
                return self.lines
            self.lines.append(line)


@dataclass
class Tour:
    root: Path  # mirrors the checkout; `.mcp-dev` in it is the cluster's data
    port: int
    env: dict[str, str]
    dev: Output | None = None

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{self.port + i}" for i in range(NODES)]

    def shell(self, command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, command: str) -> tuple[int, list[str]]:
        proc = self.shell(command)
        try:
            out, _ = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"`{command}` did not finish in {COMMAND_TIMEOUT_S}s: {out}")
        return proc.returncode, translate_ports(out, self.port).splitlines()

    def watch_streams(self) -> int:
        """Open watch streams across the cluster (each node's metrics)."""
        total = 0
        for i in range(NODES):
            url = f"http://127.0.0.1:{self.port + 200 + i}/metrics"
            try:
                text = httpx.get(url, timeout=5.0).text
            except httpx.HTTPError:
                continue  # a node restarting: it serves no stream either
            found = re.search(r"^mcp_watch_streams (\S+)$", text, re.MULTILINE)
            total += int(float(found.group(1))) if found else 0
        return total


@pytest.fixture
def tour(tmp_path: Path) -> Iterator[Tour]:
    root = tmp_path / "checkout"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in (".venv", ".mcp-dev", ".git"):
            (root / entry.name).symlink_to(entry)
    (root / ".venv").symlink_to(sys.prefix)
    env = clean_env()
    env["VIRTUAL_ENV"] = sys.prefix
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    t = Tour(root, free_tour_port(), env)
    t.env["MCPCTL_ENDPOINTS"] = ",".join(t.endpoints)
    try:
        yield t
    finally:
        if t.dev is not None and t.dev.proc.poll() is None:
            t.dev.proc.send_signal(signal.SIGTERM)
            try:
                t.dev.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(t.dev.proc.pid, signal.SIGKILL)
        for pid in node_pids(root / ".mcp-dev").values():
            os.kill(pid, signal.SIGKILL)
        # The fleet part's background demo processes write their pids here.
        for pid_file in (root / ".mcp-dev").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def start_cluster(t: Tour, block: Block) -> None:
    """The `make run` block: the recipe on the test's port; its output as make shows it."""
    assert [s.command for s in block.steps] == ["make run"], "the tour must start with make run"
    recipe = make_run_recipe()
    t.dev = Output(t.shell(recipe.replace(f"--port {README_PORT}", f"--port {t.port}")))
    ready = t.dev.wait_for("ready:", READY_TIMEOUT_S)
    actual = [recipe, *(translate_ports(line, t.port) for line in t.dev.lines)]
    assert ready, f"`make run` printed no ready line: {actual}"
    where = f"README.md:{block.line}"
    assert matches(normalize(block.steps[0].expected), normalize(actual)), mismatch(
        where, "make run", block.steps[0].expected, actual
    )


def check_step(t: Tour, where: str, step: Step) -> str | None:
    """Run one command; None when it printed what the README shows, else why not."""
    code, actual = t.run(step.command)
    failed = any(line.startswith("mcpctl: ") for line in step.expected)
    if (code != 0) != failed:
        want = "non-zero" if failed else "0"
        return f"{where}: `{step.command}` exited {code}, want {want}: {actual}"
    if not matches(normalize(step.expected), normalize(actual)):
        return mismatch(where, step.command, step.expected, actual)
    return None


def run_block(t: Tour, block: Block) -> None:
    where = f"README.md:{block.line}"
    deadline = time.monotonic() + RETRY_TIMEOUT_S
    while True:
        problems = [p for s in block.steps if (p := check_step(t, where, s)) is not None]
        if not problems:
            return
        if block.marker != "retry" or time.monotonic() > deadline:
            pytest.fail("\n".join(problems))
        time.sleep(0.5)  # a retry block waits for the cluster to converge, bounded


def start_background(t: Tour, block: Block) -> tuple[Output, Step]:
    assert len(block.steps) == 1, f"README.md:{block.line}: a background block has one command"
    before = t.watch_streams()
    out = Output(t.shell(block.steps[0].command))
    deadline = time.monotonic() + BACKGROUND_TIMEOUT_S
    while t.watch_streams() <= before:
        assert out.proc.poll() is None, f"`{block.steps[0].command}` exited: {out.drain()}"
        assert time.monotonic() < deadline, "the background watch never opened its stream"
        time.sleep(0.05)
    return out, block.steps[0]


def finish_background(t: Tour, where: str, out: Output, step: Step) -> None:
    """Wait (bounded) for the background output the README shows, then Ctrl-C it."""
    deadline = time.monotonic() + BACKGROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        out.wait_for("", 0.2)
        lines = [translate_ports(line, t.port) for line in out.lines]
        if matches(normalize(step.expected), normalize(lines)):
            break
    os.killpg(out.proc.pid, signal.SIGINT)
    code = out.proc.wait(STOP_TIMEOUT_S)
    lines = [translate_ports(line, t.port) for line in out.drain()]
    assert matches(normalize(step.expected), normalize(lines)), mismatch(
        where, step.command, step.expected, lines
    )
    assert code == 0, f"{where}: `{step.command}` exited {code} on Ctrl-C"


def test_the_readme_tour_prints_what_the_readme_shows(tour: Tour) -> None:
    """Each command of the tour, in order, against a real cluster: same output as shown."""
    blocks = parse_tour(README.read_text())
    assert blocks, "no console blocks in the README's tour"
    start_cluster(tour, blocks[0])
    background: tuple[str, Output, Step] | None = None
    for block in blocks[1:]:
        if block.marker == "background":
            assert background is None, f"README.md:{block.line}: two background blocks in a row"
            out, step = start_background(tour, block)
            background = (f"README.md:{block.line}", out, step)
            continue
        run_block(tour, block)
        if background is not None:
            finish_background(tour, *background)
            background = None
    assert background is None, "a background block must be followed by a block"
    # The tour's kill step: dev noticed and restarted the node.
    assert tour.dev is not None
    tour.dev.drain()
    assert any(line.startswith("node n1 exited (signal 9)") for line in tour.dev.lines), (
        tour.dev.lines
    )


def test_the_comparison_allows_only_what_may_differ() -> None:
    """`…`, comments, ids, times, ports and status timing cells; nothing else."""
    assert strip_comment("OK        # compare-and-swap") == "OK"
    assert strip_comment("# MCP config exported") == "# MCP config exported"
    assert matches(["a", ANY, "d"], ["a", "b", "c", "d"]) and matches(["a", ANY], ["a"])
    assert matches(["data in /…/.mcp-dev"], ["data in /tmp/x/.mcp-dev"])
    assert not matches(["applied: 10 changes at revision 4"], ["applied: 11 changes at revision 5"])
    shown = ['{"header": {"cluster_id": …, "member_id": …, "revision": 2, "raft_term": 1}}']
    real = ['{"header": {"cluster_id": 99, "member_id": 7, "revision": 2, "raft_term": 2}}']
    assert matches(normalize(shown), normalize(real))
    assert not matches(
        normalize(shown), normalize([real[0].replace('"revision": 2', '"revision": 3')])
    )
    assert translate_ports("grpc 127.0.0.1:2345 raft 127.0.0.1:2446", 2345) == (
        "grpc 127.0.0.1:7101 raft 127.0.0.1:7202"
    )
