"""Contrastive adaptation of the CLIP model to the catalog's item image-text pairs.

Objective: CLIP's symmetric InfoNCE (Radford et al., 2021). For a batch of B items with
L2-normalised image embeddings ``u_i`` and text embeddings ``v_i``, logits
``z_ij = exp(s) * u_i . v_j`` with a learnable logit scale ``s`` (clamped at ln 100 as in
CLIP), loss ``(CE(z, diag) + CE(z^T, diag)) / 2``. Each step pairs every item's image with
one of its text views drawn at random (seeded), so all views are learned; ``caption_views``
restricts the draw to the listed views (each equally likely). With
``text_weight > 0`` a second, different view of each item is drawn and a text-text InfoNCE
between the two views (same item = positive) is added with that weight: it makes the text
encoder keep what the views share but the image cannot show (brand, material). With
``hard_negatives > 0`` that share of every batch is mined: near neighbours, in the current image
embedding space, of the batch's anchors (:mod:`cliper.clip.hard_batches`). With ``grayscale > 0``
that share of the images is shown in grey (:mod:`cliper.clip.augment`). With
``swap_negatives > 0`` that share of every batch's captions also gets a hard negative caption, the
caption with one sentence swapped for an alike sentence of another item's same view, added to the
image->text side of the loss (:mod:`cliper.clip.swap_negatives`). With ``words_weight > 0``
the image embedding also predicts which vocabulary words the item's views contain, added with
that weight (:mod:`cliper.clip.caption_words`). With
``lr_schedule: cosine`` the learning rate warms up linearly over ``warmup_fraction`` of the
steps, then follows a cosine from ``lr`` towards zero at the end of the last epoch. A seeded fraction
of the items (``val_fraction``) is held out; image->text and text->image Recall@1/@10 on the
held-out items (text = ``eval_view``) are measured before and after, next to chance (k/n).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cliper.clip.augment import normalisation, random_grayscale
from cliper.clip.caption_words import WordHead, caption_words
from cliper.clip.encode import can_trim, encode_text_trimmed
from cliper.clip.hard_batches import EmbeddingMemory, hard_batches, nearest_neighbours
from cliper.clip.load import LoadedClip
from cliper.clip.swap_negatives import swapped_captions
from cliper.config import AdaptConfig
from cliper.errors import CliperError
from cliper.views.images import ImageDataset

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps exp(s) at 100
RECALL_KS = (1, 10)
FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel (one pass over all weights)


@dataclass
class AdaptResult:
    """Held-out retrieval before/after, training losses and the split sizes."""

    before: dict[str, float]
    after: dict[str, float]
    chance: dict[str, float]
    losses: list[float] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0


class _Indexed(torch.utils.data.Dataset):
    """(image tensor, item index) pairs for a subset of items; optionally decoded once into memory."""

    def __init__(self, images: ImageDataset, items: np.ndarray, preload_mb: float = 0.0):
        self.images, self.items = images, items
        self.cache: torch.Tensor | None = None
        if len(items) and preload_mb > 0:
            first = images[int(items[0])]
            if first.numel() * first.element_size() * len(items) <= preload_mb * 2**20:
                self.cache = torch.stack(
                    [first] + [images[int(i)] for i in tqdm(items[1:], desc="decode images", unit="image")]
                )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        item = int(self.items[k])
        return (self.images[item] if self.cache is None else self.cache[k]), item

    @property
    def preloaded(self) -> bool:
        """The images are in memory: nothing is left for loader processes to decode."""
        return self.cache is not None


def tokenize_views(loaded: LoadedClip, texts: np.ndarray) -> torch.Tensor:
    """Token ids [I, V, context] of the prompts ``texts`` [V, I] (long prompts truncated)."""
    n_views, n_items = texts.shape
    flat = loaded.tokenizer(texts.reshape(-1).tolist())
    return flat.reshape(n_views, n_items, -1).transpose(0, 1).contiguous()


def split_items(n_items: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) item indices; val has ``round(val_fraction * n)`` items."""
    n_val = int(round(val_fraction * n_items))
    if n_items - n_val < 2:
        raise CliperError(
            f"clip.adapt: {n_items} items leave {n_items - n_val} for training; need >= 2 "
            "(lower clip.adapt.val_fraction)"
        )
    perm = np.random.default_rng(seed).permutation(n_items)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _encode_texts(loaded: LoadedClip, tokens: torch.Tensor) -> torch.Tensor:
    """Normalised text embeddings of token rows [B, context], trimmed to the batch when safe."""
    tokens = tokens.to(loaded.device)
    if can_trim(loaded.model):
        length = int(tokens.argmax(dim=-1).max()) + 1  # EOT has the highest id
        emb = encode_text_trimmed(loaded.model, tokens[:, :length])
    else:
        emb = loaded.model.encode_text(tokens)
    return F.normalize(emb.float(), dim=-1)


