"""One scale run: N endpoints applied at once against the real operator, measured.

Per N, on a fresh local control plane with enough simulated MI300X nodes:

1. start ``aim-controller`` (the CLI, as a subprocess) and wait for /readyz;
2. apply N endpoints at once; record when each converged and when each became
   Ready (:class:`~.observer.Observer`), and scrape the operator's metrics at
   both moments;
3. let it settle, then count its requests during a quiet period (client
   metrics and the API server's audit log of its user);
4. change one spec field of a sample of endpoints, one at a time, and time
   each change until the Service shows it;
5. check the end state (:func:`~.verify.check_namespace`);
6. stop the operator and write the same children with a bare SSA loop
   (:mod:`.raw`) to get the limit, under the same observer watches;
7. optionally, the same loop again with its writes spread over the operator's
   convergence time: what the control plane itself costs at the operator's pace
   (:func:`paced_comparison`).

Both runs are also timed until *settled*, the writes done (the operator's run:
every endpoint converged) and every Deployment rolled out, to check that the two
windows hold the same pod work (:func:`ratios`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aim_controller.reconcilers.recipe_status import REFRESH_MAX_DELAY as RECIPE_REFRESH_MAX_DELAY

from . import apicount
from . import workload as wl
from .cluster import (
    BenchCluster,
    audit_verbs,
    audit_writes,
    dispose,
    gpu_inventory,
    new_cluster,
)
from .kube import Credentials, Kube
from .metrics import Metrics, histogram_quantile, per, percentile
from .observer import Observer
from .operator import OperatorProcess
from .raw import extract_owned, raw_apply, relocate
from .verify import check_namespace

NAMESPACE = "bench"
# Writes stopped for this long = settled. The operator re-evaluates every AIMRecipe's
# fit a coalescing delay after GPU usage changes (longer while a burst lasts, up to
# REFRESH_MAX_DELAY), so wait out the longest delay and more.
SETTLE_SECONDS = RECIPE_REFRESH_MAX_DELAY + 5.0
RAW_NAMESPACE = "bench-raw"
RAW_PACED_NAMESPACE = "bench-raw-paced"
CHILD_ORDER = list(wl.CHILD_KINDS)


@dataclass
class BenchOptions:
    ns: list[int] = field(default_factory=lambda: [100, 300, 1000])
    quiet_seconds: float = 60.0
    latency_samples: int = 50
    concurrency: int = 10  # --max-concurrent-reconciles, and the raw loop's workers
    apply_concurrency: int = 50
    operator_args: list[str] = field(default_factory=lambda: [
        "--kube-api-qps", "1000", "--kube-api-burst", "2000"])
    timeout: float = 900.0
    out: Path = Path("_out/bench")
    raw: bool = True
    # also the raw loop spread over the operator's convergence time (+2 min at N=1000),
    # at every N from this one on
    paced_raw: bool = False
    paced_raw_from_n: int = 0
    keep_cluster: bool = False
    log: Any = print


def _mb(b: int) -> float:
    return round(b / 2**20, 1)


def _curve(times: dict[str, float], t0: float) -> list[list[float]]:
    return [[round(t - t0, 3), i + 1] for i, t in enumerate(sorted(times.values()))]


async def measure(cluster: BenchCluster, n: int, opts: BenchOptions) -> dict[str, Any]:
    log = opts.log
    creds = Credentials.from_kubeconfig(cluster.kubeconfig)
    result: dict[str, Any] = {"n": n}
    op = OperatorProcess(cluster.operator_kubeconfig, opts.out / f"operator-{n}.log",
                         max_concurrent_reconciles=opts.concurrency,
                         extra_args=opts.operator_args)
    async with Kube(creds, connections=opts.apply_concurrency + 10) as kube:
        await wl.create_namespace(kube, NAMESPACE)
        op.start()
        try:
            await asyncio.to_thread(op.wait_ready, 180)
            await asyncio.sleep(3)
            m_idle = op.metrics()
            idle_rss = op.current_rss()
            obs = Observer(kube, NAMESPACE)
            await obs.start()
            names = wl.names(n)
            objs = [wl.endpoint(name, NAMESPACE, rev=0) for name in names]
            want = set(names)

            log(f"[N={n}] applying {n} endpoints")
            api0 = await _scrape_api(kube)
            t0, wall0 = time.monotonic(), time.time()
            cpu0 = op.cpu_seconds()
            parts0 = _cpu_parts(cluster, op.cpu_seconds())
            result["applySeconds"] = round(await wl.apply_all(
                kube, objs, concurrency=opts.apply_concurrency), 3)
            ok = await obs.wait(lambda: obs.all_converged(want), opts.timeout)
            m_conv = op.metrics()
            result["cpuToConvergence"] = _cpu_delta(parts0, _cpu_parts(cluster, op.cpu_seconds()))
            result["convergedSeconds"] = (round(max(obs.converged_at.values()) - t0, 3)
                                          if ok else None)
            deployments = obs.deployments_of(want)
            result["deploymentsAvailableAtConvergence"] = len(deployments & obs.available)
            api1 = await _scrape_api(kube)
            log(f"[N={n}] converged: {ok} {obs.snapshot()}")
            # Settled: converged, and the control plane done acting on the writes (every
            # Deployment rolled out); the raw loop is timed to the same point.
            ok_settled = ok and await obs.wait(lambda: obs.all_available(deployments),
                                               opts.timeout)
            result["cpuToSettled"] = _cpu_delta(parts0, _cpu_parts(cluster, op.cpu_seconds()))
            settled = obs.settled_at(deployments, want) if ok_settled else None
            result["settledSeconds"] = None if settled is None else round(settled - t0, 3)
            ok_ready = ok and await obs.wait(lambda: obs.all_ready(want), opts.timeout)
            m_ready = op.metrics()
            cpu_ready = op.cpu_seconds()
            wall_ready = time.time()
            result["readySeconds"] = (round(max(obs.ready_at.values()) - t0, 3)
                                      if ok_ready else None)
            log(f"[N={n}] ready: {ok_ready} {obs.snapshot()}")
            result["curve"] = _curve(obs.converged_at, t0)
            result["readyCurve"] = _curve(obs.ready_at, t0)

            at_conv = m_conv.minus(m_idle)
            at_ready = m_ready.minus(m_idle)
            result["requestsPerEndpointAtConvergence"] = per(at_conv.requests_by_method(), n)
            result["writesPerEndpointAtConvergence"] = round(at_conv.writes() / n, 3)
            result["requestsPerEndpoint"] = per(at_ready.requests_by_method(), n)
            result["writesPerEndpointAtReady"] = round(at_ready.writes() / n, 3)
            # The operator's user + system CPU from the first apply to all Ready, / N.
            result["cpuSecondsPerEndpoint"] = round((cpu_ready - cpu0) / n, 4)
            # The same, by API verb (get/list/watch/create/patch/...) as the API server saw it.
            await asyncio.sleep(1.5)  # the audit backend flushes every second
            result["auditVerbsPerEndpoint"] = per(
                {k: float(v) for k, v in audit_verbs(cluster.audit_events(wall0, wall_ready))
                 .items()}, n)
            result["auditWritesPerEndpoint"] = per(
                {k: float(v) for k, v in audit_writes(cluster.audit_events(wall0, wall_ready))
                 .items()}, n)

            # -- quiet period -------------------------------------------------------
            settled = await asyncio.to_thread(cluster.wait_operator_quiet, SETTLE_SECONDS, 180)
            log(f"[N={n}] settled after {settled:.0f}s")
            q0, w0 = op.metrics(), time.time()
            qcpu0 = _cpu_parts(cluster, op.cpu_seconds())
            log(f"[N={n}] quiet period: {opts.quiet_seconds:.0f}s")
            await asyncio.sleep(opts.quiet_seconds)
            q1, w1 = op.metrics(), time.time()
            qcpu = _cpu_delta(qcpu0, _cpu_parts(cluster, op.cpu_seconds()))
            await asyncio.sleep(1.5)  # the audit backend flushes every second
            quiet = q1.minus(q0)
            audit = cluster.audit_events(w0, w1)
            result["quiet"] = {
                "seconds": opts.quiet_seconds,
                # what the cluster burns with nothing to do: time-proportional work
                # that any longer window pays for again
                "cpu": qcpu,
                "cores": round(qcpu.get("total", 0.0) / opts.quiet_seconds, 3)
                if opts.quiet_seconds else None,
                "writes": quiet.writes(), "reads": quiet.reads(),
                "requestsByMethod": quiet.requests_by_method(),
                "reconciles": quiet.reconciles(),
                "auditVerbs": audit_verbs(audit),
                "auditReadsExcludingWatch": sum(1 for e in audit
                                                if e.get("verb") in ("get", "list")),
                "auditWrites": sum(1 for e in audit if e.get("verb") not in
                                   ("get", "list", "watch")),
            }

            # -- spec change -> child update -----------------------------------------
            samples = min(opts.latency_samples, n)
            step = max(1, n // max(samples, 1))
            latencies: list[float] = []
            expected = dict.fromkeys(names, 0)
            for name in names[::step][:samples]:
                fut = obs.expect_service_rev(name, 1)
                sent = time.monotonic()
                await wl.patch_rev(kube, NAMESPACE, name, 1)
                expected[name] = 1
                try:
                    seen = await asyncio.wait_for(fut, 60)
                    latencies.append(seen - sent)
                except TimeoutError:
                    latencies.append(float("inf"))
            finite = [x for x in latencies if x != float("inf")]
            result["specChangeLatency"] = {
                "samples": len(latencies), "timeouts": len(latencies) - len(finite),
                "p50": percentile(finite, 0.5), "p99": percentile(finite, 0.99),
                "max": max(finite, default=None),
            }
            await obs.wait(lambda: obs.all_converged(want), 120)
            m_end = op.metrics()
            whole = m_end.minus(m_idle)
            ctrl = _endpoint_controller(whole)
            buckets = whole.buckets("controller_runtime_reconcile_time_seconds",
                                    **({"controller": ctrl} if ctrl else {}))
            result["reconcileSeconds"] = {
                "controller": ctrl,
                "count": whole.reconciles(ctrl),
                "p50": histogram_quantile(0.5, buckets),
                "p99": histogram_quantile(0.99, buckets),
            }
            result["reconcileErrors"] = whole.reconcile_errors()
            result["requestsByCode"] = whole.requests_by_code()
            peak = op.peak_rss()
            result["rss"] = {
                "idleMB": _mb(idle_rss), "peakMB": _mb(peak),
                "growthKBPerEndpoint": round((peak - idle_rss) / n / 1024, 1),
                "samples": [[round(t - t0, 2), _mb(b)] for t, b in (op.rss.samples
                                                                   if op.rss else [])][::8],
            }
            verdict = await check_namespace(kube, NAMESPACE, expected=expected)
            result["correct"] = verdict.as_dict()
            result["nothingLost"] = verdict.ok and ok
            log(f"[N={n}] end state: {verdict.summary()}")
            await obs.stop()
        finally:
            op.stop()

        result["apiServerCounts"] = {"run": _api_window(api0, api1), "raw": None}
        if opts.raw:
            await _raw_runs(kube, cluster, result, opts)
    return result


async def _scrape_api(kube: Kube) -> str | None:
    """kube-apiserver's /metrics (None if it cannot be read: the counts are optional)."""
    try:
        return await apicount.scrape(kube)
    except Exception:  # a scrape never fails the run
        return None


