"""Port security on the host side: a secured port's frames pass the bridge only from its MAC and
its sources (Neutron's port security; the default stays flat L2).

One nftables table of ours in the host namespace, `bridge l2vpc`: a verdict map `ports` from the
host device of a port (its veth end or tap) to that port's chain, looked up once per bridged frame
by the base chain on the bridge's prerouting hook (a hash lookup: ports without security, the
VXLAN and DHCP servers miss it and pass). A port's chain, in order:

    ether saddr != MAC drop                       spoofed source MAC
    arp saddr ether != MAC drop                   ARP claiming another MAC
    arp saddr ip != { 0.0.0.0, SOURCES } drop     ARP claiming another address (0.0.0.0: probes)
    udp sport { 67, 547 } drop                    a rogue DHCP (v4, v6) server
    icmpv6 type nd-router-advert drop             a rogue IPv6 router
    ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept   the workload's own DHCP client
    ip saddr != { SOURCES } drop                  spoofed source IP (no sources: no IPv4)
    ip6 saddr != { ::, fe80::/10 } drop           IPv6 only link-local (the VPCs are IPv4)
    ether type != { ip, arp, ip6 } drop           nothing else (VLAN-tagged frames included)

The chain's name says what it pins: `p_<device>_<mac>_<net>...` (each source network as 8 hex
digits of address and 2 of prefix length; at most 11 sources keep it below nft's 256 characters),
so facts are one dump of the map (nftables.jump_map): an element can only jump to a chain that
exists, and its name decodes back to the port's fields. Pinning is one transaction: the new chain,
the element swapped, the old chain gone; a frame sees the old rules or the new, never none. The
element is keyed by device name, so a port is pinned before its device exists and its first frame
is already filtered. Hand edits of the rules inside a chain are not detected (only its presence).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from l2vpc.agent.drivers.linux import nftables

FAMILY, TABLE, MAP = "bridge", "l2vpc", "ports"
_T = f"{FAMILY} {TABLE}"
BASE = f"""table {_T} {{
\tmap {MAP} {{ type ifname : verdict; }}
\tchain prerouting {{
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tiifname vmap @{MAP}
\t}}
}}
"""
_PINS_RE = re.compile(r"^([0-9a-f]{12})((?:_[0-9a-f]{10})*)$")  # after "p_<device>_" (devices may hold "_")


@dataclass(frozen=True, slots=True)
class Pin:
    """What a secured port's chain pins: its host device, MAC and source networks (canonical)."""

    device: str
    mac: str
    sources: tuple[str, ...]

    @property
    def chain(self) -> str:
        nets = (ipaddress.IPv4Network(s) for s in self.sources)
        return "_".join(["p", self.device, self.mac.replace(":", ""),
                         *(f"{int(n.network_address):08x}{n.prefixlen:02x}" for n in nets)])

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # the same names on every read; decode each once
    def parse(device: str, chain: str) -> Pin | None:
        head = f"p_{device}_"
        m = _PINS_RE.match(chain[len(head):]) if chain.startswith(head) else None
        if m is None:
            return None
        mac = ":".join(m.group(1)[i:i + 2] for i in range(0, 12, 2))
        try:
            sources = tuple(str(ipaddress.IPv4Network((int(h[:8], 16), int(h[8:], 16))))
                            for h in m.group(2).split("_")[1:])
        except ValueError:  # host bits set, prefix > 32: not a chain of ours
            return None
        return Pin(device, mac, sources)

    def rules(self) -> list[str]:
        arp_ok = ", ".join(["0.0.0.0", *self.sources])
        ip_rule = f"ip saddr != {{ {', '.join(self.sources)} }} drop" if self.sources else "ether type ip drop"
        return [
            f"ether saddr != {self.mac} drop",
            f"arp saddr ether != {self.mac} drop",
            f"arp saddr ip != {{ {arp_ok} }} drop",
            "udp sport { 67, 547 } drop",
            "icmpv6 type nd-router-advert drop",
            "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
            ip_rule,
            "ip6 saddr != { ::, fe80::/10 } drop",
            "ether type != { ip, arp, ip6 } drop",
        ]


