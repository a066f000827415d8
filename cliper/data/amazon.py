"""Readers for the raw Amazon formats: 2014 meta/reviews/ratings files and MMRec ``.inter`` files.

Every reader returns a plain DataFrame with the column names used by :mod:`cliper.data.ingest`
(``user_raw``, ``asin``, optional ``rating``/``timestamp``/``x_label``) and raises
:class:`cliper.errors.DataError` naming the file, the line or field and what was expected when
the input does not fit: truncated gzip, an unparseable line, missing columns, non-integer ids,
empty files, text that is not UTF-8.

Formats (McAuley et al., Amazon product data 2014; MMRec):

* ``meta_<name>.json.gz``: one *loose* Python-literal dict per line (single quotes, parsed with
  :func:`ast.literal_eval`; strict JSON lines are accepted too). Fields used: ``asin``,
  ``title``, ``brand``, ``description``, ``categories`` (list of lists), ``price``.
* ``reviews_<name>_5.json.gz``: one JSON object per line with ``reviewerID``, ``asin``,
  ``overall`` (rating) and ``unixReviewTime``.
* ``ratings_<name>.csv``: no header; ``user,item,rating,timestamp``.
* MMRec ``<name>.inter``: tab-separated with header ``userID itemID`` and optional ``rating``,
  ``timestamp``, ``x_label``; id maps ``asin itemID`` / ``user_id userID`` (tab-separated).
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliper.data.split import TEST, TRAIN, VALID
from cliper.errors import DataError

logger = logging.getLogger(__name__)

META_TEXT_FIELDS: tuple[str, ...] = ("title", "brand", "description")
RATINGS_COLUMNS: tuple[str, ...] = ("user_raw", "asin", "rating", "timestamp")
INTER_REQUIRED: tuple[str, ...] = ("userID", "itemID")
INTER_OPTIONAL: tuple[str, ...] = ("rating", "timestamp", "x_label")
SNIPPET_CHARS = 80
X_LABELS: tuple[int, ...] = (TRAIN, VALID, TEST)
UNSAFE_FILE_NAME = r"[/\\]|^\.\."  # an item id with these would name a file outside the image folder


# --------------------------------------------------------------------------- line readers


def iter_gzip_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for the non-blank lines of a gzip (or plain) text file.

    Raises:
        DataError: missing file, truncated/corrupt gzip, or text that is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as fh:  # bytes per line, so a decoding error names its line
            for lineno, raw in enumerate(fh, start=1):  # noqa: B007 - lineno used in errors
                line = raw.decode("utf-8")
                if line.strip():
                    yield lineno, line
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: line {lineno}: text is not valid UTF-8 ({exc.reason} at byte {exc.start} of the line); "
            "expected UTF-8 encoded records"
        ) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: truncated or corrupt gzip after line {lineno} ({exc}); expected a complete "
            ".json.gz file (re-download or re-create it)"
        ) from exc


def parse_loose_record(text: str, path: str | Path, lineno: int) -> dict[str, Any]:
    """Parse one line that is a JSON object or a Python dict literal (Amazon-2014 meta).

    Raises:
        DataError: the line is neither, or it is not a dict.
    """
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            snippet = text.strip()[:SNIPPET_CHARS]
            raise DataError(
                f"{path}: line {lineno}: cannot parse record ({type(exc).__name__}); expected a JSON "
                f"object or Python dict literal per line, got {snippet!r}"
            ) from exc
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {lineno}: expected a dict per line, got {type(record).__name__}")
    return record


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records of a (loose) JSON-lines file; raises :class:`DataError` when there are none."""
    records = [parse_loose_record(text, path, lineno) for lineno, text in iter_gzip_lines(path)]
    if not records:
        raise DataError(f"{path}: file is empty; expected one record per line")
    return records


# --------------------------------------------------------------------------- 2014 catalog


