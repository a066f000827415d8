"""S3-compatible storage for the local team stack: moto's standalone server on 127.0.0.1.

:class:`S3Server` runs ``moto.server.ThreadedMotoServer`` in this process (as dvc-s3's own
tests do). Buckets and objects live in this process's memory: they survive :meth:`S3Server.stop`
followed by :meth:`S3Server.start` (an outage and its recovery), and are gone when the process
ends. Any access key is accepted; the stack still generates one so that credentials travel the
way they do against a real S3.
"""

from __future__ import annotations

import secrets
from typing import Any

REGION = "us-east-1"
KEY_BYTES = 12


def credentials() -> dict[str, str]:
    """A fresh access key pair (moto accepts any; real S3 needs the team's)."""
    return {"AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(KEY_BYTES).upper()[:16],
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}


class S3Server:
    """``with S3Server(port) as s3: s3.create_bucket("b")``; ``stop()``/``start()`` simulate an outage."""

    def __init__(self, port: int, access: dict[str, str] | None = None) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.access = access or credentials()
        self._server: Any = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> S3Server:
        """Listen on the port (again); earlier buckets and objects are still there."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the listening socket, so clients get 'connection refused'."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            server._server.server_close()  # moto's stop() leaves the socket open (connections would hang)

    @property
    def running(self) -> bool:
        return self._server is not None

    def env(self) -> dict[str, str]:
        """What S3 clients need: the keys, the region, the endpoint (boto3/botocore >= 1.31 and MLflow)."""
        return {**self.access, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.access["AWS_SECRET_ACCESS_KEY"])

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (all pages)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
