"""validate_host_config's address checks: the fast paths for canonical forms accept exactly
what ipaddress accepts (and read the same integer)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from l2vpc.hostconfig.validate import _address_int, _is_ipv4, _is_ipv4_interface

OCTETS = st.one_of(st.integers(0, 300).map(str), st.integers(0, 9).map(lambda n: f"0{n}"), st.sampled_from(["", "x", "٣"]))
ADDRESSES = st.lists(OCTETS, min_size=3, max_size=5).map(".".join)
PREFIXES = st.one_of(st.integers(0, 40).map(str), st.sampled_from(["08", "", "255.255.255.0", "24 "]))


def _parses(parse: type, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


@settings(max_examples=2000, deadline=None)
@given(ADDRESSES, PREFIXES)
def test_fast_address_checks_agree_with_ipaddress(address: str, prefix: str) -> None:
    assert _is_ipv4(address) == _parses(ipaddress.IPv4Address, address)
    if _is_ipv4(address):
        assert _address_int(address) == int(ipaddress.IPv4Address(address))
    value = f"{address}/{prefix}"
    assert _is_ipv4_interface(value) == _parses(ipaddress.IPv4Interface, value)
    assert not _is_ipv4_interface(address)  # an address without a prefix length is not an interface
