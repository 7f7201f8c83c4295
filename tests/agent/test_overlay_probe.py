"""The overlay prober's pair bookkeeping (PeerBook, driven by a fake clock and a fake path), and
two real probers answering each other over loopback UDP."""

from __future__ import annotations

from l2vpc.agent.overlay_probe import SMALL, OverlayProber, PeerBook, needed_sizes
from l2vpc.hostconfig import HostConfig, Observation, Segment
from l2vpc.testing.scrape import wait_for


class Path:
    """A simulated underlay: answers probes up to `mtu` bytes, nothing when `up` is False."""

    def __init__(self, mtu: int = 9100) -> None:
        self.mtu, self.up = mtu, True
        self.sent = 0

    def run(self, book: PeerBook, start: float, seconds: float, step: float = 0.05) -> float:
        now = start
        while now < start + seconds:
            book.finish(now)
            for peer, sizes in book.due(now):
                for size in sizes:
                    self.sent += 1
                    if self.up and size <= self.mtu:
                        book.answered(peer, size)
            now += step
        book.finish(now)
        return now


def first_time(book: PeerBook, path: Path, start: float, pred: object, limit: float = 30.0) -> float:
    now = start
    while now < start + limit:
        now = path.run(book, now, 0.05)
        if pred(book.observations()):  # type: ignore[operator]
            return now - start
    raise AssertionError(f"not within {limit}s: {book.observations()}")


def test_peers_come_from_segments_and_need_the_largest_vpc_mtu_plus_vxlan() -> None:
    cfg = HostConfig("h1", "10.0.0.1", segments=(
        Segment(100, "vpc-a", 9000, ("10.0.0.2", "10.0.0.3")),
        Segment(101, "vpc-b", 1500, ("10.0.0.2", "10.0.0.4", "10.0.0.1")),
    ))
    assert needed_sizes(cfg) == {"10.0.0.2": 9050, "10.0.0.3": 9050, "10.0.0.4": 1550}


def test_one_probe_per_peer_and_interval_whatever_the_number_of_vpcs() -> None:
    book, path = PeerBook(), Path()
    book.configure({f"10.0.0.{i}": 9050 for i in range(2, 12)}, 0.0)
    path.run(book, 0.0, 10.0)
    assert 95 <= path.sent <= 100  # 10 peers x 10 s x 1/s
    assert book.observations() == ()


def test_a_small_path_mtu_is_degraded_after_some_failures_with_the_measured_mtu_and_recovers() -> None:
    book, path = PeerBook(), Path()
    book.configure({"10.0.0.2": 9050}, 0.0)
    now = path.run(book, 0.0, 5.0)
    path.mtu = 1500
    took = first_time(book, path, now, bool)
    [obs] = book.observations()
    assert obs == Observation("overlay:10.0.0.2", "degraded", obs.detail, (), "path_mtu", 1500), obs
    assert "path MTU to 10.0.0.2 is 1500 bytes" in obs.detail and "need 9050" in obs.detail
    assert 2.0 <= took <= 6.0, took  # 3 failed rounds one second apart, then the search
    now += took
    path.mtu = 9100
    took = first_time(book, path, now, lambda o: not o)
    assert took <= 3.0, took


def test_one_lost_probe_or_two_do_not_flap() -> None:
    book, path = PeerBook(), Path()
    book.configure({"10.0.0.2": 9050}, 0.0)
    now = path.run(book, 0.0, 3.0)
    for _ in range(5):
        path.up = False
        now = path.run(book, now, 2.0)  # two rounds lost
        path.up = True
        now = path.run(book, now, 1.0)
        assert book.observations() == ()


def test_an_unreachable_peer_is_reported_without_an_mtu_and_remeasuring_is_rate_limited() -> None:
    book, path = PeerBook(remeasure=30.0), Path()
    book.configure({"10.0.0.2": 9050, "10.0.0.3": 1550}, 0.0)
    path.up = False
    first_time(book, path, 0.0, lambda o: len(o) == 2)
    assert {(o.id, o.reason, o.path_mtu) for o in book.observations()} == {
        ("overlay:10.0.0.2", "peer_not_responding", 0), ("overlay:10.0.0.3", "peer_not_responding", 0)}
    # MTU trouble: searches cost ~25 probes each, so at most one per `remeasure` per peer.
    book, path = PeerBook(remeasure=30.0), Path(mtu=4000)
    book.configure({"10.0.0.2": 9050}, 0.0)
    path.run(book, 0.0, 8.0)
    sent_first = path.sent
    path.sent = 0
    path.run(book, 8.0, 20.0)
    assert path.sent <= 2 * 21, path.sent  # big + small per second, no new search yet
    assert sent_first > 25  # the first search was made
    assert [o.path_mtu for o in book.observations()] == [4000]


def test_the_kernels_reported_mtu_bounds_the_search_and_new_config_starts_afresh() -> None:
    book, path = PeerBook(), Path(mtu=1400)
    book.configure({"10.0.0.2": 9050}, 0.0)
    book.send_failed("10.0.0.2", 9050, 1400)
    first_time(book, path, 0.0, bool)
    assert [o.path_mtu for o in book.observations()] == [1400]
    book.configure({"10.0.0.2": 1400}, 20.0)  # the VPC MTU went down to 1350: 1400 is enough
    assert book.observations() == ()
    path.run(book, 20.0, 10.0)
    assert book.observations() == ()


def test_two_probers_answer_each_other_over_udp_and_ignore_strangers() -> None:
    a = OverlayProber("127.0.0.1", port=0, book=PeerBook(interval=0.2, timeout=0.1))
    try:
        port = a._sock.getsockname()[1]
        b = OverlayProber("127.0.0.2", port=port, book=PeerBook(interval=0.2, timeout=0.1))
        stranger = OverlayProber("127.0.0.3", port=port, book=PeerBook(interval=0.2, timeout=0.1))
        a.port = port
        try:
            a.configure(HostConfig("a", "127.0.0.1", segments=(Segment(7, "v", 9000, ("127.0.0.2",)),)))
            b.configure(HostConfig("b", "127.0.0.2", segments=(Segment(7, "v", 9000, ("127.0.0.1",)),)))
            stranger.configure(HostConfig("c", "127.0.0.3", segments=(Segment(7, "v", 1500, ("127.0.0.1",)),)))
            for p in (a, b, stranger):
                p.start()
            wait_for(lambda: min(a.stats()["replies_received"], b.stats()["requests_answered"],
                                 a.stats()["requests_answered"]) >= 5, 15, "five probes each way")
            sa, sb, sc = a.stats(), b.stats(), stranger.stats()
            assert sa["probes_sent"] >= 5 and sa["replies_received"] >= 5, sa
            assert sb["requests_answered"] >= 5 and sa["requests_answered"] >= 5, (sa, sb)
            assert sc["replies_received"] == 0, sc  # a is not its peer: no reflection
            assert a.observations() == () and b.observations() == ()
            assert sa["probe_bytes_sent"] >= 5 * 9050
            assert SMALL < 9050
        finally:
            b.close()
            stranger.close()
    finally:
        a.close()
