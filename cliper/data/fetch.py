"""Item images over HTTP: concurrent, bounded, retried, checked, atomic and resumable.

:func:`fetch_images` downloads one image per :class:`FetchJob` into ``image_dir`` as
``<asin><ext>`` (extension from the decoded format, e.g. ``.jpg``) with a pool of
``concurrency`` worker threads sharing one ``httpx.Client`` (connection pool, User-Agent,
per-request timeout, redirects followed up to ``max_redirects``).

* **Retries** with exponential backoff (``backoff_s * 2**(n-1)``, capped at ``max_backoff_s``)
  on timeouts, lost connections, HTTP 5xx and 429; never on other 4xx (a 404 stays a 404).
* **Body checks** before anything is kept (CLIPER's own downloader saved HTTP error pages as
  ``.jpg``): an HTML body or ``text/html`` type, an empty or oversized body, a body shorter than
  its ``Content-Length``, or anything Pillow cannot fully decode (a cut JPEG is "truncated")
  is rejected with a reason and never written.
* **Atomic writes** (:func:`cliper.io.atomic_path`): a killed run leaves no partial image.
* **Resumable**: an item whose file already exists and decodes is reported ``cached`` and not
  requested again, so a rerun after a kill refetches nothing already done.
"""

from __future__ import annotations

import io as _io
import logging
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from cliper.config import FetchConfig
from cliper.io import atomic_path

log = logging.getLogger(__name__)

OK, CACHED, FAILED = "ok", "cached", "failed"
FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
MARKUP_START = b"<"  # <!doctype, <html, <?xml ...: no supported image format starts with it
SNIFF_BYTES = 512
TOO_MANY_REQUESTS = 429
SERVER_ERROR = 500
CLIENT_ERROR = 400
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STALE_TMP_GLOB = ".*.tmp"  # left by a run killed inside atomic_path


@dataclass(frozen=True)
class FetchJob:
    """One image to fetch."""

    item_id: int
    asin: str
    url: str


@dataclass(frozen=True)
class FetchOutcome:
    """What happened to one job (one row of the fetch report)."""

    item_id: int
    asin: str
    url: str
    outcome: str  # ok | cached | failed
    reason: str = ""  # http_404, http_503, timeout, connection, html, truncated, undecodable, ...
    http_status: int = 0
    bytes: int = 0
    attempts: int = 0
    seconds: float = 0.0
    path: str = ""  # the image file (absolute) when ok or cached


class Rejected(Exception):
    """A response body that must not be kept; ``reason`` is the report's reason code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Retryable(Exception):
    """A transient failure (timeout, lost connection, 5xx, 429): worth another attempt."""

    def __init__(self, reason: str, status: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def check_body(body: bytes, content_type: str | None, expected_length: int | None) -> str:
    """Return the file extension of a valid image body, else raise :class:`Rejected`."""
    if not body:
        raise Rejected("empty", "zero-byte body")
    head = body[:SNIFF_BYTES].lstrip().lower()
    if (content_type or "").split(";")[0].strip().lower() == "text/html" or head.startswith(MARKUP_START):
        raise Rejected("html", f"an HTML/XML page, not an image (content-type {content_type!r})")
    if expected_length is not None and len(body) < expected_length:
        raise Rejected("truncated", f"{len(body)} of {expected_length} bytes")
    try:
        with Image.open(_io.BytesIO(body)) as img:
            fmt = img.format or ""
            img.load()
    except Image.DecompressionBombError as exc:  # more pixels than Pillow's MAX_IMAGE_PIXELS allows
        raise Rejected("too_many_pixels", str(exc)) from exc
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "undecodable"
        raise Rejected(reason, str(exc)) from exc
    except (UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise Rejected("undecodable", str(exc)) from exc
    return FORMAT_EXT.get(fmt, f".{fmt.lower() or 'img'}")


def existing_image(image_dir: Path, asin: str) -> Path | None:
    """The already fetched, decodable image of ``asin`` in ``image_dir`` (None if absent or bad)."""
    for ext in dict.fromkeys(FORMAT_EXT.values()):
        path = image_dir / f"{asin}{ext}"
        if path.is_file():
            try:
                check_body(path.read_bytes(), None, None)
            except Rejected as exc:
                log.warning("%s: existing file is unusable (%s); fetching it again", path, exc.reason)
                path.unlink(missing_ok=True)
                continue
            return path
    return None


def backoff_delay(cfg: FetchConfig, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based)."""
    return min(cfg.backoff_s * 2 ** (attempt - 1), cfg.max_backoff_s)


