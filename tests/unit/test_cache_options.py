"""The AIMCache controller's flags."""

from __future__ import annotations

import pytest

from aim_controller.builders.cache_objects import DEFAULT_OPERATOR_IMAGE
from aim_controller.options import parse


def test_defaults_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPERATOR_IMAGE", raising=False)
    opts = parse([])
    assert (opts.operator_image, opts.cache_max_concurrent_downloads) == (
        DEFAULT_OPERATOR_IMAGE, 2)
    monkeypatch.setenv("OPERATOR_IMAGE", "registry.example/aim-controller:v1")
    assert parse([]).operator_image == "registry.example/aim-controller:v1"
    opts = parse(["--operator-image", "x:1", "--cache-max-concurrent-downloads", "5"])
    assert (opts.operator_image, opts.cache_max_concurrent_downloads) == ("x:1", 5)
    with pytest.raises(SystemExit):
        parse(["--cache-max-concurrent-downloads", "0"])
