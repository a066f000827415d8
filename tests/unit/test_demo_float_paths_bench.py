"""``benchmarks/demo_float_paths.py``: a run's figures read from the pipeline outputs, and the report."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import demo_float_paths as dfp  # noqa: E402

CLONE_TORCH = dfp.clone_torch  # the real one (the fixture below stands in for it)


@pytest.fixture(autouse=True)
def lock_torch_in_clones(monkeypatch) -> None:
    """The test clones have no venv: each holds the lock's torch unless a test says otherwise."""
    monkeypatch.setattr(dfp, "clone_torch", lambda clone: dfp.locked_torch())


def _outputs(root: Path, test: float, chosen: float, grid: list[tuple[float, float, float]],
             adapt_epochs: int = 18, model_md5: str = "m1", seeds: dict[str, float] | None = None) -> Path:
    """The files a run leaves: evaluate's and train's metrics (``seeds``: its over_seeds block) and
    train's meta with its grid; the clone's params.yaml with ``adapt_epochs``, and its dvc.lock with
    the trained model's hash ``model_md5``."""
    (root / "reports/evaluate").mkdir(parents=True)
    (root / "reports/train").mkdir(parents=True)
    block = {} if seeds is None else {"over_seeds": {
        "metric": "recall@20", "test": seeds, "mean": sum(seeds.values()) / len(seeds),
        "sd": statistics.stdev(seeds.values())}}
    (root / "reports/train/metrics.json").write_text(json.dumps({"best_epoch": 1, **block}))
    lock = {"schema": "2.0", "stages": {
        "train": {"cmd": "cliper run train", "deps": [{"path": "cliper/train.py", "md5": "code"}],
                  "outs": [{"path": "models/recommender", "md5": model_md5}]},
        "evaluate": {"cmd": "cliper run evaluate", "outs": [{"path": "reports/evaluate/metrics.json",
                                                             "md5": f"{test}"}]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    params = (REPO / "params.yaml").read_text()
    epochs_line = re.search(r"\n    epochs: \d+", params)
    assert epochs_line is not None and params.index("adapt:") < epochs_line.start()  # clip.adapt.epochs
    (root / "params.yaml").write_text(params.replace(epochs_line.group(), f"\n    epochs: {adapt_epochs}", 1))
    (root / "models/recommender").mkdir(parents=True)
    (root / "reports/evaluate/metrics.json").write_text(json.dumps({"test": {"recall@20": test}}))
    rows = [{"point": {"knn_k": 10, dfp.GRID_KEY: w}, "valid": {"recall@20": v}, "test": {"recall@20": t}}
            for w, v, t in grid]
    meta = {"point": {"knn_k": 10, dfp.GRID_KEY: chosen}, "grid": rows}
    (root / "models/recommender/train_meta.json").write_text(json.dumps(meta))
    return root


def test_a_recorded_run_holds_the_test_figure_valid_s_choice_and_the_grid(tmp_path: Path) -> None:
    clone = _outputs(tmp_path / "c", 0.12, 0.5, [(0.3, 0.10, 0.11), (0.5, 0.11, 0.12)])
    rec = dfp.record(clone, "AVX caps, 1 thread", tmp_path / "out", commit="abc1234")
    assert (rec["test"], rec["chosen"], rec["commit"], rec["threads"]) == (0.12, 0.5, "abc1234", 1)
    assert rec["adapt_epochs"] == 18
    assert rec["caps"]["ONEDNN_MAX_CPU_ISA"] == "AVX"
    assert rec["grid"] == [{"point": 0.3, "valid": 0.10, "test": 0.11},
                           {"point": 0.5, "valid": 0.11, "test": 0.12}]
    dfp.record(_outputs(tmp_path / "d", 0.10, 0.3, [], adapt_epochs=9), dfp.REFERENCE, tmp_path / "out",
               commit="def5678")
    runs = json.loads((tmp_path / "out/demo_float_paths.json").read_text())["runs"]
    assert set(runs) == {"AVX caps, 1 thread", dfp.REFERENCE}  # merged by path name
    assert runs[dfp.REFERENCE]["adapt_epochs"] == 9
    table = dfp.markdown(runs)
    assert f"Adapt epochs (`clip.adapt.epochs`): AVX caps, 1 thread: 18, {dfp.REFERENCE}: 9." in table
    runs["AVX caps, 1 thread"]["adapt_epochs"] = 9
    assert "Adapt epochs (`clip.adapt.epochs`): 9." in dfp.markdown(runs)


def test_the_report_measures_every_path_against_the_readme_s_run() -> None:
    def run(test: float) -> dict:
        return {"test": test, "chosen": 0.5, "commit": "c", "machine": "cpu", "grid": [], "source": "s"}

    runs = {"AVX2 caps, 2 threads": run(0.114), dfp.REFERENCE: run(0.120), "native, 1 thread": run(0.132)}
    s = dfp.summary(runs)
    assert s["mean"] == pytest.approx(0.122) and s["sd"] == pytest.approx(0.0091652, abs=1e-7)
    assert s["changes"]["AVX2 caps, 2 threads"] == pytest.approx(-0.05)
    assert s["largest_change"] == pytest.approx(0.10)  # against the README's run, not the mean
    table = dfp.markdown(runs)
    assert "Adapt epochs (`clip.adapt.epochs`): not recorded." in table
    rows = [line.split(" | ")[0] for line in table.splitlines()[8:] if line.startswith("| ")]
    assert rows == [f"| {dfp.REFERENCE}", "| native, 1 thread", "| AVX2 caps, 2 threads"]  # PATHS order
    assert "| 0.1140 | -5.0% |" in table and "sd 0.0092 (7.5% of the mean)" in table


def test_every_path_is_a_thread_count_and_known_caps() -> None:
    assert dfp.PATHS[dfp.REFERENCE] == (2, {})
    for threads, caps in dfp.PATHS.values():
        assert threads >= 1 and set(caps) <= set(dfp.ISA_CAPS)


def test_run_without_a_path_is_refused() -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/demo_float_paths.py"), "run"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "run needs --path" in done.stderr


@pytest.mark.parametrize(("threads", "oversubscribed"), [(2, False), (8, True)])
def test_more_threads_than_cores_make_mkl_use_them_all(
    tmp_path: Path, monkeypatch, threads: int, oversubscribed: bool
) -> None:
    calls = []
    monkeypatch.setattr(dfp.subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw.get("env"))))
    monkeypatch.setattr(dfp.os, "cpu_count", lambda: 2)
    monkeypatch.setitem(dfp.PATHS, "test path", (threads, {}))
    dfp.run_path(tmp_path, "test path")
    [(cmd, env)] = calls  # dvc.lock is left as the run wrote it, for record's outputs digest
    assert cmd == ["dvc", "repro", "-f"]
    assert env["OMP_NUM_THREADS"] == str(threads)
    assert (env.get("MKL_DYNAMIC") == "FALSE") is oversubscribed
    assert (env.get("OMP_WAIT_POLICY") == "PASSIVE") is oversubscribed


def test_seeds_retrain_in_the_path_s_environment_and_compare_with_the_readme_s_mean(
    tmp_path: Path, monkeypatch
) -> None:
    clone = _outputs(tmp_path / "c", 0.12, 0.5, [(0.5, 0.11, 0.12)])
    calls = []

    def fake_run(cmd, cwd, env, check):  # noqa: ANN001, ANN202 - the stage writes its seed's figure
        calls.append((cmd, env["OMP_NUM_THREADS"], env.get("ONEDNN_MAX_CPU_ISA")))
        seed = int(cmd[cmd.index("-S") + 1].split("=")[1])
        if cmd[2] == "evaluate":
            metrics = {"test": {"recall@20": seed / 1e4}}
            (cwd / "reports/evaluate/metrics.json").write_text(json.dumps(metrics))

    out = tmp_path / "out"
    dfp.record(clone, "AVX caps, 1 thread", out, commit="abc1234")  # the path's run: 0.12
    dfp.record(clone, dfp.REFERENCE, out, commit="abc1234")
    monkeypatch.setattr(dfp.subprocess, "run", fake_run)
    tests = dfp.run_seeds(clone, "AVX caps, 1 thread", [1000, 1100])
    assert tests == {"1000": 0.1, "1100": 0.11}
    assert [c[0][2:] for c in calls] == [[stage, "-S", f"train.seed={seed}", "-S", "train.repeat_seeds=[]"]
                                         for seed in (1000, 1100) for stage in ("train", "evaluate")]
    assert all(c[1:] == ("1", "AVX") for c in calls)

    with pytest.raises(SystemExit, match="no run of path 'AVX caps, 1 thread'"):
        dfp.record_seeds("AVX caps, 1 thread", tests, tmp_path / "empty")
    assert dfp.record_seeds("AVX caps, 1 thread", tests, out)["seeds"] == tests
    catalog = dfp.load_params(REPO / "params.yaml").demo.seed
    own = dfp.load_params(REPO / "params.yaml").train.seed
    runs = [{"catalog": catalog, "seed": s, "arm": dfp.DEMO_ARM, "test": {"recall@20": t}}
            for s, t in ((own, 0.1), (1000, 0.12), (1100, 0.12))]
    runs.append({"catalog": catalog + 1, "seed": own, "arm": dfp.DEMO_ARM, "test": {"recall@20": 0.5}})
    # a seed no path ran
    runs.append({"catalog": catalog, "seed": 1200, "arm": dfp.DEMO_ARM, "test": {"recall@20": 0.9}})
    (out / dfp.EXPERIMENTS_FILE).write_text(json.dumps({"runs": runs}))
    dfp.record_seeds(dfp.REFERENCE, {"1000": 0.14}, out)  # another path, other seeds: its own reference
    dfp.record(_outputs(tmp_path / "e", 0.12, 0.5, []), "native, 1 thread", out, commit="abc1234")
    dfp.record_seeds("native, 1 thread", {"1300": 0.1}, out)  # a seed the table lacks
    rows = dfp.markdown(dfp.load_runs(out), out).splitlines()
    # against (0.10 + 0.12 + 0.12) / 3: only the path's own seeds, of this catalog
    assert (f"| AVX caps, 1 thread | {own}: 0.1200, 1000: 0.1000, 1100: 0.1100 | 0.1100 ± 0.0100 (9.1%) | "
            "0.1133 | -2.9% |") in rows
    assert (f"| {dfp.REFERENCE} | {own}: 0.1200, 1000: 0.1400 | 0.1300 ± 0.0141 (10.9%) | 0.1100 | "
            "+18.2% |") in rows  # its own seeds' reference: (0.10 + 0.12) / 2
    assert f"| native, 1 thread | {own}: 0.1200, 1300: 0.1000 | 0.1100 ± 0.0141 (12.9%) | – | – |" in rows


def test_seeds_of_a_path_not_run_are_refused_before_any_training(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/demo_float_paths.py"), "seeds",
                           "--path", "native, 1 thread", "--seeds", "5", "--out", str(tmp_path),
                           "--clone", str(tmp_path / "no clone")], capture_output=True, text=True)
    assert done.returncode == 2 and "no run of path 'native, 1 thread'" in done.stderr


