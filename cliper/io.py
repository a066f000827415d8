"""File I/O shared by every stage: atomic writes, JSON/parquet/npy helpers, content hashes.

Every output is written to a temporary sibling and moved into place with ``os.replace``, so a
failed or killed run never leaves a partial file over a good one.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliper.errors import FileFormatError, OutputError

# A write that fails for want of space: ENOSPC (disk full), EDQUOT (quota), EFBIG (file-size limit).
DISK_FULL_ERRNOS: tuple[int, ...] = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or pyarrow's / torch's error wrapping one) means a full disk."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc)
    if isinstance(exc, OSError) and _SHORT_WRITE.search(text):  # numpy's tofile on a full disk
        return True
    return any(os.strerror(code) in text for code in DISK_FULL_ERRNOS)


@contextlib.contextmanager
def _disk_full_as_output_error(path: Path) -> Iterator[None]:
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not is_disk_full(exc):
            raise
        raise OutputError(
            f"{path}: cannot write the output ({exc}); free disk space (or raise the quota / file-size "
            "limit) and rerun the stage. The previous output, if any, is unchanged."
        ) from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(is_dir: bool = False) -> int:
    """The mode ``open()``/``mkdir()`` would give (0o666/0o777 less the umask).

    ``tempfile`` creates its files 0600 and folders 0700; outputs moved into place from there
    would otherwise be unreadable to the rest of the team and to the web servers that show them.
    """
    return (0o777 if is_dir else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched; temporary
    siblings a killed run left behind are removed first (as :func:`atomic_dir` does).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(default_mode())
    try:
        with _disk_full_as_output_error(path):
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole.

    Temporary siblings left by a run that was killed (``kill -9`` runs no clean-up) are removed
    first, so they never pile up beside the output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(default_mode(is_dir=True))
    try:
        with _disk_full_as_output_error(path):
            yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (numpy scalars are converted)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in the error when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: not valid JSON ({exc}); rerun the stage that writes it") from exc


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    """Write a DataFrame to parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write a numpy array atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return Path(path)


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write named numpy arrays to one ``.npz`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def write_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically; the bytes depend only on ``obj``, not on the (temporary) path.

    ``torch.save`` to a path names the zip's inner folder after the file, so a random temp name
    would change the bytes (and the DVC hash) of identical weights; a file object does not.
    """
    import torch

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_array(*arrays: np.ndarray, extra: Any = None) -> str:
    """Content hash of arrays (dtype, shape and bytes) plus an optional JSON-able ``extra``."""
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True, default=_json_default).encode())
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
