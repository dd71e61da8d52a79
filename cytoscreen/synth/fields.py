"""Real CRIC fields pasted back together, and the pieces of them that slides are built from.

The crops of one field, pasted at (``crop_x0``, ``crop_y0``), recover the parts of the real
field around its labelled cells: neighbours, overlaps, inflammatory cells and background, pixel
for pixel (overlapping crops agree). A ``Field`` is that mosaic; a ``Piece`` is a connected part
of it made of whole crop windows, chosen by which abnormal nuclei it may show:

- a **negative piece** shows no abnormal cell: it is made only of windows that lie at least
  ``NEGATIVE_CLEARANCE`` from every labelled abnormal nucleus of the field. Not every cell of
  a CRIC field is labelled, and abnormal cells come in groups: the unlabelled neighbours of a
  labelled abnormal cell are often abnormal too. Measured on 10 generated val negatives cut
  with the old 32 px margin, the bundled model scored 0.9 or more on 3.2% of the patches whose
  material lay within 150 px of a labelled abnormal nucleus in its field, 0.7% at 400-600 px
  and 0.2% for fields with no abnormal label at all (docs/model.md, "Label noise");
- an **abnormal unit** is built around one abnormal cell: its window plus every window
  connected to it that shows no abnormal nucleus other than those its own window shows;
- a **whole piece** is a connected part of the whole mosaic (as many abnormal cells as the
  field holds there).

A piece's alpha is 1 inside its windows and fades to 0 over ``FEATHER_PX`` at the union's
border, so the square edges of the crops do not show as hard lines. Its labelled cells are the
nuclei that lie at least ``CELL_INSET`` inside it (where the alpha reaches about 0.5). Pure
numpy/scipy; reading the crops is the only I/O (``load_fields``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage as ndi
from scipy.sparse.csgraph import connected_components

from cytoscreen.synth.compose import estimate_background, rgb_to_od
from cytoscreen.synth.cric import CricCrop, by_image

ABNORMAL_MARGIN = 32  # px (8 um at 0.25 um/px): an abnormal nucleus this close to a window shows
NEGATIVE_CLEARANCE = 400  # px (100 um at the assumed 0.25 um/px, a few cell diameters): a
# negative piece keeps this far from every labelled abnormal nucleus, and so from most of its
# unlabelled abnormal neighbours
FEATHER_PX = 10.0  # alpha ramps from 0 to 1 over this many px inside the pieces' border
CELL_INSET = (
    FEATHER_PX / 2
)  # a labelled nucleus belongs to a piece this far inside it (alpha >= 0.5)

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Field:
    """The pasted-back crops of one CRIC field, cut to their bounding box."""

    image_id: int
    rgb: U8  # (H, W, 3): crop pixels where covered, glass colour elsewhere
    covered: npt.NDArray[np.bool_]  # (H, W)
    origin: tuple[int, int]  # field coordinates of rgb[0, 0]
    crops: tuple[CricCrop, ...]
    glass: F32  # (3,) the field's own glass colour (brightest covered pixels)
    _od: list[F32] = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    def window(self, i: int) -> tuple[int, int, int, int]:
        """Window of crop ``i`` in mosaic coordinates (x0, y0, x1, y1), exclusive."""
        x0, y0, x1, y1 = self.crops[i].window
        ox, oy = self.origin
        return x0 - ox, y0 - oy, x1 - ox, y1 - oy

    def nucleus(self, i: int) -> tuple[int, int]:
        c = self.crops[i]
        return c.nucleus_x - self.origin[0], c.nucleus_y - self.origin[1]

    def od(self) -> F32:
        """Optical density of the mosaic against its own glass (computed once)."""
        if not self._od:
            self._od.append(rgb_to_od(self.rgb, self.glass))
        return self._od[0]

    @property
    def abnormal_ids(self) -> tuple[int, ...]:
        """Indices of the field's abnormal crops."""
        return tuple(i for i, c in enumerate(self.crops) if c.abnormal)


