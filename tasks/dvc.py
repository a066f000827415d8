"""Run one DVC stage as a subprocess and read what it did (no Prefect in here).

DVC decides freshness: ``dvc repro --single-item <stage>`` reruns the stage only when its
deps, params or code changed, and prints ``Stage '<stage>' didn't change, skipping``
otherwise. The stage's own command (``cliper run <stage>``) runs under DVC with
``PYTHONPATH`` set to the project root, so the ``cliper`` package of that project is the
one imported (not whatever copy the console script was installed from).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SKIP_RE = re.compile(r"Stage '(?P<stage>[^']+)' didn't change, skipping")
RUN_RE = re.compile(r"Running stage '(?P<stage>[^']+)'")
EXIT_RE = re.compile(r"exited with (?P<code>-?\d+)")
# `cliper` exits 2 for errors meant for the user (bad data, failed validation, bad params):
# rerunning the same inputs gives the same answer, so such failures are not retried.
USER_ERROR_EXIT = 2
TAIL_LINES = 20

Status = Literal["ran", "skipped"]


@dataclass(frozen=True)
class StageOutcome:
    """What one ``dvc repro --single-item`` call did.

    Attributes:
        stage: the DVC stage name.
        status: ``"ran"`` (DVC executed the command) or ``"skipped"`` (already up to date).
        duration_s: wall time of the DVC call in seconds.
        metrics: metrics file (relative path) -> its parsed JSON, as declared in ``dvc.yaml``.
    """

    stage: str
    status: Status
    duration_s: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-able form (the task's return value)."""
        return asdict(self)


class StageFailed(RuntimeError):
    """``dvc repro`` of a stage failed; the message carries the stage's last error lines."""

    def __init__(self, stage: str, returncode: int, tail: list[str], stage_exit: int | None = None):
        self.stage = stage
        self.returncode = returncode
        self.tail = tail
        if stage_exit is None:
            codes = [int(m.group("code")) for line in tail if (m := EXIT_RE.search(line))]
            stage_exit = codes[-1] if codes else None
        self.stage_exit = stage_exit
        detail = "\n".join(tail) if tail else "(no output on stderr)"
        super().__init__(f"stage '{stage}' failed (exit {returncode}, command exit {stage_exit}):\n{detail}")

    @property
    def user_error(self) -> bool:
        """True when the stage reported a user-facing error (deterministic: do not retry)."""
        return self.stage_exit == USER_ERROR_EXIT


class StageTimeout(TimeoutError):
    """The stage ran past its time limit and was stopped."""


def stage_env(root: Path) -> dict[str, str]:
    """Environment for DVC and the stage command: project on ``PYTHONPATH``, venv on ``PATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def repro_command(stage: str) -> list[str]:
    """The DVC call for one stage, without its upstream stages."""
    return [sys.executable, "-m", "dvc", "repro", "--single-item", stage]


def stream_process(
    cmd: list[str],
    cwd: Path,
    on_line: Callable[[str, str], None],
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> tuple[int, list[str], list[str]]:
    """Run ``cmd``, passing each stdout/stderr line to ``on_line(stream, line)`` as it arrives.

    The process gets its own process group; on a timeout or any exception in the caller
    (e.g. a Prefect timeout or cancellation) the whole group is terminated.

    Returns:
        (exit code, all output lines, the last ``TAIL_LINES`` stderr lines).

    Raises:
        StageTimeout: the command ran longer than ``timeout_s``.
    """
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    lines: list[str] = []
    err_tail: deque[str] = deque(maxlen=TAIL_LINES)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        with selectors.DefaultSelector() as sel:
            buffers: dict[int, bytes] = {}
            for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                sel.register(pipe, selectors.EVENT_READ, name)
                buffers[pipe.fileno()] = b""
            while sel.get_map():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StageTimeout(f"{' '.join(cmd[2:])} ran longer than {timeout_s:.0f} s")
                for key, _ in sel.select(timeout=remaining):
                    fd = key.fileobj.fileno()
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        pending = [buffers.pop(fd)] if buffers.get(fd) else []
                    else:
                        *pending, buffers[fd] = (buffers[fd] + chunk).split(b"\n")
                    for raw in pending:
                        line = raw.decode("utf-8", errors="replace").rstrip("\r")
                        if not line.strip():
                            continue
                        lines.append(line)
                        if key.data == "stderr":
                            err_tail.append(line)
                        on_line(key.data, line)
        return proc.wait(), lines, list(err_tail)
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def parse_status(stage: str, lines: list[str]) -> Status:
    """``"skipped"`` when DVC said the stage didn't change and did not run it, else ``"ran"``."""
    ran = any((m := RUN_RE.search(line)) and m.group("stage") == stage for line in lines)
    skipped = any((m := SKIP_RE.search(line)) and m.group("stage") == stage for line in lines)
    return "skipped" if skipped and not ran else "ran"


