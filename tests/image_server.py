"""A local image host for the fetch tests and benchmark: real HTTP on 127.0.0.1, in a thread.

Routes (the path part of the request; absolute-URI requests through it as an HTTP proxy work
too, so a catalog's real ``http://ecx.images-amazon.com/...`` URLs can be served offline):

* ``/img/<name>`` and ``/images/<...>``: a JPEG (colour from the name), ``/png/<name>``: a PNG
* ``/missing/<name>``: 404; ``/flaky/<name>`` (``/throttled/<name>``): 500 (429) on the first
  request, then the JPEG
* ``/slow/<name>``: the JPEG after ``slow_s`` seconds; ``/html/<name>``: an HTML page (200,
  ``text/html``); ``/html-as-jpeg/<name>``: the same page labelled ``image/jpeg``
* ``/truncated/<name>``: the first half of a JPEG (its length declared correctly);
  ``/cut/<name>``: declares the whole JPEG, sends half and closes the connection
* ``/redirect/<name>``: 302 to ``/img/<name>``

Every request is counted per path (:attr:`ImageServer.hits`), its User-Agent kept; ``latency_s`` delays every
response (the benchmark's added latency); paths in ``missing`` answer 404.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from PIL import Image

HTML_PAGE = b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>"
IMAGE_SIDE = 64


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops concurrent connects (1 s SYN retry): a fake slowdown
    daemon_threads = True


def jpeg_bytes(name: str, side: int = IMAGE_SIDE, fmt: str = "JPEG") -> bytes:
    """A small image whose colour is derived from ``name`` (deterministic)."""
    colour = tuple(hashlib.sha256(name.encode()).digest()[:3])
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, format=fmt)
    return buf.getvalue()


class ImageServer:
    """Start with ``with ImageServer() as server:``; ``server.url(route, name)`` builds URLs."""

    def __init__(self, latency_s: float = 0.0, slow_s: float = 2.0, missing: frozenset[str] = frozenset()):
        self.latency_s, self.slow_s, self.missing = latency_s, slow_s, missing
        self.hits: Counter[str] = Counter()
        self.user_agents: set[str] = set()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, route: str, name: str) -> str:
        return f"{self.base}/{route}/{name}"

    def count(self, route: str, name: str) -> int:
        with self._lock:
            return self.hits[f"/{route}/{name}"]

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers + body in two sends stall 40 ms (delayed ACK)

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):  # a client closed a kept-alive socket
                    pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = urlsplit(self.path).path
                with server._lock:
                    server.hits[path] += 1
                    server.user_agents.add(self.headers.get("User-Agent", ""))
                    hits = server.hits[path]
                if server.latency_s:
                    time.sleep(server.latency_s)
                route, _, name = path.strip("/").partition("/")
                if path in server.missing:
                    route = "missing"
                self._route(route, name, hits)

            def _route(self, route: str, name: str, hits: int) -> None:
                if route in ("img", "images"):
                    return self._send(200, jpeg_bytes(name), "image/jpeg")
                if route == "png":
                    return self._send(200, jpeg_bytes(name, fmt="PNG"), "image/png")
                if route in ("flaky", "throttled"):
                    status = 500 if route == "flaky" else 429
                    return self._send(status, b"busy", "text/plain") if hits == 1 else self._send(
                        200, jpeg_bytes(name), "image/jpeg")
                if route == "slow":
                    time.sleep(server.slow_s)
                    return self._send(200, jpeg_bytes(name), "image/jpeg")
                if route in ("html", "html-as-jpeg"):
                    return self._send(200, HTML_PAGE, "text/html" if route == "html" else "image/jpeg")
                if route == "truncated":
                    body = jpeg_bytes(name)
                    return self._send(200, body[: len(body) // 2], "image/jpeg")
                if route == "cut":
                    body = jpeg_bytes(name)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return None
                if route == "redirect":
                    self.send_response(302)
                    self.send_header("Location", f"/img/{name}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._send(404, b"not found", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        return Handler
