"""Thin command-line interface: each command parses, loads config, calls one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cytoscreen.errors import CytoscreenError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="cytoscreen: screening cervical cytology slides (decision support, research use).",
)
console = Console()
err_console = Console(stderr=True)

BackendOpt = Annotated[
    str, typer.Option("--backend", help="Slide reader: auto, openslide or tiffslide.")
]
MppOpt = Annotated[
    float | None,
    typer.Option("--mpp", help="Scan resolution in um/px, for slides that do not record it."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (default: built-in defaults).")
]


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
    return typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print the package version."""
    from cytoscreen import __version__

    typer.echo(__version__)


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="A whole-slide image file.")],
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
