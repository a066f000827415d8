"""Benchmark: the served champion under a bounded mix of good and bad requests.

Starts ``mlflow models serve`` on ``models:/<model>@champion`` on 127.0.0.1 and sends a fixed
number of requests from concurrent clients (keep-alive connections), interleaving ``/ping``
so HTTP's own cost is measured in the same run. The mix: valid top-20 requests, unknown
users, ``k`` at 0, at ``max_k`` and over it, a missing ``user_id``, wrong types, a body that is
not JSON and a 10 MB body. Reports throughput, p50/p99 latency per kind, the status-code table,
whether every bad request got a 4xx or a per-row error with a message, the server's RSS before
and after, and that ``/ping`` still answers.

    make demo && cliper promote --model cliper-demo-freedom     # a champion to serve
    python benchmarks/serve_load.py --requests 5000 --clients 8

Writes ``benchmarks/results/serve_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, free_port, venv_env  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BIG_BODY_BYTES = 10 * 1024 * 1024
P99_RATIO_GOAL = 3.0
ROUNDS = 5  # the run is sent in this many parts, with the server's RSS read after each
HTTP_TIMEOUT_S = 60
# kind -> share of the requests
MIX = {"ping": 0.30, "valid_k20": 0.30, "unknown_user": 0.08, "k_zero": 0.05, "k_max": 0.05,
       "k_over_max": 0.05, "missing_user_id": 0.05, "wrong_types": 0.05, "not_json": 0.05,
       "big_body": 0.02}


def request_body(kind: str, users: list[str], max_k: int, rng: random.Random) -> bytes | None:
    """The body of one request of ``kind`` (None for ``/ping``)."""
    user = rng.choice(users)
    records = {
        "valid_k20": [{"user_id": user, "k": 20}],
        "unknown_user": [{"user_id": f"nobody-{rng.randrange(10**9)}", "k": 20}],
        "k_zero": [{"user_id": user, "k": 0}],
        "k_max": [{"user_id": user, "k": max_k}],
        "k_over_max": [{"user_id": user, "k": max_k + 1}],
        "missing_user_id": [{"k": 5}],
        "wrong_types": [{"user_id": user, "k": "five", "exclude_seen": "yes"}],
    }
    if kind == "ping":
        return None
    if kind == "not_json":
        return b"{this is not json"
    if kind == "big_body":
        return b'{"dataframe_records": [{"user_id": "' + b"x" * BIG_BODY_BYTES + b'"}]}'
    return json.dumps({"dataframe_records": records[kind]}).encode()


def classify(kind: str, status: int, body: bytes) -> str:
    """``ok`` | ``reported`` (a 4xx or a per-row error with a message) | ``wrong`` (what must not happen)."""
    if status >= 500:
        return "wrong"
    if kind in ("ping", "valid_k20", "unknown_user", "k_max"):
        return "ok" if status == 200 else "wrong"
    if 400 <= status < 500:
        return "reported" if body else "wrong"
    try:
        rows = json.loads(body)["predictions"]
    except (ValueError, KeyError):
        return "wrong"
    reported = rows and all(r.get("source") == "error" and r.get("error") for r in rows)
    return "reported" if reported else "wrong"


class Client:
    """One keep-alive connection; reconnects when the server closes it (e.g. after a 413)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)

    def send(self, body: bytes | None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                if body is None:
                    self.conn.request("GET", "/ping")
                else:
                    self.conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
                if attempt:
                    return 599, b""  # the connection failed twice: counted as a server failure
        return 599, b""


def group_rss_mb(pid: int) -> float:
    """Resident memory of the server and its children (uvicorn workers), MB."""
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def run_load(port: int, kinds: list[str], users: list[str], max_k: int, clients: int,
             seed: int) -> list[tuple[str, int, float, str]]:
    """Send every request of ``kinds`` from ``clients`` threads; returns (kind, status, seconds, class)."""
    local = threading.local()
    rng = random.Random(seed)
    bodies = [(kind, request_body(kind, users, max_k, rng)) for kind in kinds]

    def one(item: tuple[str, bytes | None]) -> tuple[str, int, float, str]:
        kind, body = item
        client = getattr(local, "client", None) or Client(port)
        local.client = client
        start = time.perf_counter()
        status, answer = client.send(body)
        return kind, status, time.perf_counter() - start, classify(kind, status, answer)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, bodies))


