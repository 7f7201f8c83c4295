"""executor.gather: every host's push is waited for until it ends or its host is abandoned, in
whatever order they end; an abandoned host's push is not waited for."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from l2vpc.engine.executor import WAKE_EVERY, Abandoned, gather


def test_every_push_is_waited_for_in_any_order() -> None:
    delays = {f"h{i:04d}": random.Random(i).uniform(0, 0.05) for i in range(300)}
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = {h: pool.submit(lambda d=d, h=h: (time.sleep(d), h)[1]) for h, d in delays.items()}
        done, given_up = gather(futures, Abandoned())
    assert given_up == set()
    assert {h: f.result() for h, f in done.items()} == {h: h for h in delays}


def test_futures_done_before_the_wait_count() -> None:
    ready: Future[int] = Future()
    ready.set_result(1)
    failed: Future[int] = Future()
    failed.set_exception(RuntimeError("push failed"))
    done, given_up = gather({"a": ready, "b": failed}, None)
    assert set(done) == {"a", "b"} and given_up == set()
    assert isinstance(done["b"].exception(), RuntimeError)


def test_an_abandoned_host_is_not_waited_for() -> None:
    hung: Future[str] = Future()  # never ends: a hung agent
    quick: Future[str] = Future()
    abandoned = Abandoned()
    threading.Timer(0.05, quick.set_result, ("ok",)).start()
    threading.Timer(0.2, abandoned.add, ("hung",)).start()
    started = time.monotonic()
    done, given_up = gather({"hung": hung, "quick": quick}, abandoned)
    assert set(done) == {"quick"} and given_up == {"hung"}
    assert time.monotonic() - started < 0.2 + 2 * WAKE_EVERY + 0.5


def test_a_host_abandoned_after_its_push_ended_counts_as_done() -> None:
    ended: Future[str] = Future()
    ended.set_result("ok")
    abandoned = Abandoned()
    abandoned.add("h1")
    done, given_up = gather({"h1": ended}, abandoned)
    assert set(done) == {"h1"} and given_up == set()
