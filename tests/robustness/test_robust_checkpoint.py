"""Issue 7, case 13: checkpoints for another architecture or class count fail a strict load
with an error listing the mismatches; a malicious pickle (whose payload would create a file)
never runs on any load path the package offers."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from cytoscreen.errors import BadCheckpoint
from cytoscreen.scoring.checkpoint import CARD_NAME, WEIGHTS_NAME, load_checkpoint
from cytoscreen.scoring.model import create_model
from cytoscreen.scoring.pretrained import load_lite0_imagenet

ARCH = "test_efficientnet"


def _edit_card(model_dir: Path, dst: Path, **changes: Any) -> Path:
    shutil.copytree(model_dir, dst)
    card = json.loads((dst / CARD_NAME).read_text(encoding="utf-8"))
    card.update(changes)
    (dst / CARD_NAME).write_text(json.dumps(card), encoding="utf-8")
    return dst


def test_wrong_architecture_lists_the_mismatched_keys(model_dir: Path, tmp_path: Path) -> None:
    other = _edit_card(model_dir, tmp_path / "m", arch="test_vit")
    with pytest.raises(BadCheckpoint) as err:
        load_checkpoint(other)
    text = str(err.value)
    assert str(other) in text
    assert "missing keys" in text and "unexpected keys" in text
    assert "blocks." in text  # EfficientNet keys the ViT does not have


def test_expected_architecture_and_classes_are_checked(model_dir: Path) -> None:
    with pytest.raises(BadCheckpoint) as err:
        load_checkpoint(model_dir, arch="test_vit", num_classes=5)
    text = str(err.value)
    assert "architecture is test_efficientnet, expected test_vit" in text
    assert "2 classes" in text and "expected 5" in text


def test_wrong_class_count_lists_the_shape_mismatch(model_dir: Path, tmp_path: Path) -> None:
    other = _edit_card(model_dir, tmp_path / "m", classes=["a", "b", "c"])
    with pytest.raises(BadCheckpoint) as err:
        load_checkpoint(other)
    text = str(err.value)
    assert "shape mismatches" in text and "classifier.weight: got (2," in text
    assert "want (3," in text


class _Payload:
    """Unpickling this creates ``marker``: the proof that a pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _evil(path: Path, marker: Path, style: str) -> Path:
    state = {"conv_stem.weight": torch.zeros(1), "boom": _Payload(marker)}
    if style == "torch-zip":
        torch.save(state, path)
    elif style == "torch-legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(state))
    return path


STYLES = ["torch-zip", "torch-legacy", "plain-pickle"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", [WEIGHTS_NAME, "model.pth", "model.pt", "pytorch_model.bin"])
def test_malicious_pickle_never_runs_in_load_checkpoint(
    model_dir: Path, tmp_path: Path, style: str, name: str
) -> None:
    bad = tmp_path / "m"
    shutil.copytree(model_dir, bad)
    (bad / WEIGHTS_NAME).unlink()
    marker = tmp_path / "pwned"
    _evil(bad / name, marker, style)
    for verify in (True, False):
        with pytest.raises(BadCheckpoint) as err:
            load_checkpoint(bad, verify_hash=verify)
        assert str(bad) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("style", STYLES)
def test_malicious_pickle_never_runs_in_the_imagenet_loader(tmp_path: Path, style: str) -> None:
    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "lite0.pth", marker, style)
    model = create_model(ARCH, 2)
    with pytest.raises(Exception) as err:  # noqa: B017 - torch raises UnpicklingError/RuntimeError
        load_lite0_imagenet(model, path=path)
    assert not marker.exists()
    assert "weights_only" in str(err.value) or isinstance(err.value, BadCheckpoint)


def test_the_payload_is_real(tmp_path: Path) -> None:
    """The same bytes do run their payload when unpickled unsafely: the tests above can fail."""
    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "x.pth", marker, "torch-zip")
    torch.load(path, weights_only=False)
    assert marker.exists()
