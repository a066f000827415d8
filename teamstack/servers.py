"""Server subprocesses: started on a loopback port, logged to a file, always stopped.

:class:`ServerProcess` runs one command in its own process group, writes its output to a log
file, waits until a URL answers and kills the whole group on exit. The team stack
(:mod:`teamstack.stack`) and the Prefect, MLflow and browser tests use it, so every server a
test needs is started by the test itself (``tests/servers.py`` re-exports these names).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tasks.dvc import stop_process_group

VENV_BIN = Path(sys.executable).parent
STARTUP_S = 240  # a cold start of a Prefect or MLflow server on the shared 2-core machine
POLL_S = 0.5
TRACEBACK = "Traceback (most recent call last)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout_s: float = 10) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; HTTP errors are returned, connection errors raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's ``bin/`` first on PATH (MLflow starts uvicorn from PATH)."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update({"MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    env.update(extra)
    return env


class ServerProcess:
    """A server subprocess: ``with ServerProcess(cmd, log, ready_url) as server: ...``."""

    def __init__(self, cmd: list[str], log: Path, base_url: str, ready_path: str = "/",
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.cmd, self.log, self.base_url = cmd, Path(log), base_url
        self.ready_url = base_url + ready_path
        self.env, self.cwd = env or venv_env(), cwd
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> ServerProcess:
        """Start the process without waiting (several servers can then start side by side)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tracebacks(self) -> list[str]:
        """The log's tracebacks, each with the 15 lines that follow its first line."""
        lines = self.log_text().splitlines()
        return ["\n".join(lines[i : i + 15]) for i, line in enumerate(lines) if TRACEBACK in line]

    def wait_ready(self, timeout_s: float = STARTUP_S) -> None:
        """Block until ``ready_url`` answers 200; fail with the log tail if the server exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.cmd[:3]} exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if http_get(self.ready_url, timeout_s=5)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(POLL_S)
        raise RuntimeError(f"{self.ready_url} not ready after {timeout_s:.0f} s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.proc is not None:
            stop_process_group(self.proc)


def prefect_server(home: Path, port: int | None = None, **settings: str) -> ServerProcess:
    """``prefect server start`` (API, UI and services) on 127.0.0.1 with its own ``PREFECT_HOME``.

    ``settings`` are extra ``PREFECT_*`` environment variables, e.g. a database URL.
    """
    port = port or free_port()
    env = venv_env(PREFECT_HOME=str(home), PREFECT_SERVER_API_HOST="127.0.0.1",
                   PREFECT_SERVER_API_PORT=str(port), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
                   PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api", **settings)
    cmd = [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(cmd, home / "server.log", f"http://127.0.0.1:{port}", "/api/health", env=env)
