"""Minority synthesis: each generator trains a few steps on small images and returns images of
its size; ``kensa synthesize`` writes them marked synthetic, and layouts and ``kensa train
--synthetic`` keep them in the training split. Stable Diffusion inpainting runs a tiny randomly
initialised pipeline saved to disk in the test (no weights are downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kensa.cli import main
from kensa.models.artifacts import load_detector
from kensa.models.data.layouts import load_dataset
from kensa.models.data.synthetic import write_dataset
from kensa.models.synthesis.base import synthetic_samples
from kensa.models.synthesis.dcgan import DcganD, DcganG, dcgan_init
from kensa.models.synthesis.registry import create_generator, list_generators

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def strips(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("strips"), n_good=10, n_defective=22,
                         size=(64, 128), seed=5)


def _label_samples(root: Path, label: str):
    train = load_dataset(root, seed=0).split("train")
    return [s for s in train if label in s.labels], [s for s in train if s.is_good]


def test_registry_lists_the_three_methods():
    assert {"dcgan", "vae", "inpaint"} <= set(list_generators())
    with pytest.raises(ValueError, match="unknown synthesis method"):
        create_generator("pggan")


@pytest.mark.parametrize("size", [64, 128])
def test_dcgan_balance_and_init(size):
    g, d = DcganG(size, 1, 16), DcganD(size, 1, 4)
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    assert g(torch.randn(2, 100, 1, 1)).shape == (2, 1, size, size)
    assert d(torch.randn(2, 1, size, size)).shape == (2,)
    weights = torch.cat([m.weight.flatten() for m in g.modules()
                         if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(float(weights.std()) - 0.02) < 0.002
    kinds = [type(m).__name__ for m in d.net]
    assert kinds[:2] == ["Conv2d", "LeakyReLU"] and "BatchNorm2d" in kinds
    assert "ReLU" in [type(m).__name__ for m in g.net]


@pytest.mark.parametrize("size", [64, 128])
def test_dcgan_trains_and_generates_its_size(strips, size):
    samples, good = _label_samples(strips, "scratches")
    gen = create_generator("dcgan", size=size, epochs=2, seed=0, ngf=8, batch_size=4)
    report = gen.fit("scratches", samples, good)
    assert (report["ngf"], report["ndf"], report["channels"]) == (8, 2, 1)
    assert np.isfinite(report["final_loss_d"]) and np.isfinite(report["final_loss_g"])
    images = gen.generate(3)
    assert [im.image.shape for im in images] == [(size, size, 3)] * 3
    assert all(im.image.dtype == np.uint8 for im in images)
    assert not np.array_equal(images[0].image, images[1].image)


def test_vae_generator_trains_split_gradients_and_samples(strips):
    samples, good = _label_samples(strips, "patches")
    gen = create_generator("vae", size=32, epochs=2, seed=0, levels=3, width=8,
                           latent_channels=4)
    report = gen.fit("patches", samples, good)
    assert report["gradient_mode"] == "split"
    images = gen.generate(2)
    assert [im.image.shape for im in images] == [(32, 32, 3)] * 2
    assert not np.array_equal(images[0].image, images[1].image)


def tiny_inpainting_pipeline(folder: Path) -> Path:
    """A randomly initialised Stable Diffusion inpainting pipeline, tiny, saved like a real
    snapshot (``save_pretrained``)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=9,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4,
                        norm_num_groups=4, sample_size=16)
    text = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16, intermediate_size=32,
        num_attention_heads=2, num_hidden_layers=1, vocab_size=1000,
        max_position_embeddings=77, projection_dim=16))
    tokenizer = CLIPTokenizer(vocab={"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2,
                                     "<unk>": 3}, merges=[], unk_token="<unk>",
                              model_max_length=77)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def test_inpaint_regenerates_only_the_target_area(strips, tmp_path):
    weights = tiny_inpainting_pipeline(tmp_path / "sd")
    samples, good = _label_samples(strips, "scratches")
    gen = create_generator("inpaint", size=32, seed=0, weights=weights, steps=2)
    report = gen.fit("scratches", samples, good)
    assert report["area_source"] == "masks" and report["bases"] == len(good)
    items = gen.generate(2)
    for item in items:
        assert item.image.shape == (32, 32, 3) and item.mask.shape == (32, 32)
        assert item.mask.any() and not item.mask.all()
        base = next(s for s in good if s.name == item.info["base"])
        from PIL import Image

        resized = np.asarray(Image.fromarray(base.load_image()).convert("RGB").resize(
            (32, 32), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(item.image[~item.mask], resized[~item.mask])


def test_inpaint_without_weights_exits_with_a_clear_message(strips, tmp_path):
    with pytest.raises(SystemExit, match="needs local Stable Diffusion inpainting weights"):
        main(["synthesize", "--data", str(strips), "--label", "scratches", "--method",
              "inpaint", "--count", "2", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="not a diffusers pipeline folder"):
        main(["synthesize", "--data", str(strips), "--label", "scratches", "--method",
              "inpaint", "--count", "2", "--out", str(tmp_path / "out"),
              "--weights", str(tmp_path)])
    assert not (tmp_path / "out").exists()


def test_synthesize_cli_marks_images_and_train_keeps_them_in_train(strips, tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synthesize", "--data", str(strips), "--label", "scratches", "--method",
                 "dcgan", "--count", "4", "--epochs", "1", "--size", "64", "--out",
                 str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["written"] == 4 and result["image_size"] == [64, 128]
    files = sorted((out / "scratches").glob("synthetic_dcgan_scratches_*.png"))
    assert len(files) == 4
    sidecar = json.loads(files[0].with_suffix(".json").read_text())
    assert sidecar["synthetic"] is True and sidecar["method"] == "dcgan"
    assert json.loads((out / "SYNTHETIC.json").read_text())[0]["count"] == 4
    samples = synthetic_samples(out)
    assert [s.split for s in samples] == ["train"] * 4
    assert all(s.meta["synthetic"] and s.labels == ("scratches",) for s in samples)
    assert samples[0].load_image().shape == (64, 128, 3)

    # a folders-layout dataset holding them: marked, never held out
    ds = load_dataset(out, "folders", seed=0)
    assert {s.split for s in ds.samples} == {"train"}
    assert ds.summary()["n_synthetic"] == 4

    artifact = tmp_path / "clf"
    assert main(["train", "classify", "--data", str(strips), "--out", str(artifact),
                 "--arch", "classifier_lite0", "--weights", "none", "--epochs", "1",
                 "--img-size", "32x64", "--batch", "8", "--synthetic", str(out),
                 "--augment", "blackout"]) == 0
    detector = load_detector(artifact)
    assert detector.config.augment == "blackout"
    record = detector.metadata.training_data
    assert record["synthetic"]["count"] == 4 and record["augment"] == "blackout"
    assert "synthetic" not in json.dumps(record["splits"]["test"])
