"""MLflow model registry: names, the ``challenger``/``champion`` aliases and gated promotion.

Every trained model is registered as ``cliper-<dataset>-<backbone>`` (lower case) and its new
version gets the alias ``challenger`` (:func:`register_challenger`). :func:`promote` moves
``champion`` to the challenger only when

1. both versions were evaluated on the same data and split: their ``data_hash`` tags (content
   hash of ``interactions.parquet`` incl. ``x_label``) and ``items_hash`` tags are equal —
   otherwise :class:`PromotionRefused` (the CLI exits 2);
2. the challenger beats the champion on the metric (a test metric logged by the evaluate stage):
   ``gain > 0`` and ``gain >= min_gain``, where ``gain = challenger - champion`` (``absolute``)
   or ``(challenger - champion) / champion`` (``relative``).

With no champion yet the challenger becomes champion. Every decision and its evidence are
kept as numbered version tags (``promotion.<NNN>.*``) on the challenger and as a line of the
registered model's description; ``dry_run`` changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cliper.errors import CliperError

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_PREFIX = "cliper"
# Version tags that must match between challenger and champion before any comparison.
MATCH_TAGS = ("data_hash", "items_hash")
TEST_PREFIX = "test/"  # the run metrics promotion compares: test/recall_at_20, ...
LEGACY_TEST_PREFIX = "test_"  # runs logged before the metric groups
DECISION_TAG_RE = re.compile(r"promotion\.(\d+)\.decision")
LOG_HEADING = "Promotion log (cliper promote):"
# A tag written by two processes at once: the SQL store's upsert reads "absent" in both, and the
# second INSERT hits the primary key. Its retry finds the row and updates it.
TAG_WRITE_ATTEMPTS = 3
DUPLICATE_KEY_MARKERS = (
    "UniqueViolation", "duplicate key value", "UNIQUE constraint failed", "IntegrityError",
)


class PromotionRefused(CliperError):
    """The challenger cannot be compared with the champion (different data, missing metric...)."""


@dataclass(frozen=True)
class PromotionDecision:
    """What :func:`promote` decided and why (also written as version tags)."""

    model: str
    metric: str
    decision: Literal["promoted", "kept_champion", "first_champion"]
    challenger_version: str
    champion_version: str | None
    challenger_value: float
    champion_value: float | None
    gain: float | None
    min_gain: float
    min_gain_mode: str
    dry_run: bool
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def safe_name(raw: str) -> str:
    """Lower case, with runs of characters other than ``a-z0-9_.-`` replaced by ``-``."""
    return re.sub(r"[^a-z0-9_.-]+", "-", raw.lower())


def model_name(dataset: str, backbone: str, prefix: str = MODEL_PREFIX) -> str:
    """Registered model name ``cliper-<dataset>-<backbone>``, lower case, registry-safe."""
    return safe_name(f"{prefix}-{dataset}-{backbone}")


def metric_key(name: str) -> str:
    """An MLflow-legal metric name: ``recall@20`` -> ``recall_at_20`` (other odd chars -> ``_``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name.replace("@", "_at_"))


def register_challenger(client: MlflowClient, name: str, version: str, tags: dict[str, Any]) -> None:
    """Tag the new ``version`` of ``name`` and point the ``challenger`` alias at it."""
    for key, value in tags.items():
        set_version_tag(client, name, version, key, str(value))
    client.set_registered_model_alias(name, CHALLENGER, version)
    logger.info("registered %s version %s as %s", name, version, CHALLENGER)


