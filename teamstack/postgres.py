"""A throwaway PostgreSQL cluster: ``initdb`` in a temporary folder, one free port on 127.0.0.1.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<major>/bin``) or
``PATH``; ``initdb`` and ``postgres`` refuse to run as root, so as root they run as the
``postgres`` system user (``runuser``) and the data folder belongs to it. Nothing is installed
as a system service. The cluster is tuned for throwaway use (no fsync) and deleted on
:meth:`PostgresCluster.remove`.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

BIN_GLOB = "/usr/lib/postgresql/*/bin"
UNPRIVILEGED_USER = "postgres"  # Debian's package creates it; initdb refuses root
SUPERUSER = "cliper"
PASSWORD_BYTES = 18
COMMAND_TIMEOUT_S = 120
# Throwaway cluster: durability off, so initdb, migrations and tests run faster.
SERVER_OPTIONS = ("-c fsync=off -c full_page_writes=off -c synchronous_commit=off "
                  "-c listen_addresses=127.0.0.1")


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, initialised, started or stopped (the message says how to fix it)."""


def find_bin_dir() -> Path:
    """Folder holding ``initdb`` and ``pg_ctl``: ``PG_BIN`` env, Debian's newest major, else ``PATH``."""
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []
    candidates += sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name), reverse=True)
    on_path = shutil.which("initdb")
    candidates += [str(Path(on_path).parent)] if on_path else []
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresError("PostgreSQL's initdb/pg_ctl not found (looked in PG_BIN, /usr/lib/postgresql/*/bin, "
                        "PATH); install it: apt-get install postgresql (or set PG_BIN to its bin folder)")


class PostgresCluster:
    """``initdb`` + ``pg_ctl`` on a temporary data folder; databases created with ``createdb``."""

    def __init__(self, port: int, password: str | None = None, parent: Path | None = None) -> None:
        self.port = port
        self.user = SUPERUSER
        self.password = password or secrets.token_urlsafe(PASSWORD_BYTES)
        self.bin = find_bin_dir()
        self.run_as = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        # As root the folder must be reachable by the postgres user: a fresh one in the temp dir.
        self.base = Path(tempfile.mkdtemp(prefix="cliper-pg-", dir=None if self.run_as else parent))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"

    def _run(self, tool: str, *args: str, as_owner: bool = True) -> str:
        cmd = [str(self.bin / tool), *args]
        if as_owner and self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        env = {**os.environ, "PGPASSWORD": self.password, "LC_ALL": "C"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT_S)
        if done.returncode != 0:
            raise PostgresError(f"{tool} {' '.join(args[:2])} failed (exit {done.returncode}): "
                                f"{(done.stderr or done.stdout).strip()[-1500:]}")
        return done.stdout

    def init(self) -> PostgresCluster:
        """``initdb`` with a password-protected superuser (scram-sha-256 on TCP)."""
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.run_as:
            owner = pwd.getpwnam(self.run_as)
            for path in (self.base, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-sync")
        finally:
            pwfile.unlink(missing_ok=True)
        return self

    def start(self) -> PostgresCluster:
        """Start the server on ``127.0.0.1:<port>`` (socket file in the data folder) and wait for it."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o",
                  f"-p {self.port} -k {self.data} {SERVER_OPTIONS}", "start")
        return self

    def stop(self) -> None:
        """Fast shutdown (open connections are closed); nothing happens when it is not running."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        """True while the postmaster of this data folder is up."""
        if not (self.data / "postmaster.pid").exists():
            return False
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except PostgresError:
            return False
        return True

    def create_database(self, name: str) -> str:
        """``createdb name`` owned by the superuser; returns ``name``."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name, as_owner=False)
        return name

    def query(self, database: str, sql: str) -> list[str]:
        """Rows of ``sql`` (one line each, fields separated by ``|``) via ``psql``."""
        out = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database,
                        "-At", "-c", sql, as_owner=False)
        return [line for line in out.splitlines() if line]

    def url(self, database: str, driver: str = "postgresql") -> str:
        """SQLAlchemy URL with the password, e.g. ``postgresql+asyncpg://cliper:...@127.0.0.1:5433/prefect``."""
        return f"{driver}://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        """Stop the server and delete the data folder."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