def test_against_another_recipe_compares_the_paths_both_hold(tmp_path: Path) -> None:
    def run(test: float, epochs: int) -> dict:
        return {"test": test, "chosen": 0.3, "commit": "c", "machine": "cpu", "grid": [],
                "adapt_epochs": epochs}

    one = "native, 1 thread"
    here = {dfp.REFERENCE: run(0.12, 9), one: run(0.10, 9), "AVX caps, 2 threads": run(0.2, 9)}
    there = {dfp.REFERENCE: run(0.11, 18), one: run(0.11, 18), "native, 4 threads": run(0.3, 18)}
    lines = dfp.comparison(here, there, tmp_path)
    assert "on the 2 paths both hold (adapt epochs: here 9, there 18)" in lines[1]
    assert [ln.split(" | ")[0] for ln in lines if ln.startswith("| ") and "---" not in ln][1:] == [
        f"| {dfp.REFERENCE}", "| native, 1 thread"]
    assert lines[-1].endswith("here 0.1100, sd 0.0141 (12.9%), -9.1% to +9.1%; there 0.1100, sd 0.0000 "
                              "(0.0%), +0.0% to +0.0%.")
    assert dfp.comparison(here, {dfp.REFERENCE: there[dfp.REFERENCE]}, tmp_path) == []  # one path: nothing
    without_reference = {one: run(0.11, 18), "AVX caps, 2 threads": run(0.13, 18)}  # `make demo`'s not shared
    lines = dfp.comparison(here, without_reference, tmp_path)
    assert lines[-1].endswith("here 0.1500, sd 0.0707 (47.1%), -33.3% to +33.3%; there 0.1200, sd 0.0141 "
                              "(11.8%), -8.3% to +8.3%.")


