"""The manifest validator: every row's problems in one error; BOM and CRLF accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoscreen.errors import BadManifest
from cytoscreen.manifest import read_manifest

HEADER = "slide_id,path,label,worst_bethesda,site,notes"


def _write(path: Path, lines: list[str], *, bom: bool = False, crlf: bool = False) -> Path:
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def _slides(root: Path, *names: str) -> None:
    (root / "slides").mkdir(parents=True, exist_ok=True)
    for n in names:
        (root / "slides" / n).write_bytes(b"x")


def test_bom_and_crlf_manifest_reads_cleanly(tmp_path: Path) -> None:
    _slides(tmp_path, "a.svs", "b.svs")
    m = _write(
        tmp_path / "m.csv",
        [HEADER, "a,slides/a.svs,positive,hsil,lab1,", "b,slides/b.svs,negative,NILM,lab2,ok"],
        bom=True,
        crlf=True,
    )
    man = read_manifest(m)
    assert [r.slide_id for r in man.rows] == ["a", "b"]  # no BOM glued to the first column
    assert man.rows[0].worst_bethesda == "HSIL" and man.rows[1].notes == "ok"
    assert man.rows[0].path == (tmp_path / "slides" / "a.svs").resolve()
    assert man.sites() == ("lab1", "lab2")


def test_every_row_problem_is_reported_together(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _slides(data, "ok.svs", "dup.svs")
    outside = tmp_path / "outside.svs"
    outside.write_bytes(b"x")
    (data / "slides" / "link.svs").symlink_to(outside)
    m = _write(
        data / "m.csv",
        [
            HEADER,
            "ok,slides/ok.svs,negative,NILM,lab,",
            "ok,slides/dup.svs,positive,LSIL,lab,",  # duplicate id
            "c,slides/ok.svs,maybe,,lab,",  # unknown label
            "d,../outside.svs,positive,HSIL,lab,",  # climbs out
            f"e,{outside},positive,HSIL,lab,",  # absolute
            "f,slides/link.svs,positive,HSIL,lab,",  # symlink leading out
            "g,slides/missing.svs,negative,NILM,lab,",  # missing file
            "h,slides/ok.svs,positive,XYZ,lab,",  # unknown Bethesda category
            ",slides/ok.svs,negative,,lab,",  # empty id
        ],
        crlf=True,
    )
    with pytest.raises(BadManifest) as info:
        read_manifest(m)
    text = str(info.value)
    assert "8 problem(s)" in text
    for needle in (
        "line 3 (ok): duplicate slide_id (first on line 2)",
        "line 4 (c): label 'maybe'",
        "line 5 (d): path '../outside.svs' climbs out",
        "line 6 (e): path",
        "is absolute",
        "line 7 (f): path 'slides/link.svs' leads outside the data root",
        "line 8 (g): slide file 'slides/missing.svs' not found",
        "line 9 (h): worst_bethesda 'XYZ'",
        "line 10 (no id): empty slide_id",
        str(m),
    ):
        assert needle in text
    assert "line 2" not in text.split("first on")[0]  # the good row is not blamed
    # without the file check the missing slide is fine, the rest still fails
    with pytest.raises(BadManifest, match="7 problem"):
        read_manifest(m, check_files=False)


def test_missing_columns_and_label_bethesda_conflicts(tmp_path: Path) -> None:
    with pytest.raises(BadManifest, match="missing column.*label"):
        read_manifest(_write(tmp_path / "a.csv", ["slide_id,path", "a,a.svs"]))
    m = _write(
        tmp_path / "b.csv",
        [HEADER, "a,a.svs,negative,HSIL,,", "b,b.svs,positive,NILM,,", "c,c.svs,blank,,,"],
    )
    with pytest.raises(BadManifest) as info:
        read_manifest(m, check_files=False)
    assert "label negative but worst_bethesda HSIL" in str(info.value)
    assert "label positive but worst_bethesda NILM" in str(info.value)
    assert "line 4" not in str(info.value)


def test_ground_truth_must_exist_and_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "t.cells.json").write_text("{}", encoding="utf-8")
    m = _write(
        tmp_path / "m.csv",
        [
            "slide_id,path,label,ground_truth",
            "a,a.tiff,positive,t.cells.json",
            "b,b.tiff,positive,gone.cells.json",
            "c,c.tiff,positive,../x.json",
        ],
    )
    with pytest.raises(BadManifest) as info:
        read_manifest(m, check_files=False)
    text = str(info.value)
    assert "2 problem(s)" in text and "gone.cells.json" in text and "ground_truth: path" in text
