"""The lock files cover pyproject's requirements, and the Dockerfile keeps the image's
rules: base pinned by digest, dependencies only from the hashed lock, no installer and
no root in the final stage. (The image itself needs a Docker engine to build; the
build stage's steps are what `make lock` and CI's venv do with the same lock.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a `uv pip compile --generate-hashes` file."""
    out: dict[str, tuple[str, int]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", line):
            name = canonicalize_name(m.group(1))
            out[name] = (m.group(2), 0)
        elif "--hash=sha256:" in line and name:
            version, n = out[name]
            out[name] = (version, n + 1)
    return out


def project() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = data.get("optional-dependencies", {})
    return {"runtime": data["dependencies"],
            "dev": [*data["dependencies"], *(r for group in extras.values() for r in group)]}


@pytest.mark.parametrize(("lock", "group"), [("requirements.lock", "runtime"),
                                             ("requirements-dev.lock", "dev")])
def test_every_requirement_is_pinned_with_hashes_in_range(lock: str, group: str) -> None:
    pinned = pins(ROOT / lock)
    assert pinned, f"{lock} is empty"
    problems = []
    for text in project()[group]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in pinned:
            problems.append(f"{req.name} is not in {lock} (run make lock)")
        elif not req.specifier.contains(pinned[name][0], prereleases=True):
            problems.append(f"{req.name}=={pinned[name][0]} is outside {req.specifier}")
    problems += [f"{n}=={v} has no hash" for n, (v, hashes) in pinned.items() if not hashes]
    assert not problems, problems


def test_the_runtime_lock_is_a_subset_of_the_dev_lock_at_the_same_versions() -> None:
    runtime, dev = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-dev.lock")
    assert {n: v for n, (v, _) in runtime.items()} == {
        n: dev[n][0] for n in runtime if n in dev}
    assert set(runtime) <= set(dev)


def test_the_dockerfile_pins_its_base_by_digest_and_ends_without_pip_or_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M)
    assert base and re.search(r"@sha256:[0-9a-f]{64}$", base.group(1)), "base not pinned"
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f == "${BASE}" for f in froms), froms
    final = text.rsplit("\nFROM ", 1)[1]
    runs = " ".join(line for line in final.splitlines() if not line.lstrip().startswith("#"))
    assert "pip uninstall" in runs and "pip install" not in runs
    assert re.search(r"^USER 65532:65532$", final, re.M)
    assert "--require-hashes" in text and "requirements.lock" in text
