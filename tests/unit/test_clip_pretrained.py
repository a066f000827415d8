"""``clip.pretrained`` downloads: off by default; through huggingface_hub against a local Hub.

The local server answers the Hub's file URLs (``HEAD``/``GET <endpoint>/<repo>/resolve/<rev>/<file>``
with ``X-Repo-Commit`` and ``ETag``) and serves a checkpoint this test saved. ``HF_ENDPOINT`` is
read by huggingface_hub at import, so the loading runs in a subprocess with the endpoint set.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from cliper.clip.load import load_clip, save_checkpoint
from cliper.errors import CliperError

REPO = Path(__file__).resolve().parents[2]
MODEL = "cliper-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["The product title is a soft baby blanket.", "The product brand is Missing."]


class LocalHub:
    """Files per repo id, served as the Hub serves ``resolve`` URLs; records the requested paths."""

    def __init__(self, files: dict[str, dict[str, bytes]]):
        self.files, self.requests = files, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, with_body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                repo, sep, rest = self.path.lstrip("/").partition("/resolve/")
                body = hub.files.get(repo, {}).get(rest.partition("/")[2]) if sep else None
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server API
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"


LOAD = """
import json, sys
import numpy as np, open_clip, torch
from cliper.clip.load import load_clip
from cliper.errors import CliperError
open_clip.pretrained._PRETRAINED.setdefault("cliper-tiny", {})["hubtest"] = {"hf_hub": "test-org/tagged/"}
out = {}
for name, pretrained in json.loads(sys.argv[1]).items():
    try:
        m = load_clip("cliper-tiny", pretrained, "fp32", "cpu", allow_download=True)
    except CliperError as exc:
        out[name] = str(exc)
        continue
    with torch.no_grad():
        out[name] = m.model.encode_text(m.tokenizer(json.loads(sys.argv[2]))).numpy().tolist()
        out[name + ".image"] = m.model.encode_image(torch.ones(1, 3, 64, 64)).numpy().tolist()
    out[name + ".mean"] = [list(map(float, t.mean)) for t in m.preprocess.transforms if hasattr(t, "mean")]
print("RESULT" + json.dumps(out))
"""


def _embeddings(model) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        text = model.model.encode_text(model.tokenizer(TEXTS)).numpy()
        return text, model.model.encode_image(torch.ones(1, 3, 64, 64)).numpy()


def test_downloads_are_refused_without_the_opt_in_and_the_error_names_the_param():
    for pretrained in ("hf-hub:test-org/tiny-clip", "hf-hub:BeichenZhang/LongCLIP-L/longclip-L.pt"):
        with pytest.raises(CliperError, match="clip.allow_download: true"):
            load_clip(MODEL, pretrained, "fp32", "cpu")
    with pytest.raises(CliperError, match="clip.allow_download: true"):
        load_clip("ViT-B-32", "laion2b_s34b_b79k", "fp32", "cpu")


@pytest.mark.slow
def test_hub_downloads_give_the_saved_models_embeddings(tmp_path):
    saved = load_clip(MODEL, None, "fp32", "cpu", seed=7)
    ckpt = tmp_path / "tiny.bin"
    save_checkpoint(saved.model, ckpt)
    weights = ckpt.read_bytes()
    config = {"model_cfg": open_clip.get_model_config(MODEL),
              "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    wrong = {"model_cfg": {**open_clip.get_model_config(MODEL), "embed_dim": 64}}
    hub = LocalHub({
        "test-org/tiny-clip": {"open_clip_config.json": json.dumps(config).encode(),
                               "open_clip_pytorch_model.bin": weights},
        "test-org/one-file": {"ckpt/tiny.pt": weights},
        "test-org/tagged": {"open_clip_pytorch_model.bin": weights},
        "test-org/wrong-arch": {"open_clip_config.json": json.dumps(wrong).encode(),
                                "open_clip_pytorch_model.bin": weights},
    })
    forms = {"repo": "hf-hub:test-org/tiny-clip", "file": "hf-hub:test-org/one-file/ckpt/tiny.pt",
             "tag": "hubtest", "wrong": "hf-hub:test-org/wrong-arch",
             "absent": "hf-hub:test-org/nothing-here"}
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1"}
    proc = subprocess.run([sys.executable, "-c", LOAD, json.dumps(forms), json.dumps(TEXTS)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    hub.httpd.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    text, image = _embeddings(saved)
    for name in ("repo", "file", "tag"):
        np.testing.assert_allclose(np.array(out[name]), text, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.array(out[name + ".image"]), image, rtol=1e-5, atol=1e-6, err_msg=name)
    assert out["repo.mean"] == [[0.5] * 3], "the repo's preprocess_cfg sets the image normalisation"
    assert "another architecture" in out["wrong"] and "download from the Hub failed" in out["absent"]
    file_url = "/test-org/one-file/resolve/main/ckpt/tiny.pt"
    assert any(r.startswith("GET") and file_url in r for r in hub.requests)
    cached = list((tmp_path / "hf").rglob("tiny.pt"))
    assert cached, "the file lands in huggingface_hub's own cache"
