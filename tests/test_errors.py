"""The error's subject names what it is about; ``slide=`` stays accepted as its older spelling."""

from __future__ import annotations

import pickle

import pytest

from cytoscreen.errors import ConfigError, CytoscreenError


def test_subject_names_what_the_error_is_about() -> None:
    err = ConfigError("unknown value 'x'", subject="--device", hint="use cpu")
    assert err.subject == "--device" and err.slide == "--device"
    assert str(err) == "--device: unknown value 'x' -- use cpu"
    old = CytoscreenError("cannot read", slide="a.svs")
    assert old.subject == "a.svs" and str(old) == "a.svs: cannot read"
    assert CytoscreenError("plain").subject is None
    with pytest.raises(TypeError, match="not both"):
        CytoscreenError("x", subject="a", slide="b")
    assert "--device" in str(pickle.loads(pickle.dumps(err)))
