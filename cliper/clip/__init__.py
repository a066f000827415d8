"""One CLIP model (open_clip) for item views and images: loading (:mod:`~cliper.clip.load`),
trimmed-context text encoding (:mod:`~cliper.clip.encode`), contrastive adaptation
(:mod:`~cliper.clip.adapt`) and batched resumable extraction (:mod:`~cliper.clip.extract`)."""

from cliper.clip.load import LoadedClip, load_clip, save_checkpoint

__all__ = ["LoadedClip", "load_clip", "save_checkpoint"]
