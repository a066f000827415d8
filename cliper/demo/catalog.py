"""The embedded demo catalog: a deterministic synthetic shop in the Amazon-2014 raw formats.

``write_demo_catalog(cfg)`` writes into ``cfg.out_dir`` (replaced whole, atomically):

- ``meta_<name>.json.gz``: one item per line in the 2014 *loose* format, a Python dict
  literal written with ``repr()`` (read it with ``ast.literal_eval``, not ``json``). Keys:
  ``asin``, ``title``, ``description``, ``brand``, ``categories`` (list of lists of str; the
  first path is the item's real one), ``price``, ``imUrl``, ``salesRank``. As in the real dump
  some keys are absent or ``None`` (brand, description, title, price, imUrl), text carries
  HTML entities (``&amp;``, ``&reg;``, ``&quot;``) and non-ASCII letters, and about a fifth
  of the descriptions are long (100-200 words, over CLIP's 77 tokens).
- ``reviews_<name>_5.json.gz``: one JSON object per line: ``reviewerID``, ``asin``,
  ``reviewerName`` (sometimes absent), ``helpful``, ``reviewText``, ``overall`` (1.0-5.0),
  ``summary``, ``unixReviewTime`` (int, midnight UTC), ``reviewTime`` (``"MM D, YYYY"``).
- ``ratings_<name>.csv``: the same (user, item) pairs as ``user,item,rating,timestamp`` with
  no header, in the same order (by asin, then time).
- ``images/<asin>.jpg``: JPEGs (``image_size`` square) showing colour, shape and pattern. A
  few items (about 1.5%) have no file (half of them also have no ``imUrl``), and one or two
  files are corrupt (listed in ``truth.json``).
- ``truth.json``: the latent attributes of every item, the taste of every user, the
  missing/corrupt image lists and counts (see :func:`build_truth`).

Every user has at least 8 items and every item at least 5 users, so a 5-core filter keeps the
whole catalog. The latent model is described in :mod:`cliper.demo.latent`; the text
vocabulary in :mod:`cliper.demo.vocab`; images in :mod:`cliper.demo.images`.
The same config (seed included) gives byte-identical files.
"""

from __future__ import annotations

import gzip
import json
import logging
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cliper.config import ConfigError, DemoConfig
from cliper.demo import latent as lat
from cliper.demo.images import corrupt, render_image
from cliper.demo.vocab import (
    PRICE_BANDS,
    ROOT_CATEGORY,
    brand_in_meta,
    make_description,
    make_review,
    make_title,
)
from cliper.io import atomic_dir

log = logging.getLogger(__name__)

FIRST_DAY = datetime(2010, 1, 1, tzinfo=UTC).timestamp() // 86400
LAST_DAY = datetime(2014, 7, 23, tzinfo=UTC).timestamp() // 86400
IM_URL = "http://ecx.images-amazon.com/images/I/{asin}.jpg"
MIN_ITEMS, MIN_USERS = 20, 10


@dataclass(frozen=True)
class Catalog:
    """Everything the writer puts on disk, in memory."""

    meta: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    images: dict[str, bytes | None]  # asin -> JPEG bytes (corrupt ones included) or None = no file
    truth: dict[str, Any]


def sizes(cfg: DemoConfig) -> tuple[int, int]:
    """(n_items, n_users) after ``scale``; refuses catalogs too small for a 5-core."""
    n_items, n_users = round(cfg.n_items * cfg.scale), round(cfg.n_users * cfg.scale)
    if n_items < MIN_ITEMS or n_users < MIN_USERS or cfg.image_size < 8:
        raise ConfigError(
            f"demo: n_items*scale={n_items}, n_users*scale={n_users}, image_size={cfg.image_size}; "
            f"need at least {MIN_ITEMS} items, {MIN_USERS} users and 8 pixels"
        )
    return n_items, n_users


def _codes(rng: np.random.Generator, n: int, prefix: str, length: int) -> list[str]:
    """``n`` distinct random ids ``prefix`` + upper-case letters/digits (``length`` chars in all)."""
    alphabet = np.array(list(string.ascii_uppercase + string.digits))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        for row in rng.choice(alphabet, size=(n - len(out), length - len(prefix))):
            code = prefix + "".join(row)
            if code not in seen:
                seen.add(code)
                out.append(code)
    return out


