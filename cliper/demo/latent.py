"""Latent model of the demo catalog: item attributes, user tastes and the interactions.

Items have a category (6 leaves in 3 groups), a brand (15, each selling in 1-2 groups at a
price tier), a colour (8), shape (5), pattern (4), material (5), price band (3) and an image
size (nuisance). Each user has one taste type (see :data:`TASTE_TYPES`) naming one or two
attributes and a preferred value for each. A user's items are drawn without replacement from

    softmax_i( BETA * affinity(u, i) + pop_logit[i] ),  affinity = #taste attributes matched
    (a brand-only or material-only taste counts double)

where ``pop_logit`` is a Zipf-like popularity (``-POP_ALPHA * log rank``). Afterwards every
item with fewer than ``K_CORE`` users gets extra users, chosen by the same score among users
who lack it, so the whole catalog survives a 5-core filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cliper.demo.vocab import (
    BRANDS,
    CATEGORIES,
    COLOURS,
    LEAVES,
    MATERIALS,
    PATTERNS,
    PRICE_BANDS,
    SHAPES,
    SIZES,
)

BETA = 2.5
POP_ALPHA = 0.4
K_CORE = 5
MIN_PER_USER, MAX_PER_USER = 8, 25

# taste type -> (share of users, attributes it names); chosen so that the title alone reveals
# the category and (sometimes) colour, the image reveals colour/shape/pattern plus the brand
# (logo badge) and material (texture), and the brand field or the description state brand and
# material in words.
TASTE_TYPES: dict[str, tuple[float, tuple[str, ...]]] = {
    "colour_shape": (0.22, ("colour", "shape")),
    "pattern_colour": (0.18, ("pattern", "colour")),
    "brand": (0.25, ("brand",)),
    "category_material": (0.20, ("category", "material")),
    "material": (0.15, ("material",)),
}

VALUES: dict[str, tuple[str, ...]] = {
    "category": tuple(leaf for _, leaf in LEAVES),
    "brand": BRANDS,
    "colour": tuple(COLOURS),
    "shape": tuple(SHAPES),
    "pattern": tuple(PATTERNS),
    "material": tuple(MATERIALS),
    "price_band": tuple(PRICE_BANDS),
    "size": SIZES,
}
TASTE_ATTRIBUTES = ("category", "brand", "colour", "shape", "pattern", "material")


@dataclass(frozen=True)
class Latent:
    """Codes (indices into :data:`VALUES`) of every item attribute and user taste."""

    items: dict[str, np.ndarray]  # attribute -> int array [n_items]
    pop_logit: np.ndarray  # float [n_items]
    user_type: np.ndarray  # int array [n_users], index into TASTE_TYPES
    tastes: dict[str, np.ndarray]  # attribute -> int array [n_users], -1 = not part of the taste
    user_items: list[np.ndarray]  # per user, item indices in draw order
    filled: int  # interactions added to reach the k-core


def draw_items(rng: np.random.Generator, n_items: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Item attribute codes and popularity logits."""
    n_brands, groups = len(BRANDS), list(CATEGORIES)
    brand_weight = 1.0 / (rng.permutation(n_brands) + 2.0) ** 0.6
    brand_groups = [
        rng.choice(len(groups), size=1 + int(rng.random() < 0.5), replace=False) for _ in range(n_brands)
    ]
    brand_tier = rng.integers(0, len(PRICE_BANDS), size=n_brands)
    brand = rng.choice(n_brands, size=n_items, p=brand_weight / brand_weight.sum())
    category = np.empty(n_items, dtype=np.int64)
    for i, b in enumerate(brand):
        group = groups[int(rng.choice(brand_groups[b]))]
        leaf = list(CATEGORIES[group])[int(rng.integers(len(CATEGORIES[group])))]
        category[i] = VALUES["category"].index(leaf)
    band = np.where(rng.random(n_items) < 0.7, brand_tier[brand], rng.integers(0, len(PRICE_BANDS), n_items))
    items = {
        "category": category,
        "brand": brand.astype(np.int64),
        "colour": rng.integers(0, len(COLOURS), n_items),
        "shape": rng.integers(0, len(SHAPES), n_items),
        "pattern": rng.integers(0, len(PATTERNS), n_items),
        "material": rng.integers(0, len(MATERIALS), n_items),
        "price_band": band.astype(np.int64),
        "size": rng.integers(0, len(SIZES), n_items),
    }
    pop_logit = -POP_ALPHA * np.log(rng.permutation(n_items) + 1.0)
    return items, pop_logit - pop_logit.mean()


