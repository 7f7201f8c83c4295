"""IPv4 parsing for the engine's models and rules: memoized, with fast paths for the canonical
forms every value takes once validated (a batch of 10,000 attachments parses the same cidrs
and addresses over and over). The `_ipv4*` validators return the canonical text or raise a
ValueError in words the model's error reports quote.
"""

from __future__ import annotations

import functools
import ipaddress
import re

# The ipaddress module parses in Python (~10 us an address); a large file or batch repeats the
# same cidrs and addresses many times. Results are immutable, so parses are shared (bounded).
_PARSED = 65_536


@functools.lru_cache(maxsize=_PARSED)
def ip_network(cidr: str) -> ipaddress.IPv4Network:
    """`cidr` parsed strictly (memoized: raises ValueError like ipaddress.IPv4Network)."""
    return ipaddress.IPv4Network(cidr)


@functools.lru_cache(maxsize=_PARSED)
def ip_address(address: str) -> ipaddress.IPv4Address:
    """`address` parsed (memoized: raises ValueError like ipaddress.IPv4Address)."""
    return ipaddress.IPv4Address(address)


@functools.lru_cache(maxsize=_PARSED)
def ip_interface(value: str) -> ipaddress.IPv4Interface:
    """An address with prefix length, parsed (memoized)."""
    return ipaddress.IPv4Interface(value)


@functools.lru_cache(maxsize=_PARSED)
def network_bounds(cidr: str) -> tuple[int, int, int]:
    """(first address, last address, prefix length) of `cidr` as integers (memoized): what the
    rules compare once per attachment."""
    net = ip_network(cidr)
    return int(net.network_address), int(net.broadcast_address), net.prefixlen


@functools.lru_cache(maxsize=_PARSED)
def last_usable(cidr: str) -> str:
    """The last host address of `cidr` (a DHCP server's default), as text (memoized)."""
    return str(ip_network(cidr).broadcast_address - 1)


# ASCII digits only: `\d` alone matches other scripts' digits too ("١.٢.٣.٤"), which ipaddress
# refuses; such a value must reach ipaddress (and its error), not pass as canonical.
_DOTTED = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\."
                     r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)", re.ASCII)
_PREFIX = re.compile(r"/(3[0-2]|[12]?\d)", re.ASCII)


def ip_int(address: str) -> int:
    """A dotted IPv4 address as an integer (ValueError if it is not one), ~10x faster than
    ipaddress for the plain canonical form every address takes once validated."""
    m = _DOTTED.fullmatch(address)
    if m is not None:
        a, b, c, d = m.groups()
        return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    return int(ipaddress.IPv4Address(address))


def _ipv4(value: str) -> str:
    if _DOTTED.fullmatch(value):
        return value  # already canonical: what ipaddress would print back
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address like 10.0.0.1") from None


def _ipv4_network(value: str) -> str:
    try:
        return _network_text(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not an IPv4 network like 10.0.0.0/24 ({e})") from None


def _ipv4_source(value: str) -> str:
    try:
        if "/" in value:
            return str(ipaddress.IPv4Network(value, strict=True))
        return str(ipaddress.IPv4Address(value))
    except ValueError as e:
        raise ValueError(f"{value!r} is not an IPv4 address or network like 10.0.0.5 or 10.1.0.0/16 ({e})") from None


@functools.lru_cache(maxsize=_PARSED)
def _network_text(value: str) -> str:
    return str(ip_network(value))  # printing an address costs as much as parsing it


def _ipv4_interface(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"{value!r} must be an address with prefix length, like 10.0.0.5/24")
    address, _, prefix = value.partition("/")
    if _DOTTED.fullmatch(address) and _PREFIX.fullmatch("/" + prefix):
        return value  # already canonical: what ipaddress would print back
    try:
        return str(ip_interface(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address with prefix length, like 10.0.0.5/24") from None


def usable(net: ipaddress.IPv4Network | str, address: str) -> bool:
    """`address` is a host address of `net` (neither its network nor its broadcast address)."""
    n = net if isinstance(net, ipaddress.IPv4Network) else ip_network(net)
    return n.network_address < ip_address(address) < n.broadcast_address