def paste_field(crops: Sequence[CricCrop], pixels: Sequence[U8]) -> Field:
    """Paste the crops of one field back at their positions (pure: pixels given)."""
    if not crops or len(crops) != len(pixels):
        raise ValueError("paste_field needs one pixel array per crop")
    if len({c.image_id for c in crops}) != 1:
        raise ValueError("crops of more than one field")
    ox = min(c.x0 for c in crops)
    oy = min(c.y0 for c in crops)
    w = max(c.x0 + c.width for c in crops) - ox
    h = max(c.y0 + c.height for c in crops) - oy
    rgb = np.zeros((h, w, 3), np.uint8)
    covered = np.zeros((h, w), bool)
    for c, px in zip(crops, pixels, strict=True):
        if px.shape[:2] != (c.height, c.width):
            raise ValueError(
                f"crop {c.cell_id} is {px.shape[1]} x {px.shape[0]} px, the manifest says "
                f"{c.width} x {c.height}"
            )
        ys, xs = slice(c.y0 - oy, c.y0 - oy + c.height), slice(c.x0 - ox, c.x0 - ox + c.width)
        rgb[ys, xs] = px[..., :3]
        covered[ys, xs] = True
    glass = estimate_background(rgb[covered][None, :, :])
    rgb[~covered] = np.clip(glass + 0.5, 0, 255).astype(np.uint8)
    return Field(
        image_id=crops[0].image_id,
        rgb=rgb,
        covered=covered,
        origin=(ox, oy),
        crops=tuple(crops),
        glass=glass,
    )


