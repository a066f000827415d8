"""Typed config section ``fetch`` (stage ``fetch``), part of :class:`cliper.config.Params`.

Kept in its own module so ``cliper/config.py`` stays small; import it from ``cliper.config``.
Ranges use the ``field(metadata={"ge": ...})`` convention of :mod:`cliper.config_bounds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FetchConfig:
    """Item images downloaded from their URLs after ingest (stage ``fetch``; ``cliper/data/fetch.py``).

    Off by default: the demo ships its images and never reaches the network. Items that already
    have a local image from ingest are not fetched. ``urls`` is ``meta`` (the ``imUrl`` field of
    the ingest meta file) or a CSV table with an ``asin`` and a ``url_column`` column (e.g.
    CLIPER's ``baby_url.csv``), relative to the project root unless absolute.
    """

    enabled: bool = False
    urls: str = "meta"
    url_column: str = "imUrl"
    image_dir: str = "data/images"  # DVC out (persist: a rerun keeps and skips finished images)
    out_dir: str = "reports/fetch"  # report.csv + metrics.json
    concurrency: int = field(default=16, metadata={"ge": 1})
    timeout_s: float = field(default=15.0, metadata={"gt": 0})  # per request (connect, read)
    retries: int = field(default=3, metadata={"ge": 0})  # extra attempts: timeout, 5xx, 429, lost connection
    backoff_s: float = field(default=1.0, metadata={"ge": 0})  # wait before retry n: backoff_s * 2**(n-1)
    max_backoff_s: float = field(default=30.0, metadata={"ge": 0})
    max_redirects: int = field(default=5, metadata={"ge": 0})
    max_bytes: int = field(default=20_000_000, metadata={"ge": 1})  # larger bodies are rejected
    user_agent: str = "cliper-image-fetch/0.1 (research; CLIPER recommender pipeline)"
    # URLs containing one of these are not fetched (outcome no_url): Amazon's "no image" icon that
    # 6 of CLIPER's Baby URLs point to would otherwise be kept as the product's image.
    skip_url_patterns: list[str] = field(default_factory=lambda: ["/x-site/icons/no-img"])
    max_failed_share: float = field(default=0.2, metadata={"ge": 0, "le": 1})  # above: the stage fails
    progress: bool = True  # tqdm bar

