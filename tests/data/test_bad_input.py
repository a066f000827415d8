"""Bad raw inputs give a clear DataError (file + line/field + what was expected); bad images
give a warning or a failure by threshold; a failed run leaves good outputs untouched."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import pytest

from cliper.errors import DataError, ValidationFailed
from cliper.stages import ingest as ingest_stage
from cliper.stages import validate as validate_stage

META = "meta_Tiny.json.gz"
RATINGS = "ratings_Tiny.csv"


def _ingest_error(root: Path, params) -> str:
    with pytest.raises(DataError) as err:
        ingest_stage.run(params, root)
    return str(err.value)


def _mmrec(make_params, inter_file: str):
    params = make_params()
    return replace(params, ingest=replace(params.ingest, source="mmrec", inter_file=inter_file, k_core=1))


def test_truncated_gzip(tiny_root: Path, make_params):
    path = tiny_root / "raw" / META
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = _ingest_error(tiny_root, make_params())
    assert META in msg and "truncated or corrupt gzip" in msg


def test_unparseable_meta_line(tiny_root: Path, make_params):
    path = tiny_root / "raw" / META
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    lines[2] = "{'asin': 'B002', 'title': 'broken"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    msg = _ingest_error(tiny_root, make_params())
    assert META in msg and "line 3" in msg and "expected a JSON object or Python dict literal" in msg


def test_meta_not_utf8(tiny_root: Path, make_params):
    with gzip.open(tiny_root / "raw" / META, "wb") as fh:
        fh.write(b"{'asin': 'B000', 'title': 'ok'}\n")
        fh.write("{'asin': 'B001', 'title': 'caf\u00e9'}\n".encode("latin-1"))
    msg = _ingest_error(tiny_root, make_params())
    assert META in msg and "line 2" in msg and "UTF-8" in msg


def test_ratings_not_utf8(tiny_root: Path, make_params):
    (tiny_root / "raw" / RATINGS).write_bytes("U1,B000,5.0,1\nU\u00e9,B001,4.0,2\n".encode("latin-1"))
    msg = _ingest_error(tiny_root, make_params())
    assert RATINGS in msg and "UTF-8" in msg


def test_empty_files(tiny_root: Path, make_params):
    (tiny_root / "raw" / RATINGS).write_text("")
    msg = _ingest_error(tiny_root, make_params())
    assert RATINGS in msg and "empty" in msg
    (tiny_root / "raw" / "empty.inter").write_text("")
    assert "empty.inter" in _ingest_error(tiny_root, _mmrec(make_params, "empty.inter"))
    with gzip.open(tiny_root / "raw" / META, "wt") as fh:
        fh.write("\n")
    (tiny_root / "raw" / RATINGS).write_text("U1,B000,5.0,1\n")
    assert "empty" in _ingest_error(tiny_root, make_params())


def test_ratings_wrong_column_count_and_bad_number(tiny_root: Path, make_params):
    (tiny_root / "raw" / RATINGS).write_text("U1,B000,5.0\nU2,B001,4.0\n")
    msg = _ingest_error(tiny_root, make_params())
    assert RATINGS in msg and "expected 4 columns" in msg and "user,item,rating,timestamp" in msg
    (tiny_root / "raw" / RATINGS).write_text("U1,B000,5.0,1\nU2,B001,great,2\n")
    msg = _ingest_error(tiny_root, make_params())
    assert "line 2" in msg and "'rating'" in msg and "expected a number" in msg


def test_inter_missing_or_misnamed_columns(tiny_root: Path, make_params):
    (tiny_root / "raw" / "bad.inter").write_text("user\titemID\tx_label\n0\t0\t0\n")
    msg = _ingest_error(tiny_root, _mmrec(make_params, "bad.inter"))
    assert "bad.inter" in msg and "missing column(s) ['userID']" in msg and "found ['user'" in msg


@pytest.mark.parametrize("bad", ["1.5", "abc"])
def test_inter_non_integer_ids(tiny_root: Path, make_params, bad: str):
    (tiny_root / "raw" / "bad.inter").write_text(f"userID\titemID\n0\t0\n1\t{bad}\n")
    msg = _ingest_error(tiny_root, _mmrec(make_params, "bad.inter"))
    assert "bad.inter" in msg and "line 3" in msg and "'itemID'" in msg


def test_reviews_missing_field(tiny_root: Path, make_params):
    with gzip.open(tiny_root / "raw" / "reviews_Tiny_5.json.gz", "wt") as fh:
        fh.write('{"reviewerID": "U1", "asin": "B000", "unixReviewTime": 1}\n')
    params = make_params()
    params = replace(params, ingest=replace(params.ingest, interactions="reviews"))
    msg = _ingest_error(tiny_root, params)
    assert "reviews_Tiny_5.json.gz" in msg and "'overall'" in msg


def test_failed_run_leaves_good_outputs_untouched(tiny_root: Path, make_params):
    ingest_stage.run(make_params(), tiny_root)
    out = tiny_root / "data" / "ingested"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before) == 5
    path = tiny_root / "raw" / META
    path.write_bytes(path.read_bytes()[:-20])  # truncated gzip
    _ingest_error(tiny_root, make_params())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files left either


def _corrupt_images(root: Path, n: int) -> None:
    for i in range(n):
        path = root / "raw" / "images" / f"B{i:03d}.jpg"
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # truncated JPEG


def test_corrupt_jpeg_under_threshold_is_a_warning(tiny_root: Path, make_params):
    ingest_stage.run(make_params(), tiny_root)
    _corrupt_images(tiny_root, 1)
    result = validate_stage.run(make_params(max_missing_image_share=0.2), tiny_root)
    assert result.metrics["images_corrupt"] == 1
    assert len(result.warnings) == 1 and "corrupt: 1 (e.g. item_id [0])" in result.warnings[0]


def test_corrupt_jpeg_over_threshold_fails(tiny_root: Path, make_params):
    ingest_stage.run(make_params(), tiny_root)
    _corrupt_images(tiny_root, 2)
    (tiny_root / "raw" / "images" / "B005.jpg").unlink()
    with pytest.raises(ValidationFailed) as err:
        validate_stage.run(make_params(max_missing_image_share=0.2), tiny_root)
    msg = str(err.value)
    assert "images: expect_column_values_to_be_in_set" in msg and "'status': 'corrupt'" in msg