def read_meta(path: str | Path) -> pd.DataFrame:
    """Read item metadata into ``asin, title, brand, description, categories, price``.

    ``categories`` becomes a JSON string of the list of lists (null when absent); ``price`` a
    float or null; text fields stay as in the source (HTML entities kept). A record without an
    ``asin`` raises; duplicated ASINs keep the first record.
    """
    records = read_records(path)
    frame = pd.DataFrame.from_records(records)
    if "asin" not in frame.columns:
        raise DataError(f"{path}: no 'asin' field in any record; expected Amazon-2014 item metadata")
    missing = frame["asin"].isna()
    if missing.any():
        line = int(np.flatnonzero(missing.to_numpy())[0]) + 1
        raise DataError(f"{path}: record {line}: missing field 'asin' (every item needs one)")
    out = pd.DataFrame({"asin": frame["asin"].astype(str)})
    _refuse_unsafe_ids(out["asin"], frame["asin"], path, "asin", 1)
    for name in META_TEXT_FIELDS:
        col = frame[name] if name in frame.columns else pd.Series(None, index=frame.index, dtype=object)
        out[name] = col.where(col.notna(), None).map(_as_text, na_action="ignore").astype("string")
    cats = frame["categories"] if "categories" in frame.columns else pd.Series(None, index=frame.index)
    out["categories"] = cats.map(json.dumps, na_action="ignore").astype("string")
    price = frame["price"] if "price" in frame.columns else pd.Series(np.nan, index=frame.index)
    out["price"] = pd.to_numeric(price, errors="coerce").astype("float64")
    dupes = out["asin"].duplicated()
    if dupes.any():
        logger.warning("%s: %d duplicated asin records dropped (first kept)", path, int(dupes.sum()))
        out = out[~dupes]
    return out.reset_index(drop=True)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def read_reviews(path: str | Path) -> pd.DataFrame:
    """Read a 5-core reviews file into ``user_raw, asin, rating, timestamp``."""
    frame = pd.DataFrame.from_records(read_records(path))
    fields = {"reviewerID": "user_raw", "asin": "asin", "overall": "rating", "unixReviewTime": "timestamp"}
    absent = [name for name in fields if name not in frame.columns]
    if absent:
        raise DataError(
            f"{path}: missing field(s) {absent}; expected reviews with {list(fields)} "
            f"(found {sorted(map(str, frame.columns))[:10]})"
        )
    out = frame[list(fields)].rename(columns=fields)
    return _typed_interactions(out, path, first_line=1)


def read_ratings_csv(path: str | Path) -> pd.DataFrame:
    """Read a header-less ``user,item,rating,timestamp`` CSV into the interaction columns."""
    path = Path(path)
    frame = read_table(path, sep=",", header=None, dtype=str)
    if frame.shape[1] != len(RATINGS_COLUMNS):
        raise DataError(
            f"{path}: has {frame.shape[1]} columns; expected {len(RATINGS_COLUMNS)} columns without a header "
            "(user,item,rating,timestamp)"
        )
    frame.columns = list(RATINGS_COLUMNS)
    _refuse_header(frame, path)
    return _typed_interactions(frame, path, first_line=1)


def _refuse_header(frame: pd.DataFrame, path: Path) -> None:
    """A first row whose rating and timestamp are both not numbers is a header line: say so."""
    first = frame.iloc[0]
    numeric = pd.to_numeric(first[["rating", "timestamp"]], errors="coerce")
    if numeric.isna().all() and first[["rating", "timestamp"]].notna().all():
        raise DataError(
            f"{path}: line 1 looks like a header ({','.join(map(str, first.tolist()))!r}); expected "
            "rows user,item,rating,timestamp without a header line: delete line 1"
        )


def _typed_interactions(frame: pd.DataFrame, path: str | Path, first_line: int) -> pd.DataFrame:
    """Cast ``user_raw``/``asin`` to str and ``rating``/``timestamp`` to numbers, naming bad rows."""
    out = pd.DataFrame(
        {
            "user_raw": frame["user_raw"].astype("string").str.strip(),
            "asin": frame["asin"].astype("string").str.strip(),
        }
    )
    for name in ("user_raw", "asin"):
        _refuse_unsafe_ids(out[name], frame[name], path, name, first_line)
    out["rating"] = _finite(frame["rating"], path, "rating", first_line).astype("float32")
    timestamp = _numeric(frame["timestamp"], path, "timestamp", first_line)
    out["timestamp"] = _as_int(timestamp, path, "timestamp", first_line)
    return out


# --------------------------------------------------------------------------- MMRec


def read_inter(path: str | Path) -> pd.DataFrame:
    """Read an MMRec ``.inter`` file (tab-separated, header ``userID itemID [rating timestamp x_label]``).

    Returns ``userID``, ``itemID`` (int64) and whichever optional columns are present.
    """
    path = Path(path)
    frame = read_table(path, sep="\t", header=0, dtype=str)
    frame.columns = [str(c).strip() for c in frame.columns]
    absent = [c for c in INTER_REQUIRED if c not in frame.columns]
    if absent:
        raise DataError(
            f"{path}: missing column(s) {absent}; expected a tab-separated header with "
            f"{list(INTER_REQUIRED)} (optional {list(INTER_OPTIONAL)}), found {list(frame.columns)}"
        )
    out = pd.DataFrame(index=frame.index)
    for col in INTER_REQUIRED:
        out[col] = _as_int(_numeric(frame[col], path, col, 2), path, col, 2, required=True)
        _refuse_rows(out[col] < 0, frame[col], path, col, 2, "a non-negative integer id")
    if "rating" in frame.columns:
        out["rating"] = _finite(frame["rating"], path, "rating", 2).astype("float32")
    if "timestamp" in frame.columns:
        out["timestamp"] = _as_int(_numeric(frame["timestamp"], path, "timestamp", 2), path, "timestamp", 2)
    if "x_label" in frame.columns:
        labels = _as_int(_numeric(frame["x_label"], path, "x_label", 2), path, "x_label", 2, required=True)
        expected = "0 (train), 1 (valid) or 2 (test)"
        _refuse_rows(~labels.isin(X_LABELS), frame["x_label"], path, "x_label", 2, expected)
        out["x_label"] = labels
    return out


