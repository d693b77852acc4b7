"""The address guard against the IANA special-purpose address registries, entry by entry.

An attacker who controls a feed's DNS answers with whichever address reaches
something inside: every block the registries mark as not globally reachable
must be refused, whatever Python's own ``is_global`` thinks of it.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from newsletter.sources.http import Fetcher, FetchError
from newsletter.sources.policy import FetchPolicy

# IANA IPv4 Special-Purpose Address Registry
# (https://www.iana.org/assignments/iana-ipv4-special-registry/) and
# IANA IPv6 Special-Purpose Address Registry
# (https://www.iana.org/assignments/iana-ipv6-special-registry/):
# every entry whose "Globally Reachable" column is False, plus the entries
# marked N/A that are deprecated. (block, name, RFC).
NOT_GLOBALLY_REACHABLE = [
    ("0.0.0.0/8", "This network", "RFC 791"),
    ("0.0.0.0/32", "This host on this network", "RFC 1122"),
    ("10.0.0.0/8", "Private-Use", "RFC 1918"),
    ("100.64.0.0/10", "Shared Address Space", "RFC 6598"),
    ("127.0.0.0/8", "Loopback", "RFC 1122"),
    ("169.254.0.0/16", "Link Local", "RFC 3927"),
    ("172.16.0.0/12", "Private-Use", "RFC 1918"),
    ("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890"),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335"),
    ("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
    ("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 7050"),
    ("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 7050"),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737"),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526"),
    ("192.168.0.0/16", "Private-Use", "RFC 1918"),
    ("198.18.0.0/15", "Benchmarking", "RFC 2544"),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737"),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737"),
    ("240.0.0.0/4", "Reserved", "RFC 1112"),
    ("255.255.255.255/32", "Limited Broadcast", "RFC 919"),
    ("::1/128", "Loopback Address", "RFC 4291"),
    ("::/128", "Unspecified Address", "RFC 4291"),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215"),
    ("100::/64", "Discard-Only Address Block", "RFC 6666"),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780"),
    ("2001::/23", "IETF Protocol Assignments", "RFC 2928"),
    ("2001:2::/48", "Benchmarking", "RFC 5180"),
    ("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843"),
    ("2001:db8::/32", "Documentation", "RFC 3849"),
    ("3fff::/20", "Documentation", "RFC 9637"),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602"),
    ("fc00::/7", "Unique-Local", "RFC 4193"),
    ("fe80::/10", "Link-Local Unicast", "RFC 4291"),
    # Not in the special-purpose registry but in the IPv6 address space
    # registry: site-local, deprecated by RFC 3879, still routed inside some
    # networks.
    ("fec0::/10", "Site-Local (deprecated)", "RFC 3879"),
]

# The registries' entries that carry an IPv4 address inside an IPv6 one
# ("::ffff:0:0/96" IPv4-mapped, False; "64:ff9b::/96" translation, True;
# "2002::/16" 6to4, N/A; "2001::/32" TEREDO, N/A) reach the IPv4 address they
# embed, so they are judged by it: each refused IPv4 sample, wrapped, is refused.
TEREDO_SERVER = int(ipaddress.IPv4Address("192.0.2.1"))
WRAPPERS = {
    "IPv4-mapped (RFC 4291)": lambda v4: ipaddress.ip_address(f"::ffff:{v4}"),
    "IPv4-IPv6 translation (RFC 6052)": lambda v4: ipaddress.ip_address(f"64:ff9b::{v4}"),
    "6to4 (RFC 3056)": lambda v4: ipaddress.ip_address((0x2002 << 112) | (int(v4) << 80) | 1),
    # Teredo stores the client address with every bit flipped.
    "TEREDO (RFC 4380)": lambda v4: ipaddress.ip_address(
        (0x20010000 << 96) | (TEREDO_SERVER << 64) | (int(v4) ^ 0xFFFFFFFF)
    ),
}

# Controls: globally reachable addresses, two ordinary ones and one from each
# globally reachable registry entry that no non-global block encloses.
GLOBALLY_REACHABLE = [
    "93.184.216.34",
    "2606:2800:220:1:248:1893:25c8:1946",
    "192.31.196.1",  # AS112-v4, RFC 7535
    "192.52.193.1",  # AMT, RFC 7450
    "192.175.48.1",  # Direct Delegation AS112 Service, RFC 7534
    "2620:4f:8000::1",  # Direct Delegation AS112 Service, RFC 7534
]


def _samples(block: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The first, a middle and the last address of a block."""
    network = ipaddress.ip_network(block)
    first, last = int(network.network_address), int(network.broadcast_address)
    return [ipaddress.ip_address(n) for n in sorted({first, (first + last) // 2 + 1, last})]


def _resolving_to(address: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """A resolver whose every answer is this address, as a hostile DNS server's would be."""

    def resolve(host, port, **kwargs):
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        return [(family, socket.SOCK_STREAM, 6, "", (str(address), port))]

    return resolve


def _refused(address) -> str | None:
    with Fetcher(FetchPolicy(), resolver=_resolving_to(address)) as fetcher:
        try:
            fetcher.check_url("http://feed.example/rss")
        except FetchError as exc:
            return str(exc)
    return None


@pytest.mark.parametrize(("block", "name", "rfc"), NOT_GLOBALLY_REACHABLE)
def test_a_host_resolving_into_a_non_global_block_is_refused(block, name, rfc):
    for address in _samples(block):
        reason = _refused(address)
        assert reason is not None, f"{address} ({name}, {rfc}) was let through"
        assert reason.startswith("http://feed.example/rss: refused, feed.example resolves to")


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_a_non_global_ipv4_address_wrapped_in_ipv6_is_refused(wrapper):
    wrap = WRAPPERS[wrapper]
    for block, name, _ in NOT_GLOBALLY_REACHABLE:
        for v4 in _samples(block):
            if v4.version == 6:
                continue
            assert _refused(wrap(v4)) is not None, f"{wrap(v4)} ({wrapper} of {name}) passed"
    assert _refused(wrap(ipaddress.IPv4Address("93.184.216.34"))) is None


@pytest.mark.parametrize("address", GLOBALLY_REACHABLE)
def test_a_globally_reachable_address_is_let_through(address):
    assert _refused(ipaddress.ip_address(address)) is None


def test_site_local_is_refused_before_connecting_and_named():
    with Fetcher(FetchPolicy()) as fetcher:
        with pytest.raises(FetchError) as excinfo:
            fetcher.get("http://[fec0::1]/feed.xml")
    assert "site-local, RFC 3879" in str(excinfo.value)
    assert "allow_private_addresses" in str(excinfo.value)