def draw_tastes(
    rng: np.random.Generator, n_users: int, items: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Taste type per user and the preferred value of each attribute the type names.

    Preferred values are drawn in proportion to how many items carry them, so every taste
    can be satisfied by the catalog.
    """
    shares = np.array([share for share, _ in TASTE_TYPES.values()])
    user_type = rng.choice(len(shares), size=n_users, p=shares / shares.sum())
    tastes = {attr: np.full(n_users, -1, dtype=np.int64) for attr in TASTE_ATTRIBUTES}
    for attr in TASTE_ATTRIBUTES:
        counts = np.bincount(items[attr], minlength=len(VALUES[attr])).astype(float)
        draws = rng.choice(len(counts), size=n_users, p=counts / counts.sum())
        for t, (_, attrs) in enumerate(TASTE_TYPES.values()):
            if attr in attrs:
                tastes[attr][user_type == t] = draws[user_type == t]
    return user_type, tastes


def affinity(tastes: dict[str, np.ndarray], items: dict[str, np.ndarray], users: np.ndarray,
             cols: slice | np.ndarray = slice(None)) -> np.ndarray:
    """``[len(users), n_cols]`` number of taste attributes matched (single-attribute tastes x2)."""
    n_named = sum((tastes[a][users] >= 0).astype(float) for a in TASTE_ATTRIBUTES)
    weight = 2.0 / np.maximum(n_named, 1.0)
    aff = 0.0
    for attr in TASTE_ATTRIBUTES:
        aff = aff + (tastes[attr][users][:, None] == items[attr][cols][None, :])
    return aff * weight[:, None]


def draw_interactions(
    rng: np.random.Generator, n_users: int, items: dict, pop_logit: np.ndarray, tastes: dict
) -> tuple[list[np.ndarray], int]:
    """Per-user item lists (Gumbel top-k = sampling without replacement), then the k-core fill."""
    n_items = len(pop_logit)
    cap = min(MAX_PER_USER, max(MIN_PER_USER, n_items // 3))
    sizes = np.minimum(MIN_PER_USER + rng.geometric(0.15, size=n_users) - 1, cap)
    user_items: list[np.ndarray] = []
    for start in range(0, n_users, 1024):
        users = np.arange(start, min(start + 1024, n_users))
        noise = rng.gumbel(size=(len(users), n_items))
        keys = BETA * affinity(tastes, items, users) + pop_logit[None, :] + noise
        top = np.argpartition(-keys, cap - 1, axis=1)[:, :cap]  # the cap best, unordered
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), axis=1, kind="stable"), 1)
        user_items.extend(top[row, : sizes[u]] for row, u in enumerate(users))
    has = np.zeros((n_users, n_items), dtype=bool)
    for u, its in enumerate(user_items):
        has[u, its] = True
    filled = 0
    all_users = np.arange(n_users)
    for i in np.flatnonzero(has.sum(axis=0) < K_CORE):
        need = K_CORE - int(has[:, i].sum())
        aff = affinity(tastes, items, all_users, cols=slice(i, i + 1))[:, 0]
        keys = BETA * aff + rng.gumbel(size=n_users)
        keys[has[:, i]] = -np.inf
        for u in np.argsort(-keys, kind="stable")[:need]:
            user_items[u] = np.append(user_items[u], i)
            has[u, i] = True
            filled += 1
    return user_items, filled


def draw_latent(rng: np.random.Generator, n_items: int, n_users: int) -> Latent:
    """The whole latent catalog."""
    items, pop_logit = draw_items(rng, n_items)
    user_type, tastes = draw_tastes(rng, n_users, items)
    user_items, filled = draw_interactions(rng, n_users, items, pop_logit, tastes)
    return Latent(items, pop_logit, user_type, tastes, user_items, filled)


def item_attributes(latent: Latent, i: int) -> dict[str, str]:
    """Canonical attribute values of item ``i`` (plus its category group)."""
    out = {attr: VALUES[attr][int(codes[i])] for attr, codes in latent.items.items()}
    out["group"] = next(g for g, leaf in LEAVES if leaf == out["category"])
    return out


def user_taste(latent: Latent, u: int) -> tuple[str, dict[str, str]]:
    """(taste type, {attribute: preferred value}) of user ``u``."""
    name = list(TASTE_TYPES)[int(latent.user_type[u])]
    taste = {a: VALUES[a][int(latent.tastes[a][u])] for a in TASTE_ATTRIBUTES if latent.tastes[a][u] >= 0}
    return name, taste
