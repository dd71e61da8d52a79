"""Thin command-line interface: each command parses, loads config, calls one library function."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cytoscreen.config import Config
from cytoscreen.errors import ConfigError, CytoscreenError
from cytoscreen.types import BACKENDS, PRECISIONS, RUNTIMES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="cytoscreen: screening cervical cytology slides (decision support, research use).",
)
console = Console()
err_console = Console(stderr=True)
export_app = typer.Typer(
    no_args_is_help=True, help="Export a results folder for other systems (FHIR R4)."
)
app.add_typer(export_app, name="export")

BackendOpt = Annotated[str, typer.Option("--backend", help=f"Slide reader: {', '.join(BACKENDS)}.")]
MppOpt = Annotated[
    float | None,
    typer.Option("--mpp", help="Scan resolution in um/px, for slides that do not record it."),
]
BackendOverrideOpt = Annotated[str | None, typer.Option("--backend", help="|".join(BACKENDS))]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="dask.distributed scheduler address (tcp://host:port)."),
]
ScreenSchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Screen each slide as a task on the dask.distributed cluster at this scheduler "
        "(tcp://host:port; the slides, --out and the cache on storage every worker shares), "
        "or on local:N, N worker processes started here.",
    ),
]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Local Dask workers.")]
ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="Model directory (default: the bundled one).")
]
# Defaults for a source checkout run from its root; the installed package holds none of these,
# so each command names the flag to pass when they are absent.
CHECKOUT_SPLITS = Path("data_manifests") / "cric_splits.json"
CHECKOUT_TRAIN_CONFIG = Path("configs") / "train" / "default.yaml"
CHECKOUT_CRIC = Path("..") / "shared" / "data" / "cric"


def _cric_manifest() -> Path:
    """The CRIC manifest by default: $CYTOSCREEN_CRIC_DIR's, else the source checkout's
    (a missing one ends in the error that says to pass --manifest)."""
    from cytoscreen.synth.kit import find_full_set

    return (find_full_set() or CHECKOUT_CRIC) / "manifest.csv"


CricManifestOpt = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="CRIC manifest.csv (default: in $CYTOSCREEN_CRIC_DIR, or ../shared/data/cric/ "
        "from a source checkout's root).",
    ),
]
CricSplitsOpt = Annotated[
    Path | None,
    typer.Option(
        "--splits",
        help="Split file by image (default data_manifests/cric_splits.json, from a source "
        "checkout's root).",
    ),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (default: built-in defaults).")
]


def _print_error(err: Exception) -> None:
    # one unwrapped line per error, so logs can be searched for a slide's path
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)


def _fail(err: Exception) -> typer.Exit:
    _print_error(err)
    return typer.Exit(code=2)


def _choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    """Stop with the error panel when a flag's value is not one of ``choices``."""
    if value not in choices:
        raise _fail(
            ConfigError(
                f"unknown value {value!r}", subject=flag, hint=f"use one of: {', '.join(choices)}"
            )
        )


@app.command()
def version() -> None:
    """Print the package version."""
    from cytoscreen import __version__

    typer.echo(__version__)


@app.command()
def info(
    slide: Annotated[
        Path, typer.Argument(help="A whole-slide image file, or a folder of one DICOM series.")
    ],
    backend: BackendOpt = "auto",
    mpp: MppOpt = None,
) -> None:
    """Show a slide's metadata (dimensions, levels, resolution). No patient data is shown."""
    from cytoscreen.io import info_rows, open_slide

    try:
        with open_slide(slide, backend=backend, mpp=mpp) as reader:  # type: ignore[arg-type]
            rows = info_rows(reader)
    except (CytoscreenError, ValueError) as err:
        raise _fail(err) from None
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _config(config: Path | None, **overrides: object) -> Config:
    from cytoscreen.config import load_config

    try:
        return load_config(config, {k: v for k, v in overrides.items() if v is not None})
    except CytoscreenError as err:
        raise _fail(err) from None


