"""Image fetching against a real local HTTP server (tests/image_server.py) on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from cliper.config import FetchConfig
from cliper.data.fetch import CACHED, FAILED, OK, FetchJob, Rejected, backoff_delay, check_body, fetch_images
from tests.image_server import HTML_PAGE, ImageServer, jpeg_bytes

REPO = Path(__file__).resolve().parents[2]
FAST = FetchConfig(enabled=True, concurrency=4, timeout_s=0.5, retries=2, backoff_s=0.01, progress=False,
                   user_agent="cliper-test-agent/1.0")

CASES = {  # route -> (outcome, reason, requests the server must see)
    "img": (OK, "", 1),
    "png": (OK, "", 1),
    "missing": (FAILED, "http_404", 1),  # no retry on 404
    "flaky": (OK, "", 2),  # 500, then retried and served
    "throttled": (OK, "", 2),  # 429, then retried and served
    "slow": (FAILED, "timeout", 3),  # slower than the timeout: 1 + 2 retries
    "html": (FAILED, "html", 1),
    "html-as-jpeg": (FAILED, "html", 1),  # an error page labelled image/jpeg (CLIPER's bug)
    "truncated": (FAILED, "truncated", 1),
    "cut": (FAILED, "truncated", 1),
    "redirect": (OK, "", 1),
}


@pytest.fixture()
def server():
    with ImageServer(slow_s=1.5) as srv:
        yield srv


def _jobs(server: ImageServer, routes) -> list[FetchJob]:
    return [FetchJob(i, f"A{i:03d}", server.url(route, f"A{i:03d}.jpg")) for i, route in enumerate(routes)]


def test_every_server_case_gets_its_outcome_and_only_images_are_kept(server, tmp_path):
    jobs = _jobs(server, CASES)
    outcomes = fetch_images(jobs, FAST, tmp_path)
    assert [o.item_id for o in outcomes] == [j.item_id for j in jobs]
    for (route, (outcome, reason, requests)), job, got in zip(CASES.items(), jobs, outcomes, strict=True):
        assert (got.outcome, got.reason) == (outcome, reason), route
        assert server.count(route, f"{job.asin}.jpg") == requests, route
        files = list(tmp_path.glob(f"{job.asin}.*"))
        if outcome == OK:
            assert [Path(got.path)] == files and got.bytes == files[0].stat().st_size > 0
            with Image.open(files[0]) as img:
                img.load()
        else:
            assert files == [], f"{route}: a rejected body must not be written"
    assert Path(outcomes[1].path).suffix == ".png"  # extension from the decoded format
    assert outcomes[3].attempts == 2 and outcomes[5].attempts == 3
    assert not list(tmp_path.glob(".*")), "no temporary file may be left behind"
    assert server.user_agents == {"cliper-test-agent/1.0"}


def test_lost_connections_are_retried_and_oversized_bodies_rejected(server, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/img/x.jpg"
    (refused,) = fetch_images([FetchJob(0, "A000", closed)], FAST, tmp_path)
    assert (refused.outcome, refused.reason, refused.attempts) == (FAILED, "connection", FAST.retries + 1)
    small = dataclasses.replace(FAST, max_bytes=100)
    (big,) = fetch_images(_jobs(server, ["img"]), small, tmp_path)
    assert (big.outcome, big.reason) == (FAILED, "too_large") and not list(tmp_path.glob("A000.*"))


def test_rerun_requests_nothing_already_fetched(server, tmp_path):
    jobs = _jobs(server, ["img", "redirect", "missing"])
    fetch_images(jobs, FAST, tmp_path)
    before = dict(server.hits)
    again = fetch_images(jobs, FAST, tmp_path)
    assert [o.outcome for o in again] == [CACHED, CACHED, FAILED]
    changed = {p for p in server.hits if server.hits[p] != before.get(p)}
    assert changed == {"/missing/A002.jpg"}, "only the failed item may be requested again"


def test_a_broken_existing_file_is_fetched_again(server, tmp_path):
    (tmp_path / "A000.jpg").write_bytes(HTML_PAGE)
    (out,) = fetch_images(_jobs(server, ["img"]), FAST, tmp_path)
    assert out.outcome == OK and (tmp_path / "A000.jpg").read_bytes() == jpeg_bytes("A000.jpg")


def test_body_checks():
    good = jpeg_bytes("x")
    assert check_body(good, "image/jpeg", len(good)) == ".jpg"
    for body, ctype, length, reason in [
        (b"", "image/jpeg", None, "empty"),
        (b"  <html><body>oops</body></html>", "image/jpeg", None, "html"),
        (good, "text/html; charset=utf-8", None, "html"),
        (good[:-40], "image/jpeg", len(good), "truncated"),
        (good[:-2], "image/jpeg", None, "truncated"),  # cut without a Content-Length: Pillow notices
        (b"GIF89a not really", "image/gif", None, "undecodable"),
    ]:
        with pytest.raises(Rejected) as err:
            check_body(body, ctype, length)
        assert err.value.reason == reason, body[:20]


def test_a_decompression_bomb_is_rejected_not_raised(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 64x64 test JPEG is over 2x this
    with pytest.raises(Rejected) as err:
        check_body(jpeg_bytes("x"), "image/jpeg", None)
    assert err.value.reason == "too_many_pixels"


def test_backoff_grows_and_is_capped():
    cfg = dataclasses.replace(FAST, backoff_s=0.5, max_backoff_s=3.0)
    assert [backoff_delay(cfg, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_concurrency_bounds_parallel_requests(tmp_path):
    with ImageServer(latency_s=0.2) as srv:
        jobs = _jobs(srv, ["img"] * 8)
        start = time.monotonic()
        fetch_images(jobs, dataclasses.replace(FAST, concurrency=8), tmp_path / "a")
        parallel = time.monotonic() - start
        start = time.monotonic()
        fetch_images(jobs, dataclasses.replace(FAST, concurrency=1), tmp_path / "b")
        serial = time.monotonic() - start
    assert serial >= 8 * 0.2 and parallel < serial / 3


KILLED_RUN = """
import sys
from pathlib import Path
from cliper.config import FetchConfig
from cliper.data.fetch import FetchJob, fetch_images
urls = sys.argv[2:]
jobs = [FetchJob(i, f"A{i:03d}", u) for i, u in enumerate(urls)]
fetch_images(jobs, FetchConfig(enabled=True, concurrency=2, progress=False), Path(sys.argv[1]))
"""


def test_kill_9_mid_run_then_rerun_refetches_nothing_done(tmp_path):
    n = 30
    with ImageServer(latency_s=0.15) as srv:
        urls = [srv.url("img", f"A{i:03d}.jpg") for i in range(n)]
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path), *urls], cwd=REPO,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("A*.jpg"))) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done = sorted(p.name for p in tmp_path.glob("A*.jpg"))
        assert 6 <= len(done) < n, "the run must be killed mid-way"
        requested_before = dict(srv.hits)
        outcomes = fetch_images(_jobs_for(urls), FAST, tmp_path)
    assert {o.outcome for o in outcomes} <= {OK, CACHED}
    assert sorted(o.asin + ".jpg" for o in outcomes if o.outcome == CACHED) == done
    for name in done:
        assert srv.hits[f"/img/{name}"] == requested_before[f"/img/{name}"] == 1, name
    assert len(list(tmp_path.glob("A*.jpg"))) == n
    assert not list(tmp_path.glob(".*")), "temporaries of the killed run are cleaned up"


def _jobs_for(urls: list[str]) -> list[FetchJob]:
    return [FetchJob(i, f"A{i:03d}", u) for i, u in enumerate(urls)]