def _meta_record(
    rng: np.random.Generator, asin: str, item: dict, rank: int, has_url: bool
) -> tuple[dict, dict]:
    """One meta dict (2014 key order, with realistic gaps) and facts about its text for truth."""
    r_brand, r_desc = rng.random(), rng.random()
    # brand: 6% key absent, 3% None, 1% empty string (all count as missing downstream)
    state = int(np.searchsorted([0.06, 0.09, 0.1], r_brand, side="right"))
    brand_state = ("absent", "none", "empty", "ok")[state]
    show_brand = rng.random() < (0.5 if brand_state != "ok" else 0.3)
    title, named = make_title(rng, item, show_brand)
    long = r_desc >= 0.06 and rng.random() < 0.2
    record: dict[str, Any] = {"asin": asin}
    if r_desc >= 0.06:
        record["description"] = make_description(rng, item, long)
    if rng.random() >= 0.01:
        record["title"] = title
    if has_url:
        record["imUrl"] = IM_URL.format(asin=asin)
    if rng.random() < 0.9:
        record["salesRank"] = {ROOT_CATEGORY: rank}
    paths = [[ROOT_CATEGORY, item["group"], item["category"]]]
    if rng.random() < 0.08:
        paths.append([ROOT_CATEGORY, "Gift Sets"])
    record["categories"] = paths
    low, high = PRICE_BANDS[item["price_band"]]
    if rng.random() >= 0.04:
        record["price"] = round(float(rng.uniform(low, high)), 2)
    if brand_state != "absent":
        record["brand"] = {"none": None, "empty": "", "ok": brand_in_meta(item["brand"])}[brand_state]
    facts = {"brand_field": brand_state, "title_names": named if "title" in record else [],
             "description": "absent" if "description" not in record else "long" if long else "short"}
    return record, facts