def _run_config(
    config: Path | None,
    backend: str | None,
    mpp: float | None,
    scheduler: str | None,
    workers: int | None,
) -> Config:
    """The config file (or defaults) with the reading and scheduling flags laid over it."""
    return _config(
        config,
        **{
            "reader.backend": backend,
            "reader.mpp_override": mpp,
            "cache.scheduler_address": scheduler,
            "cache.workers": workers,
        },
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("patches"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


Report = Callable[[int, int], None]


def _each(items: list[Path], work: Callable[[Path, Report], list[str]], table: Table) -> None:
    """Run ``work(item, report)`` for each item under its own progress bar and add the row it
    returns to ``table``. A failing item is printed and tabled and the rest carry on; the
    table is printed at the end and the exit code is 1 if anything failed."""
    failed = 0
    with _progress() as bar:
        for item in items:
            task = bar.add_task(item.name, total=None)

            def report(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            try:
                row = work(item, report)
            except (CytoscreenError, OSError) as err:
                failed += 1
                bar.update(task, description=f"[red]{item.name} (failed)")
                _print_error(err)
                table.add_row(item.name, *["-"] * (len(table.columns) - 2), "[red]failed")
                continue
            table.add_row(item.name, *row)
    console.print(table)
    if failed:
        raise typer.Exit(code=1)


@app.command()
def tile(
    slides: Annotated[
        list[Path], typer.Argument(help="Whole-slide image files, or DICOM series folders.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache directory for the Zarr stores.")],
    config: ConfigOpt = None,
    backend: BackendOverrideOpt = None,
    mpp: MppOpt = None,
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Cut slides into cached patches (resumable: a rerun writes only what is missing)."""
    from cytoscreen.config import write_resolved
    from cytoscreen.tiling import tile_slide

    cfg = _run_config(config, backend, mpp, scheduler, workers)
    out.mkdir(parents=True, exist_ok=True)
    write_resolved(cfg, out)

    def one(slide: Path, report: Report) -> list[str]:
        patches = [0]

        def counted(done: int, total: int) -> None:
            patches[0] = total
            report(done, total)

        store = tile_slide(slide, cfg, out, progress=counted)
        return [str(patches[0]), store.name, "[green]ok"]

    _each(slides, one, Table("slide", "patches", "store", "status"))


def _stores(paths: list[Path]) -> list[Path]:
    """Zarr patch stores named directly, or found (not recursively) in the folders given."""
    out: list[Path] = []
    for p in paths:
        if p.suffix == ".zarr" or not p.is_dir():
            out.append(p)
        else:
            out.extend(sorted(q for q in p.glob("*.zarr") if q.is_dir()))
    return out


@app.command()
def score(
    caches: Annotated[
        list[Path],
        typer.Argument(help="Patch stores (*.zarr) made by `cytoscreen tile`, or their folder."),
    ],
    model: ModelOpt = None,
    config: ConfigOpt = None,
    runtime: Annotated[
        str | None,
        typer.Option("--runtime", help=f"{'|'.join(RUNTIMES)} (scoring.runtime)."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option("--precision", help=f"{'|'.join(PRECISIONS)} (scoring.precision)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Patches per batch.")
    ] = None,
) -> None:
    """Score cached patches with a model; scores are written into each store beside the
    patches (resumable: a rerun scores only the chunks that are missing)."""
    from cytoscreen.resolve import DEFAULT_MODEL_DIR
    from cytoscreen.scoring.infer import score_cache
    from cytoscreen.scoring.scorer import build_scorer

    cfg = _config(
        config,
        **{
            "scoring.runtime": runtime,
            "scoring.precision": precision,
            "scoring.batch_size": batch_size,
        },
    )
    sc = cfg.scoring
    stores = _stores(caches)
    if not stores:
        raise _fail(
            CytoscreenError(
                "no patch store (*.zarr) found",
                subject=", ".join(str(c) for c in caches),
                hint="make them first with `cytoscreen tile SLIDES --out CACHE`",
            )
        )
    model_dir = model or sc.model or DEFAULT_MODEL_DIR
    try:
        scorer = build_scorer(model_dir, sc)
    except CytoscreenError as err:
        raise _fail(err) from None
    how = scorer.describe()
    console.print(
        f"model {scorer.card.model_id}: {how['runtime']} {how['precision']} on {how['device']}",
        highlight=False,
    )

    def one(store: Path, report: Report) -> list[str]:
        run = score_cache(store, scorer, sc.batch_size, threads=sc.threads, progress=report)
        status = "[green]ok" if run.chunks_run else "[green]already scored"
        return [str(run.n_scored), f"{run.patches_per_s:.1f}", status]

    _each(stores, one, Table("store", "scored now", "patches/s", "status"))


@app.command()
def screen(
    slides: Annotated[
        list[Path], typer.Argument(help="Folders (searched recursively) and/or slide files.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder.")] = Path("results"),
    config: ConfigOpt = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Patch cache folder (default: OUT/cache).")
    ] = None,
    model: ModelOpt = None,
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", help="calibration.json (default: the model's own)."),
    ] = None,
    scores_only: Annotated[
        bool, typer.Option("--scores-only", help="Score without a calibration (no decisions).")
    ] = False,
    backend: BackendOverrideOpt = None,
    mpp: MppOpt = None,
    scheduler: ScreenSchedulerOpt = None,
    workers: WorkersOpt = None,
    fhir: Annotated[
        Path | None,
        typer.Option(
            "--fhir",
            help="Also write the results folder as a FHIR R4 Bundle to this file (as "
            "`cytoscreen export fhir`, without patient or specimen identifiers).",
        ),
    ] = None,
) -> None:
    """Screen slides: tile, score, decide, and write fields, pictures and summary.csv."""
    cfg = _run_config(config, backend, mpp, scheduler, workers)
    _run_screen(cfg, slides, out, cache, model, calibration, scores_only, fhir=fhir)


def _run_screen(
    cfg: Config,
    slides: list[Path],
    out: Path,
    cache: Path | None,
    model: Path | None = None,
    calibration: Path | None = None,
    scores_only: bool = False,
    fhir: Path | None = None,
) -> None:
    from cytoscreen.batch import warm_up

    if cfg.cache.scheduler_address is None:
        warm_up()  # the fork server's imports overlap with the pipeline's and the model's
    from cytoscreen.batch.progress import RichObserver, summary_table
    from cytoscreen.pipeline import screen as run_screen

    try:
        with RichObserver(err_console) as observer:
            report = run_screen(
                slides,
                out,
                cfg,
                cache_dir=cache,
                model_dir=model,
                calibration_path=calibration,
                scores_only=scores_only,
                observer=observer,
            )
    except CytoscreenError as err:
        raise _fail(err) from None
    console.print(summary_table(report.results, report.outcome_counts()))
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    console.print(f"results: {out / 'summary.csv'}", highlight=False)
    if fhir is not None:
        _write_fhir(out, fhir)
    if report.n_failed:
        raise typer.Exit(code=1)


def _write_fhir(
    results: Path,
    out: Path | None,
    manifest: Path | None = None,
    embed_fields: int = 0,
    patient_system: str | None = None,
    specimen_system: str | None = None,
) -> None:
    """Write the results folder's FHIR bundle and say what it holds (errors: exit code 2)."""
    from cytoscreen.outputs.fhir import write_fhir_bundle

    try:
        done = write_fhir_bundle(
            results,
            out,
            manifest=manifest,
            embed_fields=embed_fields,
            patient_system=patient_system,
            specimen_system=specimen_system,
        )
    except (CytoscreenError, OSError) as err:
        raise _fail(err) from None
    for warning in done.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    states = ", ".join(f"{n} {state}" for state, n in sorted(done.states.items()))
    console.print(
        f"FHIR bundle: {done.n_reports} reports ({states}) -> {done.path}",
        highlight=False,
        markup=False,
    )


@export_app.command("fhir")
def export_fhir(
    results: Annotated[Path, typer.Argument(help="Results folder written by `cytoscreen screen`.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Bundle to write (default RESULTS/fhir-bundle.json)."),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="Labelled manifest (CSV) whose patient_id / specimen_id columns name each "
            "slide's patient and specimen (without it the reports name neither).",
        ),
    ] = None,
    embed_fields: Annotated[
        int,
        typer.Option(
            "--embed-fields",
            min=0,
            help="Embed the N best field images of each slide (base64) besides their URLs.",
        ),
    ] = 0,
    patient_system: Annotated[
        str | None,
        typer.Option("--patient-system", help="Identifier system (URI) of the patient ids."),
    ] = None,
    specimen_system: Annotated[
        str | None,
        typer.Option("--specimen-system", help="Identifier system (URI) of the specimen ids."),
    ] = None,
) -> None:
    """Write a results folder as one FHIR R4 Bundle: a preliminary DiagnosticReport per slide
    with its Observations and field images (decision support, to be confirmed)."""
    _write_fhir(
        results,
        out,
        manifest=manifest,
        embed_fields=embed_fields,
        patient_system=patient_system,
        specimen_system=specimen_system,
    )


@app.command()
def calibrate(
    manifest: Annotated[Path, typer.Option("--manifest", help="Labelled slide manifest (CSV).")],
    results: Annotated[Path, typer.Option("--results", help="Results folder of a screen run.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="calibration.json to write.")] = Path(
        "calibration.json"
    ),
    target: Annotated[
        float, typer.Option("--target", help="Target slide-level sensitivity.")
    ] = 0.99,
    target_at: Annotated[
        str,
        typer.Option(
            "--target-at",
            help="lower_bound: the set must show the target as the exact 95% lower bound of "
            "sensitivity (with too few positives, every positive is detected); point: the "
            "sensitivity measured on the set meets it.",
        ),
    ] = "lower_bound",
    min_cells: Annotated[
        int | None,
        typer.Option(
            "--min-cells",
            help="Negatives with fewer cells (manifest n_cells) do not count for specificity "
            "(default: Bethesda's 5,000 liquid-based / 8,000 conventional, by the prep column).",
        ),
    ] = None,
) -> None:
    """Choose the slide threshold for a target sensitivity from screened, labelled slides."""
    from typing import cast, get_args

    from cytoscreen.calibration import calibrate_from_results
    from cytoscreen.slide.record import TargetAt

    minimum = None if min_cells is None else {"liquid": min_cells, "conventional": min_cells}
    try:
        if target_at not in get_args(TargetAt):
            raise ValueError(f"--target-at must be lower_bound or point, not {target_at!r}")
        run = calibrate_from_results(
            manifest,
            results,
            out,
            target_sensitivity=target,
            min_cells=minimum,
            target_at=cast(TargetAt, target_at),
        )
    except (CytoscreenError, ValueError) as err:
        raise _fail(err) from None
    cal = run.calibration
    table = Table(show_header=False, box=None)
    table.add_row("threshold", f"{cal.threshold:.4g} ({cal.rule}, model {cal.model_id})")
    table.add_row(
        "target",
        f"sensitivity {cal.target_sensitivity:g} "
        + (
            f"as the {cal.confidence:.0%} lower bound"
            if cal.target_at == "lower_bound"
            else "as measured on the set"
        ),
    )
    sens = cal.sensitivity
    table.add_row(
        "sensitivity",
        f"{sens.value:.3f} ({sens.k}/{sens.n}), 95% CI {sens.lower:.3f}-{sens.upper:.3f}",
    )
    spec = cal.specificity
    table.add_row(
        "specificity",
        "unknown (no negative slides)"
        if spec is None
        else f"{spec.value:.3f} ({spec.k}/{spec.n}), 95% CI {spec.lower:.3f}-{spec.upper:.3f}",
    )
    table.add_row("counts", f"TP {cal.tp}  FN {cal.fn}  TN {cal.tn}  FP {cal.fp}")
    table.add_row("slides", f"{len(run.used)} used, {len(run.left_out)} left out")
    for grouping, by in cal.strata.items():
        for stratum, f in by.items():
            parts = [
                f"{name} {p.k}/{p.n} ({p.lower:.2f}-{p.upper:.2f})"
                for name, p in (("sensitivity", f.sensitivity), ("specificity", f.specificity))
                if p is not None
            ]
            table.add_row(f"  {grouping} {stratum}", ", ".join(parts))
    if cal.applicability is not None:
        a = cal.applicability
        table.add_row(
            "applicability",
            f"patch-score reference of {a.n_slides} negatives, limit |z| <= {a.limit:g}",
        )
    console.print(table)
    for sid, why in run.left_out:
        err_console.print(f"left out {sid}: {why}", highlight=False)
    for w in cal.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    console.print(f"wrote {run.path}", highlight=False)


@app.command("domain-reference")
def domain_reference(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="domain.json to write (beside the model).")
    ],
    from_slides: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-slides",
            help="In-domain slide or folder (a laboratory's own scans; repeat). Without it, "
            "Pap slides are generated from the CRIC fields.",
        ),
    ] = None,
    config: ConfigOpt = None,
    slides: Annotated[int, typer.Option("--slides", help="Generated slides.")] = 24,
    n_cells: Annotated[
        int, typer.Option("--n-cells", help="Labelled cells per generated slide.")
    ] = 1500,
    seed: Annotated[int, typer.Option(help="Random seed of the generated slides.")] = 8300,
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split",
            help="Fields to draw, train and/or val (repeat; default both: those the model "
            "trained on and those its threshold was calibrated on).",
        ),
    ] = None,
    splits: Annotated[
        Path | None,
        typer.Option(
            "--splits",
            help="Split file by CRIC image (default data_manifests/cric_splits.json when run "
            "from a source checkout; without one every field is drawn).",
        ),
    ] = None,
    cells: Annotated[
        Path | None,
        typer.Option("--cells", help="CRIC folder with manifest.csv (default: full set or kit)."),
    ] = None,
    work: Annotated[
        Path | None, typer.Option("--work", help="Keep the slides and caches here.")
    ] = None,
) -> None:
    """Fit the domain reference (domain.json) the screen compares each slide with."""
    from cytoscreen.domain_reference import (
        GeneratedSet,
        fit_domain_reference,
        summary_lines,
        write_reference,
    )

    parts = tuple(split or ("train", "val"))
    for name in parts:
        _choice(name, ("train", "val"), "--split")
    if splits is None and CHECKOUT_SPLITS.is_file():
        splits = CHECKOUT_SPLITS
    cfg = _config(config)
    if from_slides:
        command = "cytoscreen domain-reference " + " ".join(
            f"--from-slides {p}" for p in from_slides
        )
    else:
        command = (
            f"cytoscreen domain-reference --slides {slides} --n-cells {n_cells} --seed {seed} "
            + " ".join(f"--split {s}" for s in parts)
        )

    def say(line: str) -> None:
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        fitted = fit_domain_reference(
            cfg,
            from_slides=from_slides,
            generated=GeneratedSet(
                n_slides=slides,
                n_cells=n_cells,
                seed=seed,
                splits=parts,
                splits_file=splits,
                cells=cells,
            ),
            work=work,
            command=command,
            log=say,
        )
        write_reference(fitted, out)
    except (CytoscreenError, OSError) as err:
        raise _fail(err) from None
    for line in summary_lines(fitted):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"wrote {out} from {len(fitted.profiles)} slides", highlight=False, soft_wrap=True
    )


