"""The cache subcommands as the Jobs run them: `aim-controller cache-download ...` and
`aim-controller cache-clean ...`; argument parsing, environment, exit codes, report file,
and the operator's own command line left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from modelcache_hub import FakeHub, FakeRepo, serve

from aim_controller import main as entry
from aim_controller.modelcache import report
from aim_controller.modelcache.cli import main as cache_main
from aim_controller.modelcache.layout import model_path
from aim_controller.modelcache.manifest import ModelManifest, read_manifest, write_manifest
from aim_controller.options import Options

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands configure structlog and huggingface_hub's environment for the
    process; give the next test its own."""
    saved, env = structlog.get_config(), dict(os.environ)
    yield
    structlog.configure(**saved)
    os.environ.clear()
    os.environ.update(env)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with serve(FakeHub()) as h:
        h.add(FakeRepo("org/tiny", {"config.json": b"{}", "w.bin": b"w" * 1000}))
        h.add(FakeRepo("org/private", {"config.json": b"{}"}, token="hf_tok"))
        yield h


def run_main(argv: list[str]) -> int:
    """aim-controller's entry point, in process: its exit code."""
    with pytest.raises(SystemExit) as e:
        entry.main(argv)
    return int(e.value.code or 0)


def last_json_line(out: str) -> dict[str, object]:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def test_cache_download_reports_ready_on_stdout_and_in_the_report_file(
        tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_tok")
    rf = tmp_path / "termination-log"
    code = run_main(["cache-download", "--root", str(tmp_path / "cache"), "--model",
                     "org/private", "--report-file", str(rf)])
    assert code == 0
    summary = json.loads(rf.read_text())
    assert summary == last_json_line(capsys.readouterr().out)
    assert summary["state"] == "Ready" and summary["skipped"] is False
    assert summary["sizeBytes"] == 2 and summary["model"] == "org/private"
    assert {r.headers.get("authorization") for r in hub.requests} == {"Bearer hf_tok"}
    assert read_manifest(model_path("org/private", str(tmp_path / "cache"))) is not None


def test_cache_download_failure_exits_non_zero_with_the_reason(
        tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    rf = tmp_path / "report"
    assert run_main(["cache-download", "--root", str(tmp_path), "--model", "org/private",
                     "--report-file", str(rf)]) == 3
    summary = json.loads(rf.read_text())
    assert summary["state"] == "Failed" and "HTTP 401" in summary["message"]  # type: ignore[operator]
    assert run_main(["cache-download", "--root", str(tmp_path), "--model", "org/nope",
                     "--report-file", str(rf)]) == 3
    assert "not found" in json.loads(rf.read_text())["message"]


def test_the_real_process_honours_hf_endpoint_and_skips_the_second_time(
        tmp_path: Path, hub: FakeHub) -> None:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "PYTHONPATH": str(ROOT)}
    env.pop("HF_TOKEN", None)
    cmd = [sys.executable, "-m", "aim_controller.main", "cache-download", "--root",
           str(tmp_path), "--model", "org/tiny", "--revision", "main", "--report-file", ""]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 1, "stdout holds the summary only; logs go to stderr"
    assert json.loads(lines[0])["state"] == "Ready"
    assert all(json.loads(line) for line in first.stderr.splitlines()), "JSON logs"
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and json.loads(second.stdout)["skipped"] is True


def test_the_default_report_file_is_the_termination_log_when_writable(
        tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setattr(report, "TERMINATION_LOG", str(log))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    args = ["cache-download", "--root", str(tmp_path), "--model", "org/tiny"]
    assert cache_main(args) == 0
    assert not log.exists(), "not in a pod: stdout only"
    log.write_text("")
    assert cache_main(args) == 0
    assert json.loads(log.read_text())["skipped"] is True
    log.write_text("")
    assert cache_main([*args, "--report-file", ""]) == 0
    assert log.read_text() == "", '"" means stdout only'


@pytest.mark.parametrize("argv", [
    ["cache-download", "--root", "/x"],  # no --model
    ["cache-clean", "--root", "/x"],  # no --policy-json
    ["cache-clean", "--policy-json", "{}", "--capacity-bytes", "-1"],
    ["cache-download", "--model", "a/b", "--bogus"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_of_a_subcommand_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["cache-clean", "--help"]) == 0
    assert "--policy-json" in capsys.readouterr().out


def test_cache_clean_applies_the_policy_and_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    for model_id in ("org/old", "org/used"):
        d = Path(model_path(model_id, str(tmp_path)))
        d.mkdir(parents=True)
        (d / "w").write_bytes(b"x" * 100)
        write_manifest(str(d), ModelManifest(model_id, "r", 100, old, old))
    policy = {"models": [{"id": "org/old", "priority": "low", "retentionSeconds": 60,
                          "inSpec": True},
                         {"id": "org/used", "priority": "low", "retentionSeconds": 60,
                          "inSpec": False}],
              "inUse": ["org/used"], "maxAgeSeconds": None, "minFreeBytes": 10**6}
    rf = tmp_path / "report"
    base = ["cache-clean", "--root", str(tmp_path), "--policy-json", json.dumps(policy),
            "--capacity-bytes", "100000", "--report-file", str(rf)]
    assert run_main([*base, "--dry-run"]) == 0
    dry = json.loads(rf.read_text())
    assert dry["dryRun"] is True and Path(model_path("org/old", str(tmp_path))).exists()
    assert run_main(base) == 0
    out = json.loads(rf.read_text())
    assert out == last_json_line(capsys.readouterr().out)
    assert [(r["id"], r["reason"]) for r in out["removed"]] == [("org/old", "retention")]
    assert [m["id"] for m in out["models"]] == ["org/used"]
    assert out["shortfallBytes"] == 10**6 - out["freeBytes"] > 0, "short, and it says so"
    assert not Path(model_path("org/old", str(tmp_path))).exists()
    assert dry["removed"] == out["removed"]


def test_cache_clean_bad_input(tmp_path: Path) -> None:
    rf = tmp_path / "report"
    assert run_main(["cache-clean", "--root", str(tmp_path), "--policy-json", "{x",
                     "--report-file", str(rf)]) == 2
    assert "not JSON" in json.loads(rf.read_text())["error"]
    assert run_main(["cache-clean", "--root", str(tmp_path / "absent"), "--policy-json", "{}",
                     "--report-file", str(rf)]) == 1
    assert "not a directory" in json.loads(rf.read_text())["error"]


def test_without_a_subcommand_the_operator_runs_with_its_flags_unchanged(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Options] = []

    async def fake_run(opts: Options) -> int:
        seen.append(opts)
        return 0

    monkeypatch.setattr(entry, "run", fake_run)
    monkeypatch.setattr(entry, "configure_logging", lambda *a: None)
    assert run_main(["--namespace", "a", "--kube-api-qps", "7", "--log-format", "console"]) == 0
    assert (seen[0].namespaces, seen[0].kube_api_qps) == (["a"], 7.0)
    assert run_main(["--help"]) == 0
    assert "cache-download" in capsys.readouterr().out
    assert run_main(["cache-bogus"]) == 2, "not a subcommand: an operator usage error"