def read_crop(crop: CricCrop) -> U8:
    with Image.open(crop.path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_fields(crops: Iterable[CricCrop]) -> dict[int, Field]:
    """Every field of ``crops``, pasted back (reads each crop once)."""
    return {
        image_id: paste_field(group, [read_crop(c) for c in group])
        for image_id, group in sorted(by_image(crops).items())
    }


def visible_abnormal(fld: Field, margin: int = ABNORMAL_MARGIN) -> list[frozenset[int]]:
    """For each crop window, the abnormal crops whose nucleus lies within ``margin`` of it."""
    ab = fld.abnormal_ids
    pts = np.array([fld.nucleus(a) for a in ab], float).reshape(-1, 2)
    out = []
    for i in range(len(fld.crops)):
        x0, y0, x1, y1 = fld.window(i)
        inside = (
            (pts[:, 0] >= x0 - margin)
            & (pts[:, 0] < x1 + margin)
            & (pts[:, 1] >= y0 - margin)
            & (pts[:, 1] < y1 + margin)
        )
        out.append(frozenset(ab[k] for k in np.flatnonzero(inside)))
    return out


@dataclass(frozen=True)
class Piece:
    """A connected part of a field made of whole crop windows."""

    image_id: int
    windows: tuple[int, ...]  # crop indices whose windows make up the piece
    bbox: tuple[int, int, int, int]  # mosaic coordinates (x0, y0, x1, y1), exclusive
    cells: tuple[int, ...]  # crop indices whose labelled nucleus lies in the piece
    n_abnormal: int  # abnormal cells among ``cells``

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in field pixels."""
        return self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]


def _union(fld: Field, windows: Iterable[int]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(fld.shape, bool)
    for i in windows:
        x0, y0, x1, y1 = fld.window(i)
        mask[y0:y1, x0:x1] = True
    return mask


def piece_alpha(fld: Field, piece: Piece) -> F32:
    """The piece's alpha over its bbox: 1 inside, fading over ``FEATHER_PX`` to its border."""
    x0, y0, x1, y1 = piece.bbox
    mask = _union(fld, piece.windows)[y0:y1, x0:x1]
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    t = np.clip(dist / FEATHER_PX, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def piece_layer(fld: Field, piece: Piece) -> F32:
    """Premultiplied optical density (alpha x OD) of a piece over its bbox, (h, w, 3)."""
    x0, y0, x1, y1 = piece.bbox
    return (fld.od()[y0:y1, x0:x1] * piece_alpha(fld, piece)[..., None]).astype(np.float32)


def _boxes(fld: Field) -> npt.NDArray[np.int64]:
    return np.array([fld.window(i) for i in range(len(fld.crops))], np.int64).reshape(-1, 4)


def _components(boxes: npt.NDArray[np.int64], members: Sequence[int]) -> list[list[int]]:
    """Groups of ``members`` whose windows overlap or touch (8-connected pixels), transitively."""
    idx = np.asarray(members, np.int64)
    b = boxes[idx]
    # two windows are pixel-connected when they overlap or touch at an edge or a corner
    touch = (
        (b[:, None, 0] <= b[None, :, 2])
        & (b[None, :, 0] <= b[:, None, 2])
        & (b[:, None, 1] <= b[None, :, 3])
        & (b[None, :, 1] <= b[:, None, 3])
    )
    n, comp = connected_components(touch, directed=False)
    return [idx[comp == k].tolist() for k in range(n)]


def _inside(boxes: npt.NDArray[np.int64], x: float, y: float, inset: float) -> bool:
    """Whether the square of half-side ``inset`` around (x, y) lies within the windows."""
    for dx in (-inset, 0.0, inset):
        for dy in (-inset, 0.0, inset):
            px, py = x + dx, y + dy
            if not (
                (boxes[:, 0] <= px) & (px < boxes[:, 2]) & (boxes[:, 1] <= py) & (py < boxes[:, 3])
            ).any():
                return False
    return True


def _make_piece(fld: Field, windows: Sequence[int], boxes: npt.NDArray[np.int64]) -> Piece:
    mine = boxes[list(windows)]
    bbox = (
        int(mine[:, 0].min()),
        int(mine[:, 1].min()),
        int(mine[:, 2].max()),
        int(mine[:, 3].max()),
    )
    cells = []
    for i in range(len(fld.crops)):
        nx, ny = fld.nucleus(i)
        in_box = bbox[0] <= nx < bbox[2] and bbox[1] <= ny < bbox[3]
        if in_box and _inside(mine, nx, ny, CELL_INSET):
            cells.append(i)
    n_ab = sum(fld.crops[i].abnormal for i in cells)
    return Piece(fld.image_id, tuple(sorted(windows)), bbox, tuple(cells), n_ab)


def pieces_allowing(
    fld: Field,
    allowed: frozenset[int],
    *,
    seen: Sequence[frozenset[int]] | None = None,
    containing: int | None = None,
) -> list[Piece]:
    """Connected parts of the union of the windows that show no abnormal nucleus outside
    ``allowed`` (crop indices). ``containing``: only the part holding that crop's window."""
    seen = seen if seen is not None else visible_abnormal(fld)
    ok = [i for i in range(len(fld.crops)) if seen[i] <= allowed]
    if not ok:
        return []
    boxes = _boxes(fld)
    groups = _components(boxes, ok)
    if containing is not None:
        groups = [g for g in groups if containing in g]
    return [_make_piece(fld, g, boxes) for g in groups]


def negative_pieces(fld: Field, clearance: int = NEGATIVE_CLEARANCE) -> list[Piece]:
    """The parts of a field at least ``clearance`` px from every labelled abnormal nucleus
    (labelled NILM cells only, and away from the abnormal cells' unlabelled neighbours)."""
    seen = visible_abnormal(fld, clearance)
    return [p for p in pieces_allowing(fld, frozenset(), seen=seen) if p.cells]


def abnormal_units(fld: Field) -> list[Piece]:
    """One piece per abnormal cell: its window and the windows connected to it that show no
    other abnormal nucleus than those its own window shows."""
    seen = visible_abnormal(fld)
    out = []
    for a in fld.abnormal_ids:
        allowed = seen[a] | {a}
        for p in pieces_allowing(fld, allowed, seen=seen, containing=a):
            if p.n_abnormal:
                out.append(p)
    return out


def whole_pieces(fld: Field) -> list[Piece]:
    """The connected parts of the whole mosaic."""
    return [p for p in pieces_allowing(fld, frozenset(fld.abnormal_ids)) if p.cells]