@app.command("make-slides")
def make_slides(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for slides + manifest.csv.")],
    negative: Annotated[int, typer.Option(help="Negative (NILM-only) slides.")] = 4,
    positive: Annotated[int, typer.Option(help="Positive slides (>= 1 abnormal cell).")] = 4,
    blank: Annotated[int, typer.Option(help="Blank slides (no cells: not assessable).")] = 1,
    n_cells: Annotated[
        int, typer.Option("--n-cells", help="Labelled cells per slide (5,000 = adequate LBP).")
    ] = 6000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same slides).")] = 0,
    split: Annotated[
        str | None,
        typer.Option(help="Draw every slide from this split's fields: train, val or test."),
    ] = None,
    splits: Annotated[
        Path | None,
        typer.Option(
            "--splits", help="Split file by CRIC image (data_manifests/cric_splits.json)."
        ),
    ] = None,
    cells: Annotated[
        Path | None,
        typer.Option(
            "--cells",
            help="CRIC folder with manifest.csv (default: $CYTOSCREEN_CRIC_DIR, "
            "../shared/data/cric or the bundled kit).",
        ),
    ] = None,
) -> None:
    """Generate a labelled set of synthetic slides (real CRIC fields) with a manifest CSV."""
    from cytoscreen.synth import load_cell_kit, make_slide_set
    from cytoscreen.synth.cric import SPLITS, load_image_splits

    try:
        if split is not None and split not in SPLITS:
            raise ConfigError(
                f"unknown split {split!r}", subject="--split", hint="use train, val or test"
            )
        kit = load_cell_kit(cells)
        parts = load_image_splits(splits) if splits is not None else (0.6, 0.2, 0.2)
        with err_console.status(f"writing {negative + positive + blank} slides into {out}"):
            manifest = make_slide_set(
                out, negative, positive, n_cells=n_cells, seed=seed, kit=kit, n_blank=blank,
                splits=parts, only=split,
            )  # fmt: skip
    except (CytoscreenError, ValueError, OSError) as err:
        raise _fail(err) from None
    console.print(f"cells from: {kit.source}", highlight=False)
    console.print(f"wrote {manifest}", highlight=False)


