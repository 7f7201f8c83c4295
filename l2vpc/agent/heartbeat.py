"""Agents and their controller: register the host, then heartbeat at the controller's interval.

    settings = ControllerSettings(("10.0.0.254:7443",), Path("ca.pem"))
    link = ControllerLink(agent, {"name": "host1", "region": "us-east", "underlay_ip": ...,
                                  "agent_address": "10.0.0.1:7600"}, TokenSource.from_file(path))
    beats = HeartbeatScheduler(settings, [link])
    beats.start()   # Register (retried with backoff until the controller answers), then Heartbeat
    ...
    beats.stop()

A `ControllerLink` is one host's side of the conversation: what to send and what to do with
the answer. A `HeartbeatScheduler` drives any number of links from one thread running an
asyncio loop (grpc.aio), over one channel per controller address: a single agent has one link,
a fleet process (fleet.py) one per simulated host. Calls run concurrently (a slow controller
never delays the other hosts' heartbeats; at most MAX_REGISTERING registrations at once), and
each link keeps its own phase: the first heartbeat goes at a random point within one interval
of registering, later ones exactly one interval apart, so a thousand hosts spread evenly
instead of arriving together. A heartbeat still unanswered when the next one is due makes the
next wait, never pile up.

What the controller answers decides what happens next:
- NOT_FOUND (it lost the host, e.g. a fresh database): register again at once;
- UNAUTHENTICATED / PERMISSION_DENIED: the token is wrong or expired: register again after a
  backoff, re-reading the token file (an operator may replace it without a restart);
- UNAVAILABLE, DEADLINE_EXCEEDED, anything else: keep heartbeating at the interval; with several
  controller addresses, the next call goes to the next one. A restarted controller (same
  database) simply sees the next heartbeat.

Heartbeats carry the agent's generations and `actual_digest` (hostconfig.config_digest of what
the host runs), which the agent computes from facts read after every converge and at most
every `digest_max_age` seconds between converges, never waiting for one that runs.

Tokens (where they come from: credentials.py) go in `authorization` metadata and nowhere else:
logs name hosts, addresses and status codes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import grpc.aio

from l2vpc._proto import controller_pb2 as cpb
from l2vpc._proto import controller_pb2_grpc as cpb_grpc
from l2vpc.agent.credentials import CONNECT_TIMEOUT_MS, ControllerSettings, HeartbeatError, TokenSource

log = logging.getLogger("l2vpc.agent.heartbeat")

DEFAULT_INTERVAL = 5.0  # until the controller says otherwise
MIN_INTERVAL, MAX_INTERVAL = 0.1, 600.0
BACKOFF_START, BACKOFF_MAX = 0.5, 15.0
MAX_RPC_TIMEOUT = 10.0
MAX_REGISTERING = 32  # registrations in flight at once (a fleet starting must not flood the controller)
SUMMARY_EVERY = 30.0
_AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class StatusSource(Protocol):
    """What a link needs of an agent (daemon.Agent is one)."""

    @property
    def host(self) -> str: ...

    def health(self) -> Any: ...  # .accepted_generation, .converged_generation, .converging

    def actual_digest(self, max_age: float = 0.0) -> str: ...


# ------------------------------------------------------------------------------ one host


@dataclass
class ControllerLink:
    """One host's registration and heartbeats (driven by a HeartbeatScheduler)."""

    source: StatusSource
    host_doc: Mapping[str, Any]  # the engine Host document sent with Register
    tokens: TokenSource
    digest_max_age: float = 0.0
    # What the scheduler keeps up to date (under its lock).
    registered: bool = False
    interval: float = DEFAULT_INTERVAL
    backoff: float = BACKOFF_START
    phase: float = 0.0  # monotonic time the current heartbeat was due
    problem: str = ""  # what is wrong right now ("" when all is well)
    heartbeats_ok: int = 0
    heartbeats_failed: int = 0
    registrations: int = 0
    last_ok: float = 0.0  # monotonic time of the last answered heartbeat

    def __post_init__(self) -> None:
        name = self.host_doc.get("name")
        if name != self.source.host:
            raise HeartbeatError(f"host document names {name!r}, the agent runs {self.source.host!r}")
        self._host_json = json.dumps({k: v for k, v in self.host_doc.items() if v is not None}, sort_keys=True)

    @property
    def host(self) -> str:
        return self.source.host

    def metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.tokens.get(self.host)
        return (("authorization", f"Bearer {token}"),) if token else ()

    def register_request(self) -> cpb.RegisterRequest:
        return cpb.RegisterRequest(host_json=self._host_json)

    def heartbeat_request(self, fresh: bool = False) -> cpb.HeartbeatRequest:
        """`fresh`: the digest of facts read now (a nudged heartbeat: something just changed)."""
        h = self.source.health()
        return cpb.HeartbeatRequest(
            host=self.host, accepted_generation=h.accepted_generation,
            converged_generation=h.converged_generation, converging=h.converging,
            actual_digest=self.source.actual_digest(0.0 if fresh else self.digest_max_age),
        )

    def next_backoff(self) -> float:
        delay = self.backoff * random.uniform(0.8, 1.2)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        return delay