class PortSecurity:
    """The pins of one host namespace (`ns`; None: this process's). `read()` is the facts;
    `pin`/`unpin` change one port and keep what was read current, so a converge reads once."""

    def __init__(self, ns: str | None) -> None:
        self.ns = ns
        self._pins: dict[str, Pin] | None = None  # by device; None: our table is not in place
        self._foreign: dict[str, str] = {}  # elements whose chain is not one of ours: dropped

    def read(self) -> dict[str, Pin]:
        """The pins in place, by device (re-read from the kernel). A kernel without nf_tables
        has none (and refuses the first pin, which says why)."""
        try:
            chains = nftables.jump_map(self.ns, FAMILY, TABLE, MAP)
        except (nftables.NftError, OSError):
            chains = None
        if chains is None:
            self._pins = None
            return {}
        self._pins = {dev: pin for dev, chain in chains.items() if (pin := Pin.parse(dev, chain)) is not None}
        self._foreign = {dev: chain for dev, chain in chains.items() if dev not in self._pins}
        return dict(self._pins)

    @property
    def pins(self) -> dict[str, Pin]:
        """The pins as last read or changed (read when never read)."""
        if self._pins is None:
            return self.read()
        return self._pins

    def pin(self, want: Pin) -> None:
        """Pin `want.device` to `want` (replacing what pinned it before). Raises NftError."""
        if self.pins.get(want.device) == want:
            return
        chain = want.chain
        # The chain through libnftables (it compiles the rules); the switch to it, and the old
        # chain's removal, as one batch of our own (see nftables.commit).
        lines = [] if self._pins is not None else self._base()
        lines += [f"add chain {_T} {chain}", f"flush chain {_T} {chain}"]
        lines += [f"add rule {_T} {chain} {rule}" for rule in want.rules()]
        nftables.load(self.ns, "\n".join(lines) + "\n")
        nftables.commit(self.ns, FAMILY, [*self._drop(want.device), nftables.add_jump(TABLE, MAP, want.device, chain)])
        assert self._pins is not None
        self._pins[want.device] = want

    def unpin(self, device: str) -> bool:
        """Let `device`'s frames pass unfiltered again; False if it was not pinned."""
        if self._pins is None:
            self.read()
        if self._pins is None or (device not in self._pins and device not in self._foreign):
            return False
        nftables.commit(self.ns, FAMILY, self._drop(device))
        self._pins.pop(device, None)
        self._foreign.pop(device, None)
        return True

    def collect_garbage(self, wanted: set[str]) -> list[str]:
        """Unpin every device not in `wanted` (ports gone or no longer secured); their names."""
        if self._pins is None:
            return []
        stray = sorted((set(self._pins) | set(self._foreign)) - wanted)
        nftables.commit(self.ns, FAMILY, [msg for device in stray for msg in self._drop(device)])
        for device in stray:
            self._pins.pop(device, None)
            self._foreign.pop(device, None)
        return stray

    def teardown(self) -> None:
        """Our table gone (every pin with it)."""
        nftables.load(self.ns, f"table {_T}\ndelete table {_T}\n")
        self._pins, self._foreign = None, {}

    def _base(self) -> list[str]:
        """The table from scratch (whatever was left of it goes: its pins are gone already)."""
        self._pins, self._foreign = {}, {}
        return [f"table {_T}", f"delete table {_T}", BASE]

    def _drop(self, device: str) -> list[nftables.Message]:
        assert self._pins is not None
        old = self._pins.get(device)
        chain = old.chain if old is not None else self._foreign.get(device)
        if chain is None:
            return []
        # The old chain goes with its element (a chain still jumped to cannot be deleted).
        return [nftables.del_jump(TABLE, MAP, device), nftables.del_chain(TABLE, chain)]