@app.command("make-splits")
def make_splits(
    out: Annotated[Path, typer.Option("--out", "-o", help="Split file to write (JSON).")],
    cells: Annotated[
        Path, typer.Option("--cells", help="CRIC folder with manifest.csv.")
    ] = CHECKOUT_CRIC,
    seed: Annotated[int, typer.Option(help="First seed tried (the one used is recorded).")] = 0,
) -> None:
    """Split the CRIC fields by image into train/val/test, every class in every split."""
    from cytoscreen.synth.cric import read_cric, split_images

    try:
        crops = read_cric(cells / "manifest.csv")
        splits = split_images(crops, seed=seed)
        out.write_text(splits.to_json(crops), encoding="utf-8")
    except (CytoscreenError, ValueError, OSError) as err:
        raise _fail(err) from None
    sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.images.items())
    console.print(f"wrote {out}: fields {sizes} (seed {splits.seed})", highlight=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Demo folder.")] = Path("demo_out"),
) -> None:
    """Build six small demo slides and screen them with the bundled model."""
    from cytoscreen.demo import DEMO_SLIDES, build_demo_slides, demo_config
    from cytoscreen.resolve import DEFAULT_MODEL_DIR, deciding_calibration

    slides_dir = out / "slides"
    with err_console.status(f"building {len(DEMO_SLIDES)} demo slides in {slides_dir}"):
        paths = build_demo_slides(slides_dir)
    console.print(f"demo slides: {', '.join(p.name for p in paths)} in {slides_dir}")
    cfg, note = demo_config()
    console.print(f"[yellow]note:[/] {note}", highlight=False)
    if not (DEFAULT_MODEL_DIR / "card.json").is_file():
        console.print("no bundled model installed yet: tiling only", highlight=False)
        tile(paths, out=out / "cache")
        return
    results = out / "results"
    _run_screen(cfg, [slides_dir], results, out / "cache")
    gallery(results)
    _print_calibration(deciding_calibration(results))
    console.print(
        f"open {results / 'summary.csv'} in a spreadsheet, {results / 'gallery' / 'index.html'}"
        f" in a browser, or review the fields with: cytoscreen review {results}",
        highlight=False,
        markup=False,
    )


