"""Cluster runs: N SGLang replicas behind a router, one trace replayed against the router.

    python -m fairbatching_sglang.harness.cluster_deploy --trace T --model M --replicas 2 \
        --venv .venv-sglang --router fairbatching-admission --out runs/cluster-fb
    (harness/run_cluster.sh is the same with the project venv; see harness/CLUSTER.md)

Backends (--backend): gpu (replica k gets CUDA_VISIBLE_DEVICES = its GPUs) or emulated (each
replica is the real SGLang server on CPU with an emulated device, measured_backend.py's recipe:
no GPUs, a device step log per replica, the run judged for CPU starvation).

Per rate (a fresh cluster each, like the single-server backends): start the replicas (each in
its own process group, all at once), wait for /health, warm each one up
and flush its cache, start the router and wait until it sees every replica, replay the trace
against the router with the harness's client, sample every replica's /v1/loads, stop everything.
Run directory: run.json (command, versions, config, every process's argv and exit status),
summary.json, requests.parquet (with the replica that served each request, from the replicas'
request logs), router.log (+ router_stats.json for our router), replicas/rK/{server.log,
loads.jsonl,step_log.jsonl,summary.json, device_steps.jsonl (emulated)}. A replica or router
that exits during the replay is recorded as crashed (status "crashed"), a CPU-starved emulated
run as "invalid"; SIGINT/SIGTERM/SIGHUP stop everything.

Routers: smg-round-robin, smg-least-load, smg-power-of-two, smg-cache-aware (the maintained SGLang
router `smg`, extra `cluster`) and fairbatching-admission (`fairbatching_sglang.router`, which needs
FairBatching replicas: smg cannot route by their admission budget, see router/README.md).

--dry-run prints the plan and the commands without starting anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from fairbatching_sglang import __version__
from fairbatching_sglang.harness.arms import Arm, resolve_arm, resolve_arms
from fairbatching_sglang.harness.cli_checks import SpreadBucketsOpt
from fairbatching_sglang.harness.replica_attribution import LOG_REQUEST_FLAGS
from fairbatching_sglang.harness.server import (
    ManagedProcess,
    ServerProcess,
    ServerSpec,
    ServerStartError,
    launch_server_argv,
)
from fairbatching_sglang.harness.starvation import StarvationThresholds
from fairbatching_sglang.profiles.device_spec import DEFAULT_DEVICE_MODEL

SMG_POLICIES = {
    "smg-round-robin": "round_robin",
    "smg-least-load": "least_load",
    "smg-power-of-two": "power_of_two",
    "smg-cache-aware": "cache_aware",
}
FB_ROUTER = "fairbatching-admission"
ROUTERS = (*SMG_POLICIES, FB_ROUTER)


@dataclass(frozen=True)
class ClusterConfig:
    model_path: str
    num_replicas: int
    router: str
    arm: str
    python: str  # SGLang interpreter (patched for FairBatching arms)
    gpus: tuple[str, ...] = ()  # default: 0 .. replicas * gpus_per_replica - 1
    tp_size: int = 1
    gpus_per_replica: int | None = None  # default: tp_size
    host: str = "127.0.0.1"
    base_port: int = 30001
    router_port: int = 30000
    server_args: tuple[str, ...] = ()
    router_args: tuple[str, ...] = ()
    smg: str = "smg"
    router_python: str = sys.executable
    ttft_slo_ms: float = 1000.0
    tpot_slo_ms: float = 50.0
    profile: str = "h100-llama3.1-8b"
    step_log: bool = True
    health_timeout_s: float = 900.0
    num_warmup: int = 4
    stop_grace_s: float = 30.0  # SIGTERM, then SIGKILL after this long (smg drains for 5 s)
    backend: str = "gpu"  # "gpu" | "emulated"
    device_model: str = "profile"  # emulated: the --device-model spec
    emulated_overhead_ms: float = 0.5
    emulated_max_total_tokens: int | None = None
    thresholds: StarvationThresholds = field(default_factory=StarvationThresholds)
    log_requests: bool = True  # replicas log rids: records name the replica that served them
    # smg's Prometheus listener (its default 0.0.0.0:29000 collides with any other smg on the
    # machine); None keeps smg's default.
    router_metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("gpu", "emulated"):
            raise ValueError(f"--backend must be gpu or emulated, not {self.backend!r}")
        if self.num_replicas < 1:
            raise ValueError("--replicas must be >= 1")
        if self.router not in ROUTERS:
            raise ValueError(f"unknown router {self.router!r}; known: {', '.join(ROUTERS)}")
        resolve_arms([self.arm], "gpu")  # raises on an unknown or sim-only arm
        if self.router == FB_ROUTER and not resolve_arm(self.arm).is_fairbatching:
            raise ValueError(
                f"--router {FB_ROUTER} routes by the FairBatching admission budget, which only "
                f"FairBatching replicas publish; arm {self.arm!r} is stock SGLang"
            )
        if self.tp_size < 1 or self.per_replica < 1:
            raise ValueError("--tp and --gpus-per-replica must be >= 1")
        if self.gpus and len(self.gpus) < self.num_replicas * self.per_replica:
            raise ValueError(
                f"{self.num_replicas} replicas x {self.per_replica} GPUs need "
                f"{self.num_replicas * self.per_replica} GPU ids, got {len(self.gpus)}"
            )

    @property
    def per_replica(self) -> int:
        return self.gpus_per_replica or self.tp_size

    @property
    def emulated(self) -> bool:
        return self.backend == "emulated"

    def emulated_recipe(self) -> Any:  # EmulatedRecipe (imported lazily: GPU runs skip it)
        from fairbatching_sglang.emulator.launch import EmulatedServerConfig
        from fairbatching_sglang.harness.emulated_backend import EmulatedRecipe

        device = EmulatedServerConfig(
            device_model=self.device_model,
            profile=self.profile,
            overhead_ms=self.emulated_overhead_ms,
            max_total_tokens=self.emulated_max_total_tokens,
        )
        return EmulatedRecipe(device, self.profile, self.thresholds)

    @property
    def arm_obj(self) -> Arm:
        return resolve_arm(self.arm)

    def replica_gpus(self, k: int) -> tuple[str, ...]:
        ids = self.gpus or tuple(str(i) for i in range(self.num_replicas * self.per_replica))
        return ids[k * self.per_replica : (k + 1) * self.per_replica]

    def replica_url(self, k: int) -> str:
        return f"http://{self.host}:{self.base_port + k}"

    @property
    def router_url(self) -> str:
        return f"http://{self.host}:{self.router_port}"


@dataclass
class Plan:
    replicas: list[ServerProcess]
    router_argv: list[str]
    run_dir: Path
    env: dict[str, dict[str, str]] = field(default_factory=dict)


def replica_processes(cfg: ClusterConfig, run_dir: Path) -> list[ServerProcess]:
    from fairbatching_sglang.core import SloTargets

    arm = cfg.arm_obj
    recipe = cfg.emulated_recipe() if cfg.emulated else None
    out = []
    for k in range(cfg.num_replicas):
        rdir = run_dir / "replicas" / f"r{k}"
        flags = arm.gpu_flags(SloTargets(cfg.ttft_slo_ms, cfg.tpot_slo_ms), cfg.profile)
        if arm.is_fairbatching and cfg.step_log:
            flags += ["--fairbatching-step-log", str(rdir / "step_log.jsonl")]
        if cfg.log_requests:
            flags += list(LOG_REQUEST_FLAGS)
        extra = (("--tp-size", str(cfg.tp_size)) if cfg.tp_size > 1 else ()) + cfg.server_args
        # CPU replicas need no GPU placement; each gets its own device step log.
        env = (
            recipe.server_env(rdir)
            if recipe is not None
            else {"CUDA_VISIBLE_DEVICES": ",".join(cfg.replica_gpus(k))}
        )
        spec = ServerSpec(
            python=cfg.python,
            model_path=cfg.model_path,
            host=cfg.host,
            port=cfg.base_port + k,
            extra_args=tuple(extra),
            health_timeout_s=cfg.health_timeout_s,
            env=env,
        )
        argv = recipe.server_argv(spec, flags) if recipe else launch_server_argv(spec, flags)
        out.append(ServerProcess(spec, flags, rdir / "server.log", argv=argv))
    return out


def router_argv(cfg: ClusterConfig) -> list[str]:
    urls = [cfg.replica_url(k) for k in range(cfg.num_replicas)]
    common = ["--host", cfg.host, "--port", str(cfg.router_port)]
    if cfg.router == FB_ROUTER:
        argv = [cfg.router_python, "-m", "fairbatching_sglang.router", "serve", *common]
        for u in urls:
            argv += ["--worker-url", u]
        return [*argv, *cfg.router_args]
    return [
        cfg.smg,
        "launch",
        *common,
        "--worker-urls",
        *urls,
        "--policy",
        SMG_POLICIES[cfg.router],
        "--load-monitor-interval",
        "1",  # smg's minimum (whole seconds); its default is 10
        "--log-level",
        "info",
        *(
            ["--prometheus-host", cfg.host, "--prometheus-port", str(cfg.router_metrics_port)]
            if cfg.router_metrics_port is not None
            else []
        ),
        *cfg.router_args,
    ]


def make_plan(cfg: ClusterConfig, run_dir: Path) -> Plan:
    reps = replica_processes(cfg, run_dir)
    return Plan(reps, router_argv(cfg), run_dir, {f"r{k}": r.spec.env for k, r in enumerate(reps)})


def describe(plan: Plan) -> str:
    """The commands a run would execute, shell-quoted (the --dry-run output)."""
    lines = []
    for k, r in enumerate(plan.replicas):
        env = " ".join(f"{k2}={shlex.quote(v)}" for k2, v in r.spec.env.items())
        lines.append(f"# replica r{k}: {r.spec.base_url} (log {r.log_path})")
        lines.append(f"{env} {shlex.join(r.argv)}")
    lines.append(f"# router (log {plan.run_dir / 'router.log'})")
    lines.append(shlex.join(plan.router_argv))
    return "\n".join(lines)


def wait_router_ready(
    url: str, router: str, num_replicas: int, proc: ManagedProcess, timeout_s: float
) -> float:
    """Seconds until the router answers /health and sees every replica (smg: /get_loads lists
    them all, i.e. it has registered and polled each; ours: /stats says all are healthy)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not proc.alive():
            raise ServerStartError(
                f"router exited with code {proc.returncode}; see {proc.log_path}"
            )
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                if router == FB_ROUTER:
                    ws = httpx.get(url + "/stats", timeout=2).json()["workers"]
                    seen = sum(w["healthy"] for w in ws)
                else:
                    loads = httpx.get(url + "/get_loads", timeout=2).json()["loads"]
                    seen = len({x.get("worker") for x in loads})
                if seen >= num_replicas:
                    return time.monotonic() - start
        time.sleep(0.25)
    raise ServerStartError(f"router not ready with {num_replicas} replicas within {timeout_s:g} s")


