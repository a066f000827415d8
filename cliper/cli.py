"""The ``cliper`` command line: one sub-command per stage, plus demo data and promotion.

This is the only module that configures logging. Library errors are caught here and printed
as one clear line (what is wrong, how to fix it) with a non-zero exit code.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from cliper.config import PARAMS_FILE, ConfigError, load_params
from cliper.errors import CliperError
from cliper.stages import STAGES, run_stage

app = typer.Typer(
    help="CLIPER pipeline: CLIP multi-view item features + multimodal recommenders.\n\n"
    "Typical use: `dvc repro` runs every stage; `cliper run <stage>` runs one by hand.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

STAGE_HELP = {
    "demo_data": "write the embedded synthetic catalog (Amazon-2014 format, real JPEGs)",
    "ingest": "raw catalog -> interactions, items, id maps, k-core, per-user split, stats",
    "fetch": "download item images from their URLs (off unless fetch.enabled; resumable, checked)",
    "validate": "Great Expectations checks on interactions, items and images (fails on violations)",
    "preprocess": "build the text views per item and the image manifest (missing images listed)",
    "adapt": "contrastive (InfoNCE) adaptation of the CLIP model to the catalog",
    "extract": "encode every view and image with the CLIP model (batched, resumable)",
    "train": "train the recommender backbone with CLIPER features (early stopping on valid)",
    "evaluate": "full-ranking test metrics, slices and plots; log to MLflow and register",
}

QUIET_LOGGERS: tuple[str, ...] = ("great_expectations",)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file to read")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-S", help="override a param, e.g. -S train.backbone=lightgcn (repeatable)"),
]


def _setup_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[  # logs on stderr: stdout carries the stage's JSON summary
            RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        ],
        force=True,
    )
    for name in QUIET_LOGGERS:  # third-party INFO chatter (GX logs hundreds of lines per run)
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(
                f"--set {item!r}: the value of '{key.strip()}' is not valid YAML ({reason}); "
                "quote it or close the brackets, e.g. -S 'train.views=[title]'"
            ) from exc
    return out


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command("run")
def run_cmd(
    stage: Annotated[str, typer.Argument(help="stage name: " + ", ".join(STAGES))],
    params: ParamsOpt = Path(PARAMS_FILE),
    set_: SetOpt = None,
    root: Annotated[Path, typer.Option(help="project root (outputs are relative to it)")] = Path("."),
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one pipeline stage (what `dvc repro` calls). Stages, in order:

    demo_data, ingest, validate, preprocess, adapt, extract, train, evaluate.
    """
    _setup_logging(verbose)
    if stage not in STAGES:
        _fail(f"unknown stage '{stage}'; choose one of {list(STAGES)}")
    try:
        cfg = load_params(root / params if not params.is_absolute() else params, parse_overrides(set_))
        result = run_stage(stage, cfg, root)
    except (ConfigError, CliperError) as exc:  # exit 2; 3 when a retry can succeed (server outage)
        _fail(str(exc), getattr(exc, "exit_code", 2))
    typer.echo(json.dumps({"stage": result.stage, "metrics": result.metrics}, indent=2, default=str))
    for warning in result.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


@app.command("recipe")
def recipe_cmd(
    recipe: Annotated[Path, typer.Argument(help="recipe file, e.g. params/real_baby.yaml")],
    params: ParamsOpt = Path(PARAMS_FILE),
    out: Annotated[Path | None, typer.Option(help="write here (default: over --params)")] = None,
    check: Annotated[bool, typer.Option("--check", help="validate only; write nothing")] = False,
) -> None:
    """Merge a params recipe over params.yaml (validated like params.yaml) and write the result."""
    from cliper.recipes import apply_recipe, merge_recipe

    try:
        written = None if check else apply_recipe(recipe, params, out)
        if check:
            merge_recipe(recipe, params)
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(f"{recipe} is valid over {params}" if check else f"wrote {written} ({recipe} over {params})")