def summarise(rows: list[tuple[str, int, float, str]], wall_s: float) -> dict:
    by_kind: dict[str, list[float]] = defaultdict(list)
    for kind, _, seconds, _ in rows:
        by_kind[kind].append(seconds)
    latency = {k: {"n": len(v), "p50_ms": float(np.percentile(v, 50) * 1e3),
                   "p99_ms": float(np.percentile(v, 99) * 1e3)} for k, v in sorted(by_kind.items())}
    statuses = Counter((kind, status) for kind, status, _, _ in rows)
    classes = Counter((kind, cls) for kind, _, _, cls in rows)
    return {
        "requests": len(rows), "wall_s": wall_s, "throughput_rps": len(rows) / wall_s,
        "latency": latency,
        "status_codes": {f"{k} {s}": n for (k, s), n in sorted(statuses.items())},
        "classes": {f"{k} {c}": n for (k, c), n in sorted(classes.items())},
        "n_5xx": sum(n for (_, s), n in statuses.items() if s >= 500),
        "n_wrong": sum(n for (_, c), n in classes.items() if c == "wrong"),
        "p99_ratio_valid_to_ping": latency["valid_k20"]["p99_ms"] / latency["ping"]["p99_ms"],
    }


def markdown(result: dict) -> str:
    lines = [f"# Served model under load ({result['model_uri']})", "",
             f"{result['requests']} requests from {result['clients']} clients in {result['wall_s']:.1f} s: "
             f"**{result['throughput_rps']:.0f} requests/s**; 5xx: **{result['n_5xx']}**; requests answered "
             f"wrongly (5xx, or a bad request without a 4xx / per-row error): **{result['n_wrong']}**.", "",
             f"p99 of valid k=20 / p99 of /ping: **{result['p99_ratio_valid_to_ping']:.2f}** "
             f"(goal ≤ {P99_RATIO_GOAL:g}). Server RSS {result['rss_mb_before']:.0f} MB before, "
             f"{result['rss_mb_after']:.0f} MB after; `/ping` after the run: {result['ping_after']}.", "",
             "Server RSS after each fifth of the run (MB): "
             + ", ".join(f"{m:.0f}" for m in result["rss_mb_rounds"]) + ".",
             "", f"Machine: {result['machine']}.", "", "| kind | n | p50 ms | p99 ms |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['n']} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} |"
              for k, v in result["latency"].items()]
    lines += ["", "| kind and status | count |", "| --- | --- |"]
    lines += [f"| {k} | {n} |" for k, n in result["status_codes"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="holds mlflow.db and data/ingested")
    parser.add_argument("--model", default="cliper-demo-freedom")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-k", type=int, default=1000, help="tracking.max_k of the served model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{args.project.resolve()}/mlflow.db"
    user_map = args.project / "data/ingested/user_map.csv"
    users = pd.read_csv(user_map, dtype={"user_id": str})["user_id"].tolist()
    rng = random.Random(args.seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=args.requests)
    port = free_port()
    model_uri = f"models:/{args.model}@champion"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
           "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = Path(tempfile.mkdtemp(prefix="cliper-serve-load-")) / "server.log"
    print(f"server log: {log}")
    with ServerProcess(cmd, log, f"http://127.0.0.1:{port}", "/ping",
                       env=venv_env(MLFLOW_TRACKING_URI=uri)) as server:
        run_load(port, ["valid_k20", "ping"] * 20, users, args.max_k, 2, args.seed)  # warm-up
        rss_before = group_rss_mb(server.proc.pid)
        rows, rounds, wall = [], [], 0.0
        for part in np.array_split(np.array(kinds), ROUNDS):  # RSS after each: does memory keep growing?
            start = time.perf_counter()
            rows += run_load(port, part.tolist(), users, args.max_k, args.clients, args.seed + len(rounds))
            wall += time.perf_counter() - start
            rounds.append(group_rss_mb(server.proc.pid))
        rss_after = rounds[-1]
        ping_after = Client(port).send(None)[0]
    result = {"model_uri": model_uri, "clients": args.clients, **summarise(rows, wall),
              "rss_mb_before": rss_before, "rss_mb_after": rss_after, "rss_mb_rounds": rounds,
              "ping_after": ping_after,
              "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "serve_load.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