def read_id_map(path: str | Path, id_column: str) -> pd.Series:
    """Read an MMRec id map (tab-separated ``<raw> <id_column>``) into a Series id -> raw key."""
    path = Path(path)
    frame = read_table(path, sep="\t", header=0, dtype=str)
    if id_column not in frame.columns or frame.shape[1] != 2:
        raise DataError(
            f"{path}: expected two tab-separated columns '<raw id>\\t{id_column}', "
            f"found {list(frame.columns)}"
        )
    raw_col = next(c for c in frame.columns if c != id_column)
    _refuse_unsafe_ids(frame[raw_col], frame[raw_col], path, "asin" if id_column == "itemID" else raw_col, 2)
    ids = _as_int(_numeric(frame[id_column], path, id_column, 2), path, id_column, 2, required=True)
    if ids.duplicated().any():
        line = int(np.flatnonzero(ids.duplicated().to_numpy())[0]) + 2
        raise DataError(f"{path}: line {line}: duplicated {id_column}; expected one row per id")
    return pd.Series(frame[raw_col].astype("string").to_numpy(), index=ids.to_numpy(), name=raw_col)


# --------------------------------------------------------------------------- helpers


def read_table(
    path: Path, sep: str, header: int | None, dtype: Any, expected: str = "at least one interaction"
) -> pd.DataFrame:
    """``pd.read_csv`` with the common failures (absent, empty, not UTF-8, ragged) as :class:`DataError`."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, sep=sep, header=header, dtype=dtype, encoding="utf-8", keep_default_na=True)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: file is empty; expected delimited rows") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: text is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse as {sep!r}-separated table: {exc}") from exc
    if frame.empty:
        raise DataError(f"{path}: no data rows; expected {expected}")
    return frame


def _numeric(col: pd.Series, path: str | Path, field: str, first_line: int) -> pd.Series:
    """Numbers from ``col``; a present but non-numeric value raises naming its line."""
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & col.notna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: line {pos + first_line}: field '{field}' is {col.iloc[pos]!r}; expected a number"
        )
    return values


def _plain(value: Any) -> Any:
    """numpy scalar -> Python scalar, so messages read ``1.5``, not ``np.float64(1.5)``."""
    return value.item() if isinstance(value, np.generic) else value


def _finite(col: pd.Series, path: str | Path, field: str, first_line: int) -> pd.Series:
    """Numbers from ``col`` where every value must be present and finite (ratings)."""
    values = _numeric(col, path, field, first_line)
    finite = np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
    _refuse_rows(~finite, col, path, field, first_line, "a finite number (missing or NaN is not allowed)")
    return values


def _refuse_unsafe_ids(ids: pd.Series, raw: pd.Series, path: str | Path, field: str, first_line: int) -> None:
    """Ids with a NUL byte are refused (they would end file names and C strings early).

    Item ids (``asin``) name image files (``images/<asin>.jpg``, fetched images), so they must
    also be plain file names: no ``/`` or ``\\`` and not starting with ``..``.
    """
    text = ids.astype("string")
    bad = text.str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
    _refuse_rows(bad, raw, path, field, first_line, "an id without NUL bytes")
    if field == "asin":
        unsafe = text.str.contains(UNSAFE_FILE_NAME, regex=True).fillna(False).to_numpy(dtype=bool)
        expected = "an item id usable as a file name (no '/', '\\', leading '..')"
        _refuse_rows(unsafe, raw, path, field, first_line, expected)


def _refuse_rows(
    bad: pd.Series | np.ndarray, col: pd.Series, path: str | Path, field: str, first_line: int, expected: str
) -> None:
    """Raise naming the first row flagged in ``bad`` (its line, the raw value) and what was expected."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {pos + first_line}: field '{field}' is {col.iloc[pos]!r} "
            f"({int(bad.sum())} such row(s)); expected {expected}"
        )


def _as_int(
    values: pd.Series, path: str | Path, field: str, first_line: int, required: bool = False
) -> pd.Series:
    """Cast to int64 (nullable when ``required`` is false); non-integer values raise naming the line."""
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    present = ~np.isnan(arr)
    fractional = present & (arr != np.floor(np.where(present, arr, 0)))
    missing = ~present if required else np.zeros_like(present)
    bad = fractional | missing
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        value = _plain(values.iloc[pos])
        raise DataError(f"{path}: line {pos + first_line}: field '{field}' is {value!r}; expected an integer")
    if required:
        return pd.Series(arr.astype("int64"), index=values.index)
    return pd.Series(
        pd.array(np.where(present, arr, 0).astype("int64"), dtype="Int64"), index=values.index
    ).where(present, pd.NA)