@app.command("stages")
def stages_cmd() -> None:
    """List the pipeline stages in DAG order with what each does."""
    for name in STAGES:
        typer.echo(f"{name:<11} {STAGE_HELP[name]}")


@app.command("demo-data")
def demo_data_cmd(
    out: Annotated[Path | None, typer.Option(help="output folder (default: demo.out_dir)")] = None,
    scale: Annotated[float | None, typer.Option(help="multiply items and users (benchmarks)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (default: demo.seed)")] = None,
    params: ParamsOpt = Path(PARAMS_FILE),
) -> None:
    """Write the deterministic synthetic catalog (meta, reviews, ratings, JPEG images)."""
    _setup_logging(False)
    from dataclasses import replace

    from cliper.demo.catalog import write_demo_catalog

    try:
        cfg = load_params(params).demo if params.exists() else None
        if cfg is None:
            from cliper.config import DemoConfig

            cfg = DemoConfig()
        cfg = replace(
            cfg,
            out_dir=str(out) if out else cfg.out_dir,
            scale=scale if scale is not None else cfg.scale,
            seed=seed if seed is not None else cfg.seed,
        )
        summary = write_demo_catalog(cfg)
    except (ConfigError, CliperError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command("summary")
def summary_cmd(
    params: ParamsOpt = Path(PARAMS_FILE),
    root: Annotated[Path, typer.Option(help="project root (outputs are relative to it)")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Summarise the last finished run: test metric, chosen point, views, fusions, files to open.

    Reads the train and evaluate stages' outputs (recomputes nothing); `make demo` ends with it.
    """
    from cliper.run_summary import read_summary, summary_json, summary_lines

    try:
        cfg = load_params(root / params if not params.is_absolute() else params)
        summary = read_summary(cfg, root)
    except (ConfigError, CliperError) as exc:
        _fail(str(exc))
    typer.echo(summary_json(summary) if as_json else "\n".join(summary_lines(summary)))


@app.command("promote")
def promote_cmd(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="registered model, e.g. cliper-demo-freedom (default: cliper-<ingest.name>-"
        "<train.backbone> from the params)")] = None,
    metric: Annotated[str | None, typer.Option(
        help="test metric to compare, as in reports/evaluate/metrics.json (default: promote.metric)")] = None,
    min_gain: Annotated[float | None, typer.Option(
        help="required improvement over the champion (default: promote.min_gain)")] = None,
    relative: Annotated[bool | None, typer.Option(
        "--relative/--absolute", help="min-gain as a fraction of the champion's value, or absolute "
        "(default: promote.min_gain_mode)", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="decide and print; change nothing")] = False,
    params: ParamsOpt = Path(PARAMS_FILE),
    root: Annotated[Path, typer.Option(help="project root (holds mlflow.db)")] = Path("."),
) -> None:
    """Promote the `challenger` version of a model to `champion` when it is better.

    Compares the test metric of both versions; promotes when gain > 0 and gain >= min-gain.
    With no champion yet, the challenger becomes champion.
    Refuses (exit 2) when they were evaluated on different data or split (data_hash tags).
    The decision and its evidence are saved as `promotion.*` tags on the challenger.
    Store: MLFLOW_TRACKING_URI, else tracking.uri, else sqlite:///<root>/mlflow.db.
    """
    _setup_logging(False)
    try:
        cfg = load_params(root / params if not params.is_absolute() else params)
        from cliper import registry, tracking_store

        tracking_store.configure(tracking_store.resolve_uri(cfg.tracking.uri, root))
        mode = cfg.promote.min_gain_mode if relative is None else ("relative" if relative else "absolute")
        decision = registry.promote(
            model or registry.model_name(cfg.ingest.name, cfg.train.backbone),
            metric=metric or cfg.promote.metric,
            min_gain=cfg.promote.min_gain if min_gain is None else min_gain,
            min_gain_mode=mode,
            dry_run=dry_run,
        )
    except (ConfigError, CliperError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(decision.to_dict(), indent=2, default=str))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
