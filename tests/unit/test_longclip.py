"""Long-CLIP checkpoints: a small checkpoint in Long-CLIP's format, built here, loaded by cliper."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch

from cliper.clip.load import load_clip, save_checkpoint
from cliper.errors import CliperError
from cliper.views.prompts import BpeTokenizer, count_tokens

LONG, SHORT = "cliper-test-longclip", "cliper-test-longclip77"
WIDTH, CONTEXT, KEPT = 64, 248, 20
LONG_PROMPT = "The product description is " + " ".join(f"soft cotton blanket number {i}," for i in range(30))


def _config(context: int) -> dict:
    return {"embed_dim": 32, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
            "text_cfg": {"context_length": context, "vocab_size": 49408, "width": WIDTH, "heads": 2,
                         "layers": 2}}


@pytest.fixture(scope="module")
def longclip_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A Long-CLIP-format checkpoint: OpenAI-CLIP keys, fp16, two [248, width] position tables."""
    folder = tmp_path_factory.mktemp("longclip")
    for name, ctx in ((LONG, CONTEXT), (SHORT, 77)):
        (folder / f"{name}.json").write_text(json.dumps(_config(ctx)))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    state = open_clip.create_model(LONG).state_dict()
    gen = torch.Generator().manual_seed(1)
    state["positional_embedding"] = torch.randn(CONTEXT, WIDTH, generator=gen) * 0.5
    state["positional_embedding_res"] = torch.randn(CONTEXT, WIDTH, generator=gen) * 0.5
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # as released
    path = folder / "longclip-tiny.pt"
    torch.save(state, path)
    return path, state


def _direct_encode_text(state: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Long-CLIP's text encoder written out: tok + pe*mask1 + pe_res*mask2, then the CLIP text tower."""
    ref = open_clip.create_model(LONG)
    weights = {k: v.float() for k, v in state.items() if k != "positional_embedding_res"}
    ref.load_state_dict(weights, strict=True)
    ref.eval()
    pe, pe_res = state["positional_embedding"].float(), state["positional_embedding_res"].float()
    mask1 = torch.zeros(CONTEXT, 1)
    mask1[:KEPT] = 1
    mask2 = 1 - mask1
    with torch.no_grad():
        x = ref.token_embedding(tokens) + pe * mask1 + pe_res * mask2
        x = ref.ln_final(ref.transformer(x, attn_mask=ref.attn_mask))
        pooled = x[torch.arange(len(tokens)), tokens.argmax(dim=-1)]  # the EOT token (highest id)
        return pooled @ ref.text_projection


def test_encode_text_equals_the_direct_long_clip_computation(longclip_file):
    path, state = longclip_file
    loaded = load_clip(LONG, str(path), "fp32", "cpu")
    assert loaded.context_length == CONTEXT
    tokens = loaded.tokenizer(["a baby blanket", LONG_PROMPT])
    assert tokens.shape == (2, CONTEXT) and int((tokens[1] != 0).sum()) > 77  # really long
    with torch.no_grad():
        ours = loaded.model.encode_text(tokens)
    torch.testing.assert_close(ours, _direct_encode_text(state, tokens), rtol=1e-5, atol=1e-5)
    # the image tower got the checkpoint's weights too
    torch.testing.assert_close(loaded.model.visual.conv1.weight, state["visual.conv1.weight"].float())


def test_a_model_left_at_context_77_is_refused(longclip_file):
    path, _ = longclip_file
    with pytest.raises(CliperError, match="248 positions.*77-token context.*interpolate"):
        load_clip(SHORT, str(path), "fp32", "cpu")


def test_the_adapted_checkpoint_reloads_with_the_same_long_context(longclip_file, tmp_path):
    path, _ = longclip_file
    loaded = load_clip(LONG, str(path), "fp32", "cpu")
    save_checkpoint(loaded.model, tmp_path / "adapted.pt")  # what adapt writes and extract reads
    again = load_clip(LONG, str(tmp_path / "adapted.pt"), "fp32", "cpu")
    tokens = loaded.tokenizer([LONG_PROMPT])
    with torch.no_grad():
        torch.testing.assert_close(again.model.encode_text(tokens), loaded.model.encode_text(tokens))


def test_long_prompts_are_chunked_at_248_tokens(longclip_file):
    path, _ = longclip_file
    long_tok = BpeTokenizer.from_open_clip(load_clip(LONG, str(path), "fp32", "cpu").tokenizer, CONTEXT)
    short_tok = BpeTokenizer.from_open_clip(open_clip.get_tokenizer(SHORT), 77)
    prefix = "The product description is"
    (n_tokens,), (long_chunks,) = count_tokens([LONG_PROMPT], [prefix], long_tok)
    _, (short_chunks,) = count_tokens([LONG_PROMPT], [prefix], short_tok)
    assert 77 < n_tokens <= CONTEXT and long_chunks == 1 and short_chunks == 3
    (double,), (two,) = count_tokens([LONG_PROMPT + LONG_PROMPT[len(prefix):]], [prefix], long_tok)
    assert double > CONTEXT and two == 2
