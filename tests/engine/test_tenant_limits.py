"""One tenant cannot exhaust the shared store (issue 15, item 8).

Address ranges are compared arithmetically (a DHCP range filling a /8 is never listed), inputs
are bounded (cidr, lists), and each tenant holds at most its quota of objects per kind: the
quota's error names the kind and the limit, other tenants are unaffected, and admins set quotas
with `l2vpc controller quota`. Timings live in bench/bench_big_ranges.py.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.cli import main
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Store

HOSTS = [
    {"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
     "public_cidr": "203.0.113.32/28"},
    {"name": "c1", "region": "us-east", "underlay_ip": "10.200.0.1"},
]
FULL_RANGE = {"range_start": "10.0.0.1", "range_end": "10.255.255.253"}  # server: .254


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "state.db"))
    admin = Engine(s)
    for h in HOSTS:
        admin.register_host(h)
    try:
        yield s
    finally:
        s.close()


def vpn(vpc_id: str, name: str = "v", **kw: Any) -> dict[str, Any]:
    return {"name": name, "vpc_id": vpc_id, "peer_address": "198.51.100.1", "pre_shared_key": "abcdefgh",
            "remote_cidrs": ["192.168.0.0/24"], **kw}


def peak_bytes(fn: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        try:
            result: Any = fn()
        except ValidationError as e:
            result = e
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_dhcp_range_filling_a_slash_8_is_never_listed(store: Store) -> None:
    e = Engine(store, tenant="acme")
    big = e.create("vpc", {"name": "big", "region": "us-east", "cidr": "10.0.0.0/8", "dhcp": FULL_RANGE})
    # Nothing is left for a gateway: said at once, naming the field, without listing 16M addresses.
    err, peak = peak_bytes(lambda: e.create("vpn", vpn(big.id)))
    assert isinstance(err, ValidationError) and err.first == ("gateway_ip", "no free address left in 10.0.0.0/8")
    assert peak < 5_000_000, peak
    err, _ = peak_bytes(lambda: e.create("direct_connect", {"name": "d", "vpc_id": big.id, "location": "nyc1",
                                                             "bandwidth_mbps": 1000, "bgp": {"customer_asn": 65001}}))
    assert isinstance(err, ValidationError) and err.first[0] == "gateway_ip"
    # Below a range that ends under the top, the walk steps over the range in one go: the
    # gateway is the highest free address under it, past addresses other objects hold.
    low = e.create("vpc", {"name": "low", "region": "us-east", "cidr": "10.0.0.0/8",
                           "dhcp": {"range_start": "10.0.0.10", "range_end": "10.255.255.253",
                                    "server_ip": "10.0.0.2"}})
    first, peak = peak_bytes(lambda: e.create("vpn", vpn(low.id, "v1")))
    assert first.gateway_ip == "10.255.255.254" and peak < 5_000_000
    second, peak = peak_bytes(lambda: e.create("vpn", vpn(low.id, "v2")))
    assert second.gateway_ip == "10.0.0.9" and peak < 5_000_000, second  # the range skipped whole
    # Another tenant works meanwhile (nothing held the store).
    other = Engine(store, tenant="globex").create("vpc", {"name": "small", "region": "us-east", "cidr": "10.9.0.0/24"})
    assert Engine(store, tenant="globex").create("vpn", vpn(other.id)).gateway_ip == "10.9.0.254"


@pytest.mark.parametrize(("kind", "data", "path", "words"), [
    ("vpc", {"name": "huge", "region": "us-east", "cidr": "0.0.0.0/0"}, "cidr", "/8"),
    ("vpc", {"name": "dns", "region": "us-east", "cidr": "10.0.0.0/24",
             "dhcp": {"range_start": "10.0.0.10", "range_end": "10.0.0.20",
                      "dns_servers": [f"10.0.0.{i}" for i in range(30, 39)]}}, "dhcp.dns_servers", "8"),
    ("vpn", "local_cidrs", "local_cidrs", "32"),
    ("vpn", "remote_cidrs", "remote_cidrs", "32"),
    ("direct_connect", "advertised", "bgp.advertised_prefixes", "64"),
])
def test_inputs_are_bounded_with_errors_naming_the_field(store: Store, kind: str, data: Any, path: str,
                                                         words: str) -> None:
    e = Engine(store, tenant="acme")
    vpc = e.create("vpc", {"name": "net", "region": "us-east", "cidr": "10.1.0.0/16"})
    many = [f"172.{16 + i // 256}.{i % 256}.0/24" for i in range(100)]
    if data == "local_cidrs":
        data = vpn(vpc.id, local_cidrs=many[:33])
    elif data == "remote_cidrs":
        data = vpn(vpc.id, remote_cidrs=many[:33])
    elif data == "advertised":
        data = {"name": "d", "vpc_id": vpc.id, "location": "nyc1", "bandwidth_mbps": 1000,
                "bgp": {"customer_asn": 65001, "advertised_prefixes": many[:65]}}
    with pytest.raises(ValidationError) as ei:
        e.create(kind, data)
    assert ei.value.first[0] == path, ei.value.problems
    assert words in ei.value.first[1]


def test_quotas_per_tenant_name_kind_and_limit_and_leave_others_alone(store: Store, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "state.db")
    assert main(["controller", "quota", "set", "--store", url, "--tenant", "acme", "vpc=2", "vpn=1"]) == 0
    acme, globex = Engine(store, tenant="acme"), Engine(store, tenant="globex")
    a1 = acme.create("vpc", {"name": "a1", "region": "us-east", "cidr": "10.1.0.0/24"})
    acme.create("vpc", {"name": "a2", "region": "us-east"})
    with pytest.raises(ValidationError) as ei:
        acme.create("vpc", {"name": "a3", "region": "us-east"})
    message = str(ei.value)
    assert "quota exceeded" in message and "at most 2 vpc objects" in message and "'acme'" in message
    with pytest.raises(ValidationError, match="quota exceeded"):
        acme.check("vpc", {"name": "a3", "region": "us-east"})  # at plan time too
    # Other tenants keep the defaults.
    for i in range(3):
        globex.create("vpc", {"name": f"g{i}", "region": "us-east"})
    # Updates are not creates; a delete frees a place.
    acme.update("vpc", a1.id, {"name": "a1", "region": "us-east", "cidr": "10.1.0.0/24", "description": "x"})
    acme.create("vpn", vpn(a1.id))
    acme.update("vpn", acme.list("vpn")[0].id, vpn(a1.id, peer_id="p"))  # releases and re-counts it
    with pytest.raises(ValidationError, match="at most 1 vpn objects"):
        acme.create("vpn", vpn(a1.id, "v2"))
    acme.delete("vpn", acme.list("vpn")[0].id)
    acme.create("vpn", vpn(a1.id, "v2"))
    capsys.readouterr()
    assert main(["controller", "quota", "show", "--store", url, "--tenant", "acme", "--json"]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["vpc"] == {"objects": 2, "limit": 2} and shown["vpn"] == {"objects": 1, "limit": 1}
    assert shown["attachment"]["limit"] == 100_000
    # The default for every tenant; a bad limit names the kind.
    assert main(["controller", "quota", "set", "--store", url, "--default", "vpc=3"]) == 0
    with pytest.raises(ValidationError, match="at most 3 vpc objects"):
        globex.create("vpc", {"name": "g3", "region": "us-east"})
    assert main(["controller", "quota", "set", "--store", url, "--default", "router=3"]) == 1
    assert "unknown kind 'router'" in capsys.readouterr().err
