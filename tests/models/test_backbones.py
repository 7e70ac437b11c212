"""Start weights: packaged ImageNet weights really are ImageNet; nothing is silently random."""

from __future__ import annotations

import logging

import pytest
import torch
from skimage import data

from kensa.models.backbones import (
    WeightsUnavailable,
    create_backbone,
    hub_reachable,
    load_by_key_order,
    resolve_weights,
)
from kensa.models.imaging import to_tensor

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    yield
    hub_reachable.cache_clear()


def test_packaged_lite0_recognises_a_cat(offline):
    model, origin = create_backbone("efficientnet_lite0")
    assert origin.source == "packaged"
    model.eval()
    with torch.inference_mode():
        logits = model(to_tensor(data.chelsea(), (224, 224)))
    assert int(logits.argmax()) in CAT_CLASSES


def test_auto_without_hub_or_packaged_weights_refuses_random_init(offline):
    with pytest.raises(WeightsUnavailable, match="weights='none'"):
        resolve_weights("efficientnet_b3", "auto")


def test_random_init_must_be_asked_for_and_is_logged(offline, caplog):
    with caplog.at_level(logging.WARNING):
        _, origin = create_backbone("efficientnet_lite0", "none")
    assert origin.source == "none"
    assert "random init" in caplog.text


def test_checkpoint_file_is_loaded_and_recorded(tmp_path, offline):
    source, _ = create_backbone("efficientnet_lite0", "packaged")
    path = tmp_path / "lite0.pth"
    torch.save(source.state_dict(), path)
    model, origin = create_backbone("efficientnet_lite0", str(path))
    assert origin.source == "file" and origin.detail == str(path)
    for a, b in zip(source.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_features_only_backbone_keeps_packaged_weights(offline):
    full, _ = create_backbone("efficientnet_lite0", "packaged")
    features, origin = create_backbone("efficientnet_lite0", "packaged", features_only=True,
                                       out_indices=(2, 3))
    assert origin.source == "packaged"
    assert torch.equal(features.state_dict()["conv_stem.weight"], full.conv_stem.weight)
    outputs = features(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == features.feature_info.channels()


def test_key_order_loading_rejects_mismatched_checkpoints():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="tensors"):
        load_by_key_order(model, {"a": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="shape mismatch"):
        load_by_key_order(model, {k: torch.zeros(1) for k in model.state_dict()})
