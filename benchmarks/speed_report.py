"""Markdown for ``benchmarks/train.py``: the side-by-side ratios, the targets, the load."""

from __future__ import annotations

FIGURES = ("epoch_s", "eval_s", "build_s", "peak_rss_mb")
TARGETS = {"epoch_s": 0.5, "eval_s": 0.5, "build_s": 0.5, "peak_rss_mb": 1.0}  # issue 15, ratio to MMRec
EPOCH_TARGET_MODELS = ("freedom", "lightgcn")  # the epoch target names these two

LABELS = {
    "epoch_s": "train epoch (s)",
    "eval_s": "full valid evaluation (s)",
    "build_s": "model build incl. graphs (s)",
    "peak_rss_mb": "peak RSS (MB)",
}


def _target(name: str, fig: str, ratio: float) -> str:
    if fig == "epoch_s" and name not in EPOCH_TARGET_MODELS:
        return "—"
    return "met" if ratio <= TARGETS[fig] else f"**missed** (≤ {TARGETS[fig]}×)"


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def markdown(meta: dict, summary: dict[str, dict], runs: list[dict]) -> str:
    """The report: one table of ratios, one of every process run, the machine's load."""
    lines = [
        "# Training speed on real Baby: cliper beside MMRec (one run, same machine)",
        "",
        f"Written by `benchmarks/train.py` ({meta['started']} to {meta['finished']}). Real Baby "
        "(`baby.inter`, 19,445 users x 7,050 items, 118,551 train pairs), random 768-d features "
        "(cliper: image + five 768-d text views through the attention fusion; MMRec: image + text), "
        f"the same model config, batch 2048, Adam lr 1e-3, evaluation batch 4096 users, "
        f"{meta['threads']} torch thread(s) on both sides, {meta['rounds']} rounds with the order of "
        "the sides swapped each round. Ratio = cliper / MMRec per round: median [min – max].",
        "",
        "| model | figure | cliper | MMRec | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in summary.items():
        for fig in FIGURES:
            e = entry[fig]
            fmt = ".0f" if fig == "peak_rss_mb" else ".2f"
            lines.append(
                f"| {name} | {LABELS[fig]} | {e['cliper']:{fmt}} | {e['mmrec']:{fmt}} | "
                f"{e['ratio_median']:.2f} [{e['ratio_min']:.2f} – {e['ratio_max']:.2f}] | "
                f"{_target(name, fig, e['ratio_median'])} |"
            )
    lines += [
        "",
        "Targets (issue 15): epoch ≤ 0.5× for FREEDOM and LightGCN, evaluation ≤ 0.5×, build ≤ 0.5×, "
        "peak memory ≤ 1×. GPU: **not measured** (no GPU was lent).",
        "",
        "## Every process (in run order)",
        "",
        "| model | round | side | epoch s | eval s | build s | peak RSS MB | wall s "
        "| load 1/5/15 min before → after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        res = r["result"]
        lines.append(
            f"| {r['model']} | {r['round']} | {r['side']} | "
            f"{', '.join(f'{s:.2f}' for s in res['epoch_seconds'])} | "
            f"{', '.join(f'{s:.2f}' for s in res['eval_seconds'])} | {res['build_seconds']:.2f} | "
            f"{res['peak_rss_mb']:.0f} | {res['wall_s']:.0f} | {_load(res['load_before'])} → "
            f"{_load(res['load_after'])} |"
        )
    lines += [
        "",
        "## Machine load",
        "",
        f"{meta['cpu_count']} CPU cores, shared with other engineers' jobs during the run. Load average "
        f"(1/5/15 min) before: {_load(meta['load_before'])}, after: {_load(meta['load_after'])}.",
        "",
        "Busiest other processes at the start:",
        "",
        *[f"- {p}" for p in meta["other_processes_before"]],
        "",
        "and at the end:",
        "",
        *[f"- {p}" for p in meta["other_processes_after"]],
        "",
    ]
    return "\n".join(lines)
