#!/usr/bin/env python3
"""make bench: N AIMEndpoints applied at once against the real operator on the local
control plane; convergence, API load, memory, latency, against a bare SSA loop; and
the recipe selection's cost and the pod cache's bytes per pod, measured in-process;
then the big-cluster scenario (aimbench/bigcluster.py: 2,000 nodes, 30,000 pods not
ours, N = 1,000).

    .venv/bin/python bench/run.py                  # N = 100, 300, 1000, then the big cluster
    .venv/bin/python bench/run.py --n 50 --quiet-seconds 20   # no big cluster
    .venv/bin/python bench/run.py --quick          # N = 100, short quiet period
    .venv/bin/python bench/run.py --big-cluster    # the big cluster alone (make bench-big)

Prints both tables at the end and writes _out/bench/results.json,
_out/bench/convergence.png and _out/bench/big-cluster.json.
Exits non-zero if an end state is wrong (lost, stale, duplicated or orphaned
objects, no convergence, writes at steady state); missed performance goals are
reported, and fail the run only with --strict.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from aimbench.apicount import differences
from aimbench.benchmark import BenchOptions, control_plane_cpu, goals, run_one
from aimbench.bigcluster import inventory_update_costs, run_big
from aimbench.operator import cli_available
from aimbench.podcache import PODS, pod_cache_cost
from aimbench.report import bench_table, plot_convergence, write_json
from aimbench.selection import selection_cost
from aimbench.writecost import write_cost, write_cost_table

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default=None,
                    help="comma-separated endpoint counts (default 100,300,1000; --quick: 100); "
                         "given, the big cluster is skipped unless --big-cluster")
    ap.add_argument("--quick", action="store_true",
                    help="N=100, 15 s quiet period, 20 latency samples, short selection bench")
    ap.add_argument("--quiet-seconds", type=float, default=None,
                    help="length of the steady-state window (default 60; --quick: 15)")
    ap.add_argument("--latency-samples", type=int, default=None,
                    help="spec changes timed per N (default 50; --quick: 20)")
    ap.add_argument("--concurrency", type=int, default=10,
                    help="--max-concurrent-reconciles of the operator = raw loop workers")
    ap.add_argument("--operator-arg", action="append", default=None, metavar="ARG",
                    help="extra aim-controller argument (repeatable; default: "
                         "--kube-api-qps 1000 --kube-api-burst 2000)")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds to wait for convergence and readiness, each")
    ap.add_argument("--out", default=str(ROOT / "_out" / "bench"))
    ap.add_argument("--no-raw", action="store_true", help="skip the raw SSA baseline")
    ap.add_argument("--paced-raw", action="store_true",
                    help="also run the raw loop spread over the operator's convergence "
                         "time, at every N (the full run: at N = 1,000)")
    ap.add_argument("--no-selection", action="store_true", help="skip the selection bench")
    ap.add_argument("--no-pod-cache", action="store_true",
                    help="skip measuring the pod cache's bytes per pod")
    ap.add_argument("--keep-cluster", action="store_true",
                    help="keep each cluster's state directory (logs) after the run")
    ap.add_argument("--strict", action="store_true", help="exit non-zero when a goal is missed")
    ap.add_argument("--big-cluster", action="store_true",
                    help="only the big-cluster scenario (aimbench/bigcluster.py): --big-nodes "
                         "nodes, --big-pods pods of other tenants, then N endpoints "
                         "(default N=1000); make bench-big")
    ap.add_argument("--write-cost", action="store_true",
                    help="also measure the API server's CPU per write of each kind "
                         "(aimbench/writecost.py; part of the full run)")
    ap.add_argument("--no-write-cost", action="store_true",
                    help="skip the write-cost scenario of the full run")
    ap.add_argument("--no-big-cluster", action="store_true",
                    help="skip the big-cluster scenario after the standard runs")
    ap.add_argument("--big-nodes", type=int, default=2000)
    ap.add_argument("--big-gpu-nodes", type=int, default=300)
    ap.add_argument("--big-pods", type=int, default=30000)
    return ap.parse_args(argv)


def options(args: argparse.Namespace) -> BenchOptions:
    opts = BenchOptions(out=Path(args.out), concurrency=args.concurrency, timeout=args.timeout,
                        raw=not args.no_raw, keep_cluster=args.keep_cluster)
    opts.ns = ([int(x) for x in args.n.split(",") if x.strip()] if args.n
               else [100] if args.quick else [100, 300, 1000])
    opts.paced_raw = args.paced_raw or full_run(args)
    # the full run paces the largest N only, which keeps `make bench` under 25 minutes
    opts.paced_raw_from_n = 0 if args.paced_raw else max(opts.ns)
    opts.quiet_seconds = (args.quiet_seconds if args.quiet_seconds is not None
                          else 15.0 if args.quick else 60.0)
    opts.latency_samples = (args.latency_samples if args.latency_samples is not None
                            else 20 if args.quick else 50)
    if args.operator_arg is not None:
        opts.operator_args = list(args.operator_arg)
    return opts


def full_run(args: argparse.Namespace) -> bool:
    """No --n and no --quick: every N, then the write cost and the big cluster."""
    return not (args.n or args.quick)


def _differences_line(run: dict[str, float], other: dict[str, float], n: int) -> str:
    rows = differences(run, other, n)
    return ", ".join(f"{k} {a:.2f} | {b:.2f}" for k, a, b in rows) or "no difference"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    opts = options(args)
    opts.log = log
    if not cli_available():
        print("aim-controller CLI not available (.venv/bin/aim-controller --help fails)",
              file=sys.stderr)
        return 2
    if args.big_cluster:
        big, ok = big_cluster(args, opts)
        print_big(args, big, opts.out)
        return 0 if ok else 1
    started = time.monotonic()
    data: dict[str, object] = {
        "machine": {"cpus": psutil.cpu_count(), "memoryGiB": round(
            psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version()},
        "options": {"ns": opts.ns, "quietSeconds": opts.quiet_seconds,
                    "latencySamples": opts.latency_samples, "concurrency": opts.concurrency,
                    "operatorArgs": opts.operator_args},
    }
    if not args.no_selection:
        log("recipe selection cost (1,000 recipes, 500 nodes)")
        data["selection"] = selection_cost(quick=args.quick)
    if not args.no_pod_cache:
        log(f"pod cache cost ({PODS:,} simulated pods)")
        data["podCache"] = pod_cache_cost()
    results = []
    for n in opts.ns:
        results.append(run_one(n, opts))
        data["results"] = results
        write_json(opts.out / "results.json", data)
    data["goals"] = goals(results)
    data["totalSeconds"] = round(time.monotonic() - started, 1)
    write_json(opts.out / "results.json", data)
    png = plot_convergence(results, opts.out / "convergence.png")
    if args.write_cost or (full_run(args) and not args.no_write_cost):
        data["writeCost"] = write_cost(log=log)
        write_json(opts.out / "results.json", data)
    # The full run (no --n, not --quick) goes on with the big cluster, then prints both.
    with_big = full_run(args) and not args.no_big_cluster
    big, big_ok = big_cluster(args, opts) if with_big else ({}, True)

    print()
    print(bench_table(results))
    print("\nrequests per endpoint until all Ready (client metrics by method | audit by verb):")
    for r in results:
        client = ", ".join(f"{k} {v:.2f}" for k, v in (r.get("requestsPerEndpoint") or {}).items()
                           if v)
        audit = ", ".join(f"{k} {v:.2f}" for k, v in
                          (r.get("auditVerbsPerEndpoint") or {}).items() if v)
        print(f"  N={r['n']}: {client or '-'} | {audit or '-'}")
    print("\nwrites per endpoint until all Ready, by resource (audit):")
    for r in results:
        writes = ", ".join(f"{k} {v:.2f}" for k, v in
                           (r.get("auditWritesPerEndpoint") or {}).items() if v)
        print(f"  N={r['n']}: {writes or '-'}")
    sel = data.get("selection")
    if isinstance(sel, dict):
        print(f"\nrecipe selection, {sel['recipes']} recipes / {sel['nodes']} nodes: "
              f"{sel['selectionIndexedUs']:.0f} us (prebuilt index), "
              f"{sel['selectionRawListUs']:.0f} us (raw list); inventory build "
              f"{sel['inventoryBuildMs']:.1f} ms cold, "
              f"{sel['inventoryCachedBuildMs']:.1f} ms cached")
        if "selectionWithReservationsUs" in sel:
            print(f"  with {sel['pendingReservations']} pending reservations (a burst): "
                  f"{sel['selectionWithReservationsUs']:.0f} us per selection, "
                  f"{sel['reservationPlacementMs']:.1f} ms to place them again after a "
                  f"change of the book")
    pods = data.get("podCache")
    if isinstance(pods, dict):
        print(f"\npod cache, {pods['pods']:,} simulated pods: {pods['bytesPerPodSlim']:,} "
              f"bytes per pod (slim pods; {pods['bytesPerPodFull']:,} with whole pods, "
              f"managedFields stripped)")
    print("\nCPU seconds by process, the operator's run to convergence | the raw loop:")
    for r in results:
        conv, raw = r.get("cpuToConvergence") or {}, (r.get("raw") or {}).get("cpu") or {}
        names = sorted(set(conv) | set(raw), key=lambda k: (k == "total", -conv.get(k, 0.0)))
        print(f"  N={r['n']}: " + ", ".join(
            f"{k} {conv.get(k, 0.0):.1f} | {raw.get(k, 0.0):.1f}" for k in names))
        cr = r.get("cpuRatio")
        if cr:
            print(f"    CPU ratio {cr['total']:.2f} = {cr['withoutOperator']:.2f} without the "
                  f"operator's own CPU (the rest of the cluster, at this pace) + "
                  f"{cr['operatorShare']:.2f} the operator")
    print("\nthe same pod work in both windows? Deployments rolled out when the operator's "
          "run converged | when the raw loop's writes were done; the ratio with both runs "
          "timed until settled (writes done, every Deployment rolled out):")
    for r in results:
        raw = r.get("raw") or {}
        cr = r.get("cpuRatioSettled") or {}
        print(f"  N={r['n']}: {r.get('deploymentsAvailableAtConvergence', '-')} | "
              f"{raw.get('deploymentsAvailableWhenWritten', '-')} of {r['n']}; settled "
              f"{r.get('settledSeconds', '-')} s | {raw.get('settledSeconds', '-')} s, ratio "
              f"{_ratio(r.get('ratioSettled'))} (CPU {_ratio(cr.get('total'))})")
    paced = [r for r in results if r.get("pacedComparison")]
    if paced:
        print("\nthe raw loop again, its writes spread over the operator's convergence time: "
              "CPU of the control plane (every process but the operator and the bench), "
              "the operator's run | the paced raw loop | the raw loop at full speed:")
    for r in paced:
        pc, pr = r["pacedComparison"], r["rawPaced"]
        full = control_plane_cpu((r.get("raw") or {}).get("cpu") or {})
        print(f"  N={r['n']}: {pc['runControlPlane']:.1f} | {pc['pacedControlPlane']:.1f} | "
              f"{full:.1f} CPU s (paced over {pr['spreadOver']:.1f} s, took "
              f"{pr['seconds']:.1f} s): the operator's run / the paced loop "
              f"{pc['ratio']:.2f}")
    print("\nwhat kube-apiserver counted, per endpoint: the operator's run to convergence | "
          "the raw loop's writes (apiserver_request_total by verb and resource, "
          "apiserver_watch_events_total by resource), where they differ by 0.05 or more:")
    for r in results:
        api = r.get("apiServerCounts") or {}
        if api.get("run") is None or api.get("raw") is None:
            continue
        print(f"  N={r['n']}: " + _differences_line(api["run"], api["raw"], r["n"]))
        paced_api = (r.get("rawPaced") or {}).get("apiServerCounts")
        if paced_api is not None:
            print("    against the paced raw loop: "
                  + _differences_line(api["run"], paced_api, r["n"]))
    costs = data.get("writeCost")
    if isinstance(costs, list):
        print("\nAPI server CPU per write (API-server-only cluster, 1,000 of each, "
              "10 writers):")
        print(write_cost_table(costs))
    print("\ngoals:")
    for g in data["goals"]:  # type: ignore[union-attr]
        print(f"  [{'met' if g['met'] else 'MISSED'}] {g['goal']}: {g['value']}")
    print(f"\nwrote {opts.out / 'results.json'}" + (f" and {png}" if png else ""))
    print(f"total {data['totalSeconds']} s")
    if big:
        print_big(args, big, opts.out)

    correct = all((r.get("correct") or {}).get("ok") and r.get("convergedSeconds") is not None
                  and (r.get("quiet") or {}).get("writes") == 0 for r in results)
    if not correct:
        print("FAIL: an end state was wrong or the operator wrote at steady state",
              file=sys.stderr)
        return 1
    if not big_ok:
        print("FAIL: the big cluster's end state was wrong or it never got Ready",
              file=sys.stderr)
        return 1
    if args.strict and not all(g["met"] for g in data["goals"]):  # type: ignore[union-attr]
        return 1
    return 0


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def big_cluster(args: argparse.Namespace, opts: BenchOptions) -> tuple[dict[str, Any], bool]:
    """The big-cluster scenario: results (also in big-cluster.json), and whether its end
    state was right."""
    started = time.monotonic()
    n = opts.ns[0] if args.n and args.big_cluster else 1000
    data: dict[str, Any] = {
        "machine": {"cpus": psutil.cpu_count(), "memoryGiB": round(
            psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version()},
        "options": {"n": n, "nodes": args.big_nodes, "gpuNodes": args.big_gpu_nodes,
                    "pods": args.big_pods, "concurrency": opts.concurrency,
                    "operatorArgs": opts.operator_args},
    }
    log("inventory update cost after one pod change (in-process)")
    data["inventoryUpdate"] = inventory_update_costs(
        (args.big_pods // 10, args.big_pods), nodes=args.big_nodes,
        gpu_nodes=args.big_gpu_nodes)
    r = run_big(n, opts, nodes=args.big_nodes, gpu_nodes=args.big_gpu_nodes,
                pods=args.big_pods)
    data["result"] = r
    data["totalSeconds"] = round(time.monotonic() - started, 1)
    write_json(opts.out / "big-cluster.json", data)
    return data, bool((r.get("correct") or {}).get("ok") and r.get("readySeconds"))


def print_big(args: argparse.Namespace, data: dict[str, Any], out: Path) -> None:
    r, inv = data["result"], data["inventoryUpdate"]
    print()
    print(f"big cluster: {args.big_nodes:,} nodes ({args.big_gpu_nodes} with GPUs), "
          f"{args.big_pods:,} pods of other tenants, N={r.get('n')}")
    rss, cpu = r.get("rss") or {}, r.get("cpuSeconds") or {}
    print(f"  pods created and marked Running in {r.get('podCreateSeconds')} s (all Running "
          f"{r.get('podsRunningAfterSeconds')} s later); operator "
          f"ready (caches synced) in {r.get('operatorReadySeconds')} s, "
          f"{cpu.get('startAndSync')} CPU s")
    print(f"  converged {r.get('convergedSeconds')} s, all Ready {r.get('readySeconds')} s")
    print(f"  RSS idle {rss.get('idleMB')} MB, peak {rss.get('peakMB')} MB, after all Ready "
          f"{rss.get('afterReadyMB')} MB; CPU {cpu.get('perEndpoint')} s per endpoint "
          f"({cpu.get('toReady')} s to all Ready)")
    for row in inv:
        print(f"  inventory update after one GPU pod change at {row['pods']:,} pods: "
              f"{row['gpuPodChangeMs']} ms (cold build {row['coldBuildMs']} ms; a CPU-only "
              f"pod's change {row['cpuPodChangeUs']} us)")
    correct = r.get("correct") or {}
    counts = correct.get("counts") or {}
    print(f"  end state: {'ok' if correct.get('ok') else 'WRONG'} "
          f"({counts.get('ready')}/{counts.get('endpoints')} Ready, "
          f"{counts.get('children')} children, {correct.get('problemCount')} problems)")
    print("  goals:")
    for g in big_goals(data):
        print(f"    [{'met' if g['met'] else 'MISSED'}] {g['goal']}: {g['value']}")
    print(f"\nwrote {out / 'big-cluster.json'}; total {data['totalSeconds']} s")


def big_goals(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 16's big-cluster goals: peak RSS under 300 MB; an inventory update that grows
    with the change, not with the pods (10x the pods costs less than 2x the time)."""
    r, inv = data["result"], data["inventoryUpdate"]
    peak = (r.get("rss") or {}).get("peakMB")
    out = [{"goal": "peak RSS < 300 MB (big cluster)", "value": peak,
            "met": peak is not None and peak < 300}]
    rows = sorted(inv, key=lambda row: row["pods"])
    if len(rows) >= 2 and rows[0]["gpuPodChangeMs"]:
        growth = round(rows[-1]["gpuPodChangeMs"] / rows[0]["gpuPodChangeMs"], 2)
        out.append({"goal": f"inventory update at {rows[-1]['pods']:,} pods < 2x the one at "
                            f"{rows[0]['pods']:,}", "value": growth, "met": growth < 2})
    return out


if __name__ == "__main__":
    sys.exit(main())
