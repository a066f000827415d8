"""CLIP loading (random init, local checkpoint round trip, refused tags) and trimmed text encoding."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cliper.clip.encode import can_trim, encode_text_trimmed, pad_tokens
from cliper.clip.load import load_clip, save_checkpoint
from cliper.errors import CliperError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    return load_clip("cliper-tiny", None, "fp32", "cpu", seed=3)


def _outputs(loaded):
    image = loaded.preprocess(Image.new("RGB", (80, 60), (200, 30, 90)))[None]
    tokens = loaded.tokenizer(["The product title is Soft Blanket.", "The product brand is Missing."])
    with torch.inference_mode():
        return loaded.model.encode_image(image), loaded.model.encode_text(tokens)


def test_tiny_config_is_registered_and_sized_for_cpu(tiny):
    assert tiny.embed_dim == 128 and tiny.context_length == 77
    assert tiny.checkpoint is None and tiny.sha256 is None
    assert sum(p.numel() for p in tiny.model.parameters()) < 12_000_000
    assert "bicubic" in repr(tiny.preprocess).lower()


def test_demo_resnet_config_is_a_conv_tower_sized_for_cpu():
    """cliper-tiny-resnet (params.yaml's demo model): a ModifiedResNet image tower, 64 px, 128 dims."""
    loaded = load_clip("cliper-tiny-resnet", None, "fp32", "cpu", seed=3)
    assert type(loaded.model.visual).__name__ == "ModifiedResNet"
    assert loaded.embed_dim == 128 and loaded.context_length == 77
    assert sum(p.numel() for p in loaded.model.visual.parameters()) < 6_000_000  # 5.3 M
    image, text = _outputs(loaded)
    assert image.shape == (1, 128) and text.shape == (2, 128)
    assert "64" in repr(loaded.preprocess)  # resized to the tower's 64 px


def test_channels_last_keeps_the_outputs_and_saves_the_default_layout(tmp_path):
    """clip.channels_last: NHWC conv weights, the same embeddings but for rounding, the same checkpoint."""
    plain = load_clip("cliper-tiny-resnet", None, "fp32", "cpu", seed=3)
    nhwc = load_clip("cliper-tiny-resnet", None, "fp32", "cpu", seed=3, channels_last=True)
    conv = nhwc.model.visual.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.model.visual.conv1.weight.is_contiguous()
    for a, b in zip(_outputs(plain), _outputs(nhwc), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    saved = save_checkpoint(nhwc.model, tmp_path / "nhwc.bin")
    assert saved == save_checkpoint(plain.model, tmp_path / "plain.bin")


def test_checkpoint_round_trip_through_pretrained_path(tiny, tmp_path):
    sha = save_checkpoint(tiny.model, tmp_path / "ckpt" / "model.bin")
    again = load_clip("cliper-tiny", "ckpt/model.bin", "fp32", "cpu", root=tmp_path, seed=99)
    assert again.sha256 == sha and again.checkpoint == str(tmp_path / "ckpt" / "model.bin")
    for a, b in zip(_outputs(tiny), _outputs(again), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_bytes_do_not_depend_on_the_path(tiny, tmp_path):
    """Same weights -> same file hash wherever it is written (DVC sees an unchanged output)."""
    first = save_checkpoint(tiny.model, tmp_path / "a" / "model.bin")
    second = save_checkpoint(tiny.model, tmp_path / "b" / "other_name.bin")
    assert first == second


def test_same_seed_same_random_init():
    a = load_clip("cliper-tiny", None, "fp32", "cpu", seed=5)
    b = load_clip("cliper-tiny", None, "fp32", "cpu", seed=5)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    )


def test_download_tag_is_refused_with_a_clear_message():
    with pytest.raises(CliperError, match="clip.allow_download: true"):
        load_clip("ViT-B-32", "openai", "fp32", "cpu")


@pytest.mark.parametrize(
    ("model", "pretrained", "match"),
    [
        ("no-such-model", None, "unknown model"),
        ("cliper-tiny", "missing/ckpt.bin", "no such checkpoint"),
    ],
)
def test_bad_model_or_path_is_refused(model, pretrained, match):
    with pytest.raises(CliperError, match=match):
        load_clip(model, pretrained, "fp32", "cpu")


def test_fp16_on_cpu_is_refused():
    with pytest.raises(CliperError, match="CUDA"):
        load_clip("cliper-tiny", None, "fp16", "cpu")


def test_trimmed_text_encoding_matches_full_context(tiny):
    texts = [
        "The product title is a.",
        "The product categories are Baby Nursery Bedding Blankets.",
        "The product description is " + "very soft and warm " * 6,
    ]
    full = tiny.tokenizer(texts)
    assert can_trim(tiny.model)
    with torch.inference_mode():
        ref = tiny.model.encode_text(full)
        length = int(full.argmax(dim=-1).max()) + 1
        trimmed = encode_text_trimmed(tiny.model, full[:, :length])
        single = encode_text_trimmed(tiny.model, full[:1, : int(full[0].argmax()) + 1])
    assert length < 77
    torch.testing.assert_close(trimmed, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, ref[:1], atol=1e-5, rtol=1e-5)


def test_pad_tokens_right_pads_with_zero():
    out = pad_tokens([[5, 6, 7], [8]])
    assert out.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert pad_tokens([[1]], 4).shape == (1, 4)
