"""``checkpoint_every_s``: checkpoints spaced in time, the last one always written, resume exact."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cliper.grid import checkpoint_dir, read_progress
from cliper.train import Trainer
from tests.unit.test_train import FAST, _run

NEVER = 1e9  # seconds: only the end of training (or a stop_after return) writes a checkpoint


@pytest.mark.parametrize(("every", "saves"), [(0.0, 6), (NEVER, 1)])
def test_checkpoints_are_spaced_and_the_last_one_is_written(tmp_path, monkeypatch, every, saves):
    calls = []
    orig = Trainer.save_checkpoint
    monkeypatch.setattr(Trainer, "save_checkpoint", lambda self: (calls.append(self.state.epoch), orig(self)))
    state, _ = _run(replace(FAST, epochs=6, patience=100, checkpoint_every_s=every), tmp_path / "ck")
    assert state.finished and len(calls) == saves and calls[-1] == 6
    assert read_progress(tmp_path / "ck")["finished"]


class Killed(Exception):
    """Stands in for a kill between two spaced checkpoints."""


def test_a_kill_between_checkpoints_replays_the_lost_epochs_exactly(tmp_path, monkeypatch):
    settings = replace(FAST, epochs=8, patience=100, checkpoint_every_s=NEVER)
    full, t_full = _run(settings, tmp_path / "uncut")
    _run(settings, tmp_path / "ck", stop_after=2)  # a stop_after return writes its checkpoint
    assert read_progress(tmp_path / "ck")["epoch"] == 2

    orig = Trainer.fit

    def dies_at_epoch_5(self, stop_after=None, on_epoch_end=None):
        def hook(epoch):
            if epoch == 5:
                raise Killed
        return orig(self, stop_after, hook)

    monkeypatch.setattr(Trainer, "fit", dies_at_epoch_5)
    with pytest.raises(Killed):
        _run(settings, tmp_path / "ck")
    assert read_progress(tmp_path / "ck")["epoch"] == 2  # epochs 2-5 were never written
    monkeypatch.setattr(Trainer, "fit", orig)
    resumed, t_res = _run(settings, tmp_path / "ck")
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.best_valid == full.best_valid and resumed.best_epoch == full.best_epoch


def test_checkpoint_spacing_is_not_part_of_the_folder_hash(tmp_path):
    key, point = {"data": "d"}, {"x": 1}
    folders = {checkpoint_dir(tmp_path, key, point, replace(FAST, checkpoint_every_s=s)) for s in (0.0, 30.0)}
    assert len(folders) == 1
    assert checkpoint_dir(tmp_path, key, point, replace(FAST, seed=FAST.seed + 1)) not in folders