def make_client(cfg: FetchConfig) -> httpx.Client:
    """One shared client: pool sized to the concurrency, User-Agent, timeout, redirects."""
    return httpx.Client(
        headers={"User-Agent": cfg.user_agent, "Accept": "image/*"},
        timeout=httpx.Timeout(cfg.timeout_s),
        follow_redirects=True,
        max_redirects=cfg.max_redirects,
        limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
    )


def _download(client: httpx.Client, url: str, max_bytes: int) -> tuple[int, bytes, str | None, int | None]:
    """GET ``url``: (status, body, content type, declared length); transient errors raise Retryable."""
    try:
        with client.stream("GET", url) as resp:
            status = resp.status_code
            if status >= SERVER_ERROR or status == TOO_MANY_REQUESTS:
                raise Retryable(f"http_{status}", status)
            if status >= CLIENT_ERROR:
                return status, b"", resp.headers.get("content-type"), None
            declared = resp.headers.get("content-length", "")
            encoded = "content-encoding" in resp.headers  # then Content-Length counts encoded bytes
            length = int(declared) if declared.isdigit() and not encoded else None
            if length is not None and length > max_bytes:
                raise Rejected("too_large", f"Content-Length {length} > fetch.max_bytes {max_bytes}")
            chunks, size = [], 0
            try:
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise Rejected("too_large", f"body over fetch.max_bytes {max_bytes}")
                    chunks.append(chunk)
            except httpx.RemoteProtocolError as exc:  # connection closed before Content-Length
                raise Rejected("truncated", f"connection closed mid-body ({exc})") from exc
            return status, b"".join(chunks), resp.headers.get("content-type"), length
    except httpx.TimeoutException as exc:
        raise Retryable("timeout") from exc
    except httpx.TooManyRedirects as exc:
        raise Rejected("too_many_redirects", str(exc)) from exc
    except httpx.TransportError as exc:
        raise Retryable("connection") from exc


def fetch_one(client: httpx.Client, job: FetchJob, cfg: FetchConfig, image_dir: Path) -> FetchOutcome:
    """Fetch, check and atomically write one image (or report it cached / failed)."""
    start = time.monotonic()

    def done(outcome: str, reason: str = "", status: int = 0, size: int = 0, attempts: int = 0,
             path: Path | None = None) -> FetchOutcome:
        return FetchOutcome(job.item_id, job.asin, job.url, outcome, reason, status, size, attempts,
                            round(time.monotonic() - start, 4), str(path) if path else "")

    if not SAFE_NAME.match(job.asin):
        return done(FAILED, "bad_asin")
    cached = existing_image(image_dir, job.asin)
    if cached is not None:
        return done(CACHED, size=cached.stat().st_size, path=cached)
    if not job.url.lower().startswith(("http://", "https://")):
        return done(FAILED, "bad_url")
    attempt, status = 0, 0
    while True:
        attempt += 1
        try:
            status, body, ctype, length = _download(client, job.url, cfg.max_bytes)
            if status >= CLIENT_ERROR:
                return done(FAILED, f"http_{status}", status, attempts=attempt)
            ext = check_body(body, ctype, length)
        except Rejected as exc:
            return done(FAILED, exc.reason, status, attempts=attempt)
        except Retryable as exc:
            if attempt > cfg.retries:
                return done(FAILED, exc.reason, exc.status, attempts=attempt)
            time.sleep(backoff_delay(cfg, attempt))
            continue
        target = image_dir / f"{job.asin}{ext}"
        with atomic_path(target) as tmp:
            tmp.write_bytes(body)
        return done(OK, "", status, len(body), attempt, target)


def remove_stale_temporaries(image_dir: Path) -> int:
    """Delete temporary files a killed run left in ``image_dir``; returns how many."""
    stale = list(image_dir.glob(STALE_TMP_GLOB))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def fetch_images(jobs: Iterable[FetchJob], cfg: FetchConfig, image_dir: Path) -> list[FetchOutcome]:
    """Fetch every job with ``cfg.concurrency`` threads; outcomes in job order.

    A progress bar (tqdm) shows done / failed counts when ``cfg.progress`` is true.
    """
    jobs = list(jobs)
    image_dir.mkdir(parents=True, exist_ok=True)
    if removed := remove_stale_temporaries(image_dir):
        log.info("removed %d temporary files of an interrupted fetch in %s", removed, image_dir)
    outcomes: list[FetchOutcome | None] = [None] * len(jobs)
    failed = 0
    with make_client(cfg) as client, ThreadPoolExecutor(max_workers=cfg.concurrency) as pool, tqdm(
        total=len(jobs), desc="fetch images", unit="img", disable=not cfg.progress
    ) as bar:
        futures = {pool.submit(fetch_one, client, job, cfg, image_dir): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            result = future.result()
            outcomes[futures[future]] = result
            failed += result.outcome == FAILED
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()
    return [o for o in outcomes if o is not None]