def run_stage(
    stage: str,
    root: Path,
    log: Callable[[str], None],
    timeout_s: float | None = None,
) -> StageOutcome:
    """Reproduce one DVC stage in ``root``, streaming its output to ``log``.

    Raises:
        StageFailed: DVC or the stage's command failed (message = last stderr lines).
        StageTimeout: the stage ran longer than ``timeout_s``.
    """
    start = time.monotonic()
    code, lines, err_tail = stream_process(
        repro_command(stage), root, lambda _stream, line: log(line), stage_env(root), timeout_s
    )
    if code != 0:
        raise StageFailed(stage, code, err_tail)
    status = parse_status(stage, lines)
    return StageOutcome(stage, status, round(time.monotonic() - start, 2), read_metrics(stage, root))


def run_cli(
    args: list[str], root: Path, log: Callable[[str], None], timeout_s: float | None = None
) -> list[str]:
    """Run ``cliper <args>`` in ``root`` (outside DVC), streaming its output to ``log``.

    Raises:
        StageFailed: the command exited non-zero (named after ``args[0]``).
    """
    cmd = [sys.executable, "-m", "cliper.cli", *args]
    code, lines, err_tail = stream_process(cmd, root, lambda _s, line: log(line), stage_env(root), timeout_s)
    if code != 0:
        raise StageFailed(args[0], code, err_tail, stage_exit=code)
    return lines


def last_json_block(lines: list[str]) -> dict[str, Any] | None:
    """The last top-level JSON object a command printed (a line ``{`` ... a line ``}``)."""
    starts = [i for i, line in enumerate(lines) if line == "{"]
    for start in reversed(starts):
        end = next((j for j in range(start, len(lines)) if lines[j] == "}"), None)
        if end is not None:
            try:
                return json.loads("\n".join(lines[start : end + 1]))
            except json.JSONDecodeError:
                continue
    return None


def metrics_paths(stage: str, root: Path) -> list[str]:
    """The metrics files ``dvc.yaml`` declares for ``stage`` (relative to ``root``), resolved."""
    from dvc.repo import Repo  # heavy import: only when needed

    root = Path(root).resolve()
    with Repo(str(root)) as repo:  # `path` given explicitly: DVC resolves a bare "dvc.yaml" from the cwd
        outs = repo.stage.load_one(path=str(root / "dvc.yaml"), name=stage).outs
        return [str(Path(out.fs_path).relative_to(root)) for out in outs if out.metric]


def read_metrics(stage: str, root: Path) -> dict[str, Any]:
    """Parsed JSON of each declared metrics file of ``stage`` that exists."""
    root = Path(root).resolve()
    out: dict[str, Any] = {}
    for rel in metrics_paths(stage, root):
        path = root / rel
        if path.is_file():
            try:
                out[rel] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                out[rel] = {"error": f"not valid JSON: {exc}"}
    return out