def _alias_version(client: MlflowClient, name: str, alias: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise


def _metric_value(client: MlflowClient, version: Any, metric: str, name: str) -> float:
    """The version's run metric ``metric`` (``recall@20`` -> ``test/recall_at_20``, or an exact name)."""
    metrics = client.get_run(version.run_id).data.metrics
    for key in (TEST_PREFIX + metric_key(metric), LEGACY_TEST_PREFIX + metric_key(metric), metric_key(metric),
                metric):
        if key in metrics:
            return float(metrics[key])
    test_names = sorted(k[len(TEST_PREFIX):] for k in metrics if k.startswith(TEST_PREFIX))
    raise PromotionRefused(
        f"{name} version {version.version} has no test metric '{metric}' (looked for "
        f"'{TEST_PREFIX}{metric_key(metric)}'); choose --metric from {test_names}"
    )


def _check_same_data(challenger: Any, champion: Any, name: str) -> dict[str, str]:
    evidence = {}
    for tag in MATCH_TAGS:
        a, b = challenger.tags.get(tag), champion.tags.get(tag)
        if a is None or b is None or a != b:
            raise PromotionRefused(
                f"{name}: challenger v{challenger.version} and champion v{champion.version} were evaluated "
                f"on different data/split ({tag}: {a} vs {b}); their metrics are not comparable. Retrain "
                f"the champion's setup on the current data, or move the alias by hand in the MLflow UI"
            )
        evidence[tag] = a
    return evidence


def compute_gain(new: float, old: float, mode: str) -> float:
    """``new - old`` (absolute) or ``(new - old) / old`` (relative; ``inf`` when ``old == 0 < new``)."""
    if mode == "absolute":
        return new - old
    if mode == "relative":
        if old == 0:
            return 0.0 if new == 0 else float("inf") if new > 0 else float("-inf")
        return (new - old) / abs(old)
    raise ValueError(f"unknown min_gain_mode '{mode}'; choose one of ['absolute', 'relative']")


def promote(
    name: str,
    metric: str = "recall@20",
    min_gain: float = 0.0,
    min_gain_mode: str = "absolute",
    dry_run: bool = False,
    client: MlflowClient | None = None,
) -> PromotionDecision:
    """Move ``champion`` to the ``challenger`` of ``name`` when it is better (see module docstring).

    Args:
        name: registered model name, e.g. ``cliper-demo-freedom``.
        metric: test metric to compare, as in ``reports/evaluate/metrics.json`` (``recall@20``).
        min_gain: required gain (absolute or relative, see ``min_gain_mode``).
        min_gain_mode: ``absolute`` or ``relative``.
        dry_run: decide and report only; change no alias and no tag.
        client: an ``MlflowClient`` (default: one for the configured tracking URI).

    Raises:
        PromotionRefused: no such model/challenger, missing metric, or different data/split.
    """
    client = client or MlflowClient()
    challenger = _alias_version(client, name, CHALLENGER) if _model_exists(client, name) else None
    if challenger is None:
        raise PromotionRefused(f"model '{name}' has no '{CHALLENGER}' version; run the evaluate stage first "
                               f"(known models: {_model_names(client)})")
    champion = _alias_version(client, name, CHAMPION)
    new = _metric_value(client, challenger, metric, name)
    base = dict(model=name, metric=metric, challenger_version=str(challenger.version), challenger_value=new,
                min_gain=min_gain, min_gain_mode=min_gain_mode, dry_run=dry_run)
    if champion is None:
        decision = PromotionDecision(**base, decision="first_champion", champion_version=None,
                                     champion_value=None, gain=None, evidence={"reason": "no champion yet"})
    else:
        evidence = _check_same_data(challenger, champion, name)
        old = _metric_value(client, champion, metric, name)
        gain = compute_gain(new, old, min_gain_mode)
        same = str(champion.version) == str(challenger.version)
        better = not same and gain > 0 and gain >= min_gain
        evidence["reason"] = ("challenger is already champion" if same else
                              f"gain {gain:.6g} {'meets' if better else 'misses'} min_gain {min_gain:g} "
                              f"({min_gain_mode}; gain must be > 0 and >= min_gain)")
        decision = PromotionDecision(**base, decision="promoted" if better else "kept_champion",
                                     champion_version=str(champion.version), champion_value=old, gain=gain,
                                     evidence=evidence)
    if not dry_run:
        _apply(client, decision)
    logger.info("promotion of %s: %s (%s)", name, decision.decision, decision.evidence.get("reason"))
    return decision


def is_duplicate_key(error: MlflowException) -> bool:
    """Whether ``error`` is the store refusing a second INSERT of the same key (a concurrent write)."""
    return any(marker in str(error) for marker in DUPLICATE_KEY_MARKERS)


def set_version_tag(client: MlflowClient, name: str, version: str, key: str, value: str) -> None:
    """``client.set_model_version_tag``, safe against another process writing the same tag at once.

    Concurrent ``cliper promote`` runs write the same tags (the decision, ``promotion.replaced_by``).
    The loser of the INSERT race gets a duplicate-key error; the tag then exists, so writing it
    again updates it (last writer wins, as for any tag). Other errors are raised at once.
    """
    for attempt in range(1, TAG_WRITE_ATTEMPTS + 1):
        try:
            client.set_model_version_tag(name, version, key, value)
            return
        except MlflowException as error:
            if not is_duplicate_key(error) or attempt == TAG_WRITE_ATTEMPTS:
                raise
            logger.info("tag %s of %s v%s was written concurrently; writing it again", key, name, version)


def _next_decision_number(tags: dict[str, str]) -> int:
    numbers = [int(m.group(1)) for key in tags if (m := DECISION_TAG_RE.fullmatch(key))]
    return max(numbers, default=0) + 1


def _apply(client: MlflowClient, decision: PromotionDecision) -> None:
    """Record the decision, keeping every earlier one, and move ``champion`` when promoted.

    On the challenger version: ``promotion.<NNN>.{decision,time,evidence}`` for the NNN-th
    decision about it (never overwritten), ``promotion.decision``/``promotion.evidence`` for the
    latest one, and, once, ``promotion.champion_reason``/``promotion.champion_since`` when it
    becomes champion. The registered model's description gets one line per decision, so its
    page in the MLflow UI reads as the promotion log.
    """
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    evidence = json.dumps({k: v for k, v in decision.to_dict().items() if k != "model"},
                          default=str, sort_keys=True)
    version = client.get_model_version(decision.model, decision.challenger_version)
    n = f"{_next_decision_number(version.tags):03d}"
    tags = {
        f"promotion.{n}.decision": decision.decision, f"promotion.{n}.time": when,
        f"promotion.{n}.evidence": evidence,
        "promotion.decision": decision.decision, "promotion.metric": decision.metric,
        "promotion.time": when, "promotion.evidence": evidence,
    }
    becomes_champion = decision.decision in ("promoted", "first_champion")
    if becomes_champion:
        tags["promotion.champion_since"] = when
        tags["promotion.champion_reason"] = f"{decision.decision}: {decision.evidence.get('reason', '')}"
    for key, value in tags.items():
        set_version_tag(client, decision.model, decision.challenger_version, key, value)
    if becomes_champion:
        client.set_registered_model_alias(decision.model, CHAMPION, decision.challenger_version)
        if decision.champion_version is not None:
            set_version_tag(client, decision.model, decision.champion_version, "promotion.replaced_by",
                            decision.challenger_version)
    _append_log(client, decision, when)


def _append_log(client: MlflowClient, decision: PromotionDecision, when: str) -> None:
    """One line per decision at the end of the registered model's description."""
    model = client.get_registered_model(decision.model)
    line = (f"- {when}: {decision.decision}, challenger v{decision.challenger_version} "
            f"({decision.metric} {decision.challenger_value:.6g}) vs champion "
            f"{'none' if decision.champion_version is None else 'v' + decision.champion_version}"
            f"{'' if decision.champion_value is None else f' ({decision.champion_value:.6g})'}: "
            f"{decision.evidence.get('reason', '')}")
    text = model.description or ""
    if LOG_HEADING not in text:
        text = f"{text}\n\n{LOG_HEADING}\n" if text else f"{LOG_HEADING}\n"
    client.update_registered_model(decision.model, description=f"{text.rstrip()}\n{line}\n")


def _model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True


def _model_names(client: MlflowClient) -> list[str]:
    return sorted(m.name for m in client.search_registered_models())
