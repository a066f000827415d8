"""Stage ``ingest``: raw catalog -> ``data/ingested/`` (interactions, items, id maps, stats).

Everything is computed in memory first; the outputs are then written into a temporary sibling
folder that replaces ``out_dir`` whole (``io.atomic_dir``), so a failing input, a full disk or a
kill never touches existing good outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cliper import io
from cliper.config import IngestConfig, Params
from cliper.data.ingest import Ingested, RawCatalog, ingest_catalog, read_amazon2014, read_mmrec
from cliper.errors import DataError
from cliper.stages import StageResult

logger = logging.getLogger(__name__)

OUTPUT_FILES: dict[str, str] = {
    "interactions": "interactions.parquet",
    "items": "items.parquet",
    "user_map": "user_map.csv",
    "item_map": "item_map.csv",
    "stats": "stats.json",
}


def _resolve(root: Path, path: str | None, base: Path | None = None) -> Path | None:
    """``path`` relative to ``base`` (default ``root``) unless absolute; None stays None."""
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else (base or root) / p


def read_raw(cfg: IngestConfig, root: Path) -> RawCatalog:
    """Read the raw catalog chosen by ``cfg.source``.

    ``raw_dir`` and ``out_dir`` are relative to ``root``; the input files (``inter_file``, the id
    maps, ``meta_file``, ``image_dir``) are relative to ``raw_dir`` unless absolute.
    """
    raw_dir = _resolve(root, cfg.raw_dir)
    meta_file = _resolve(root, cfg.meta_file, raw_dir)
    image_dir = _resolve(root, cfg.image_dir, raw_dir)
    if cfg.source == "amazon2014":
        return read_amazon2014(raw_dir, cfg.name, cfg.interactions, meta_file, image_dir)
    if cfg.inter_file is None:
        raise DataError("params.yaml: ingest.inter_file is required when ingest.source is 'mmrec'")
    return read_mmrec(
        _resolve(root, cfg.inter_file, raw_dir),
        _resolve(root, cfg.item_map, raw_dir),
        _resolve(root, cfg.user_map, raw_dir),
        meta_file,
        image_dir,
    )


def write_outputs(data: Ingested, out_dir: Path) -> dict[str, str]:
    """Write the five outputs as one unit: a temporary folder that replaces ``out_dir`` whole.

    A failure or a kill while writing (e.g. a full disk) leaves every previous output as it was
    and no temporary file inside ``out_dir``. Returns name -> path.
    """
    with io.atomic_dir(out_dir) as tmp:
        data.interactions.to_parquet(tmp / OUTPUT_FILES["interactions"], index=False)
        data.items.to_parquet(tmp / OUTPUT_FILES["items"], index=False)
        # user_map.csv: ``user_id`` is the raw id (what the served model takes), ``user_index`` the
        # internal row; calling the internal index ``user_id`` invited the two to be mixed up.
        user_map = data.user_map.rename(columns={"user_id": "user_index", "user_raw": "user_id"})
        user_map[["user_id", "user_index"]].to_csv(tmp / OUTPUT_FILES["user_map"], index=False)
        data.item_map.to_csv(tmp / OUTPUT_FILES["item_map"], index=False)
        io.write_json(tmp / OUTPUT_FILES["stats"], data.stats)
    return {name: str(out_dir / fname) for name, fname in OUTPUT_FILES.items()}


def run(params: Params, root: Path) -> StageResult:
    """Run the ingest stage in project ``root``."""
    cfg = params.ingest
    raw = read_raw(cfg, root)
    data = ingest_catalog(raw, cfg.k_core, cfg.split_seed, cfg.keep_existing_split, root)
    outputs = write_outputs(data, _resolve(root, cfg.out_dir))
    warnings = []
    n_no_image = int(data.items["image_path"].isna().sum())
    if n_no_image:
        warnings.append(f"{n_no_image} of {len(data.items)} items have no image file")
    logger.info("ingested %s", data.stats)
    return StageResult(stage="ingest", outputs=outputs, metrics=data.stats, warnings=warnings)
