"""The served top-K pyfunc: same lists as numpy in process, fallbacks, and a real HTTP server."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from cliper import registry, tracking
from tests.servers import VENV_BIN, ServerProcess, free_port, venv_env

K = 5
HTTP_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path, make_synth, make_params) -> dict:
    """A synthetic project whose model is logged, registered (challenger) and promoted (champion)."""
    root = make_synth(tmp_path_factory.mktemp("serve") / "proj")
    shutil.copy(empty_mlflow_db, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = tracking.log_and_register(make_params("Demo"), root, {"recall@20": 0.3})
    registry.promote(result["model_name"])
    return {**result, "root": root}


def expected_top_k(root: Path, users: np.ndarray, k: int, exclude_seen: bool) -> list[list[str]]:
    """Top-K ASINs computed directly from the embeddings (the contract's score = user @ item.T)."""
    emb = np.load(root / "models/recommender/embeddings.npz")
    scores = emb["user"][users] @ emb["item"].T
    if exclude_seen:
        inter = pd.read_parquet(root / "data/ingested/interactions.parquet")
        train = inter[inter["x_label"] == 0]
        lookup = {u: row for row, u in enumerate(users)}
        rows = train["user_id"].map(lookup)
        keep = rows.notna().to_numpy()
        scores[rows[keep].astype(int).to_numpy(), train["item_id"].to_numpy()[keep]] = -np.inf
    asins = pd.read_parquet(root / "data/ingested/items.parquet").sort_values("item_id")["asin"].to_numpy()
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [list(asins[row]) for row in order]


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_loaded_pyfunc_matches_in_process_top_k(logged: dict, exclude_seen: bool) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{logged['model_name']}@{registry.CHALLENGER}")
    user_map = pd.read_csv(logged["root"] / "data/ingested/user_map.csv")
    request = pd.DataFrame({"user_id": user_map["user_id"], "k": K, "exclude_seen": exclude_seen})
    out = model.predict(request)
    assert list(out["source"].unique()) == ["model"] and (out["error"] == "").all()
    assert out["asins"].tolist() == expected_top_k(logged["root"], user_map["user_index"].to_numpy(), K,
                                                   exclude_seen)
    assert all(len(s) == K and s == sorted(s, reverse=True) for s in out["scores"])


def test_unknown_users_bad_k_and_no_internal_index(logged: dict) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{logged['model_name']}@{registry.CHAMPION}")
    request = pd.DataFrame({"user_id": ["A00003XYZ", "3", "ghost", "A00001XYZ"], "k": [3, 3, 4, 0]})
    out = model.predict(request)
    assert len(out.loc[0, "asins"]) == 3 and out.loc[0, "source"] == "model"
    assert out.loc[1, "source"] == "popularity", "'3' is a raw id like any other, never the internal index 3"
    inter = pd.read_parquet(logged["root"] / "data/ingested/interactions.parquet")
    counts = np.bincount(inter.loc[inter["x_label"] == 0, "item_id"], minlength=40)
    popular = [f"B{i:09d}" for i in np.argsort(-counts, kind="stable")[:4]]
    assert (out.loc[2, "source"], out.loc[2, "asins"]) == ("popularity", popular)
    assert out.loc[2, "scores"] == sorted(counts, reverse=True)[:4]
    assert out.loc[3, "source"] == "error" and "k must be" in out.loc[3, "error"]
    with pytest.raises(MlflowException, match="no usable row: row 0: k must be"):
        model.predict(pd.DataFrame({"user_id": ["A00003XYZ"], "k": [0]}))
    strict = model.predict(pd.DataFrame({"user_id": ["ghost"]}), params={"unknown_user": "error"})
    assert strict.loc[0, "source"] == "error" and "unknown user" in strict.loc[0, "error"]
    assert strict.loc[0, "asins"] == []


MALFORMED_ROWS = [  # (row, words the per-row error must contain)
    ({"user_id": None, "k": 3}, "user_id is missing"),
    ({"user_id": "", "k": 3}, "user_id is empty"),
    ({"user_id": "   ", "k": 3}, "user_id is empty"),
    ({"user_id": "A00002XYZ", "k": 2.5}, "whole number"),
    ({"user_id": "A00002XYZ", "k": -1}, "between 1 and"),
    ({"user_id": "A00002XYZ", "k": 10**6}, "between 1 and"),
    ({"user_id": "A00002XYZ", "k": "many"}, "whole number"),
    ({"user_id": "A00002XYZ", "k": "5"}, "whole number"),
    ({"user_id": "A00002XYZ", "exclude_seen": "yes"}, "exclude_seen must be"),
    ({"user_id": 17, "k": 2}, "must be a string"),
    ({"user_id": "x" * 100_000, "k": 2}, "longer than"),
]


def test_parse_request_flags_every_malformed_row() -> None:
    from cliper.serving import parse_request

    rows = [{"user_id": "A00002XYZ", "k": 3}, *(row for row, _ in MALFORMED_ROWS),
            {"user_id": "A00002XYZ", "k": True}, {"user_id": "A00002XYZ", "exclude_seen": 1},
            {"user_id": 17.5}]
    parsed = parse_request(pd.DataFrame(rows), default_k=20, max_k=1000)
    assert parsed.error[0] == "" and parsed.k[0] == 3
    for (_, words), message in zip(MALFORMED_ROWS, parsed.error[1:], strict=False):
        assert words in message, (words, message)
    assert "whole number" in parsed.error[-3], "a boolean is not a k"
    assert "exclude_seen must be" in parsed.error[-2] and "must be a string" in parsed.error[-1]
    assert list(parsed.user_id[1:3]) == ["", ""]


def _http(url: str, body: bytes | None = None) -> tuple[int, str]:
    """``(status, body text)`` of a GET (no body) or a JSON POST; HTTP errors are returned."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _reject_constant(name: str) -> None:
    raise AssertionError(f"the response is not valid JSON: it holds {name}")


@pytest.mark.slow
def test_served_champion_answers_invocations(logged: dict) -> None:
    port = free_port()
    cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m",
           f"models:/{logged['model_name']}@{registry.CHAMPION}", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    server = ServerProcess(cmd, logged["root"] / "serve.log", f"http://127.0.0.1:{port}", "/ping",
                           env=venv_env(MLFLOW_TRACKING_URI=logged["tracking_uri"]))
    with server:
        try:
            _check_invocations(server.base_url, logged["root"])
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server log ---\n{server.log_text()[-3000:]}") from exc


def _check_invocations(base: str, root: Path) -> None:
    good = {"dataframe_records": [{"user_id": "A00002XYZ", "k": 3}, {"user_id": "ghost", "k": 2}]}
    status, text = _http(f"{base}/invocations", json.dumps(good).encode())
    assert status == 200, text
    rows = json.loads(text)["predictions"]
    assert rows[0]["asins"] == expected_top_k(root, np.array([2]), 3, True)[0]
    assert rows[0]["source"] == "model" and rows[1]["source"] == "popularity"
    assert len(rows[1]["asins"]) == 2
    malformed = [b"{not json", json.dumps({"dataframe_records": [{"uid": "A00002XYZ"}]}).encode(),
                 json.dumps({"inputs": "not a table"}).encode()]
    for body in malformed:
        status, text = _http(f"{base}/invocations", body)
        assert 400 <= status < 500, (body, status, text)
        assert _http(f"{base}/ping")[0] == 200  # still up
    for row, words in MALFORMED_ROWS:  # one at a time: each gets a 400 or a per-row error
        body = json.dumps({"dataframe_records": [row, {"user_id": "A00002XYZ", "k": 2}]}).encode()
        status, text = _http(f"{base}/invocations", body)
        parsed = json.loads(text, parse_constant=_reject_constant)  # strict JSON: no NaN / Infinity
        if status == 200:
            first, second = parsed["predictions"]
            assert first["source"] == "error" and words in first["error"], (row, first)
            assert first["asins"] == [] and second["source"] == "model" and len(second["asins"]) == 2
        else:
            assert 400 <= status < 500, (row, status, text)
        alone = json.dumps({"dataframe_records": [row]}).encode()  # no usable row: the request is bad
        status, text = _http(f"{base}/invocations", alone)
        assert status == 400 and words in text, (row, status, text)