def _versions(cfg: ClusterConfig) -> dict[str, Any]:
    from fairbatching_sglang.harness.preflight import sglang_version

    v: dict[str, Any] = {"fairbatching_sglang": __version__, "sglang": sglang_version(cfg.python)}
    if cfg.router != FB_ROUTER:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([cfg.smg, "--version"], capture_output=True, text=True, timeout=30)
            v["smg"] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None
    return v


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(f"signal {signal.Signals(signum).name}")


def run_cluster(
    cfg: ClusterConfig,
    table: Any,
    slo_table: Any,
    rate: float,
    run_dir: Path,
    command: str,
    client_overrides: dict[str, Any] | None = None,
    router_ready_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """One cluster run at one rate; returns run.json's content (also written to run_dir)."""
    from dataclasses import replace

    from fairbatching_sglang.harness.client import (
        ClientConfig,
        replay_async,
    )
    from fairbatching_sglang.harness.gpu_backend import gpu_name
    from fairbatching_sglang.harness.loads import sample_loads
    from fairbatching_sglang.harness.measured_backend import measured_trace_metadata, warmup
    from fairbatching_sglang.metrics import summarize

    run_dir.mkdir(parents=True, exist_ok=True)
    plan = make_plan(cfg, run_dir)
    router = ManagedProcess(plan.router_argv, run_dir / "router.log")  # own process group
    meta: dict[str, Any] = {
        "kind": "emulated-cluster" if cfg.emulated else "measured-cluster",
        "command": command,
        "gpu": None if cfg.emulated else gpu_name(),
        "versions": _versions(cfg),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "rate_scale": rate,
        "trace": measured_trace_metadata(table),
        "replicas": [
            {"url": r.spec.base_url, "argv": r.argv, "env": r.spec.env} for r in plan.replicas
        ],
        "router": {"kind": cfg.router, "url": cfg.router_url, "argv": plan.router_argv},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "starting",
    }
    if cfg.emulated:
        meta["label"] = cfg.emulated_recipe().label
        meta.update(cfg.emulated_recipe().describe())

    def save() -> None:
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    save()
    main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old: dict[signal.Signals, Any] = {}
    if main_thread:
        old = {s: signal.getsignal(s) for s in signals}
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _raise_stop)
    result = None
    replay_start_s = math.nan
    try:
        try:
            for r in plan.replicas:
                r.start()
            meta["replica_startup_s"] = [r.wait_healthy() for r in plan.replicas]
            for r in plan.replicas:
                warmup(r.spec.base_url, cfg.num_warmup)
            router.start()
            meta["router_startup_s"] = wait_router_ready(
                cfg.router_url, cfg.router, cfg.num_replicas, router, router_ready_timeout_s
            )
        except (ServerStartError, httpx.HTTPError) as exc:
            meta.update(status="start_failed", error=str(exc))
            return meta
        meta["status"] = "running"
        save()
        replay_start_s = time.time()  # device steps before this are warm-up
        client_cfg = ClientConfig(base_url=cfg.router_url, rate_scale=rate)
        if client_overrides:
            client_cfg = replace(client_cfg, **client_overrides)
        result = asyncio.run(
            _replay(plan, table, slo_table, client_cfg, replay_async, sample_loads)
        )
    except (_Stop, KeyboardInterrupt) as exc:
        meta.update(status="interrupted", error=str(exc) or type(exc).__name__)
    finally:
        if main_thread:  # a second Ctrl-C must not interrupt the clean-up
            for s in signals:
                signal.signal(s, signal.SIG_IGN)
        crashed = [f"r{k}" for k, r in enumerate(plan.replicas) if r.proc and not r.alive()]
        if router.proc is not None and not router.alive():
            crashed.append("router")
        if cfg.router == FB_ROUTER and router.alive():
            with contextlib.suppress(httpx.HTTPError, OSError):
                stats = httpx.get(cfg.router_url + "/stats", timeout=5).json()
                (run_dir / "router_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        meta["router"]["returncode"] = router.stop(cfg.stop_grace_s)
        for k, r in enumerate(plan.replicas):
            meta["replicas"][k]["returncode"] = r.stop(cfg.stop_grace_s)
        for s, h in old.items():
            signal.signal(s, h)
        if crashed and meta["status"] in ("running", "starting"):
            meta.update(status="crashed", error=f"exited during the run: {', '.join(crashed)}")
        meta["crashed"] = crashed
        if result is not None:
            _write_results(cfg, plan, result, meta, replay_start_s, summarize)
        meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save()
    return meta


def _write_results(
    cfg: ClusterConfig,
    plan: Plan,
    result: Any,
    meta: dict[str, Any],
    replay_start_s: float,
    summarize: Any,
) -> None:
    """Records (with the serving replica), summaries (cluster and per replica), validity."""
    from fairbatching_sglang.harness.client import dispatch_lag_summary
    from fairbatching_sglang.harness.records import write_cluster_records
    from fairbatching_sglang.harness.replica_attribution import attribute
    from fairbatching_sglang.harness.starvation import DEVICE_STEP_LOG, assess, read_device_steps

    run_dir = plan.run_dir
    records = result.records.copy()
    logs = [r.log_path for r in plan.replicas]
    records["replica"] = attribute(logs, result.run_token, len(records))
    write_cluster_records(records, run_dir / "requests.parquet")
    summary = summarize(records, span_s=result.span_s)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lag = dispatch_lag_summary(records)
    for k, r in enumerate(plan.replicas):
        mine = records[records["replica"] == k]
        meta["replicas"][k]["num_requests"] = len(mine)
        if len(mine):
            rs = summarize(mine.reset_index(drop=True), span_s=result.span_s)
            (r.log_path.parent / "summary.json").write_text(json.dumps(rs, indent=2) + "\n")
    meta.update(
        counts=result.counts(),
        replay_wall_s=result.wall_s,
        num_cap_waits=result.num_cap_waits,
        max_in_flight_seen=result.max_in_flight_seen,
        rid_token=result.run_token,
        num_unattributed=int((records["replica"] < 0).sum()),
        **lag,
    )
    if cfg.emulated:
        steps = [
            read_device_steps(r.log_path.parent / DEVICE_STEP_LOG, since_s=replay_start_s)
            for r in plan.replicas
        ]
        validity = assess(steps, lag["dispatch_lag_ms_p99"], cfg.thresholds, where="r")
        meta["validity"] = validity.to_dict()
        if meta["status"] == "running" and not validity.valid:
            meta.update(status="invalid", error=validity.reason)
    if meta["status"] == "running":
        meta["status"] = "ok"


async def _replay(plan: Plan, table, slo_table, client_cfg, replay_async, sample_loads):
    stop = asyncio.Event()
    samplers = [
        asyncio.create_task(sample_loads(r.spec.base_url, r.log_path.parent / "loads.jsonl", stop))
        for r in plan.replicas
    ]
    try:
        return await replay_async(table, slo_table, client_cfg)
    finally:
        stop.set()
        await asyncio.gather(*samplers, return_exceptions=True)


def default_smg() -> str:
    local = Path(sys.executable).parent / "smg"
    return str(local) if local.exists() else (shutil.which("smg") or "smg")


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


@app.command()
def main(
    trace: Annotated[
        Path, typer.Option(help="Trace file (any format `fairbatching trace` reads).")
    ],
    model: Annotated[
        str | None, typer.Option(help="--model-path of every replica (gpu backend).")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(help="gpu | emulated (real SGLang servers on CPU, emulated devices)."),
    ] = "gpu",
    device_model: Annotated[
        str,
        typer.Option(
            help="Emulated: device model spec (default realistic; see `fairbatching ab --help`)."
        ),
    ] = DEFAULT_DEVICE_MODEL,
    emulated_overhead_ms: Annotated[
        float, typer.Option(help="Emulated: per-step CPU/launch time (ms).")
    ] = 0.5,
    emulated_max_total_tokens: Annotated[
        int | None, typer.Option(help="Emulated: KV pool per replica (default: the profile's).")
    ] = None,
    router: Annotated[str, typer.Option(help=f"One of: {', '.join(ROUTERS)}.")] = FB_ROUTER,
    arm: Annotated[
        str | None,
        typer.Option(
            help="Scheduling arm of the replicas (default: fairbatching for "
            "fairbatching-admission, else sglang-mixed)."
        ),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Number of SGLang replicas.")] = 2,
    venv: Annotated[
        Path | None,
        typer.Option(help="SGLang venv (patched for FairBatching; emulated default: this one)."),
    ] = None,
    python: Annotated[str | None, typer.Option(help="SGLang interpreter (instead of --venv).")] = (
        None
    ),
    gpus: Annotated[str, typer.Option(help="GPU ids to use, e.g. 0,1,2,3 (default 0..).")] = "",
    tp: Annotated[int, typer.Option(help="Tensor parallel size of each replica.")] = 1,
    gpus_per_replica: Annotated[
        int | None, typer.Option(help="GPUs per replica (default: --tp).")
    ] = None,
    base_port: Annotated[int, typer.Option(help="Replica k listens on base_port + k.")] = 30001,
    router_port: Annotated[int, typer.Option(help="Router port.")] = 30000,
    router_metrics_port: Annotated[
        int | None, typer.Option(help="smg: Prometheus port (default smg's 0.0.0.0:29000).")
    ] = None,
    server_arg: Annotated[list[str] | None, typer.Option(help="Extra replica arg (repeat).")] = (
        None
    ),
    router_arg: Annotated[list[str] | None, typer.Option(help="Extra router arg (repeat).")] = (
        None
    ),
    smg: Annotated[str | None, typer.Option(help="smg executable (default: the venv's).")] = None,
    rates: Annotated[str, typer.Option(help="Rate scales, one fresh cluster each.")] = "1",
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT SLO (ms).")] = 1000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="TPOT SLO (ms).")] = 50.0,
    profile: Annotated[str, typer.Option(help="FairBatching cost profile.")] = "h100-llama3.1-8b",
    trace_format: Annotated[str | None, typer.Option("--format", help="Trace format.")] = None,
    start_s: Annotated[float | None, typer.Option("--start", help="Window start (s).")] = None,
    duration_s: Annotated[float | None, typer.Option("--duration", help="Window (s).")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Read at most this many rows.")] = None,
    spread_buckets_s: SpreadBucketsOpt = None,
    request_timeout_s: Annotated[float, typer.Option(help="Per-request timeout (s).")] = 600.0,
    health_timeout_s: Annotated[
        float | None,
        typer.Option(help="Wait for replica /health (s; default gpu 900, emulated 180)."),
    ] = None,
    num_warmup: Annotated[int, typer.Option(help="Warm-up requests per replica.")] = 4,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/cluster-...).")] = (
        None
    ),
    dry_run: Annotated[bool, typer.Option(help="Print the plan and commands; start nothing.")] = (
        False
    ),
) -> None:
    """Start REPLICAS SGLang servers behind ROUTER, replay TRACE against it, write the run dir."""
    arm_name = arm or ("fairbatching" if router == FB_ROUTER else "sglang-mixed")
    emulated = backend == "emulated"
    if python is None:
        python = str(venv / "bin/python") if venv is not None else None
    if python is None and emulated:
        python = sys.executable  # patched; with FairBatching off it behaves as stock
    if python is None and not dry_run:
        raise typer.BadParameter("give --venv or --python (the SGLang interpreter)")
    if emulated:
        from fairbatching_sglang.emulator.launch import TINY_MODEL_DIR
        from fairbatching_sglang.harness.emulated_backend import DEFAULT_HEALTH_TIMEOUT_S
        from fairbatching_sglang.profiles.device_spec import DeviceSpecError, parse_device_model

        if model is not None:
            raise typer.BadParameter("--model is for --backend gpu (emulated replicas have none)")
        try:
            parse_device_model(device_model, flag="--device-model")
        except DeviceSpecError as exc:
            raise typer.BadParameter(str(exc)) from exc
        model = str(TINY_MODEL_DIR)
        health = health_timeout_s or DEFAULT_HEALTH_TIMEOUT_S
    else:
        if model is None:
            raise typer.BadParameter("--backend gpu needs --model")
        health = health_timeout_s or 900.0
    rate_list = [float(x) for x in rates.split(",") if x.strip()]
    try:
        cfg = ClusterConfig(
            model_path=model,
            num_replicas=replicas,
            router=router,
            arm=arm_name,
            python=python or "python",
            gpus=tuple(g.strip() for g in gpus.split(",") if g.strip()),
            tp_size=tp,
            gpus_per_replica=gpus_per_replica,
            base_port=base_port,
            router_port=router_port,
            router_metrics_port=router_metrics_port,
            server_args=tuple(server_arg or ()),
            router_args=tuple(router_arg or ()),
            smg=smg or default_smg(),
            ttft_slo_ms=slo_ttft_ms,
            tpot_slo_ms=slo_tpot_ms,
            profile=profile,
            health_timeout_s=health,
            num_warmup=num_warmup,
            backend=backend,
            device_model=device_model,
            emulated_overhead_ms=emulated_overhead_ms,
            emulated_max_total_tokens=emulated_max_total_tokens,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    out_dir = out or Path("runs") / f"cluster-{router}-{arm_name}-{trace.stem}"
    multi = len(rate_list) > 1
    if dry_run:
        where = "emulated CPU replicas" if emulated else f"replicas x {cfg.per_replica} GPU(s)"
        typer.echo(
            f"# {replicas} {where}, arm {arm_name}, "
            f"router {router} at {cfg.router_url}, rates {rate_list}"
        )
        typer.echo(
            f"# trace {trace}; run dir {out_dir}" + (" (one subdir per rate)" if multi else "")
        )
        first_dir = out_dir / f"rate-{rate_list[0]:g}" if multi else out_dir
        typer.echo(describe(make_plan(cfg, first_dir)))
        return
    if router != FB_ROUTER and shutil.which(cfg.smg) is None and not Path(cfg.smg).exists():
        raise typer.BadParameter(f"smg not found ({cfg.smg}); pip install -e '.[cluster]'")
    from fairbatching_sglang.harness.preflight import PreflightError, check_patched, check_sglang

    try:  # a wrong interpreter fails here, not as replicas that never get healthy
        check_sglang(cfg.python)
        if cfg.arm_obj.patched:
            check_patched(cfg.python)
    except PreflightError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    from fairbatching_sglang.core import SloTable, SloTargets
    from fairbatching_sglang.workload import TraceError, load_trace

    try:
        table = load_trace(
            trace,
            trace_format,
            start_s=start_s,
            duration_s=duration_s,
            max_rows=max_rows,
            spread_buckets_s=spread_buckets_s,
        )
    except (TraceError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    slo = SloTable(SloTargets(slo_ttft_ms, slo_tpot_ms))
    command = "harness/run_cluster.sh " + shlex.join(sys.argv[1:])
    failed = False
    for rate in rate_list:
        run_dir = out_dir / f"rate-{rate:g}" if multi else out_dir
        meta = run_cluster(
            cfg, table, slo, rate, run_dir, command, {"request_timeout_s": request_timeout_s}
        )
        line = f"{router}/{arm_name} x{rate:g}: {meta['status']}"
        if meta.get("counts"):
            line += f" {meta['counts']}"
        if meta.get("error"):
            line += f" ({meta['error']})"
        typer.echo(line + f" -> {run_dir}", err=True)
        failed |= meta["status"] not in ("ok",)
        if meta["status"] == "interrupted":
            break
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    app(prog_name="run_cluster.sh")
