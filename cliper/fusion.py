"""View fusion (the CLIPER step, spec section 3): text views ``[V, I, D]`` + image ``[I, D]`` -> ``t_feat``.

Wu et al., "Towards Bridging the Cross-modal Semantic Gap for Multi-modal Recommendation"
(CLIPER, arXiv 2407.05420). With ``T[k, i]`` the CLIP embedding of view ``k`` of item ``i`` and
``V[i]`` the image embedding, the released code computes once, before training::

    s[i, k] = cos(T[k, i], V[i]);   a[i, :] = softmax_k(s[i, :] / τ);   t[i] = Σ_k a[i, k] T[k, i]

Registered fusions (``build_fusion(cfg, n_views, dim)``; unknown names raise ``ValueError``):

* ``attention`` - the formula above; parameter-free.
* ``self_attention`` - the paper's learnable "Fusion Layer": multi-head attention with the image as
  query and the views as keys/values, trained jointly with the backbone (see :class:`SelfAttentionFusion`).
* ``mean`` - mean of the first three views (as the release); ``sum`` - sum of all views.
* ``concat`` - all views side by side (width ``V·D``).
* ``mlp`` - concat -> 2-layer MLP; **fix:** trained with the backbone (the release never trains it).

``normalize`` (default ``False``) L2-normalises every view and the image first. The default is
the spec's formula: the weights are cosines (which normalise internally) and ``t`` sums the *raw*
view embeddings, so a view's own scale is kept; ``normalize: true`` is the normalised form
(``t`` a weighted sum of unit vectors), kept as an option for comparison. Parameter-free fusions
(``learnable = False``) are computed once by the model; learnable ones run in its forward pass so
gradients reach them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cliper.config import FusionConfig, to_dict

RELEASE_MEAN_VIEWS = 3  # the release's "mean" fuses the first three views (title, brand, categories)
COSINE_EPS = 1e-8  # as F.cosine_similarity: a zero vector has cosine 0 with everything
SEED_BOUND = 2**62  # a learnable fusion's own seed is drawn from [0, SEED_BOUND) (build_fusion)
_REGISTRY: dict[str, type[Fusion]] = {}


def register_fusion(cls: type[Fusion]) -> type[Fusion]:
    """Class decorator adding a fusion under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def list_fusions() -> list[str]:
    """Sorted names of the registered fusions."""
    return sorted(_REGISTRY)


def is_learnable(name: str) -> bool:
    """Whether the registered fusion ``name`` has parameters trained with the backbone."""
    return _REGISTRY[name].learnable