def _interval(reply_value: float) -> float:
    if reply_value <= 0:
        return DEFAULT_INTERVAL
    return min(max(reply_value, MIN_INTERVAL), MAX_INTERVAL)


# ------------------------------------------------------------------------------ channels


class _Controllers:
    """One channel per controller address (asyncio gRPC); calls go to the current one, and
    move on to the next after a transport failure."""

    def __init__(self, settings: ControllerSettings) -> None:
        creds = grpc.ssl_channel_credentials(root_certificates=settings.read_ca())
        options: list[tuple[str, Any]] = [
            ("grpc.enable_retries", 0),
            # A controller that restarts is reachable again within a couple of seconds.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ]
        if settings.server_name:
            options += [("grpc.ssl_target_name_override", settings.server_name),
                        ("grpc.default_authority", settings.server_name)]
        self.addresses = settings.addresses
        self._channels = [grpc.aio.secure_channel(a, creds, options=options) for a in settings.addresses]
        self._stubs = [cpb_grpc.ControllerStub(c) for c in self._channels]
        self._current = 0

    def current(self) -> tuple[int, cpb_grpc.ControllerStub]:
        return self._current, self._stubs[self._current]

    def failed(self, index: int) -> None:
        if index == self._current and len(self._stubs) > 1:
            self._current = (index + 1) % len(self._stubs)
            log.info("controller %s failing; trying %s", self.addresses[index], self.addresses[self._current])

    async def close(self) -> None:
        for c in self._channels:
            await c.close()


# ------------------------------------------------------------------------------ the scheduler


@dataclass
class Stats:
    hosts: int
    registered: int
    failing: int  # hosts whose last call failed
    heartbeats_ok: int
    heartbeats_failed: int
    registrations: int
    problems: dict[str, int] = field(default_factory=dict)  # problem → hosts


class HeartbeatScheduler:
    """Drives links from one thread running an asyncio loop: one coroutine per link, all
    calls concurrent over one channel per controller address."""

    def __init__(self, settings: ControllerSettings, links: Sequence[ControllerLink], *,
                 max_registering: int = MAX_REGISTERING, per_host_logs: bool = True) -> None:
        self.settings = settings
        self.links = list(links)
        self.max_registering = max_registering
        self.per_host_logs = per_host_logs
        self._lock = threading.Lock()  # link fields, read by stats() from other threads
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._last_summary: tuple[int, int, str] | None = None
        self._nudges: dict[str, asyncio.Event] = {}  # host -> set to send its heartbeat now

    # -- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self.settings.read_ca()  # a missing CA file fails here, not in the thread
        self._thread = threading.Thread(target=self._main, name="heartbeats", daemon=True)
        self._thread.start()
        self._started.wait(10)
        log.info("registering %d host%s with controller %s", len(self.links), "" if len(self.links) == 1 else "s",
                 ", ".join(self.settings.addresses))

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def nudge(self, host: str) -> None:
        """Send `host`'s heartbeat now, with a fresh digest, instead of at its next turn: what
        it runs changed (a BGP session came up), and the controller acts on the digest. Any
        thread; a nudge before registration (or for an unknown host) does nothing."""
        loop, event = self._loop, self._nudges.get(host)
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(event.set)

    def __enter__(self) -> HeartbeatScheduler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests, benches and the fleet's status ask

    def stats(self) -> Stats:
        with self._lock:
            problems: dict[str, int] = {}
            for link in self.links:
                if link.problem:
                    problems[link.problem] = problems.get(link.problem, 0) + 1
            return Stats(
                hosts=len(self.links),
                registered=sum(1 for lk in self.links if lk.registered),
                failing=sum(1 for lk in self.links if lk.problem),
                heartbeats_ok=sum(lk.heartbeats_ok for lk in self.links),
                heartbeats_failed=sum(lk.heartbeats_failed for lk in self.links),
                registrations=sum(lk.registrations for lk in self.links),
                problems=problems,
            )

    def wait(self, predicate: Callable[[Stats], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.stats()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    # -- the loop

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run())
        except Exception:
            log.exception("heartbeats stopped by an internal error")
        finally:
            self._started.set()
            loop.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        controllers = _Controllers(self.settings)
        registering = asyncio.Semaphore(self.max_registering)
        self._nudges = {link.host: asyncio.Event() for link in self.links}
        tasks = [asyncio.create_task(self._drive(link, controllers, registering)) for link in self.links]
        summary = asyncio.create_task(self._summaries())
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            for t in [*tasks, summary]:
                t.cancel()
            await asyncio.gather(*tasks, summary, return_exceptions=True)
            await controllers.close()

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(SUMMARY_EVERY)
            self._summary()

    def _note(self, level: int, message: str, *args: Any) -> None:
        log.log(level if self.per_host_logs else logging.DEBUG, message, *args)

    async def _call(self, controllers: _Controllers, method: str, request: Any,
                    link: ControllerLink, timeout: float) -> tuple[Any, grpc.StatusCode, str]:
        """(reply or None, status code, details); a transport failure moves to the next controller."""
        index, stub = controllers.current()
        try:
            reply = await getattr(stub, method)(request, timeout=timeout, metadata=link.metadata())
            return reply, grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as e:
            code, details = e.code(), e.details() or ""
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            controllers.failed(index)
        if code in _AUTH_CODES:
            link.tokens.reload()
        return None, code, details

    async def _drive(self, link: ControllerLink, controllers: _Controllers, registering: asyncio.Semaphore) -> None:
        while True:
            try:
                if not link.registered:
                    await self._register(link, controllers, registering)
                else:
                    await self._beat(link, controllers)
            except asyncio.CancelledError:
                raise
            except Exception:  # one host's trouble (e.g. reading its facts) must not stop the others
                log.exception("heartbeat of %s failed before it was sent", link.host)
                await asyncio.sleep(link.interval)

    async def _register(self, link: ControllerLink, controllers: _Controllers, registering: asyncio.Semaphore) -> None:
        timeout = min(max(link.interval, 1.0), MAX_RPC_TIMEOUT)
        async with registering:
            reply, code, details = await self._call(controllers, "Register", link.register_request(), link, timeout)
        now = time.monotonic()
        with self._lock:
            if reply is not None:
                link.registered, link.registrations = True, link.registrations + 1
                link.interval = _interval(reply.heartbeat_interval_seconds)
                link.backoff, link.problem = BACKOFF_START, ""
                # The first heartbeat at a random point of the interval: hosts spread evenly.
                link.phase = now + random.uniform(0, link.interval)
                delay = 0.0
            else:
                link.problem = f"register: {code.name}"
                delay = link.next_backoff()
        if reply is not None:
            self._note(logging.INFO, "%s registered with the controller (heartbeat every %.1fs)",
                       link.host, link.interval)
        else:
            self._note(logging.WARNING, "%s: register failed: %s: %s; retrying in %.1fs", link.host, code.name,
                       details, delay)
            await asyncio.sleep(delay)

    async def _beat(self, link: ControllerLink, controllers: _Controllers) -> None:
        nudged = self._nudges[link.host]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(nudged.wait(), max(link.phase - time.monotonic(), 0.0))
        fresh = nudged.is_set()
        nudged.clear()
        timeout = min(max(link.interval, 1.0), MAX_RPC_TIMEOUT)
        reply, code, details = await self._call(controllers, "Heartbeat", link.heartbeat_request(fresh), link,
                                                timeout)
        now = time.monotonic()
        message = ""
        delay = 0.0
        with self._lock:
            was = link.problem
            if reply is not None:
                link.heartbeats_ok += 1
                link.last_ok = now
                link.problem = ""
                link.interval = _interval(reply.heartbeat_interval_seconds)
                if was:
                    message = "heartbeats answered again"
            else:
                link.heartbeats_failed += 1
                link.problem = f"heartbeat: {code.name}"
                if link.problem != was:
                    message = f"heartbeat failed: {code.name}: {details}"
            if code == grpc.StatusCode.NOT_FOUND:
                link.registered = False  # the controller lost us: register again, now
                message = "the controller does not know this host; registering again"
            elif code in _AUTH_CODES:
                link.registered = False
                delay = link.next_backoff()
            else:
                # Keep the phase: one heartbeat per interval, never a burst to catch up.
                link.phase = max(link.phase + link.interval, now)
        if message:
            self._note(logging.INFO if reply is not None else logging.WARNING, "%s: %s", link.host, message)
        if delay:
            await asyncio.sleep(delay)

    def _summary(self) -> None:
        s = self.stats()
        key = (s.registered, s.failing, ",".join(sorted(s.problems)))
        if key == self._last_summary:
            return
        self._last_summary = key
        trouble = "; ".join(f"{n} {p}" for p, n in sorted(s.problems.items()))
        log.info("controller link: %d/%d hosts registered, %d failing%s; %d heartbeats answered, %d failed",
                 s.registered, s.hosts, s.failing, f" ({trouble})" if trouble else "", s.heartbeats_ok,
                 s.heartbeats_failed)
