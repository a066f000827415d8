"""The bad-input corpus: one :class:`Case` per damaged input, the stage that must refuse it and
what its message must say (``test_corpus.py`` runs them). Here: meta, reviews, ratings, .inter."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tests.data.bad_inputs import inputs as bad

MMREC = ("ingest.source=mmrec", "ingest.inter_file=bad.inter", "ingest.k_core=1", "ingest.meta_file=null")


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, which stage must refuse it, what the message must say."""

    id: str
    stage: str
    make: Callable[[Path], None] | None
    expect: tuple[str, ...]
    sets: tuple[str, ...] = ()
    prior: tuple[str, ...] = ()  # stages that must still succeed on the damaged input first


def _inter(rows: list[str], header: str | None = None) -> Callable[[Path], None]:
    return lambda root: bad.write_inter(root, rows, **({"header": header} if header else {}))


def _with_row(row_index: int, row: str) -> list[str]:
    rows = bad.good_inter_rows()
    rows[row_index] = row
    return rows


META_CASES = [
    Case(
        "meta-truncated-gzip",
        "ingest",
        partial(bad.truncate, rel=bad.META),
        (bad.META, "truncated or corrupt gzip"),
    ),
    Case(
        "meta-unparseable-line",
        "ingest",
        partial(bad.edit_meta_line, lineno=3, text="{'asin': 'B002', 'ti"),
        ("line 3", "expected a JSON object or Python dict literal"),
    ),
    Case(
        "meta-not-utf8",
        "ingest",
        lambda r: (r / bad.META).write_bytes(gzip.compress(b"{'asin': 'B0\xe9'}\n")),
        ("line 1", "not valid UTF-8"),
    ),
    Case(
        "meta-empty",
        "ingest",
        partial(bad.write_gz_lines, rel=bad.META, lines=[""]),
        ("meta_Tiny.json.gz", "empty"),
    ),
    Case(
        "meta-record-without-asin",
        "ingest",
        partial(bad.edit_meta_line, lineno=2, text="{'title': 'x'}"),
        ("record 2", "missing field 'asin'"),
    ),
    Case(
        "meta-line-not-a-dict",
        "ingest",
        partial(bad.edit_meta_line, lineno=2, text="['B001', 'x']"),
        ("line 2", "expected a dict per line, got list"),
    ),
    Case(
        "meta-asin-nul-byte",
        "ingest",
        partial(bad.edit_meta_line, lineno=2, text="{'asin': 'B0\\x0001'}"),
        ("line 2", "field 'asin'", "without NUL bytes"),
    ),
    Case(
        "meta-matches-no-item",
        "validate",
        bad.meta_matching_nothing,
        ("has_title", "unexpected rows"),
        prior=("ingest",),
    ),
    Case(
        "meta-all-titles-missing",
        "validate",
        bad.meta_without_titles,
        ("has_title", "'mostly': 0.1"),
        prior=("ingest",),
    ),
]
REVIEW_SETS = ("ingest.interactions=reviews",)
REVIEW_CASES = [
    Case(
        "reviews-missing-field",
        "ingest",
        partial(bad.reviews_from_ratings, drop="overall"),
        ("reviews_Tiny_5.json.gz", "'overall'"),
        REVIEW_SETS,
    ),
    Case(
        "reviews-rating-not-number",
        "ingest",
        partial(bad.reviews_from_ratings, overall="five"),
        ("line 2", "field 'rating' is 'five'", "expected a number"),
        REVIEW_SETS,
    ),
    Case(
        "reviews-rating-nan",
        "ingest",
        partial(bad.reviews_from_ratings, overall=float("nan")),
        ("line 2", "field 'rating'", "expected a finite number"),
        REVIEW_SETS,
    ),
    Case(
        "reviews-line-not-json",
        "ingest",
        lambda r: bad.write_gz_lines(r, bad.REVIEWS, ['{"reviewerID": ']),
        ("line 1", "cannot parse record"),
        REVIEW_SETS,
    ),
    Case("reviews-file-absent", "ingest", None, ("reviews_Tiny_5.json.gz", "file not found"), REVIEW_SETS),
]
RATING_CASES = [
    Case(
        "ratings-header-line",
        "ingest",
        bad.prepend_ratings_header,
        ("line 1 looks like a header", "delete line 1"),
    ),
    Case(
        "ratings-five-fields",
        "ingest",
        partial(bad.edit_ratings_line, lineno=3, text="U00,B002,4.0,1,extra"),
        ("ratings_Tiny.csv", "Expected 4 fields in line 3, saw 5"),
    ),
    Case(
        "ratings-rating-not-number",
        "ingest",
        partial(bad.edit_ratings_line, lineno=4, text="U00,B003,great,1"),
        ("line 4", "field 'rating' is 'great'", "expected a number"),
    ),
    Case(
        "ratings-rating-missing",
        "ingest",
        partial(bad.edit_ratings_line, lineno=5, text="U00,B004,,1"),
        ("line 5", "field 'rating'", "missing or NaN"),
    ),
    Case(
        "ratings-rating-nan",
        "ingest",
        partial(bad.edit_ratings_line, lineno=6, text="U00,B005,nan,1"),
        ("line 6", "field 'rating'", "finite number"),
    ),
    Case(
        "ratings-fractional-timestamp",
        "ingest",
        partial(bad.edit_ratings_line, lineno=2, text="U00,B001,4.0,1.5"),
        ("line 2", "field 'timestamp' is 1.5", "expected an integer"),
    ),
    Case(
        "ratings-not-utf8",
        "ingest",
        lambda r: (r / bad.RATINGS).write_bytes(b"U\xe9,B000,5.0,1\n"),
        ("ratings_Tiny.csv", "UTF-8"),
    ),
    Case(
        "ratings-empty",
        "ingest",
        lambda r: (r / bad.RATINGS).write_text(""),
        ("ratings_Tiny.csv", "file is empty"),
    ),
    Case(
        "ratings-nul-in-user",
        "ingest",
        partial(bad.edit_ratings_line, lineno=3, text="U\x0000,B002,4.0,1"),
        ("line 3", "field 'user_raw'", "without NUL bytes"),
    ),
    Case(
        "ratings-k-core-empties-all",
        "ingest",
        None,
        ("no interactions left after the 50-core", "lower ingest.k_core"),
        ("ingest.k_core=50",),
    ),
]
INTER_CASES = [
    Case(
        "inter-missing-column",
        "ingest",
        _inter(["0\t0"], header="user\titemID"),
        ("bad.inter", "missing column(s) ['userID']"),
        MMREC,
    ),
    Case(
        "inter-non-integer-id",
        "ingest",
        _inter(_with_row(1, "0\t1.5\t5.0\t1\t0")),
        ("line 3", "'itemID'", "expected an integer"),
        MMREC,
    ),
    Case(
        "inter-negative-user",
        "ingest",
        _inter(_with_row(0, "-1\t0\t5.0\t1\t0")),
        ("bad.inter: line 2", "field 'userID' is '-1'", "non-negative integer id"),
        MMREC,
    ),
    Case(
        "inter-negative-item",
        "ingest",
        _inter(_with_row(7, "1\t-3\t5.0\t1\t0")),
        ("bad.inter: line 9", "field 'itemID' is '-3'", "non-negative"),
        MMREC,
    ),
    Case(
        "inter-x-label-7",
        "ingest",
        _inter(_with_row(2, "0\t2\t5.0\t1\t7")),
        ("bad.inter: line 4", "field 'x_label' is '7'", "0 (train), 1 (valid) or 2 (test)"),
        MMREC,
    ),
    Case(
        "inter-x-label-missing",
        "ingest",
        _inter(_with_row(3, "0\t3\t5.0\t1\t")),
        ("line 5", "'x_label'", "expected an integer"),
        MMREC,
    ),
    Case(
        "inter-rating-nan",
        "ingest",
        _inter(_with_row(4, "0\t4\tNaN\t1\t0")),
        ("line 6", "field 'rating'", "finite number"),
        MMREC,
    ),
    Case(
        "inter-empty",
        "ingest",
        lambda r: (r / bad.RAW / "bad.inter").write_text(""),
        ("bad.inter", "file is empty"),
        MMREC,
    ),
    Case(
        "inter-id-not-in-map",
        "ingest",
        lambda r: (
            bad.write_inter(r, bad.good_inter_rows()),
            bad.write_id_map(r, "i.map", "asin\titemID", ["A\t0"]),
        ),
        ("itemID 1 is not in the id map", "i.map"),
        (*MMREC, "ingest.item_map=i.map"),
    ),
    Case(
        "inter-map-duplicated-id",
        "ingest",
        lambda r: (
            bad.write_inter(r, bad.good_inter_rows()),
            bad.write_id_map(r, "i.map", "asin\titemID", ["A\t0", "B\t0"]),
        ),
        ("i.map: line 3", "duplicated itemID"),
        (*MMREC, "ingest.item_map=i.map"),
    ),
    Case("inter-file-not-set", "ingest", None, ("ingest.inter_file is required",), ("ingest.source=mmrec",)),
]


