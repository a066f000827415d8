"""``python -m teamstack up | env | down``: the team stack on this machine, for trying it.

``up`` starts PostgreSQL, S3 (moto), the MLflow and the Prefect server, prints their URLs and
the environment to export, writes that environment to ``<dir>/env.sh`` and runs until Ctrl-C
(or ``down`` from another terminal), then stops every server and deletes their data: the stack
is throwaway (moto keeps objects in memory). ``env`` prints the exports of a running stack.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

DEFAULT_DIR = ".team-stack"
STATE_FILE = "stack.json"
ENV_FILE = "env.sh"
DOWN_WAIT_S = 60


def _write_state(folder: Path, stack: object) -> None:
    env = stack.client_env()
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    env_file = folder / ENV_FILE
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)  # holds the S3 keys
    (folder / STATE_FILE).write_text(json.dumps({"pid": os.getpid(), "urls": stack.urls()}, indent=2))


def _print_banner(folder: Path, stack: object) -> None:
    print("team stack is up:")
    for name, url in stack.urls().items():
        print(f"  {name:<16} {url}")
    print(f"\nexport these (or: source {folder / ENV_FILE}):")
    for key, value in stack.client_env().items():
        print(f"  export {key}={shlex.quote(value)}")
    print(f"\nDVC remote:  dvc remote add -d team {stack.dvc_remote}")
    print("stop with Ctrl-C, or `python -m teamstack down` in another terminal", flush=True)


def up(folder: Path) -> int:
    """Start the stack, print how to use it, block until SIGINT/SIGTERM, stop it."""
    from teamstack.stack import TeamStack

    folder.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's S3 would log every request
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting PostgreSQL, S3 (moto), MLflow and Prefect under {folder} ...", flush=True)
    with TeamStack(folder) as stack:
        _write_state(folder, stack)
        _print_banner(folder, stack)
        while not stop.wait(1):
            pass
        print("stopping the team stack ...", flush=True)
    for name in (STATE_FILE, ENV_FILE):
        (folder / name).unlink(missing_ok=True)
    print("stopped")
    return 0


def down(folder: Path) -> int:
    """Signal the ``up`` process recorded in ``<dir>/stack.json`` and wait until it is gone."""
    state = folder / STATE_FILE
    if not state.is_file():
        print(f"no team stack is running from {folder} ({state} not found)", file=sys.stderr)
        return 1
    pid = json.loads(state.read_text())["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state.unlink()
        print(f"the team stack (pid {pid}) was not running; removed {state}")
        return 0
    deadline = time.monotonic() + DOWN_WAIT_S
    while state.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if state.exists():
        print(f"the team stack (pid {pid}) did not stop within {DOWN_WAIT_S} s", file=sys.stderr)
        return 1
    print("stopped")
    return 0


def show_env(folder: Path) -> int:
    """Print the exports of the running stack (``eval "$(python -m teamstack env)"``)."""
    env_file = folder / ENV_FILE
    if not env_file.is_file():
        print(f"no team stack is running from {folder}: start it with `python -m teamstack up`",
              file=sys.stderr)
        return 1
    print(env_file.read_text(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m teamstack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "env", "down"])
    parser.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR),
                        help=f"state and server logs (default: {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    return {"up": up, "env": show_env, "down": down}[args.command](args.dir.resolve())


if __name__ == "__main__":  # pragma: no cover - entry point
    sys.exit(main())
