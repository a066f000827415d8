"""Where MLflow runs go: the tracking URI, its credentials, and the experiment's artifact place.

First that is set wins: the ``MLFLOW_TRACKING_URI`` environment variable (never changed here),
``tracking.uri`` in ``params.yaml``, else ``sqlite:///<project>/mlflow.db``. With a local store
(SQLite or a file path) an experiment's artifacts go to ``<project>/mlartifacts/<experiment>``,
whatever the working directory. Credentials never reach a settings file or a log
(:mod:`cliper.uri_credentials`). :mod:`cliper.tracking` logs the runs into the store chosen here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from cliper.uri_credentials import refuse_password, split_credentials

logger = logging.getLogger(__name__)

ENV_URI = "MLFLOW_TRACKING_URI"
# MLflow's own variables for HTTP basic auth against a tracking server.
ENV_USER, ENV_PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
DB_FILE = "mlflow.db"
ARTIFACT_ROOT = "mlartifacts"
UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store
LOCAL_SCHEMES = ("sqlite", "file", "")  # stores on this machine
REMOTE_SCHEMES = ("http", "https")  # tracking servers


def resolve_uri(uri: str | None, root: Path) -> str:
    """Tracking URI: env ``MLFLOW_TRACKING_URI`` > ``uri`` (params) > SQLite DB in ``root``.

    Raises:
        CredentialInSettings: ``uri`` (from params.yaml, which is committed and logged) has a password.
    """
    refuse_password(uri, "params.yaml: tracking.uri",
                    f"export {ENV_URI}=<uri without password> {ENV_USER}=... {ENV_PASSWORD}=...")
    env = os.environ.get(ENV_URI)
    if env:
        return env
    if uri:
        return uri
    return f"sqlite:///{(Path(root).resolve() / DB_FILE).as_posix()}"


def configure(uri: str) -> str:
    """Point MLflow (fluent API and new clients) at ``uri``; returns it without credentials.

    A ``user:password@`` in the URI moves to ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` of this
    process (unless already set), so MLflow authenticates with it but never prints or records it.
    ``MLFLOW_TRACKING_URI`` is left as it was: ``mlflow.set_tracking_uri`` also exports it, and
    :func:`resolve_uri` would then hand this store to the next project logged in the same process
    (a notebook, a long-lived worker).
    """
    clean, user, password = split_credentials(uri)
    for key, value in ((ENV_USER, user), (ENV_PASSWORD, password)):
        if value is not None:
            os.environ.setdefault(key, value)
    before = os.environ.get(ENV_URI)
    mlflow.set_tracking_uri(clean)
    if before is None:
        os.environ.pop(ENV_URI, None)
    else:
        os.environ[ENV_URI] = before
    logger.debug("MLflow tracking URI: %s", clean)
    return clean


def is_remote(uri: str) -> bool:
    """True for a tracking server over HTTP(S)."""
    return uri.split(":", 1)[0].lower() in REMOTE_SCHEMES


def is_local(uri: str) -> bool:
    """True for stores on this machine (SQLite, file paths), whose artifacts we place in the project."""
    return uri.split(":", 1)[0].lower() in LOCAL_SCHEMES or "://" not in uri


def ensure_experiment(name: str, root: Path, uri: str) -> str:
    """Id of experiment ``name``, created with artifacts under ``<root>/mlartifacts`` when local."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (Path(root).resolve() / ARTIFACT_ROOT / name).as_uri() if is_local(uri) else None
    return client.create_experiment(name, artifact_location=location)


def ui_links(uri: str, experiment_id: str) -> tuple[str, str]:
    """``(URL of the experiment's runs, command that opens the UI)`` for a store at ``uri``."""
    if is_remote(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/", f"open {uri}"
    return f"{UI_URL}/#/experiments/{experiment_id}/runs/", f"mlflow ui --backend-store-uri {uri}"