def _print_calibration(path: Path) -> None:
    """What the calibration in use promises, with counts, intervals and the data behind it."""
    from cytoscreen.slide import load_calibration

    cal = load_calibration(path)
    parts = [f"sensitivity {cal.sensitivity.value:.2f} ({cal.sensitivity.k}/{cal.sensitivity.n}, "
             f"95% CI {cal.sensitivity.lower:.2f}-{cal.sensitivity.upper:.2f})"]  # fmt: skip
    if cal.specificity is not None:
        sp = cal.specificity
        parts.append(
            f"specificity {sp.value:.2f} ({sp.k}/{sp.n}, 95% CI {sp.lower:.2f}-{sp.upper:.2f})"
        )
    parts.append(f"slides set aside as negative {cal.set_aside_share:.0%}")
    console.print(f"calibration {path.name} (threshold {cal.threshold:.3g}): " + "; ".join(parts)
                  + f". Measured on {cal.data_source}.", highlight=False, markup=False)  # fmt: skip
    for warning in cal.warnings:
        console.print(f"calibration warning: {warning}", highlight=False, markup=False)


@app.command()
def qa(
    manifest: Annotated[Path, typer.Option("--manifest", help="Labelled slide manifest (CSV).")],
    results: Annotated[
        Path | None, typer.Option("--results", help="Results folder of a screen run.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the QA report.")] = Path(
        "qa"
    ),
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--compare", help="Two results folders to compare (paired AUC test)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Evaluate this threshold instead of the run's own."),
    ] = None,
) -> None:
    """QA of a screened, labelled set: sensitivity/specificity with CIs, ROC, operating points."""
    from rich.markup import escape

    from cytoscreen.qa import compare_runs, run_qa
    from cytoscreen.qa.report import format_proportion as fp

    try:
        if compare is not None:
            cmp = compare_runs(manifest, compare[0], compare[1], out)
            p = cmp.paired
            table = Table(show_header=False, box=None)
            table.add_row("AUC A / B", f"{p.auc_a:.3f} / {p.auc_b:.3f}")
            table.add_row(
                "B - A",
                f"{p.difference:+.3f} (95% CI {p.lower:+.3f} to {p.upper:+.3f}), "
                f"DeLong p = {p.p_value:.3g}",
            )
            table.add_row("paired on", f"{p.n_positive} positive, {p.n_negative} negative slides")
            console.print(table)
            console.print(cmp.verdict, highlight=False)
            console.print(f"report: {cmp.html}", highlight=False)
            return
        if results is None:
            raise CytoscreenError("give --results RESULTS (or --compare A B)", subject=manifest)
        rep = run_qa(manifest, results, out, threshold=threshold)
    except (CytoscreenError, ValueError) as err:
        raise _fail(err) from None
    ev = rep.evaluation
    table = Table(show_header=False, box=None)
    table.add_row("data", escape(ev.data.describe()))
    table.add_row("threshold", f"{ev.threshold} ({ev.threshold_source})")
    at = ev.at_threshold
    if at is not None:
        table.add_row("sensitivity", fp(at.sensitivity))
        table.add_row("specificity", fp(at.specificity))
        table.add_row("set aside", fp(at.set_aside))
    if ev.roc is not None:
        table.add_row(
            "AUC", f"{ev.roc.auc:.3f} (95% CI {ev.roc.auc_lower:.3f}-{ev.roc.auc_upper:.3f})"
        )
    table.add_row("not assessable", str(len(ev.not_assessable)))
    console.print(table)
    for w in ev.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    console.print(f"report: {rep.html}", highlight=False)


