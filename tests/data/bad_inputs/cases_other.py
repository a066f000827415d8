"""Bad-input cases for images (incl. path safety), CLIP checkpoints and params values."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tests.data.bad_inputs import inputs as bad
from tests.data.bad_inputs.cases import Case


def _image(asin: str, data: Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda root: bad.set_image(root, asin, data())


def _ckpt(dest: str, make: Callable[[Path, str], None]) -> Callable[[Path], None]:
    return lambda root: make(root, dest)


def _copy_truncated(root: Path, dest: str) -> None:
    data = (root / bad.CHECKPOINT).read_bytes()
    (root / dest).write_bytes(data[: len(data) // 2])


IMAGE_CASES = [  # 1 bad image of 8 = 12.5% > validate.max_missing_image_share (5%): validate fails
    Case(
        "image-bomb-png-header",
        "validate",
        _image("B001", lambda: bad.png_header_only(*bad.BOMB_SIDE)),
        ("'status': 'too_large'", "B001.jpg", "too many pixels"),
    ),
    Case(
        "image-bomb-jpeg-header",
        "validate",
        _image("B002", lambda: bad.jpeg_with_declared_size(*bad.BOMB_SIDE)),
        ("'status': 'too_large'", "B002.jpg"),
    ),
    Case(
        "image-over-pixel-param",
        "validate",
        None,
        ("'status': 'too_large'", "over validate.max_image_pixels (1000)"),
        ("validate.max_image_pixels=1000", "validate.max_missing_image_share=0.5"),
    ),
    Case(
        "image-1x1",
        "validate",
        _image("B003", lambda: bad.solid_jpeg(1)),
        ("'status': 'too_small'", "1x1 pixels", "at least validate.min_image_size (32)"),
    ),
    Case(
        "image-truncated",
        "validate",
        lambda r: bad.truncate(r, f"{bad.RAW}/images/B004.jpg", 0.3),
        ("'status': 'corrupt'", "B004.jpg"),
    ),
    Case(
        "image-zero-bytes", "validate", _image("B005", lambda: b""), ("'status': 'corrupt'", "zero-byte file")
    ),
    Case(
        "image-garbage",
        "validate",
        _image("B006", lambda: b"\xff\xd8\xff\xe0" + b"\x13" * 200),
        ("'status': 'corrupt'", "cannot decode"),
    ),
    Case(
        "image-text-named-jpg",
        "validate",
        _image("B007", lambda: b"<html>404 Not Found</html>"),
        ("'status': 'corrupt'", "B007.jpg"),
    ),
    Case(
        "image-path-dotdot",
        "validate",
        partial(bad.set_image_path, item_id=1, value="../outside.jpg"),
        ("'status': 'unsafe_path'", "outside the configured folders", "not read"),
    ),
    Case(
        "image-path-absolute-elsewhere",
        "validate",
        partial(bad.set_image_path, item_id=2, value="/etc/hostname"),
        ("'status': 'unsafe_path'", "/etc/hostname"),
    ),
    Case(
        "image-path-nul-byte",
        "validate",
        partial(bad.set_image_path, item_id=3, value="raw/images/B003.jpg\x00.png"),
        ("'status': 'unsafe_path'", "contains a NUL byte"),
    ),
]
CHECKPOINT_CASES = [
    Case(
        "ckpt-truncated",
        "adapt",
        _ckpt("raw/trunc.bin", _copy_truncated),
        ("trunc.bin", "not a complete checkpoint (truncated or corrupt file)"),
        ("clip.pretrained=raw/trunc.bin",),
    ),
    Case(
        "ckpt-not-a-checkpoint",
        "adapt",
        lambda r: (r / "raw/notes.bin").write_text("hello"),
        ("notes.bin", "not a complete checkpoint"),
        ("clip.pretrained=raw/notes.bin",),
    ),
    Case(
        "ckpt-wrong-model",
        "adapt",
        _ckpt("raw/other.bin", bad.wrong_model_checkpoint),
        ("other.bin", "another architecture than clip.model 'cliper-tiny-resnet'"),
        ("clip.pretrained=raw/other.bin",),
    ),
    Case(
        "ckpt-longclip-wrong-context",
        "adapt",
        _ckpt("raw/longclip.bin", bad.longclip_checkpoint),
        ("longclip.bin", "has 248 positions", "77-token context", "Long-CLIP"),
        ("clip.pretrained=raw/longclip.bin",),
    ),
    Case("ckpt-absent", "adapt", None, ("no such checkpoint file",), ("clip.pretrained=raw/absent.bin",)),
    Case(
        "ckpt-adapted-truncated",
        "extract",
        partial(bad.truncate, rel=bad.CHECKPOINT),
        ("open_clip_pytorch_model.bin", "truncated or corrupt"),
    ),
]
FEATURES, MODEL = "data/features", "models/recommender"
FEATURE_MODEL_CASES = [  # the outputs of extract and train, damaged between stages
    Case(
        "features-meta-not-json",
        "train",
        lambda r: (r / FEATURES / "meta.json").write_text("{views"),
        ("data/features/meta.json: not valid JSON", "rerun the stage that writes it"),
    ),
    Case(
        "features-image-truncated",
        "train",
        partial(bad.truncate, rel=f"{FEATURES}/image.npy"),
        ("image.npy: not a readable .npy array",),
    ),
    Case(
        "features-nan",
        "train",
        partial(bad.edit_npy, rel=f"{FEATURES}/image.npy", change=bad.with_nan),
        ("image.npy", "non-finite"),
    ),
    Case(
        "features-too-few-items",
        "train",
        partial(bad.edit_npy, rel=f"{FEATURES}/image.npy", change=lambda a: a[:-1]),
        ("image.npy", "7 items", "8 items"),
    ),
    Case(
        "model-absent",
        "evaluate",
        lambda r: shutil.rmtree(r / MODEL),
        ("no trained model", "run the train stage first"),
    ),
    Case(
        "model-meta-not-json",
        "evaluate",
        lambda r: (r / MODEL / "train_meta.json").write_bytes(b"\xff\xfe"),
        ("train_meta.json: not valid JSON",),
    ),
    Case(
        "model-weights-truncated", "evaluate", partial(bad.truncate, rel=f"{MODEL}/model.pt"), ("model.pt",)
    ),
]
BAD_PARAMS = [  # (stage, -S, fragments)
    ("train", "train.batch_size=-5", "'train.batch_size' is -5; allowed range: >= 1"),
    ("train", "train.batch_size=0", "'train.batch_size' is 0"),
    ("train", "train.epochs=-3", "'train.epochs' is -3; allowed range: >= 1"),
    ("train", "train.learning_rate=-1", "'train.learning_rate' is -1.0; allowed range: > 0"),
    ("adapt", "clip.adapt.epochs=-1", "'clip.adapt.epochs' is -1; allowed range: >= 0"),
    ("adapt", "clip.adapt.batch_size=0", "'clip.adapt.batch_size' is 0; allowed range: >= 2"),
    ("extract", "clip.extract.batch_size=0", "'clip.extract.batch_size' is 0"),
    ("extract", "clip.extract.batch_size=-1", "'clip.extract.batch_size' is -1"),
    ("extract", "clip.extract.num_workers=-1", "'clip.extract.num_workers' is -1; allowed range: >= 0"),
    ("ingest", "ingest.k_core=-2", "'ingest.k_core' is -2; allowed range: >= 0"),
    (
        "validate",
        "validate.max_missing_image_share=2",
        "'validate.max_missing_image_share' is 2.0; allowed range: >= 0 and <= 1",
    ),
    ("evaluate", "evaluate.topk=[5, 0]", "'evaluate.topk[1]' is 0"),
    ("train", "evaluate.topk=[5, 50]", "top-k 50 exceeds the number of items (8)"),
    ("train", "train.views=[title", "the value of 'train.views' is not valid YAML"),
    ("train", "train.bakbone=bpr", "unknown key 'train.bakbone'"),
    ("train", "train.epochs=many", "'train.epochs' must be an integer, got 'many'"),
    ("train", "train.epochs", "--set expects KEY=VALUE"),
]
PARAM_CASES = [
    Case(f"param-{s.split('=')[0]}-{i}", stage, None, (msg,), (s,))
    for i, (stage, s, msg) in enumerate(BAD_PARAMS)
]
PARAM_CASES.append(
    Case(
        "params-file-not-yaml",
        "train",
        lambda r: (r / "params.yaml").write_text("train: [\n"),
        ("params.yaml: not valid YAML",),
    )
)
FETCH = ("fetch.enabled=true", "fetch.urls=raw/urls.csv")


def _urls(text: bytes) -> Callable[[Path], None]:
    return lambda root: (root / bad.RAW / "urls.csv").write_bytes(text)


URL_TABLE_CASES = [
    Case(
        "urls-table-absent",
        "fetch",
        None,
        ("urls.csv: URL table not found", "expected a CSV with asin,imUrl"),
        FETCH,
    ),
    Case(
        "urls-missing-column",
        "fetch",
        _urls(b"asin,link\nB000,http://x/a.jpg\n"),
        ("urls.csv: missing column(s) ['imUrl']", "found ['asin', 'link']"),
        FETCH,
    ),
    Case(
        "urls-no-url",
        "fetch",
        _urls(b"asin,imUrl\nB000,\nB001,  \n"),
        ("urls.csv: no item has a URL",),
        FETCH,
    ),
    Case("urls-empty-file", "fetch", _urls(b""), ("urls.csv", "empty"), FETCH),
    Case(
        "urls-not-utf8", "fetch", _urls(b"asin,imUrl\nB0\xe9,http://x/a.jpg\n"), ("urls.csv", "UTF-8"), FETCH
    ),
    Case(
        "urls-meta-without-field",
        "fetch",
        None,
        ("meta_Tiny.json.gz: no record has a 'imUrl' field",),
        ("fetch.enabled=true", "fetch.urls=meta"),
    ),
]
INGESTED_CASES = [  # ingested tables edited by hand or written by another tool: validate refuses them
    Case(
        "ingested-rating-nan",
        "validate",
        partial(bad.set_interaction, row=3, column="rating", value=float("nan")),
        ("interactions: expect_column_values_to_not_be_null", "'column': 'rating'", "1 unexpected rows"),
    ),
    Case(
        "ingested-x-label-7",
        "validate",
        partial(bad.set_interaction, row=5, column="x_label", value=7),
        ("'column': 'x_label'", "'value_set': [0, 1, 2]", "'x_label': 7"),
    ),
    Case(
        "ingested-item-id-out-of-range",
        "validate",
        partial(bad.set_interaction, row=0, column="item_id", value=99),
        ("'column': 'item_id'", "'max_value': "),
    ),
]
OTHER_CASES = (
    FEATURE_MODEL_CASES + INGESTED_CASES + URL_TABLE_CASES + IMAGE_CASES + CHECKPOINT_CASES + PARAM_CASES
)
