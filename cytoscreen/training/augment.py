"""albumentations pipelines built from the training config."""

from __future__ import annotations

import albumentations as A
import cv2

from cytoscreen.training.config import AugmentConfig


def train_pipeline(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    """Flips, 90-degree turns, stain/colour, focus, JPEG artefacts and small scale changes."""
    return A.Compose(
        [
            A.HorizontalFlip(p=cfg.hflip),
            A.VerticalFlip(p=cfg.vflip),
            A.RandomRotate90(p=cfg.rotate90),
            A.Affine(scale=cfg.scale, border_mode=cv2.BORDER_REFLECT_101, p=cfg.scale_p),
            A.OneOf(
                [
                    A.HueSaturationValue(
                        hue_shift_limit=cfg.hue_shift,
                        sat_shift_limit=cfg.sat_shift,
                        val_shift_limit=cfg.val_shift,
                        p=1.0,
                    ),
                    A.RandomBrightnessContrast(
                        brightness_limit=cfg.brightness, contrast_limit=cfg.contrast, p=1.0
                    ),
                    A.RandomGamma(gamma_limit=cfg.gamma, p=1.0),
                ],
                p=cfg.colour_p,
            ),
            A.GaussianBlur(sigma_limit=cfg.blur_sigma, p=cfg.blur_p),
            A.ImageCompression(quality_range=cfg.jpeg_quality, p=cfg.jpeg_p),
        ],
        seed=seed,
    )


def eval_pipeline() -> A.Compose:
    """Validation and inference see the pixels as they are."""
    return A.Compose([])