def retrieval(
    loaded: LoadedClip, images: ImageDataset, tokens: torch.Tensor, items: np.ndarray, batch_size: int
) -> dict[str, float]:
    """Image->text and text->image Recall@k over ``items`` (one text per item)."""
    if len(items) == 0:
        return {}
    loader = torch.utils.data.DataLoader(_Indexed(images, items), batch_size=batch_size)
    with torch.inference_mode(), loaded.autocast():
        img = torch.cat(
            [F.normalize(loaded.model.encode_image(x.to(loaded.device)).float(), dim=-1) for x, _ in loader]
        )
        txt = torch.cat(
            [
                _encode_texts(loaded, tokens[items[s : s + batch_size]])
                for s in range(0, len(items), batch_size)
            ]
        )
    sim = img @ txt.T
    target = sim.diagonal()
    out = {}
    for name, s, t in (("i2t", sim, target), ("t2i", sim.T, target)):
        rank = (s > t[:, None]).sum(dim=1)  # items scored strictly above the true pair
        for k in RECALL_KS:
            out[f"{name}_recall@{k}"] = float((rank < k).float().mean())
    return out


def _info_nce(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, b_negatives: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE of normalised rows ``a`` and ``b`` (row i of each = one positive pair).

    ``b_negatives`` (rows like ``b``, no partner in ``a``) are extra candidates for every row of
    ``a`` in the a->b direction only, as NegCLIP adds its hard negative captions.
    """
    logits = scale * a @ b.T
    target = torch.arange(len(a), device=a.device)
    a_to_b = logits if b_negatives is None else torch.cat([logits, scale * a @ b_negatives.T], dim=1)
    return (F.cross_entropy(a_to_b, target) + F.cross_entropy(logits.T, target)) / 2


def _train_step(
    loaded: LoadedClip,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    tokens: torch.Tensor,
    other_tokens: torch.Tensor | None = None,
    text_weight: float = 0.0,
    negative_tokens: torch.Tensor | None = None,
    words: tuple[WordHead, torch.Tensor, float] | None = None,
) -> tuple[float, torch.Tensor]:
    model = loaded.model
    # bf16 autocast for training on CUDA (no loss scaler needed); a no-op on CPU.
    amp = loaded.device.type == "cuda" and loaded.precision == "amp"
    with torch.autocast(loaded.device.type, dtype=torch.bfloat16, enabled=amp):
        img = F.normalize(model.encode_image(images.to(loaded.device)).float(), dim=-1)
        txt = _encode_texts(loaded, tokens)
        other = _encode_texts(loaded, other_tokens) if other_tokens is not None else None
        negatives = _encode_texts(loaded, negative_tokens) if negative_tokens is not None else None
    scale = model.logit_scale.exp().float()
    loss = _info_nce(img, txt, scale, negatives)
    if other is not None:
        loss = loss + text_weight * _info_nce(txt, other, scale)
    if words is not None:  # (head, the batch's word targets, weight)
        loss = loss + words[2] * words[0].loss(img, words[1].to(img.device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return float(loss.detach()), img.detach()


def make_optimizer(weights: list[torch.Tensor], cfg: AdaptConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over ``weights``; with ``cfg.fused_adamw`` torch's fused kernel, where it has one."""
    fused = (cfg.fused_adamw and device.type in FUSED_ADAMW_DEVICES
             and all(w.is_floating_point() for w in weights))
    return torch.optim.AdamW(weights, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def caption_draw(
    n_views: int, caption_views: list[int] | None, n: int, gen: torch.Generator
) -> torch.Tensor:
    """The view row of each of ``n`` training captions: uniform over ``caption_views`` (None: all)."""
    pool = torch.arange(n_views) if caption_views is None else torch.tensor(caption_views)
    return pool[torch.randint(len(pool), (n,), generator=gen)]


def lr_factor(cfg: AdaptConfig, step: int, n_steps: int) -> float:
    """Multiplier of ``cfg.lr`` for optimiser step ``step`` (0-based) of ``n_steps``."""
    if cfg.lr_schedule == "constant":
        return 1.0
    warmup = int(cfg.warmup_fraction * n_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(n_steps - warmup, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def adapt_clip(
    loaded: LoadedClip,
    texts: np.ndarray,
    images: ImageDataset,
    cfg: AdaptConfig,
    eval_view: int,
    num_workers: int = 0,
    caption_views: list[int] | None = None,
) -> AdaptResult:
    """Fine-tune ``loaded.model`` in place on (image, random view) pairs; report held-out retrieval.

    Args:
        texts: prompts [V, I] (views x items).
        images: one image per item (placeholders included), transformed for the model.
        cfg: epochs, batch size, learning rate, weight decay, val fraction, seed.
        eval_view: row of ``texts`` used as the held-out retrieval text.
        caption_views: rows of ``texts`` drawn as training captions (None: all; the same draws).
    """
    n_views, n_items = texts.shape
    train, val = split_items(n_items, cfg.val_fraction, cfg.seed)
    tokens = tokenize_views(loaded, texts)
    eval_tokens = tokens[:, eval_view]
    model = loaded.model
    model.eval()
    before = retrieval(loaded, images, eval_tokens, val, cfg.batch_size)
    result = AdaptResult(
        before,
        before,
        {f"recall@{k}": min(k, len(val)) / max(len(val), 1) for k in RECALL_KS},
        n_train=len(train),
        n_val=len(val),
    )
    if cfg.epochs == 0:
        return result
    gen = torch.Generator().manual_seed(cfg.seed)
    dataset = _Indexed(images, train, cfg.preload_images_mb)
    if dataset.preloaded:
        num_workers = 0
    memory = EmbeddingMemory(n_items) if cfg.hard_negatives > 0 else None
    head, targets = None, None
    if cfg.words_weight > 0:
        vocab = caption_words(texts, train, cfg.words_max, cfg.words_min_items, cfg.words_max_share)
        targets = vocab.targets
        torch.manual_seed(cfg.seed)  # the head's initial weights
        head = WordHead(model.visual.output_dim, len(vocab.vocabulary)).to(loaded.device)
        log.info("adapt: caption-word head over %d words", len(vocab.vocabulary))
    trained = [*model.parameters(), *(head.parameters() if head is not None else [])]
    opt = make_optimizer(trained, cfg, loaded.device)
    n_steps = cfg.epochs * (len(train) // _batch_size(cfg, len(train)))  # full batches: the last is dropped
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(cfg, step, n_steps))
    mean, std = normalisation(loaded.preprocess) if cfg.grayscale > 0 else ((), ())
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)  # its own stream: grayscale 0 keeps the batches
    swap_rng = np.random.default_rng(cfg.seed + 2)  # ... and so does swap_negatives 0
    model.train()
    bar = tqdm(range(cfg.epochs), desc="adapt", unit="epoch")
    for _ in bar:
        losses = []
        for batch, items in _epoch_loader(dataset, cfg, memory, train, gen, num_workers):
            views = caption_draw(n_views, caption_views, len(items), gen)
            other = None
            if cfg.text_weight > 0 and n_views > 1:  # a different view of the same item
                shift = torch.randint(1, n_views, (len(items),), generator=gen)
                other = tokens[items, (views + shift) % n_views]
            batch = random_grayscale(batch, cfg.grayscale, mean, std, aug_gen)
            negatives = _negative_tokens(loaded, texts, items, views, cfg, swap_rng)
            words = None if head is None else (head, targets[items], cfg.words_weight)
            loss, img = _train_step(
                loaded, opt, batch, tokens[items, views], other, cfg.text_weight, negatives, words
            )
            schedule.step()
            losses.append(loss)
            if memory is not None:
                memory.update(items, img)
        result.losses.append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
    model.eval()
    result.after = retrieval(loaded, images, eval_tokens, val, cfg.batch_size)
    log.info("adapt: held-out %s -> %s", before, result.after)
    return result


def _negative_tokens(
    loaded: LoadedClip, texts: np.ndarray, items: torch.Tensor, views: torch.Tensor, cfg: AdaptConfig,
    rng: np.random.Generator,
) -> torch.Tensor | None:
    """Token rows of this batch's sentence-swap negatives (donor: the next item's same view), or None."""
    if cfg.swap_negatives <= 0 or len(items) < 2:
        return None
    rows, cols = views.numpy(), items.numpy()
    captions = texts[rows, cols]
    donors = texts[rows, np.roll(cols, -1)]
    negatives, _ = swapped_captions(captions, donors, cfg.swap_negatives, cfg.swap_min_overlap, rng)
    return loaded.tokenizer(negatives) if negatives else None


def _batch_size(cfg: AdaptConfig, n_train: int) -> int:
    """``cfg.batch_size``, capped at the number of training items."""
    return min(cfg.batch_size, n_train)


def _epoch_loader(
    dataset: _Indexed,
    cfg: AdaptConfig,
    memory: EmbeddingMemory | None,
    train: np.ndarray,
    gen: torch.Generator,
    num_workers: int,
) -> torch.utils.data.DataLoader:
    """This epoch's batches: shuffled ones, or hard-negative ones mined from ``memory``."""
    batch_size = _batch_size(cfg, len(train))
    if memory is None:
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=gen,
            num_workers=num_workers,
        )
    neighbours = None
    if memory.ready:
        neighbours = nearest_neighbours(memory.table[torch.from_numpy(train)], cfg.hard_negatives_k)
    batches = hard_batches(len(train), batch_size, neighbours, cfg.hard_negatives, gen)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=[b.tolist() for b in batches], num_workers=num_workers
    )


def image_dataset(loaded: LoadedClip, paths: list[Path | None]) -> ImageDataset:
    """Images for adaptation, transformed by the model's own ``preprocess_val``."""
    return ImageDataset(paths, loaded.preprocess)
