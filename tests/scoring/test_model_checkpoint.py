from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from cytoscreen.errors import BadCheckpoint
from cytoscreen.scoring.card import BUNDLED_MODEL_DIR, ModelCard, read_card
from cytoscreen.scoring.checkpoint import (
    CARD_NAME,
    WEIGHTS_NAME,
    load_checkpoint,
    load_state_checked,
    save_checkpoint,
)
from cytoscreen.scoring.model import create_model, new_card, preprocessing_of

from .conftest import TINY_ARCH


def test_create_model_has_requested_classes_and_no_download() -> None:
    model = create_model(TINY_ARCH, 5).eval()
    out = model(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 5)


def test_create_model_rejects_unknown_arch() -> None:
    with pytest.raises(ValueError, match="unknown timm architecture"):
        create_model("no_such_net_123", 2)


@pytest.mark.parametrize("arch", [TINY_ARCH, "test_vit"])
def test_card_normalisation_is_read_from_the_model(arch: str) -> None:
    model = create_model(arch, 2)
    cfg = timm.data.resolve_model_data_config(model)
    prep = preprocessing_of(model)
    assert prep.mean == pytest.approx(cfg["mean"])
    assert prep.std == pytest.approx(cfg["std"])
    assert prep.input_size == tuple(cfg["input_size"])


def test_card_rejects_positive_class_not_in_classes() -> None:
    with pytest.raises(ValueError, match="not among the classes"):
        new_card(create_model(TINY_ARCH, 2), TINY_ARCH, ["a", "b"], ["c"])


def test_round_trip_gives_identical_outputs(tiny_model_dir: Path) -> None:
    model, card = load_checkpoint(tiny_model_dir)
    assert card.arch == TINY_ARCH and card.classes == ["neg", "low", "high"]
    assert len(card.weights_sha256) == 64 and card.model_id.startswith(TINY_ARCH + "-")
    torch.manual_seed(1)
    fresh = create_model(TINY_ARCH, 3).eval()
    x = torch.rand(2, 3, 32, 32)
    saved = load_file(str(tiny_model_dir / WEIGHTS_NAME))
    fresh.load_state_dict(saved)
    assert torch.equal(model(x), fresh(x))
    # the card is plain JSON that validates back into the same card
    data = json.loads((tiny_model_dir / CARD_NAME).read_text())
    assert ModelCard.model_validate(data) == card


def test_other_class_count_is_refused_with_shape_mismatch(tiny_model_dir: Path) -> None:
    with pytest.raises(BadCheckpoint) as err:
        load_checkpoint(tiny_model_dir, num_classes=2)
    text = str(err.value)
    assert "expected 2" in text and "classifier.weight" in text and str(tiny_model_dir) in text


def test_other_architecture_is_refused_listing_keys(tiny_model_dir: Path) -> None:
    with pytest.raises(BadCheckpoint) as err:
        load_checkpoint(tiny_model_dir, arch="test_resnet")
    text = str(err.value)
    assert "architecture is test_efficientnet" in text
    assert "missing keys" in text and "unexpected keys" in text


def test_tampered_weights_fail_hash_check(tiny_model_dir: Path) -> None:
    state = load_file(str(tiny_model_dir / WEIGHTS_NAME))
    first = next(iter(state))
    state[first] = state[first] + 1
    save_file(state, str(tiny_model_dir / WEIGHTS_NAME))
    with pytest.raises(BadCheckpoint, match="sha256"):
        load_checkpoint(tiny_model_dir)


def test_pickle_file_is_never_loaded(tmp_path: Path, tiny_model_dir: Path) -> None:
    # a pickle dressed as safetensors must be rejected, not unpickled
    torch.save({"x": torch.zeros(1)}, tiny_model_dir / WEIGHTS_NAME)
    with pytest.raises(BadCheckpoint, match="safetensors"):
        load_checkpoint(tiny_model_dir, verify_hash=False)


def test_missing_card_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadCheckpoint, match="no card.json"):
        load_checkpoint(tmp_path)


def test_load_state_checked_names_missing_and_unexpected() -> None:
    model = create_model(TINY_ARCH, 2)
    state = dict(model.state_dict())
    state.pop("conv_stem.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(BadCheckpoint) as err:
        load_state_checked(model, state, source="x.safetensors")
    assert "conv_stem.weight" in str(err.value) and "extra.weight" in str(err.value)


def test_save_records_card_fields(tmp_path: Path) -> None:
    model = create_model(TINY_ARCH, 2)
    card = new_card(model, TINY_ARCH, ["neg", "abn"], ["abn"], precision="bf16")
    saved = save_checkpoint(model, card, tmp_path / "m")
    assert saved.precision == "bf16" and saved.preprocessing.input_size == (3, 224, 224)
    assert saved.positive_indices() == [1]


def test_the_shipped_card_loads_and_dumps_to_the_same_bytes() -> None:
    shipped = BUNDLED_MODEL_DIR / CARD_NAME
    card = read_card(BUNDLED_MODEL_DIR)
    assert card.model_dump(mode="json") == json.loads(shipped.read_text())
    assert card.model_dump_json(indent=2) == shipped.read_text()  # as save_checkpoint writes
    sens = card.validation["sensitivity"]  # a proportion: value and interval, no k
    assert sens.method == "clopper-pearson" and sens.n > 0 and sens.value is not None
