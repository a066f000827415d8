"""Sharded extraction on Dask (prefect-dask): same arrays as one process, resumable shards, a killed worker.

The extract stage with ``clip.extract.shards.n_shards`` hands its batches to the Prefect flow of
``flows/extract_shards.py``: a temporary 2-worker ``LocalCluster`` on 127.0.0.1 by default, or a
running cluster named by ``clip.extract.shards.address``. The final arrays must equal a
single-process extraction of the same inputs byte for byte, finished shards are never redone,
and a worker killed mid-shard is replaced while its shard is rescheduled and completed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from cliper.config import load_params
from cliper.stages import run_stage
from tests.conftest import write_item_catalog

N_ITEMS = 16
BATCH = 2  # many small batches: shards last long enough to be killed half-way
SLOW_WRITE_S = 0.15  # the kill test slows each batch write on the workers


def _params(tag: str, **overrides):
    base = {
        "clip.adapt.epochs": 0,
        "clip.extract.num_workers": 0,
        "clip.extract.batch_size": BATCH,
        "clip.device": "cpu",
        "clip.adapt.val_fraction": 0.2,
        "clip.extract.out_dir": f"data/features_{tag}",
        "clip.extract.cache_dir": f".cache/extract_{tag}",
    }
    return load_params("params.yaml", {**base, **overrides})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A preprocessed + adapted tiny project and its single-process features (tag ``single``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Dask workers (Nanny sets OMP_NUM_THREADS=1)
    root = tmp_path_factory.mktemp("shards")
    write_item_catalog(root, N_ITEMS, seed=1)
    params = _params("single")
    for stage in ("preprocess", "adapt", "extract"):
        run_stage(stage, params, root)
    yield root
    torch.set_num_threads(threads)


def _features(root, tag):
    folder = root / f"data/features_{tag}"
    meta = json.loads((folder / "meta.json").read_text())
    return np.load(folder / "text_views.npy"), np.load(folder / "image.npy"), meta


def _assert_same_as_single(root, tag):
    text, image, meta = _features(root, tag)
    ref_text, ref_image, ref_meta = _features(root, "single")
    assert np.array_equal(text, ref_text) and np.array_equal(image, ref_image)
    assert meta["content_hash"] == ref_meta["content_hash"]


def test_sharded_extraction_on_a_local_cluster_equals_one_process_and_never_redoes_shards(
    project, prefect_server
):
    params = _params("local", **{"clip.extract.shards.n_shards": 3, "clip.extract.shards.n_workers": 2})
    first = run_stage("extract", params, project)
    assert first.metrics["n_shards"] == 3
    assert first.metrics["batches_encoded"] == first.metrics["batches_total"] > 3 * 4
    _assert_same_as_single(project, "local")
    again = run_stage("extract", params, project)  # every shard finished: nothing is encoded again
    assert again.metrics["batches_encoded"] == 0
    _assert_same_as_single(project, "local")


def _slow_batch_writes(delay: float) -> None:  # runs inside each Dask worker
    import cliper.clip.extract as ex

    original = ex.write_npy

    def slow(path, array):
        time.sleep(delay)
        return original(path, array)

    ex.write_npy = slow


def _kill_a_busy_worker(client, cache, n_shards: int, killed: list[int]) -> None:
    """Once every shard has written a batch file, SIGKILL a worker process still running a shard."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
        done = [int(f.stem.split("_")[1]) for f in cache.glob("*/text_*.npy")] if cache.exists() else []
        busy = [w for w, tasks in client.processing().items() if tasks]
        if {k % n_shards for k in done} == set(range(n_shards)) and busy:  # batch k is in shard k % n
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)


def test_a_killed_worker_s_shard_is_redone_and_the_flow_completes_with_identical_features(
    project, prefect_server
):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_slow_batch_writes, SLOW_WRITE_S)
        params = _params(
            "killed",
            **{"clip.extract.shards.n_shards": 2, "clip.extract.shards.address": cluster.scheduler_address},
        )
        killed: list[int] = []
        killer = threading.Thread(
            target=_kill_a_busy_worker, args=(client, project / ".cache/extract_killed", 2, killed)
        )
        killer.start()
        result = run_stage("extract", params, project)
        killer.join()
    assert killed, "no worker was killed: the shards finished before the killer saw them"
    assert result.metrics["n_shards"] == 2
    # the killed shard's rerun encoded only what it had not finished before the kill
    assert result.metrics["batches_encoded"] < result.metrics["batches_total"]
    _assert_same_as_single(project, "killed")
