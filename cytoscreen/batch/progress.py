"""Console front end of ``cytoscreen screen``: rich progress bars and the closing table."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cytoscreen.batch.discover import SlideInput
from cytoscreen.slide_result import FAILED, SlideResult
from cytoscreen.types import Outcome

_STYLE: dict[str, str] = {
    Outcome.REVIEW: "bold red",
    Outcome.NOT_ASSESSABLE: "yellow",
    Outcome.NEGATIVE: "green",
    FAILED: "red",
}


class RichObserver:
    """An overall bar (slides) and one bar for the slide at work, labelled with its stage."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.overall: TaskID | None = None
        self.current: TaskID | None = None

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def run_started(self, slides: Sequence[SlideInput]) -> None:
        self.overall = self.progress.add_task("slides", total=len(slides))

    def stage(self, slide: SlideInput, stage: str, done: int, total: int | None) -> None:
        label = f"{slide.relative} [{stage}]"
        if self.current is None:
            self.current = self.progress.add_task(label, total=total)
        self.progress.update(self.current, description=label, completed=done, total=total)

    def slide_finished(self, slide: SlideInput, result: SlideResult, skipped: bool) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
            self.current = None
        status = "skipped (done before)" if skipped else _status(result)
        self.progress.console.print(f"{slide.relative}: {status}", highlight=False)
        if self.overall is not None:
            self.progress.advance(self.overall)


def _status(result: SlideResult) -> str:
    return f"{FAILED} -- {result.error}" if result.failed else result.state


def summary_table(results: Sequence[SlideResult], counts: dict[str, int]) -> Table:
    """Outcome counts in the title, then one row per slide (worst first)."""
    title = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    table = Table("slide", "outcome", "score", "threshold", "fields", "seconds", title=title)
    for r in results:
        name = r.state
        score, thr = r.score, r.threshold
        table.add_row(
            r.relative_path or r.id,
            f"[{_STYLE.get(name, '')}]{name}" if name in _STYLE else name,
            "-" if score is None else f"{score:.3f}",
            "-" if thr is None else f"{thr:.3f}",
            str(len(r.fields)),
            f"{(r.timings or {}).get('total', 0):.1f}",
        )
    return table
