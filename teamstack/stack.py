"""The team stack on one machine: PostgreSQL, S3 (moto), an MLflow server and a Prefect server.

What a team runs on shared machines, started locally for trying it and for the end-to-end tests
(``tests/team/``):

- PostgreSQL (:mod:`teamstack.postgres`): databases ``mlflow`` and ``prefect``;
- S3 (:mod:`teamstack.s3`): bucket ``cliper-team`` with ``mlflow/`` (MLflow artifacts) and
  ``dvc/`` (the DVC remote);
- ``mlflow server``: PostgreSQL backend store, artifacts proxied to ``s3://cliper-team/mlflow``
  (clients need only ``MLFLOW_TRACKING_URI``; the S3 keys stay on the server);
- ``prefect server start`` on PostgreSQL (``PREFECT_API_DATABASE_CONNECTION_URL``, asyncpg).

:meth:`TeamStack.client_env` is what a user exports to work against it (``python -m teamstack up``
prints it). Database passwords never leave the servers' own environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from teamstack.postgres import PostgresCluster
from teamstack.s3 import S3Server
from teamstack.servers import VENV_BIN, ServerProcess, free_port, prefect_server, venv_env


@dataclass(frozen=True)
class StackSettings:
    """Names and sizes of the local stack (ports are free ones unless given)."""

    bucket: str = "cliper-team"
    mlflow_prefix: str = "mlflow"  # s3://<bucket>/<mlflow_prefix>: MLflow's artifact destination
    dvc_prefix: str = "dvc"  # s3://<bucket>/<dvc_prefix>: the DVC remote
    mlflow_db: str = "mlflow"
    prefect_db: str = "prefect"
    mlflow_workers: int = 2  # concurrent requests (e.g. two `cliper promote` at once)
    pg_port: int = 0
    s3_port: int = 0
    mlflow_port: int = 0
    prefect_port: int = 0


def mlflow_server(home: Path, port: int, backend_uri: str, artifacts: str, workers: int,
                  env: dict[str, str]) -> ServerProcess:
    """``mlflow server`` with a database backend and artifacts proxied to ``artifacts`` (an S3 URI)."""
    cmd = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", backend_uri,
           "--artifacts-destination", artifacts, "--serve-artifacts", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    home.mkdir(parents=True, exist_ok=True)
    return ServerProcess(cmd, home / "server.log", f"http://127.0.0.1:{port}", "/health",
                         env=venv_env(**env), cwd=home)


class TeamStack:
    """``with TeamStack(home) as stack: stack.client_env()``; every server stopped on exit."""

    def __init__(self, home: Path, settings: StackSettings | None = None,
                 access: dict[str, str] | None = None) -> None:
        self.home = Path(home)
        self.settings = s = settings or StackSettings()
        self.home.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresCluster(s.pg_port or free_port(), parent=self.home)
        self.s3 = S3Server(s.s3_port or free_port(), access)
        self.mlflow: ServerProcess | None = None
        self.prefect: ServerProcess | None = None

    def __enter__(self) -> TeamStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> TeamStack:
        """PostgreSQL and S3 first, then the MLflow and Prefect servers side by side."""
        s = self.settings
        self.postgres.init().start()
        for name in (s.mlflow_db, s.prefect_db):
            self.postgres.create_database(name)
        self.s3.start().create_bucket(s.bucket)
        self.mlflow = mlflow_server(
            self.home / "mlflow", s.mlflow_port or free_port(), self.postgres.url(s.mlflow_db),
            f"s3://{s.bucket}/{s.mlflow_prefix}", s.mlflow_workers, self.s3.env())
        self.prefect = prefect_server(
            self.home / "prefect", s.prefect_port or free_port(),
            PREFECT_API_DATABASE_CONNECTION_URL=self.postgres.url(s.prefect_db, "postgresql+asyncpg"))
        for server in (self.mlflow, self.prefect):
            server.launch()
        for server in (self.mlflow, self.prefect):
            server.wait_ready()
        return self

    def stop(self) -> None:
        """Stop every server this stack started (the servers first, their stores last)."""
        for server in (self.prefect, self.mlflow):
            if server is not None:
                server.stop()
        self.s3.stop()
        self.postgres.remove()

    @property
    def mlflow_uri(self) -> str:
        assert self.mlflow is not None, "start() the stack first"
        return self.mlflow.base_url

    @property
    def prefect_api(self) -> str:
        assert self.prefect is not None, "start() the stack first"
        return f"{self.prefect.base_url}/api"

    @property
    def dvc_remote(self) -> str:
        return f"s3://{self.settings.bucket}/{self.settings.dvc_prefix}"

    def client_env(self) -> dict[str, str]:
        """What the pipeline, ``cliper promote``, ``mlflow models serve``, Prefect and DVC need."""
        return {"MLFLOW_TRACKING_URI": self.mlflow_uri, "PREFECT_API_URL": self.prefect_api,
                **{k: v for k, v in self.s3.env().items() if k != "MLFLOW_S3_ENDPOINT_URL"}}

    def urls(self) -> dict[str, str]:
        """Human-facing addresses (the PostgreSQL URL without its password)."""
        prefect_ui = self.prefect.base_url if self.prefect else ""
        return {"MLflow UI + API": self.mlflow_uri, "Prefect UI": prefect_ui,
                "S3 endpoint": self.s3.endpoint, "DVC remote": self.dvc_remote,
                "PostgreSQL": f"postgresql://{self.postgres.user}@127.0.0.1:{self.postgres.port} "
                              f"(databases {self.settings.mlflow_db}, {self.settings.prefect_db})"}
