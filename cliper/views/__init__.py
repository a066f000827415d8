"""Item views: text prompts per view (:mod:`cliper.views.prompts`) and images
(:mod:`cliper.views.images`: RGB loading, placeholder, manifest)."""

from cliper.views.images import build_manifest, missing_list, placeholder
from cliper.views.prompts import build_views, chunk_tokens, view_prefix

__all__ = ["build_manifest", "build_views", "chunk_tokens", "missing_list", "placeholder", "view_prefix"]
