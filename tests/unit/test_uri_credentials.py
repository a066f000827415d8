"""Credentials in tracking URIs: refused in params.yaml, taken out of the URI MLflow sees, masked."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from cliper import tracking_store
from cliper.uri_credentials import CredentialInSettings, redact, refuse_password, split_credentials

SECRET = "s3cr%2Ft"  # percent-encoded "/" in the password


def test_split_credentials_moves_user_info_out() -> None:
    assert split_credentials(f"https://alice:{SECRET}@mlflow.example:8443/prefix") == (
        "https://mlflow.example:8443/prefix", "alice", "s3cr/t")
    assert split_credentials("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", None, None)
    assert split_credentials("sqlite:////tmp/mlflow.db") == ("sqlite:////tmp/mlflow.db", None, None)


def test_redact_masks_every_password_in_a_message() -> None:
    text = f"API request to http://alice:{SECRET}@h:1/api failed; postgresql://u:pw@db/x too"
    assert redact(text) == "API request to http://alice:***@h:1/api failed; postgresql://u:***@db/x too"


def test_params_uri_with_a_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CredentialInSettings, match=r"tracking.uri holds a password \(http://a:\*\*\*@h\)"):
        tracking_store.resolve_uri("http://a:pw@h", tmp_path)
    refuse_password("http://a@h", "x", "y")  # a user name alone is no secret


def test_configure_hands_the_password_to_mlflow_auth_not_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (tracking_store.ENV_USER, tracking_store.ENV_PASSWORD):
        monkeypatch.delenv(key, raising=False)
    before = mlflow.get_tracking_uri()
    try:
        assert tracking_store.configure(f"http://alice:{SECRET}@127.0.0.1:1") == "http://127.0.0.1:1"
        assert mlflow.get_tracking_uri() == "http://127.0.0.1:1"
        user, password = os.environ[tracking_store.ENV_USER], os.environ[tracking_store.ENV_PASSWORD]
        assert (user, password) == ("alice", "s3cr/t")
    finally:
        mlflow.set_tracking_uri(before)