def _rename_item(old: str, new: str) -> Callable[[Path], None]:
    """Rename item ``old`` to ``new`` in the ratings and the meta file (and keep its image reachable)."""

    def make(root: Path) -> None:
        ratings = root / bad.RATINGS
        ratings.write_text(ratings.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        bad.write_gz_lines(
            root, bad.META, [line.replace(old, new) for line in bad.read_gz_lines(root, bad.META)]
        )
        (root.parent / f"{old}.jpg").write_bytes(bad.solid_jpeg(40))  # what images/../../<old>.jpg would name

    return make


PATH_ID_CASES = [  # item ids name image files: a path-like id is refused where it is read
    Case(
        "ratings-asin-dotdot",
        "ingest",
        _rename_item("B003", "../../B003"),
        ("ratings_Tiny.csv: line 4", "field 'asin' is '../../B003'", "usable as a file name"),
    ),
    Case(
        "ratings-asin-absolute", "ingest", _rename_item("B003", "/tmp/B003"), ("field 'asin' is '/tmp/B003'",)
    ),
    Case(
        "ratings-asin-backslash",
        "ingest",
        _rename_item("B003", "..\\B003"),
        ("field 'asin'", "usable as a file name"),
    ),
    Case(
        "idmap-asin-dotdot",
        "ingest",
        lambda r: (
            bad.write_inter(r, bad.good_inter_rows()),
            bad.write_id_map(
                r, "i.map", "asin\titemID", [f"{'../x' if i == 2 else f'A{i}'}\t{i}" for i in range(6)]
            ),
        ),
        ("i.map: line 4", "field 'asin' is '../x'"),
        (*MMREC, "ingest.item_map=i.map"),
    ),
]
FILE_CASES = PATH_ID_CASES + META_CASES + REVIEW_CASES + RATING_CASES + INTER_CASES