def _api_window(before: str | None, after: str | None) -> dict[str, float] | None:
    """What the API server counted between two scrapes, from the first apply (the raw
    loop: its first write) to convergence (its last write)."""
    return None if before is None or after is None else apicount.window(before, after)


def ratios(run: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The convergence ratio (the goal's figure: convergence / the raw loop's writes)
    and its CPU decomposition; and the same with both runs timed until settled.

    Settled is when the writes are done and the control plane has finished acting on
    them, every Deployment rolled out. It checks that the two windows hold the same pod
    work: if the raw loop's writes ended long before its pods ran while the operator's
    run held all of that by the time it converged, the ratio would charge the
    operator for work the raw loop was simply not timed over.
    """
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    return {
        "ratio": ratio(run.get("convergedSeconds"), raw.get("seconds")),
        "cpuRatio": cpu_ratio(run.get("cpuToConvergence") or {}, raw.get("cpu") or {}),
        "ratioSettled": ratio(run.get("settledSeconds"), raw.get("settledSeconds")),
        "cpuRatioSettled": cpu_ratio(run.get("cpuToSettled") or {},
                                     raw.get("cpuToSettled") or {}),
    }


def _cpu_parts(cluster: BenchCluster, operator: float | None = None) -> dict[str, float]:
    """CPU seconds used so far by each process sharing the 2 cores: the control plane,
    the operator, and this bench process (its client and observer)."""
    parts = cluster.cpu_by_component()
    if operator is not None:
        parts["aim-controller"] = operator
    parts["bench"] = time.process_time()
    return parts


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out = {k: round(v - before.get(k, 0.0), 1) for k, v in after.items()}
    out["total"] = round(sum(out.values()), 1)
    return out


def cpu_ratio(run: dict[str, float], raw: dict[str, float],
              operator: str = "aim-controller") -> dict[str, float] | None:
    """The convergence ratio in CPU seconds, and what is left of it without the
    operator's own CPU.

    Both runs keep the 2 cores busy, so the wall-clock ratio follows the CPU ratio.
    ``withoutOperator`` counts everything else the operator's run costs (the API
    server and etcd serving the AIMEndpoints, their status writes and Events, the
    watches; the controller-manager's garbage collector following ownerReferences):
    the ratio an operator that made the same writes with no CPU of its own would
    reach, the floor for this API. ``operatorShare`` is the rest.
    """
    total, base = run.get("total"), raw.get("total")
    if not total or not base:
        return None
    own = run.get(operator, 0.0)
    return {"total": round(total / base, 3),
            "withoutOperator": round((total - own) / base, 3),
            "operatorShare": round(own / base, 3)}


def _endpoint_controller(m: Metrics) -> str | None:
    names = m.controllers()
    for c in names:
        if "endpoint" in c.lower():
            return c
    return names[0] if names else None


async def _replay_groups(kube: Kube) -> list[list[dict[str, Any]]]:
    """The operator's children, one group per endpoint in the order a reconcile applies
    them, cut down to what its field manager owns (the raw loop's writes)."""
    children = await wl.list_children(kube, NAMESPACE)
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in sorted(children, key=lambda o: CHILD_ORDER.index(o["kind"])):
        owner = wl.controller_name(c)
        owned = extract_owned(c, wl.OPERATOR_MANAGER)
        if owner and owned:
            groups.setdefault(owner, []).append(owned)
    return list(groups.values())


async def _raw_baseline(kube: Kube, cluster: BenchCluster, groups: list[list[dict[str, Any]]],
                        concurrency: int, settle_within: float, log: Any = print, *,
                        namespace: str = RAW_NAMESPACE,
                        spread_over: float | None = None) -> dict[str, Any]:
    """The raw loop in ``namespace``: at full speed, or its groups spread evenly over
    ``spread_over`` seconds. The GPUs its Deployments need must be free."""
    groups = [[relocate(o, namespace) for o in g] for g in groups]
    await wl.create_namespace(kube, namespace)
    # The same watches as during the operator's run (the bench's observer, which
    # decodes every child's events): the ratio then compares the controller's work,
    # not the bench's instrumentation, which only the operator's run used to pay for.
    obs = Observer(kube, namespace)
    await obs.start()
    deployments = {o["metadata"]["name"] for g in groups for o in g
                   if o["kind"] == "Deployment"}
    try:
        api0 = await _scrape_api(kube)
        t0, parts0 = time.monotonic(), _cpu_parts(cluster)
        out = await raw_apply(str(cluster.kubeconfig), groups, concurrency,
                              spread_over=spread_over)
        written = time.monotonic()
        out["cpu"] = _cpu_delta(parts0, _cpu_parts(cluster))
        out["deploymentsAvailableWhenWritten"] = len(deployments & obs.available)
        api1 = await _scrape_api(kube)
        # Settled, as the operator's run: until its pods run too.
        ok = await obs.wait(lambda: obs.all_available(deployments), settle_within)
        out["cpuToSettled"] = _cpu_delta(parts0, _cpu_parts(cluster))
        last = obs.settled_at(deployments) if ok else None
        out["settledSeconds"] = None if last is None else round(max(written, last) - t0, 3)
    finally:
        await obs.stop()
    # parsed only now: parsing MBs of metrics text is no work of either window
    out["apiServerCounts"] = _api_window(api0, api1)
    out["seconds"] = round(out["seconds"], 3)
    out["deploymentsWithReplicas"] = sum(
        1 for g in groups for o in g
        if o["kind"] == "Deployment" and (o.get("spec") or {}).get("replicas", 1))
    return out


async def _raw_runs(kube: Kube, cluster: BenchCluster, result: dict[str, Any],
                    opts: BenchOptions) -> None:
    """The raw loop (the limit), and with ``opts.paced_raw`` the same writes again spread
    over the operator's convergence time (what the control plane costs at that pace)."""
    log = opts.log
    groups = await _replay_groups(kube)
    # The replayed Deployments run the same pods, on the same GPUs: free them first.
    freed = await wl.delete_endpoints_and_wait(kube, NAMESPACE, limit=600)
    log(f"raw SSA loop: endpoints deleted, their pods gone after {freed:.0f}s")
    raw = result["raw"] = await _raw_baseline(kube, cluster, groups, opts.concurrency,
                                              opts.timeout, log)
    result["apiServerCounts"]["raw"] = raw.pop("apiServerCounts")
    result.update(ratios(result, raw))
    log(f"[N={result['n']}] raw SSA loop: {raw}")
    spread = result.get("convergedSeconds")
    if not (opts.paced_raw and spread and result["n"] >= opts.paced_raw_from_n):
        return
    freed = await wl.delete_children_and_wait(kube, RAW_NAMESPACE, limit=600)
    log(f"paced raw loop: raw loop's Deployments deleted, their pods gone after {freed:.0f}s")
    paced = result["rawPaced"] = await _raw_baseline(
        kube, cluster, groups, opts.concurrency, opts.timeout, log,
        namespace=RAW_PACED_NAMESPACE, spread_over=spread)
    result["pacedComparison"] = paced_comparison(result.get("cpuToConvergence") or {},
                                                 paced["cpu"])
    log(f"[N={result['n']}] paced raw loop: {paced}")


def control_plane_cpu(cpu: dict[str, float], *, operator: str = "aim-controller",
                      bench: str = "bench") -> float:
    """CPU seconds of every process of ``cpu`` (a :func:`_cpu_delta`) but the operator
    and the bench."""
    return sum(v for k, v in cpu.items() if k not in ("total", operator, bench))


def paced_comparison(run: dict[str, float], paced: dict[str, float]
                     ) -> dict[str, float] | None:
    """The control plane's CPU (:func:`control_plane_cpu`) in the operator's run against
    the raw loop paced to the same length: ``ratio`` near 1 means the control plane's
    extra CPU in the operator's run comes with the longer window, whoever makes the
    writes."""
    a, b = control_plane_cpu(run), control_plane_cpu(paced)
    if a <= 0 or b <= 0:
        return None
    return {"runControlPlane": round(a, 1), "pacedControlPlane": round(b, 1),
            "ratio": round(a / b, 3)}


def run_one(n: int, opts: BenchOptions) -> dict[str, Any]:
    """A fresh cluster sized for ``n`` endpoints, measured, then torn down."""
    opts.log(f"[N={n}] starting a local control plane")
    cluster = new_cluster(keep=opts.keep_cluster)
    try:
        inv = gpu_inventory(n)
        nodes = cluster.add_gpu_nodes(inv, timeout=300)
        opts.log(f"[N={n}] {len(nodes)} simulated MI300X nodes Ready ({cluster.state_dir})")
        result = asyncio.run(measure(cluster, n, opts))
        result["nodes"] = len(nodes)
        return result
    finally:
        with contextlib.suppress(Exception):
            dispose(cluster)


def goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The goals of the issues, checked against each N (the N = 1,000 ones at N = 1,000).

    Issue 16: convergence within 1.2x the raw loop, idle RSS under 60 MB, peak under
    150 MB at N = 1,000; and no writes or reads at steady state (earlier issues).
    """
    out = []
    for r in results:
        rss = r.get("rss") or {}
        if r["n"] >= 1000:
            out.append({"goal": "convergence / raw <= 1.2 at N=1000", "value": r.get("ratio"),
                        "met": r.get("ratio") is not None and r["ratio"] <= 1.2})
            peak = rss.get("peakMB")
            out.append({"goal": "peak RSS < 150 MB at N=1000", "value": peak,
                        "met": peak is not None and peak < 150})
        idle = rss.get("idleMB")
        out.append({"goal": f"idle RSS < 60 MB (N={r['n']})", "value": idle,
                    "met": idle is not None and idle < 60})
        q = r.get("quiet") or {}
        out.append({"goal": f"zero writes at steady state (N={r['n']})", "value": q.get("writes"),
                    "met": q.get("writes") == 0})
        out.append({"goal": f"zero reads (no get/list) at steady state (N={r['n']})",
                    "value": q.get("auditReadsExcludingWatch"),
                    "met": q.get("auditReadsExcludingWatch") == 0})
    return out


__all__ = ["BenchOptions", "control_plane_cpu", "cpu_ratio", "goals", "measure",
           "paced_comparison", "ratios", "run_one"]