@app.command()
def gallery(
    results: Annotated[Path, typer.Argument(help="Results folder written by `cytoscreen screen`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write (default RESULTS/gallery).")
    ] = None,
) -> None:
    """Write static HTML galleries (batch index + a page per slide) that open offline."""
    from cytoscreen.review import load_results, write_gallery

    try:
        view = load_results(results)
        index = write_gallery(view, out)
    except (CytoscreenError, OSError) as err:
        raise _fail(err) from None
    console.print(f"{len(view.slides)} slides; open {index}", highlight=False, markup=False)


@app.command()
def review(
    results: Annotated[Path, typer.Argument(help="Results folder written by `cytoscreen screen`.")],
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="Name stored with each mark (default $USER).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 8765,
    backend: BackendOpt = "auto",
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write the marks as CSV to this file and exit."),
    ] = None,
) -> None:
    """Serve the galleries, a slide viewer and field marking on a local web server."""
    import getpass

    from cytoscreen.review.marks import marks_csv, open_store
    from cytoscreen.review.server import make_server

    _choice(backend, BACKENDS, "--backend")
    try:
        if export is not None:
            from cytoscreen.review import load_results

            load_results(results)  # refuse a folder that is not a screen's output
            with open_store(results) as store:
                marks = store.marks()
            export.write_text(marks_csv(marks), encoding="utf-8")
            console.print(f"{len(marks)} marks -> {export}", highlight=False, markup=False)
            return
        name = reviewer or getpass.getuser()
        server = make_server(results, reviewer=name, host=host, port=port, backend=backend)
    except (CytoscreenError, OSError) as err:
        raise _fail(err) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            "[yellow]warning:[/] serving beyond this computer; pages show slide pictures",
            highlight=False,
        )
    console.print(
        f"reviewing {results} as {name}: {server.url}/  (Ctrl+C stops)",
        highlight=False,
        markup=False,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def evaluate(
    model: ModelOpt = None,
    manifest: CricManifestOpt = None,
    splits: CricSplitsOpt = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Training YAML the model was trained with (default "
            "configs/train/default.yaml, from a source checkout's root).",
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", help="calibration.json (default: the model's own)."),
    ] = None,
) -> None:
    """Measure the model once on the held-out test fields and write the figures into its card."""
    from cytoscreen.resolve import DEFAULT_MODEL_DIR
    from cytoscreen.slide import load_calibration
    from cytoscreen.training import report, run

    model_dir = model or DEFAULT_MODEL_DIR
    try:
        cfg = run.resolve_config(config or CHECKOUT_TRAIN_CONFIG)
        cal = load_calibration(calibration or model_dir / "calibration.json")
        with err_console.status("building the test fields' cells and windows"):
            kits, _ = run.split_kits(manifest or _cric_manifest(), splits or CHECKOUT_SPLITS)
            test = report.test_set(cfg, kits["test"], seed=cfg.seed)
        with err_console.status(f"scoring {len(test)} test patches"):
            rep = report.test_report(model_dir, test, cal.threshold, rule=cal.rule, seed=cfg.seed)
        report.write_test_report(model_dir, rep)
    except (CytoscreenError, OSError) as err:
        raise _fail(err) from None
    for k, m in rep.metrics.items():
        console.print(f"  {k}: {m.text(brackets=True)}", highlight=False)
    console.print(rep.notes, highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote the test figures into {model_dir / 'card.json'}", highlight=False)


def _train_device(device: str) -> None:
    """Stop with the error panel, before any data is read, for a device training cannot use."""
    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise _fail(
            ConfigError(
                f"unknown device {device!r}", subject="--device", hint="use auto, cpu or cuda[:N]"
            )
        )
    if device.startswith("cuda"):
        from cytoscreen.scoring.runtime import resolve_device

        try:
            resolve_device(device)
        except RuntimeError as err:
            raise _fail(
                ConfigError(str(err), subject="--device", hint="use --device cpu")
            ) from None


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Folder for the weights, card and README.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Training YAML (default configs/train/default.yaml, from a source checkout's "
            "root).",
        ),
    ] = None,
    manifest: CricManifestOpt = None,
    splits: CricSplitsOpt = None,
    reviews: Annotated[
        list[Path] | None,
        typer.Option(
            "--reviews", help="Results folder whose review marks become training patches (repeat)."
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    backend: BackendOpt = "auto",
    replace_bundled: Annotated[
        bool,
        typer.Option(
            "--replace-bundled",
            help="Allow --out to be the bundled model's folder (it is replaced).",
        ),
    ] = False,
) -> None:
    """Train a patch scorer on the CRIC cells, plus pathologist-reviewed fields."""
    from cytoscreen.training import run

    _choice(backend, BACKENDS, "--backend")
    _train_device(device)

    def say(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        run.refuse_bundled(out, replace_bundled)
        cfg = run.resolve_config(config or CHECKOUT_TRAIN_CONFIG)
        extra = run.load_reviews(reviews or [], cfg, backend=backend)
        if extra:
            say(run.reviews_summary(extra, cfg))
        outcome = run.train_model(
            cfg,
            manifest or _cric_manifest(),
            splits or CHECKOUT_SPLITS,
            out,
            replace_bundled=replace_bundled,
            extra=extra,
            extra_sources=[f"reviews:{p.resolve().name}" for p in reviews or []],
            device=device,
            log=say,
        )
    except (CytoscreenError, OSError) as err:
        raise _fail(err) from None
    for line in run.summary_lines(outcome):
        say(line)
