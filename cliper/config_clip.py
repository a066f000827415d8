"""Typed config sections of the CLIP model (``clip``, ``clip.adapt``, ``clip.extract``).

Part of :class:`cliper.config.Params`, kept in their own module so ``cliper/config.py`` stays
small; import them from ``cliper.config``. ``clip.pretrained`` forms and the download opt-in:
:mod:`cliper.clip.pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cliper.config_scale import ShardConfig


@dataclass(frozen=True)
class AdaptConfig:
    """Contrastive adaptation of the CLIP model to the catalog (stage ``adapt``)."""

    epochs: int = 18
    batch_size: int = 64
    lr: float = 3e-4
    # Learning rate over the steps: constant, or linear warm-up then cosine decay to zero (as CLIP).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_fraction: float = field(default=0.05, metadata={"ge": 0, "lt": 1})  # share of steps, cosine only
    weight_decay: float = 0.0
    # torch's fused AdamW kernel: the same update in one pass, ~7% faster steps on the demo, other
    # float rounding (benchmarks/results/adapt_speed.md); off by default, like clip.channels_last.
    fused_adamw: bool = False
    # Weight of a text-text InfoNCE between two different views of the same item (0 = image-text only).
    text_weight: float = 0.0
    # Share of every batch that is mined hard negatives (cliper/clip/hard_batches.py; 0 = random batches).
    hard_negatives: float = 0.0
    hard_negatives_k: int = 10  # neighbours per item to draw them from
    # Share of training images shown in grey each step (cliper/clip/augment.py; 0 = never): colour
    # alone then cannot tell a batch apart, so shape and pattern have to be learned as well.
    grayscale: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    # Share of every batch's captions that also get a sentence-swap negative caption
    # (cliper/clip/swap_negatives.py; 0 = none): one sentence replaced by an alike sentence of
    # another item, so the image has to check what each sentence says.
    swap_negatives: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    # ... the swapped sentences share at least this share of their words (token Jaccard).
    swap_min_overlap: float = field(default=0.3, metadata={"ge": 0, "le": 1})
    # Weight of caption-word prediction from the image (cliper/clip/caption_words.py; 0 = off):
    # a linear head predicts which of the catalog's words the item's views contain.
    words_weight: float = field(default=0.0, metadata={"ge": 0})
    words_max: int = field(default=1000, metadata={"ge": 1})  # vocabulary: the most frequent words ...
    words_min_items: int = field(default=5, metadata={"ge": 1})  # ... in at least this many training items
    words_max_share: float = field(default=0.5, metadata={"gt": 0, "le": 1})  # ... and at most this share
    # Decode the training images once into memory when they fit in this many MB (0 = decode every epoch).
    preload_images_mb: float = 1024.0
    # Text views drawn as the caption of a training pair, each equally often (null = every view of
    # preprocess.views). Views that only name what the image cannot show (categories) or what a
    # badge already tells (brand) let the loss stop at those cues (benchmarks/results/caption_views.md).
    caption_views: list[str] | None = None
    val_fraction: float = 0.1
    eval_view: str = "global"
    seed: int = 0
    out_dir: str = "models/clip"
    report_dir: str = "reports/adapt"


@dataclass(frozen=True)
class ExtractConfig:
    """Batched, resumable CLIP feature extraction (stage ``extract``)."""

    batch_size: int = 64
    num_workers: int = 1
    chunk_combine: Literal["mean", "sum"] = "mean"
    dtype: Literal["float32", "float16"] = "float32"
    out_dir: str = "data/features"
    cache_dir: str = ".cache/cliper/extract"
    shards: ShardConfig = field(default_factory=ShardConfig)  # Dask sharding (cliper/config_scale.py)


@dataclass(frozen=True)
class ClipConfig:
    """One CLIP model for views and images; shared by adapt and extract.

    ``precision``: ``amp`` = autocast on CUDA (plain fp32 on CPU); ``fp16``/``bf16`` cast the
    weights (CUDA only for fp16); ``fp32`` everywhere. ``channels_last`` stores the image
    tower's convolution weights in NHWC layout, which oneDNN and cuDNN run faster (the demo's adapt
    stage: ``benchmarks/results/adapt_speed.md``). The results differ by rounding only, but over
    the adapt's steps that rounding moves the demo's single-run figure as another CPU would, so it
    is off by default (docs/results.md, "Faster adapt kernels, opt-in").
    """

    model: str = "cliper-tiny-resnet"
    # None (random init) | local checkpoint file (open_clip or Long-CLIP format) | open_clip tag |
    # "hf-hub:org/repo[/file]"; tags and hub files are downloaded only when allow_download is true.
    pretrained: str | None = None
    allow_download: bool = False  # opt-in: open_clip / huggingface_hub may download clip.pretrained
    precision: Literal["fp32", "amp", "fp16", "bf16"] = "amp"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    channels_last: bool = False  # convolution weights in NHWC layout (same maths, faster kernels)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)