def test_against_a_folder_without_runs_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/demo_float_paths.py"), "report",
                           "--out", str(tmp_path), "--against", str(tmp_path / "typo")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and f"--against {tmp_path / 'typo'}: no {dfp.RUNS_FILE} there" in done.stderr


def test_a_path_runs_only_on_its_own_torch_and_the_report_names_it(tmp_path: Path, monkeypatch) -> None:
    assert dfp.locked_torch() == "2.14.1"  # requirements.lock, as pyproject.toml pins it
    other = "torch 2.9.1, 2 threads"
    assert dfp.TORCH_BUILDS[other] in dfp.TORCH_INSTALL and other in dfp.PATHS
    calls = []
    monkeypatch.setattr(dfp.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    with pytest.raises(SystemExit, match=r"runs on torch 2\.9\.1, but .*\.venv has torch 2\.14\.1: in that "
                       r"venv, pip install torch==2\.9\.1 torchvision==0\.24\.1"):
        dfp.run_path(tmp_path, other)
    monkeypatch.setattr(dfp, "clone_torch", lambda clone: "2.9.1")
    with pytest.raises(SystemExit, match=r"runs on torch 2\.14\.1, but .* has torch 2\.9\.1"):
        dfp.run_seeds(tmp_path, dfp.REFERENCE, [1000])
    assert calls == []  # refused before any stage ran
    monkeypatch.undo()
    clone = _outputs(tmp_path / "c", 0.12, 0.5, [(0.5, 0.11, 0.12)])
    monkeypatch.setattr(dfp, "clone_torch", lambda clone: "2.9.1")
    assert dfp.record(clone, other, tmp_path / "out", commit="abc1234")["torch"] == "2.9.1"
    with pytest.raises(SystemExit, match="has torch 2.9.1"):  # a run on 2.9.1 is never filed as the lock's
        dfp.record(clone, dfp.REFERENCE, tmp_path / "out", commit="abc1234")
    runs = dfp.load_runs(tmp_path / "out")
    runs[dfp.REFERENCE] = {"test": 0.1, "chosen": 0.5, "commit": "old", "machine": "cpu", "grid": []}
    table = dfp.markdown(runs)  # a run recorded before the torch field: the lock's torch
    assert f"| {dfp.REFERENCE} | `old` | 2.14.1 | 0.1000 |" in table
    assert f"| {other} | `abc1234` | 2.9.1 | 0.1200 | +20.0% |" in table


def test_clone_torch_asks_the_clone_s_own_venv(tmp_path: Path) -> None:
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    stub = venv_bin / "python"  # a venv whose python reports another torch build than this process's
    stub.write_text("#!/bin/sh\necho 2.9.1+cu128\n")
    stub.chmod(0o755)
    assert CLONE_TORCH(tmp_path) == "2.9.1"  # without the build tag, as TORCH_BUILDS names versions


def test_run_restores_dvc_lock_on_failure_and_after_the_record(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_run(cmd, **kw):  # noqa: ANN001, ANN202
        calls.append(cmd[:2])
        if cmd[:2] == ["dvc", "repro"] and fail:
            raise dfp.subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(dfp.subprocess, "run", fake_run)
    fail = True
    with pytest.raises(dfp.subprocess.CalledProcessError):
        dfp.run_path(tmp_path, dfp.REFERENCE)
    assert calls == [["dvc", "repro"], ["git", "checkout"]]
    fail, calls[:] = False, []
    clone = _outputs(tmp_path / "c", 0.12, 0.5, [])
    monkeypatch.setattr(dfp, "record", lambda *a: calls.append(["record", dfp.outputs_digest(clone)]) or {})
    monkeypatch.setattr(sys, "argv", ["demo_float_paths.py", "run", "--clone", str(clone), "--path",
                                      dfp.REFERENCE, "--out", str(tmp_path / "out")])
    dfp.main()
    assert [c[0] for c in calls] == ["dvc", "record", "git"]  # the lock restored after the record


def test_a_path_that_wrote_another_s_outputs_is_one_float_path_in_the_spread(
    tmp_path: Path, monkeypatch
) -> None:
    out, other = tmp_path / "out", "torch 2.9.1, 2 threads"
    dfp.record(_outputs(tmp_path / "a", 0.12, 0.5, []), dfp.REFERENCE, out, commit="c1")
    dfp.record(_outputs(tmp_path / "b", 0.10, 0.5, [], model_md5="m2"), "native, 1 thread", out, commit="c1")
    same = _outputs(tmp_path / "c", 0.12, 0.5, [])  # the reference's outputs, another torch
    lock = yaml.safe_load((same / "dvc.lock").read_text())
    lock["stages"]["train"]["deps"][0]["md5"] = "other code"  # only a dependency's hash differs
    (same / "dvc.lock").write_text(yaml.safe_dump(lock))
    monkeypatch.delitem(dfp.TORCH_BUILDS, other)  # this clone "has" the lock's torch (the fixture)
    dfp.record(same, other, out, commit="c2")
    runs = dfp.load_runs(out)
    assert dfp.same_outputs(runs) == {other: dfp.REFERENCE}
    s = dfp.spread(runs)
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.11)  # (0.12 + 0.10) / 2, the copy left out
    table = dfp.markdown(runs, out)
    assert "Over the 2 paths with outputs of their own: mean 0.1100" in table
    assert f"{other} wrote the outputs of {dfp.REFERENCE} byte for byte" in table
    del runs[dfp.REFERENCE]["outputs_digest"]  # recorded before the digest: its own outputs
    assert dfp.same_outputs(runs) == {} and dfp.spread(runs)["n"] == 3


def test_runs_with_repeated_seeds_are_compared_by_their_mean_over_seeds(tmp_path: Path) -> None:
    """``train.repeat_seeds``: each path's mean over its seeds, against the README run's mean."""
    out = tmp_path / "out"
    dfp.record(_outputs(tmp_path / "a", 0.12, 0.5, [], seeds={"999": 0.12, "1000": 0.10, "1001": 0.11}),
               dfp.REFERENCE, out, commit="a")
    rec = dfp.record(_outputs(tmp_path / "b", 0.10, 0.5, [], model_md5="m2",
                              seeds={"999": 0.10, "1000": 0.105, "1001": 0.1135}), "native, 4 threads",
                     out, commit="b")
    assert rec["over_seeds"]["mean"] == pytest.approx(0.106166, abs=1e-6)
    dfp.record(_outputs(tmp_path / "c", 0.13, 0.5, [], model_md5="m3"), "native, 1 thread", out, commit="c")
    table = dfp.markdown(dfp.load_runs(out))
    row = "| native, 4 threads | 999: 0.1000, 1000: 0.1050, 1001: 0.1135 | 0.1062 ± 0.0068 | -3.5% |"
    assert row in table
    assert f"| {dfp.REFERENCE} | 999: 0.1200, 1000: 0.1000, 1001: 0.1100 | 0.1100 ± 0.0100 | +0.0% |" in table
    assert "| native, 1 thread | 999" not in table  # a run without repeated seeds has no mean to compare
    assert "Over the 2 paths: mean 0.1081, sd 0.0027 (2.5%); the largest change against" in table
    assert "| native, 4 threads | `b` | 2.14.1 | 0.1000 | -16.7% |" in table  # the one-run table stays
