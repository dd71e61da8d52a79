"""One error family. Every error names what it is about (its *subject*: a slide, a file, a
folder, a config key or a command-line flag) and says what to do."""

from __future__ import annotations

from pathlib import Path


class CytoscreenError(Exception):
    """Base error: ``str(err)`` reads ``<subject>: <message> -- <hint>``.

    ``subject`` names what the error is about: a slide, a config file, a flag (``--device``),
    a config key (``context.hard_pool``) or a model folder. ``slide=`` is accepted as an older
    spelling of ``subject=`` (and ``err.slide`` reads it), for callers not yet updated.
    """

    default_hint: str = ""

    def __init__(
        self,
        message: str,
        *,
        subject: str | Path | None = None,
        hint: str | None = None,
        slide: str | Path | None = None,
    ) -> None:
        if subject is not None and slide is not None:
            raise TypeError("give subject= or its older spelling slide=, not both")
        about = subject if subject is not None else slide
        self.message = message
        self.subject = str(about) if about is not None else None
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(str(self))

    @property
    def slide(self) -> str | None:
        """The older name of ``subject``."""
        return self.subject

    def __str__(self) -> str:
        text = f"{self.subject}: {self.message}" if self.subject else self.message
        if self.hint:
            text += f" -- {self.hint}"
        return text


class UnreadableSlide(CytoscreenError):
    default_hint = (
        "check that the file is a complete whole-slide image (SVS, TIFF, NDPI, MRXS, DICOM...) "
        "and try --backend openslide or --backend tiffslide"
    )


class MissingMpp(CytoscreenError):
    default_hint = "pass the scan resolution explicitly with --mpp (micrometres per pixel)"


class InvalidMpp(CytoscreenError):
    default_hint = "micrometres per pixel must be a finite number between 0.05 and 20"


class CacheMismatch(CytoscreenError):
    default_hint = "delete the cache directory named here or choose another --cache"


class BadManifest(CytoscreenError):
    default_hint = "fix the rows listed and run again"


class BadCheckpoint(CytoscreenError):
    default_hint = "use a checkpoint written by `cytoscreen train` for this architecture"


class ConfigError(CytoscreenError):
    default_hint = "see configs/default.yaml for the valid keys and values"


class BadCalibration(CytoscreenError):
    default_hint = (
        "recalibrate with labelled validation slides scored by this model and aggregation rule"
    )


class RunLocked(CytoscreenError):
    """Another run holds the results folder's lock."""


class WriteFailed(CytoscreenError):
    """An output or cache file could not be written (disk full, quota, permissions)."""

    default_hint = (
        "free disk space (or fix the folder's permissions) and run again: finished slides are "
        "kept and only what is missing is redone"
    )


class NotAResultsFolder(CytoscreenError):
    """A folder given as results is not one ``cytoscreen screen`` wrote."""

    default_hint = "give the folder written by `cytoscreen screen --out RESULTS`"


class UnreadableResult(CytoscreenError):
    """A slide's result record cannot be read (damaged, not a record, or a newer format)."""

    default_hint = (
        "screen the slides again into this results folder: a slide whose result cannot be "
        "read is screened again, finished ones are kept"
    )
