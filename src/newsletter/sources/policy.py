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

# Blocks that are not globally reachable, named as the IANA special-purpose
# address registries name them (iana-ipv4-special-registry and
# iana-ipv6-special-registry), plus two deprecated blocks no server lives in.
# Python's ``is_global`` follows these registries only as of the Python
# release in use (3.11 counts 3fff::/20 and 5f00::/16 as global), so the list
# is kept here too; ``refusal`` consults it after the stdlib flags.
SPECIAL_PURPOSE = tuple(
    (ipaddress.ip_network(block), name)
    for block, name in (
        ("0.0.0.0/8", "'this network', RFC 791"),
        ("10.0.0.0/8", "private-use, RFC 1918"),
        ("100.64.0.0/10", "shared address space, RFC 6598"),
        ("127.0.0.0/8", "loopback, RFC 1122"),
        ("169.254.0.0/16", "link-local, RFC 3927"),
        ("172.16.0.0/12", "private-use, RFC 1918"),
        # 192.0.0.9 and 192.0.0.10 (PCP and TURN anycast) are globally
        # reachable but serve no web pages, so the whole /24 stays refused.
        ("192.0.0.0/24", "IETF protocol assignments, RFC 6890"),
        ("192.0.2.0/24", "documentation, RFC 5737"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast, RFC 7526"),
        ("192.168.0.0/16", "private-use, RFC 1918"),
        ("198.18.0.0/15", "benchmarking, RFC 2544"),
        ("198.51.100.0/24", "documentation, RFC 5737"),
        ("203.0.113.0/24", "documentation, RFC 5737"),
        ("240.0.0.0/4", "reserved, RFC 1112"),
        ("255.255.255.255/32", "limited broadcast, RFC 919"),
        ("::/128", "unspecified, RFC 4291"),
        ("::1/128", "loopback, RFC 4291"),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation, RFC 8215"),
        ("100::/64", "discard-only, RFC 6666"),
        ("100:0:0:1::/64", "dummy IPv6 prefix, RFC 9780"),
        ("2001:2::/48", "benchmarking, RFC 5180"),
        ("2001:10::/28", "deprecated ORCHID, RFC 4843"),
        ("2001:db8::/32", "documentation, RFC 3849"),
        ("3fff::/20", "documentation, RFC 9637"),
        ("5f00::/16", "segment routing SIDs, RFC 9602"),
        ("fc00::/7", "unique-local, RFC 4193"),
        ("fe80::/10", "link-local unicast, RFC 4291"),
        # Site-local, deprecated by RFC 3879 but still routed inside some
        # networks; Python counts it as global.
        ("fec0::/10", "site-local, RFC 3879"),
    )
)

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
            name = _special_purpose(address)
            if name is None:
                return None
            kind = f"a non-public address ({name})"
        return None if self.allow_private else kind


def _special_purpose(address: IPAddress) -> str | None:
    """The registry name of the non-global block holding this address, if any."""
    for network, name in SPECIAL_PURPOSE:
        if address.version == network.version and address in network:
            return name
    return None


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
