"""Which addresses article sources may fetch from, and the limits of every request.

Pure: an address in, a reason to refuse it (or None) out. The fetcher in
``http.py`` asks before it connects and again about the address it connected to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

# Instance metadata services hand out cloud credentials; no blog lives there,
# so these stay refused whatever the settings allow. 168.63.129.16 is Azure's
# WireServer, which is a public address and so passes every other check.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
        "169.254.170.2",
        "168.63.129.16",
    )
)
# NAT64 (RFC 6052): 64:ff9b::a.b.c.d reaches the IPv4 address a.b.c.d through
# the network's translator, and Python counts the block as global.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for every request an article source makes."""

    timeout: float = 20.0
    max_bytes: int = 10_000_000
    max_redirects: int = 5
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why this address may not be fetched from, or None if it may."""
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return self.refusal(embedded)
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_multicast:
            return "a multicast address"
        if address.is_unspecified:
            return "an unspecified address"
        if address.is_link_local:
            return "a link-local address"
        # Before "reserved": ::1 lies in the reserved ::/8 block.
        if address.is_loopback:
            kind = "a loopback address"
        elif address.is_reserved:
            return "a reserved address"
        elif address.is_private or not address.is_global:
            kind = "a private address"
        else:
            return None
        return None if self.allow_private else kind


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, NAT64, 6to4 or Teredo IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Turn ``["10.0.0.0/8", "127.0.0.1"]`` into networks; ValueError names a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)
