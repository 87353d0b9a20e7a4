"""The cache subcommands of ``aim-controller``, run by the AIMCache Jobs in the operator's
image: ``cache-download`` and ``cache-clean``. Logs (JSON) go to stderr; the summary is
one JSON line on stdout and in the report file (see report.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

import structlog

from ..logconfig import configure_logging
from .clean import PolicyError, clean, parse_policy
from .download import EXIT_USAGE, download_model
from .layout import CACHE_MOUNT_PATH
from .report import default_report_file, emit

log = structlog.get_logger(__name__)

DOWNLOAD = "cache-download"
CLEAN = "cache-clean"
COMMANDS = (DOWNLOAD, CLEAN)
EXIT_FAILED = 1


def _non_negative_int(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=CACHE_MOUNT_PATH,
                   help=f"Where the cache volume is mounted (default {CACHE_MOUNT_PATH}).")
    p.add_argument("--report-file", default=None, metavar="PATH",
                   help="Also write the summary here (default: /dev/termination-log when it "
                        'exists and is writable; "" for stdout only).')
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aim-controller",
                                description="Cache commands of the AIM operator.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(DOWNLOAD, help="Download one model into the cache, atomically.",
                       description="Download a model from the Hugging Face Hub (HF_ENDPOINT "
                       "for a mirror, HF_TOKEN for a token) into <root>/models/<dir>.")
    _common(d)
    d.add_argument("--model", required=True, help="Model id, e.g. Qwen/Qwen3-32B.")
    d.add_argument("--revision", default=None,
                   help="Branch, tag or commit (default: the repository's main branch).")
    c = sub.add_parser(CLEAN, help="Remove expired models and free space by priority.",
                       description="Apply the cleanup policy to the cache.")
    _common(c)
    c.add_argument("--policy-json", required=True,
                   help='{"models":[{"id","priority","retentionSeconds","inSpec"}],'
                        '"inUse":[ids],"maxAgeSeconds":n|null,"minFreeBytes":n|null}')
    c.add_argument("--capacity-bytes", type=_non_negative_int, default=None,
                   help="Count free space as this minus the bytes the cache uses, instead of "
                        "the filesystem's free space.")
    c.add_argument("--dry-run", action="store_true", help="Report, delete nothing.")
    return p


def _report_file(arg: str | None) -> str | None:
    return default_report_file() if arg is None else (arg or None)


def main(argv: Sequence[str]) -> int:
    """Run one cache command; the process' exit code."""
    try:
        ns = parser().parse_args(list(argv))
    except SystemExit as e:  # argparse: usage errors exit 2, --help exits 0
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    configure_logging(ns.log_level, "json")
    # Resolve stderr at each line, not once: the same settings, but safe to call from a
    # process (the tests) whose stderr changes between runs.
    structlog.configure(logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
                        cache_logger_on_first_use=False)
    logging.basicConfig(level=logging.WARNING)  # huggingface_hub's own logger
    # Before huggingface_hub is imported (it reads these once). The Job's user has no
    # writable home: its state goes to a temporary directory, and Xet's chunk cache (10 GB
    # by default, useless for a one-shot download) is off.
    os.environ.setdefault("HF_HOME", os.path.join(tempfile.gettempdir(), "aim-hf-home"))
    os.environ.setdefault("HF_XET_CHUNK_CACHE_SIZE_BYTES", "0")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    report_file = _report_file(ns.report_file)
    if ns.command == DOWNLOAD:
        result = download_model(ns.root, ns.model, ns.revision,
                                token=os.environ.get("HF_TOKEN") or None,
                                endpoint=os.environ.get("HF_ENDPOINT") or None)
        emit(result.summary(), report_file)
        return result.exit_code
    try:
        request = parse_policy(ns.policy_json)
    except PolicyError as e:
        emit({"error": str(e)}, report_file)
        return EXIT_USAGE
    try:
        outcome = clean(ns.root, request, capacity_bytes=ns.capacity_bytes, dry_run=ns.dry_run)
    except OSError as e:
        log.error("cleanup failed", error=str(e))
        emit({"error": f"cleanup failed: {e}"}, report_file)
        return EXIT_FAILED
    emit(outcome.summary(), report_file, lists=("removed", "models"))
    return 0
