"""bench_provider_tf.py --profile: the real provider with every RPC timed (and profiled).

Served as `--provider l2vpc.testing.profiled_provider:build_provider` (FACTORY) by a launcher
whose environment names the output directory (PROFILE_DIR_ENV) and what to record: cProfile
around every RPC (CPROFILE_ENV=1, thread CPU clock) or a CPU sampler over all Python threads
(SAMPLE_ENV=1). Each provider process writes `provider-<pid>.json` (and `.prof`) when it
closes. Only the standard library is imported at module level, so that loading this module in
the provider process costs next to nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

FACTORY = "l2vpc.testing.profiled_provider:build_provider"
PROFILE_DIR_ENV = "L2VPC_BENCH_PROFILE_DIR"
CPROFILE_ENV = "L2VPC_BENCH_CPROFILE"
SAMPLE_ENV = "L2VPC_BENCH_SAMPLE"


def build_provider() -> Any:
    """The real provider with every RPC timed (and profiled); results written when it closes."""
    import cProfile
    import pstats
    import threading

    from l2vpc.provider import rpc
    from l2vpc.provider.l2vpc_provider import build_provider as build_real_provider

    out_dir = Path(os.environ[PROFILE_DIR_ENV])
    with_cprofile = os.environ.get(CPROFILE_ENV) == "1"
    sampler = CpuSampler() if os.environ.get(SAMPLE_ENV) == "1" else None
    if sampler is not None:
        sampler.start()
    cpu_at_build = sum(os.times()[:2])
    lock = threading.Lock()
    calls: list[dict[str, Any]] = []
    profiles: list[cProfile.Profile] = []
    built_at = time.time()

    def instrument(name: str, original: Any) -> Any:
        def timed(self: Any, request: Any, context: Any) -> Any:
            # cProfile in 3.11 profiles only the thread that enables it: one profiler per call,
            # timed in thread CPU so that waiting (GIL, locks, I/O) does not count as work.
            prof = cProfile.Profile(time.thread_time) if with_cprofile else None
            wall, cpu = time.perf_counter(), time.thread_time()
            started = time.time()
            if prof is not None:
                prof.enable()
            try:
                return original(self, request, context)
            finally:
                if prof is not None:
                    prof.disable()
                record = {
                    "rpc": name,
                    "type": getattr(request, "type_name", ""),
                    "start": started,
                    "wall": time.perf_counter() - wall,
                    "cpu": time.thread_time() - cpu,
                }
                with lock:
                    calls.append(record)
                    if prof is not None:
                        profiles.append(prof)

        return timed

    for name in dir(rpc.ProviderServicer):
        if name[:1].isupper() and callable(getattr(rpc.ProviderServicer, name)):
            setattr(rpc.ProviderServicer, name, instrument(name, getattr(rpc.ProviderServicer, name)))

    provider = build_real_provider()
    close = provider.close

    def close_and_dump() -> None:
        try:
            close()
        finally:
            if sampler is not None:
                sampler.stop()
            times = os.times()
            stem = out_dir / f"provider-{os.getpid()}"
            with lock:
                summary = {
                    "pid": os.getpid(),
                    "process_start": _process_start_time(),
                    "built": built_at,
                    "closed": time.time(),
                    "cpu_user": times.user,
                    "cpu_system": times.system,
                    "cpu_at_build": cpu_at_build,
                    "calls": calls,
                    "samples": None if sampler is None else sampler.result(),
                }
                stem.with_suffix(".json").write_text(json.dumps(summary))
                if profiles:
                    stats = pstats.Stats(profiles[0])
                    for p in profiles[1:]:
                        stats.add(p)
                    stats.dump_stats(str(stem.with_suffix(".prof")))

    provider.close = close_and_dump  # type: ignore[method-assign]
    return provider


class CpuSampler:
    """Where every Python thread burns CPU, gRPC's own threads included (cProfile sees only RPCs).

    Every few milliseconds: each thread's CPU clock is read, and what it used since the last
    look is charged to the stack it is in now. Threads that wait (GIL, locks, I/O) use no CPU
    and so are charged nothing. CPU of non-Python threads (grpc's C core) is the rest of the
    process's CPU time.
    """

    def __init__(self, interval: float = 0.002) -> None:
        import threading

        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.by_thread: dict[str, float] = {}
        self.own: dict[str, float] = {}
        self.inclusive: dict[str, float] = {}
        self.samples = 0
        self.own_cpu = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, Any]:
        return {"threads": self.by_thread, "own": self.own, "inclusive": self.inclusive, "samples": self.samples,
                "sampler_cpu": self.own_cpu}

    def _run(self) -> None:
        import threading

        me = threading.get_ident()
        last: dict[int, float] = {}
        names: dict[int, str] = {}
        while not self._stop.wait(self.interval):
            names.update({t.ident: t.name for t in threading.enumerate() if t.ident is not None})
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except (OSError, OverflowError):
                    continue  # the thread just ended
                used = cpu - last.get(ident, cpu)
                last[ident] = cpu
                if used <= 0:
                    continue
                self.samples += 1
                # Pool threads are named rpc_0, rpc_1, ...: one bucket for all of them.
                name = names.get(ident, "?").rstrip("0123456789").rstrip("_")
                self.by_thread[name] = self.by_thread.get(name, 0.0) + used
                seen: set[str] = set()
                f: Any = frame
                leaf = True
                while f is not None:
                    code = f.f_code
                    key = f"{code.co_filename}:{code.co_firstlineno}({code.co_name})"
                    if leaf:
                        self.own[key] = self.own.get(key, 0.0) + used
                        leaf = False
                    if key not in seen:
                        seen.add(key)
                        self.inclusive[key] = self.inclusive.get(key, 0.0) + used
                    f = f.f_back
        self.own_cpu = time.thread_time()


def _process_start_time() -> float:
    """This process's start in epoch seconds (10 ms resolution): now minus its age from /proc."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - started_after_boot)
    except (OSError, ValueError, IndexError):
        return 0.0