def _review_records(rng: np.random.Generator, latent: lat.Latent, asins: list[str], users: list[str],
                    items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for u, its in enumerate(latent.user_items):
        aff = lat.affinity(latent.tastes, latent.items, np.array([u]), cols=its)[0]
        ratings = np.clip(np.rint(2.9 + 0.8 * aff + rng.normal(0.0, 0.9, len(its))), 1, 5).astype(int)
        start = int(rng.integers(FIRST_DAY, LAST_DAY - 400))
        days = np.minimum(start + np.cumsum(rng.integers(0, 45, len(its))), LAST_DAY).astype(int)
        named = rng.random() < 0.85
        helpful = np.sort(rng.integers(0, 4, (len(its), 2)), axis=1).tolist()
        for k, (i, rating, day) in enumerate(zip(its, ratings.tolist(), days.tolist(), strict=True)):
            summary, text = make_review(rng, items[i], rating)
            stamp = datetime.fromtimestamp(day * 86400, tz=UTC)
            row: dict[str, Any] = {"reviewerID": users[u], "asin": asins[i]}
            if named:
                row["reviewerName"] = f"Parent {users[u][-4:].title()}"
            row |= {"helpful": helpful[k], "reviewText": text, "overall": float(rating), "summary": summary,
                    "unixReviewTime": day * 86400,
                    "reviewTime": f"{stamp.month:02d} {stamp.day}, {stamp.year}"}
            rows.append(row)
    rows.sort(key=lambda r: (r["asin"], r["unixReviewTime"], r["reviewerID"]))
    return rows


def build_catalog(cfg: DemoConfig) -> Catalog:
    """Draw the latent model, then the meta, reviews, images and truth (all in memory)."""
    n_items, n_users = sizes(cfg)
    rng = np.random.default_rng(cfg.seed)
    latent = lat.draw_latent(rng, n_items, n_users)
    asins = _codes(rng, n_items, "B00", 10)
    users = _codes(rng, n_users, "A", 14)
    items = [lat.item_attributes(latent, i) for i in range(n_items)]
    n_missing, n_corrupt = max(1, round(0.015 * n_items)), 2 if n_items >= 100 else 1
    broken = rng.permutation(n_items)[: n_missing + n_corrupt]
    missing, corrupted = broken[:n_missing], broken[n_missing:]
    no_url = set(missing[: n_missing // 2].tolist())
    ranks = np.argsort(np.argsort(-latent.pop_logit)) + 1
    meta, facts = [], []
    for i in range(n_items):
        record, fact = _meta_record(rng, asins[i], items[i], int(ranks[i]), i not in no_url)
        meta.append(record)
        facts.append(fact)
    images: dict[str, bytes | None] = {}
    for i in range(n_items):
        images[asins[i]] = render_image(items[i], cfg.image_size, rng)
    for i in missing:
        images[asins[i]] = None
    for k, i in enumerate(corrupted):
        images[asins[i]] = corrupt(images[asins[i]], severe=k == 0)
    reviews = _review_records(rng, latent, asins, users, items)
    truth = build_truth(cfg, latent, asins, users, items, facts,
                        [asins[i] for i in missing], [asins[i] for i in corrupted])
    return Catalog(meta, reviews, images, truth)


def build_truth(cfg: DemoConfig, latent: lat.Latent, asins: list[str], users: list[str], items: list[dict],
                facts: list[dict], missing: list[str], corrupted: list[str]) -> dict[str, Any]:
    """The ``truth.json`` content: model, vocabularies, per-item and per-user latents, counts."""
    degrees = np.array([len(its) for its in latent.user_items])
    item_deg = np.bincount(np.concatenate(latent.user_items), minlength=len(asins))
    bad = {a: "missing" for a in missing} | {a: "corrupt" for a in corrupted}
    item_rows = {}
    for i, asin in enumerate(asins):
        item_rows[asin] = {**items[i], **facts[i], "popularity_logit": round(float(latent.pop_logit[i]), 4),
                           "n_users": int(item_deg[i]), "image": bad.get(asin, "ok")}
    user_rows = {}
    for u, uid in enumerate(users):
        kind, taste = lat.user_taste(latent, u)
        user_rows[uid] = {"taste_type": kind, "taste": taste, "n_items": int(degrees[u])}
    counts = {
        "n_items": len(asins), "n_users": len(users), "n_interactions": int(degrees.sum()),
        "min_items_per_user": int(degrees.min()), "min_users_per_item": int(item_deg.min()),
        "filled_for_k_core": latent.filled, "missing_images": len(missing), "corrupt_images": len(corrupted),
        "missing_brand": sum(f["brand_field"] != "ok" for f in facts),
        "missing_description": sum(f["description"] == "absent" for f in facts),
        "long_descriptions": sum(f["description"] == "long" for f in facts),
        "taste_types": {k: int((latent.user_type == t).sum()) for t, k in enumerate(lat.TASTE_TYPES)},
    }
    model = {"beta": lat.BETA, "pop_alpha": lat.POP_ALPHA, "k_core": lat.K_CORE,
             "taste_types": {k: {"share": s, "attributes": list(a)} for k, (s, a) in lat.TASTE_TYPES.items()}}
    return {
        "name": cfg.name, "seed": cfg.seed, "scale": cfg.scale, "image_size": cfg.image_size,
        "model": model, "values": {k: list(v) for k, v in lat.VALUES.items()},
        "counts": counts, "missing_images": sorted(missing), "corrupt_images": sorted(corrupted),
        "items": dict(sorted(item_rows.items())), "users": dict(sorted(user_rows.items())),
    }


def _gzip_lines(path: Path, lines: list[str]) -> None:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=6, mtime=0))


def write_catalog(catalog: Catalog, out_dir: Path, name: str) -> dict[str, str]:
    """Write ``catalog`` into ``out_dir`` (a fresh folder); returns {role: file name}."""
    files = {"meta": f"meta_{name}.json.gz", "reviews": f"reviews_{name}_5.json.gz",
             "ratings": f"ratings_{name}.csv", "images": "images", "truth": "truth.json"}
    _gzip_lines(out_dir / files["meta"], [repr(r) for r in catalog.meta])
    _gzip_lines(out_dir / files["reviews"], [json.dumps(r, ensure_ascii=False) for r in catalog.reviews])
    csv = "".join(
        f"{r['reviewerID']},{r['asin']},{r['overall']:.1f},{r['unixReviewTime']}\n" for r in catalog.reviews
    )
    (out_dir / files["ratings"]).write_text(csv, encoding="utf-8")
    (out_dir / "images").mkdir()
    for asin, data in sorted(catalog.images.items()):
        if data is not None:
            (out_dir / "images" / f"{asin}.jpg").write_bytes(data)
    truth = json.dumps(catalog.truth, indent=1, sort_keys=True, ensure_ascii=False)
    (out_dir / files["truth"]).write_text(truth + "\n", encoding="utf-8")
    return files


def write_demo_catalog(cfg: DemoConfig) -> dict[str, Any]:
    """Generate the demo catalog for ``cfg`` and write it to ``cfg.out_dir`` (replaced whole).

    Returns:
        A JSON-able summary: output folder, file names and the counts of ``truth.json``.

    Raises:
        ConfigError: sizes too small for a 5-core catalog.
    """
    started = time.perf_counter()
    catalog = build_catalog(cfg)
    out_dir = Path(cfg.out_dir)
    with atomic_dir(out_dir) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the catalog is ordinary data
        files = write_catalog(catalog, tmp, cfg.name)
    counts = catalog.truth["counts"]
    log.info("demo catalog: %d items, %d users, %d interactions -> %s (%.1fs)", counts["n_items"],
             counts["n_users"], counts["n_interactions"], out_dir, time.perf_counter() - started)
    headline = {k: v for k, v in counts.items() if k != "taste_types"}
    return {"out_dir": str(out_dir), "files": files, **headline}
