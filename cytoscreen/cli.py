"""Thin command-line interface: each command parses, loads config, calls one library function."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def version() -> None:
    """Print the package version."""
    from cytoscreen import __version__

    typer.echo(__version__)
