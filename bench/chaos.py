#!/usr/bin/env python3
"""make chaos: fault scenarios against the real operator, each with a verdict.

    .venv/bin/python bench/chaos.py                         # all scenarios, 300 endpoints
    .venv/bin/python bench/chaos.py --quick                 # 60 endpoints, 2 short scenarios
    .venv/bin/python bench/chaos.py --scenario operator-kill --n 50

Scenarios: apiserver-restart (kube-apiserver down 20 s), operator-kill (SIGKILL
and restart), leader-kill (two replicas with leader election, the leader
SIGKILLed), conflicting-writes (another field manager tramples the children),
node-delete (a GPU node with endpoint pods deleted), compaction-410 (etcd
compacted with the watch cache off, watches forced to 410 Gone).

Prints one PASS/FAIL line with a summary per scenario, writes
_out/chaos/results.json, and exits non-zero if any scenario failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from aimbench.chaos import ALL_SCENARIOS, QUICK_SCENARIOS, ChaosOptions, run_chaos
from aimbench.operator import cli_available
from aimbench.report import write_json

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None,
                    help="endpoints per scenario (default 300; --quick: 60)")
    ap.add_argument("--scenario", action="append", choices=ALL_SCENARIOS, default=None,
                    help="run only this scenario (repeatable)")
    ap.add_argument("--quick", action="store_true",
                    help=f"60 endpoints, {' + '.join(QUICK_SCENARIOS)}, 10 s outage")
    ap.add_argument("--outage-seconds", type=float, default=None,
                    help="how long kube-apiserver stays down (default 20; --quick: 10)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for convergence after a fault")
    ap.add_argument("--quiet-seconds", type=float, default=10.0,
                    help="window in which the operator must neither write nor fail")
    ap.add_argument("--operator-arg", action="append", default=None, metavar="ARG",
                    help="extra aim-controller argument (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "_out" / "chaos"))
    ap.add_argument("--keep-cluster", action="store_true")
    return ap.parse_args(argv)


def options(args: argparse.Namespace) -> ChaosOptions:
    opts = ChaosOptions(out=Path(args.out), timeout=args.timeout,
                        quiet_seconds=args.quiet_seconds, keep_cluster=args.keep_cluster)
    opts.n = args.n if args.n is not None else 60 if args.quick else 300
    opts.scenarios = list(args.scenario or (QUICK_SCENARIOS if args.quick else ALL_SCENARIOS))
    opts.outage_seconds = (args.outage_seconds if args.outage_seconds is not None
                           else 10.0 if args.quick else 20.0)
    if args.operator_arg is not None:
        opts.operator_args = list(args.operator_arg)
    return opts


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    opts = options(parse(argv))
    opts.log = log
    if not cli_available():
        print("aim-controller CLI not available (.venv/bin/aim-controller --help fails)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    results = asyncio.run(run_chaos(opts))
    total = time.monotonic() - started
    write_json(opts.out / "results.json", {
        "n": opts.n, "outageSeconds": opts.outage_seconds, "totalSeconds": round(total, 1),
        "scenarios": [{"name": r.name, "passed": r.passed, "summary": r.summary,
                       "seconds": round(r.seconds, 1), "details": r.details} for r in results],
    })
    print()
    for r in results:
        print(r.line())
    failed = [r.name for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)}/{len(results)} scenarios passed in {total:.0f} s; "
          f"wrote {opts.out / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
