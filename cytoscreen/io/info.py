"""Rows for ``cytoscreen info``: an allow-list of metadata, never raw vendor properties."""

from __future__ import annotations

from cytoscreen.io.base import SlideReader


def _num(value: float) -> str:
    return f"{value:.4g}"


def info_rows(reader: SlideReader) -> list[tuple[str, str]]:
    """(label, value) rows describing a slide. Only fields listed here are shown: vendor
    properties (dates, user names, barcodes, file names on the scanner) can identify a patient.
    """
    m = reader.meta
    rows = [
        ("file", reader.path.name),
        ("backend", m.backend),
        ("vendor", m.vendor),
        ("dimensions", f"{m.dimensions[0]} x {m.dimensions[1]} px"),
        ("levels", str(m.level_count)),
    ]
    for i, ((w, h), ds) in enumerate(zip(m.level_dimensions, m.level_downsamples, strict=True)):
        rows.append(
            (f"level {i}", f"{w} x {h} px, downsample {_num(ds)}, {_num(m.level_mpp(i))} um/px")
        )
    rows += [
        ("mpp x", f"{_num(m.mpp_x)} um/px"),
        ("mpp y", f"{_num(m.mpp_y)} um/px"),
        ("mpp source", m.mpp_source),
        (
            "objective power",
            f"{_num(m.objective_power)}x" if m.objective_power is not None else "unknown",
        ),
    ]
    return rows