class Fusion(nn.Module):
    """Base class of the fusions.

    ``forward(text_views [V, I, D], image [I, D])`` returns ``(t [I, out_dim], weights [I, V] | None)``;
    ``learnable``: has parameters trained with the backbone; ``out_dim``: width of ``t``.
    """

    name: ClassVar[str] = "base"
    learnable: ClassVar[bool] = False
    # Bumped when the arithmetic changes but not the maths (other float rounding): part of the
    # train cache key (fusion_cache_key), so that no checkpoint of the former arithmetic is resumed.
    revision: ClassVar[int] = 0

    def __init__(self, n_views: int, dim: int, cfg: FusionConfig) -> None:
        super().__init__()
        self.n_views, self.dim, self.cfg = int(n_views), int(dim), cfg

    @property
    def out_dim(self) -> int:
        """Width of the fused text vector."""
        return self.dim

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :func:`build_fusion_from_spec` rebuilds this fusion."""
        return {
            "name": self.name,
            "n_views": self.n_views,
            "dim": self.dim,
            "config": {k: getattr(self.cfg, k) for k in FusionConfig.__dataclass_fields__},
        }

    def forward(
        self, text_views: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fuse the views of the given items (optionally L2-normalised first)."""
        if text_views.shape[0] != self.n_views or text_views.shape[-1] != self.dim:
            raise ValueError(
                f"fusion '{self.name}': expected text views [{self.n_views}, I, {self.dim}], "
                f"got {list(text_views.shape)}"
            )
        if self.cfg.normalize:
            text_views, image = F.normalize(text_views, dim=-1), F.normalize(image, dim=-1)
        return self.fuse(text_views, image)

    def fuse(self, text_views: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fusion proper (inputs already normalised when configured)."""
        raise NotImplementedError


def attention_weights(text_views: torch.Tensor, image: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax_k(cos(T[k, i], V[i]) / τ)`` as ``[I, V]``.

    The cosines come from one dot-product contraction and the row norms, so no normalised copy
    of the views is made (6x faster than ``F.cosine_similarity`` at 5 x 7,050 x 768).
    """
    dots = torch.einsum("vid,id->vi", text_views, image)
    norms = torch.linalg.vector_norm(text_views, dim=-1) * torch.linalg.vector_norm(image, dim=-1)
    sims = dots / norms.clamp_min(COSINE_EPS)  # [V, I]
    return torch.softmax(sims.T / temperature, dim=-1)


@register_fusion
class AttentionFusion(Fusion):
    """Image-guided soft attention over views (the release's CLIPER fusion; spec section 3)."""

    name = "attention"

    def fuse(self, text_views: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        weights = attention_weights(text_views, image, self.cfg.temperature)
        return torch.einsum("iv,vid->id", weights, text_views), weights


@register_fusion
class SelfAttentionFusion(Fusion):
    """Learnable Fusion Layer: multi-head attention, image query over view keys/values.

    The CLIPER paper fuses the views with a self-attention "Fusion Layer" trained with the
    recommender. Here ``q = V[i] W_q``, ``k_v = T[v, i] W_k`` per head; the output is the
    attention-pooled views plus the attention block's output::

        t[i] = Σ_v ā[i, v] T[v, i] + MHA(V[i], T[:, i], T[:, i])

    with ``ā`` the head-averaged attention. The output projection starts at zero, so training starts
    from pure attention pooling (still in CLIP space) and learns a correction; all parameters get
    gradients after the first step.

    The parameters are ``nn.MultiheadAttention``'s, and so is the result (to float rounding;
    ``tests/unit/test_fusion.py``), but the query is a single token, so :meth:`fuse` projects it
    into view space rather than projecting every view: per head ``h``,
    ``q_h·(W_k,h T + b_k,h) = (W_k,hᵀ q_h)·T + const`` (the constant cancels in the softmax) and
    ``Σ_v a_v (W_v,h T_v + b_v,h) = W_v,h (Σ_v a_v T_v) + b_v,h``. A step then costs a third of the
    multiply-adds of projecting ``V`` keys and values (``benchmarks/results/self_attention_step.md``).
    """

    name = "self_attention"
    learnable = True
    revision = 1  # 1: the query projected into view space (was nn.MultiheadAttention's forward)

    def __init__(self, n_views: int, dim: int, cfg: FusionConfig) -> None:
        super().__init__(n_views, dim, cfg)
        if dim % cfg.n_heads:
            raise ValueError(f"fusion 'self_attention': dim {dim} is not divisible by n_heads {cfg.n_heads}")
        self.attn = nn.MultiheadAttention(dim, cfg.n_heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def fuse(self, text_views: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        heads, dim = self.attn.num_heads, self.dim
        head_dim = dim // heads
        w_q, w_k, w_v = self.attn.in_proj_weight.chunk(3)
        b_q, _, b_v = self.attn.in_proj_bias.chunk(3)  # b_k shifts every view's score alike
        query = F.linear(image, w_q, b_q).view(-1, heads, head_dim) * head_dim**-0.5
        query = torch.einsum("ihe,hed->ihd", query, w_k.view(heads, head_dim, dim))  # [I, H, D]
        weights = torch.softmax(torch.einsum("ihd,vid->ihv", query, text_views), dim=-1)  # [I, H, V]
        pooled = torch.einsum("ihv,vid->ihd", weights, text_views)  # per head: Σ_v a[v] T[v]
        values = torch.einsum("ihd,hed->ihe", pooled, w_v.view(heads, head_dim, dim)).reshape(-1, dim) + b_v
        out = self.attn.out_proj(values)
        return pooled.mean(1) + out, weights.mean(1)


@register_fusion
class MeanFusion(Fusion):
    """Mean of the first three views (the release's ``mean``; all views when fewer)."""

    name = "mean"

    def fuse(self, text_views: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = min(RELEASE_MEAN_VIEWS, self.n_views)
        weights = torch.zeros(text_views.shape[1], self.n_views, device=text_views.device)
        weights[:, :m] = 1.0 / m
        return text_views[:m].mean(0), weights


@register_fusion
class SumFusion(Fusion):
    """Sum of all views."""

    name = "sum"

    def fuse(self, text_views: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return text_views.sum(0), None


@register_fusion
class ConcatFusion(Fusion):
    """All views side by side: ``[I, V·D]`` (view order as in ``meta.json``)."""

    name = "concat"

    @property
    def out_dim(self) -> int:  # noqa: D102
        return self.n_views * self.dim

    def fuse(self, text_views: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return text_views.transpose(0, 1).reshape(text_views.shape[1], -1), None


@register_fusion
class MLPFusion(Fusion):
    """Concat -> Linear(V·D, D) -> ReLU -> Linear(D, D); trained with the backbone (fix of the release)."""

    name = "mlp"
    learnable = True

    def __init__(self, n_views: int, dim: int, cfg: FusionConfig) -> None:
        super().__init__(n_views, dim, cfg)
        self.mlp = nn.Sequential(nn.Linear(n_views * dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def fuse(self, text_views: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.mlp(text_views.transpose(0, 1).reshape(text_views.shape[1], -1)), None


def build_fusion(cfg: FusionConfig, n_views: int, dim: int) -> Fusion:
    """The fusion named ``cfg.name`` for ``n_views`` views of width ``dim``.

    Raises:
        ValueError: ``unknown fusion 'x'; choose one of [...]``.
    """
    if cfg.name not in _REGISTRY:
        raise ValueError(f"unknown fusion '{cfg.name}'; choose one of {list_fusions()}")
    if cfg.temperature <= 0:
        raise ValueError(f"fusion temperature must be > 0, got {cfg.temperature}")
    cls = _REGISTRY[cfg.name]
    if not cls.learnable:
        return cls(n_views, dim, cfg)
    # A learnable fusion draws its initial weights from a generator seeded by the current torch
    # stream, which is then restored: the backbone built next starts from the same random state
    # whatever the fusion, so fusions are compared on equal ID-embedding initialisations.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(SEED_BOUND, ())))
        return cls(n_views, dim, cfg)


def fusion_cache_key(cfg: FusionConfig) -> dict[str, Any]:
    """``cfg`` as a train cache key: its fields, and the fusion's ``revision`` once it is above 0
    (keys of fusions never revised stay as they were, so their checkpoints are still found)."""
    revision = _REGISTRY[cfg.name].revision if cfg.name in _REGISTRY else 0
    return {**to_dict(cfg), "revision": revision} if revision else to_dict(cfg)


def build_fusion_from_spec(spec: dict[str, Any], features: Any = None) -> Fusion:
    """Rebuild a fusion from :attr:`Fusion.spec` (as saved in a model's ``config.json``)."""
    cfg = FusionConfig(**spec["config"])
    if features is not None and tuple(features.text_views.shape[::2]) != (spec["n_views"], spec["dim"]):
        raise ValueError(
            f"fusion '{spec['name']}' was built for {spec['n_views']} views of width {spec['dim']}, "
            f"features have {list(features.text_views.shape)}"
        )
    return build_fusion(cfg, spec["n_views"], spec["dim"])


@torch.no_grad()
def frozen_text_features(fusion: Fusion, text_views: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A fixed ``[I, D']`` text matrix for structures built once (FREEDOM's frozen text kNN graph).

    A parameter-free fusion gives its own output. A learnable fusion changes during training, so a
    graph frozen at the start cannot follow it: the graph is then built from the parameter-free
    ``attention`` fusion of the same views with the same temperature/normalisation (the release's
    CLIPER features), while the learnable fusion feeds the backbone's text projection.
    """
    if not fusion.learnable:
        return fusion(text_views, image)[0]
    reference = AttentionFusion(fusion.n_views, fusion.dim, fusion.cfg)
    return reference(text_views, image)[0]
