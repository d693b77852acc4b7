"""Tell human opens and clicks from machine ones. Pure: no I/O.

Every open, click and view gets a class — ``human``, ``machine``, or
``unknown`` (counts as an open, but is not a human signal by itself: an image
proxy such as Gmail's fetches on behalf of a reader) — and the reason for it.
The rules, first match wins:

1. a HEAD request is a machine;
2. a user agent the signals file names (scanners, prefetchers, image proxies);
3. a network the signals file names, for the kinds of event it names;
4. an open or click within seconds of the message being sent is a machine;
5. every link of a message clicked at once (``LinkBursts``) turns those
   clicks machine, even ones classified before;
6. otherwise human.

The data the rules use (user-agent patterns, networks, the seconds) lives in
a TOML file, ``data/machine_signals.toml`` unless ``[tracking] signals_file``
names another, so it can be updated without a release.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import tomllib
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

HUMAN, MACHINE, UNKNOWN = "human", "machine", "unknown"
# The events that are classified; a view reached through a click shares its click's class.
KINDS = ("open", "click", "view")
DEFAULT_SIGNALS = Path(__file__).parent / "data" / "machine_signals.toml"


class SignalsError(ValueError):
    """The signals file is not usable; the message names the entry."""


@dataclass(frozen=True)
class Rule:
    """One named user agent or network and the class it gives each kind of event."""

    name: str
    classes: dict[str, str]


@dataclass(frozen=True)
class Verdict:
    classification: str
    reason: str


HUMAN_VERDICT = Verdict(HUMAN, "no machine signal")
HEAD_VERDICT = Verdict(MACHINE, "HEAD request")


@dataclass
class _Networks:
    """One rule's networks as sorted, merged integer ranges per IP version."""

    starts: dict[int, list[int]] = field(default_factory=lambda: {4: [], 6: []})
    ends: dict[int, list[int]] = field(default_factory=lambda: {4: [], 6: []})

    @classmethod
    def build(cls, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> _Networks:
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for net in networks:
            spans[net.version].append((int(net.network_address), int(net.broadcast_address)))
        built = cls()
        for version, ranges in spans.items():
            merged: list[list[int]] = []
            for start, end in sorted(ranges):
                if merged and start <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            built.starts[version] = [s for s, _ in merged]
            built.ends[version] = [e for _, e in merged]
        return built

    def contains(self, version: int, value: int) -> bool:
        starts = self.starts[version]
        index = bisect.bisect_right(starts, value) - 1
        return index >= 0 and value <= self.ends[version][index]


@dataclass
class Signals:
    """The parsed signals file: agent patterns, networks, and timing thresholds."""

    agents: list[tuple[Rule, re.Pattern[str]]] = field(default_factory=list)
    networks: list[tuple[Rule, _Networks]] = field(default_factory=list)
    open_seconds: float = 0.0
    click_seconds: float = 0.0
    all_links_seconds: float = 0.0
    version: str = ""
    _agent_pattern: re.Pattern[str] | None = None
    # The same few user agents and addresses come back again and again (one
    # reader's client, one scanner's network): their answers are remembered.
    _agent_cache: dict[str, Rule | None] = field(default_factory=dict, repr=False)
    _address_cache: dict[str, tuple[int, int] | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.agents:
            # One pass over the user agent for all patterns; the group names which rule.
            self._agent_pattern = re.compile(
                "|".join(f"(?P<a{i}>{p.pattern})" for i, (_, p) in enumerate(self.agents)),
                re.IGNORECASE,
            )

    def agent_rule(self, user_agent: str | None) -> Rule | None:
        if not user_agent or self._agent_pattern is None:
            return None
        try:
            return self._agent_cache[user_agent]
        except KeyError:
            pass
        match = self._agent_pattern.search(user_agent)
        rule = None
        if match is not None and match.lastgroup is not None:
            rule = self.agents[int(match.lastgroup[1:])][0]
        _remember(self._agent_cache, user_agent, rule)
        return rule

    def _address(self, ip: str) -> tuple[int, int] | None:
        try:
            return self._address_cache[ip]
        except KeyError:
            pass
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            found = None
        else:
            if address.version == 6 and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            found = (address.version, int(address))
        _remember(self._address_cache, ip, found)
        return found

    def network_rule(self, ip: str | None, kind: str) -> Rule | None:
        """The first network rule that has a class for ``kind`` and contains ``ip``."""
        if not ip or not self.networks:
            return None
        address = self._address(ip)
        if address is None:
            return None
        for rule, networks in self.networks:
            if kind in rule.classes and networks.contains(*address):
                return rule
        return None


_CACHE_SIZE = 10_000
_K = TypeVar("_K")
_V = TypeVar("_V")
# What a caller of LinkBursts keeps with each click, to be handed back in a burst.
Ref = TypeVar("Ref")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()  # crude, but a cache this size is rarely full and refills at once
    cache[key] = value


def _rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise SignalsError(f"{where}: expected a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SignalsError(f"{where}.name: give the rule a name")
    classes = {}
    for kind in KINDS:
        value = entry.get(kind)
        if value is None:
            continue
        if value not in (MACHINE, UNKNOWN):
            raise SignalsError(f"{where}.{kind}: use machine or unknown, got {value!r}")
        classes[kind] = value
    if not classes:
        raise SignalsError(f"{where}: say what it makes an open, click or view (machine/unknown)")
    return Rule(name.strip(), classes)


def _seconds(table: dict[str, Any], key: str, where: str) -> float:
    value = table.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SignalsError(f"{where}.{key}: expected 0 or more seconds, got {value!r}")
    return float(value)


def _parse_network(text: Any, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(text, str):
        raise SignalsError(f"{where}: expected a network such as 17.0.0.0/8, got {text!r}")
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise SignalsError(f"{where}: {text!r} is not a network such as 17.0.0.0/8") from None


def ranges_from_csv(text: str, origin: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks from a CSV whose first column is a prefix (Apple's egress-ip-ranges.csv)."""
    networks = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        cell = line.split(",", 1)[0].strip()
        if not cell or cell.startswith("#"):
            continue
        try:
            networks.append(ipaddress.ip_network(cell, strict=False))
        except ValueError:
            if number == 1:
                continue  # a header row
            raise SignalsError(f"{origin}:{number}: {cell!r} is not a network") from None
    return networks


def parse_signals(text: str, origin: str, read_file: Callable[[str], str] | None = None) -> Signals:
    """Read a signals file; ``read_file`` loads the CSV a network's ``ranges_file`` names.

    Raises SignalsError naming the origin and the entry.
    """
    try:
        # A file saved by Windows Notepad starts with a BOM, which TOML does not allow.
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise SignalsError(f"{origin}: invalid TOML ({exc})") from None
    timing = data.get("timing", {})
    if not isinstance(timing, dict):
        raise SignalsError(f"{origin}: [timing] must be a table")
    agents = []
    for index, entry in enumerate(data.get("agent", [])):
        where = f"{origin}: agent[{index}]"
        rule = _rule(entry, where)
        pattern = entry.get("match")
        if not isinstance(pattern, str) or not pattern:
            raise SignalsError(f"{where}.match: give a regular expression for the user agent")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise SignalsError(f"{where}.match: not a regular expression ({exc})") from None
        if compiled.groupindex:
            raise SignalsError(f"{where}.match: named groups are not allowed")
        agents.append((rule, compiled))
    networks = []
    for index, entry in enumerate(data.get("network", [])):
        where = f"{origin}: network[{index}]"
        rule = _rule(entry, where)
        listed = entry.get("networks", [])
        if not isinstance(listed, list):
            raise SignalsError(f"{where}.networks: expected a list of networks")
        nets = [_parse_network(n, f"{where}.networks[{i}]") for i, n in enumerate(listed)]
        ranges_file = entry.get("ranges_file")
        if ranges_file:
            if read_file is None:
                raise SignalsError(f"{where}.ranges_file: not available here")
            try:
                csv_text = read_file(ranges_file)
            except OSError as exc:
                raise SignalsError(
                    f"{where}.ranges_file: cannot read {ranges_file} ({exc})"
                ) from None
            nets.extend(ranges_from_csv(csv_text, ranges_file))
        if not nets:
            raise SignalsError(f"{where}: list networks or name a ranges_file")
        networks.append((rule, _Networks.build(nets)))
    return Signals(
        agents=agents,
        networks=networks,
        open_seconds=_seconds(timing, "open_seconds", f"{origin}: timing"),
        click_seconds=_seconds(timing, "click_seconds", f"{origin}: timing"),
        all_links_seconds=_seconds(timing, "all_links_seconds", f"{origin}: timing"),
        version=str(data.get("version", "")),
    )


@dataclass(frozen=True, slots=True)
class Hit:
    """What is known about one open, click or view when it is classified."""

    kind: str
    at: datetime
    method: str = "GET"
    user_agent: str | None = None
    ip: str | None = None
    delivered_at: datetime | None = None


def request_verdict(
    signals: Signals, kind: str, method: str, user_agent: str | None, ip: str | None
) -> Verdict | None:
    """Rules 1-3, from the request alone: HEAD, the user agent, the network."""
    if method == "HEAD":
        return HEAD_VERDICT
    rule = signals.agent_rule(user_agent)
    if rule is not None and kind in rule.classes:
        return Verdict(rule.classes[kind], f"user agent: {rule.name}")
    rule = signals.network_rule(ip, kind)
    if rule is not None:
        return Verdict(rule.classes[kind], f"network: {rule.name}")
    return None


def timing_verdict(
    signals: Signals, kind: str, at: datetime, delivered_at: datetime | None
) -> Verdict | None:
    """Rule 4: an open or click within seconds of the message being sent."""
    if delivered_at is None:
        return None
    seconds = (at - delivered_at).total_seconds()
    limit = signals.open_seconds if kind == "open" else signals.click_seconds
    if kind in ("open", "click") and 0 <= seconds < limit:
        return Verdict(MACHINE, f"{kind} {seconds:.0f} s after delivery")
    return None


def classify(hit: Hit, signals: Signals) -> Verdict:
    """The class of one event from what it carries itself (every rule but "all links")."""
    return (
        request_verdict(signals, hit.kind, hit.method, hit.user_agent, hit.ip)
        or timing_verdict(signals, hit.kind, hit.at, hit.delivered_at)
        or HUMAN_VERDICT
    )


def all_links_reason(seconds: float) -> str:
    return f"every link clicked within {seconds:g} s"


@dataclass
class _Window(Generic[Ref]):
    clicks: deque[tuple[float, int, Ref]] = field(default_factory=deque)
    links: Counter[int] = field(default_factory=Counter)
    first: int = 0  # the sequence number of clicks[0]
    flagged: int = 0  # clicks before this sequence number were returned already


class LinkBursts(Generic[Ref]):
    """The "every link at once" rule: each message's recent clicks, kept in memory.

    A burst is a stretch of at most ``window`` seconds in which every one of
    the message's links (at least two) was clicked. ``add`` returns the
    references of the clicks of the burst that the new click completes or
    extends and that were not returned before (so earlier ones can be
    reclassified); else nothing. Each click is looked at a bounded number of
    times, so a flood of clicks costs no more than a trickle.
    """

    def __init__(self, window: float, max_messages: int = 50_000, max_clicks: int = 1_000):
        self.window = window
        self.max_messages = max_messages
        self.max_clicks = max_clicks
        self._recent: dict[Hashable, _Window[Ref]] = {}

    def add(
        self, message: Hashable, at: float, link_id: int, link_count: int, ref: Ref
    ) -> list[Ref]:
        if self.window <= 0 or link_count < 2:
            return []
        state = self._recent.get(message)
        if state is None:
            if len(self._recent) >= self.max_messages:
                self._forget(at)
            state = self._recent[message] = _Window()
        clicks, links = state.clicks, state.links
        clicks.append((at, link_id, ref))
        links[link_id] += 1
        while clicks and (clicks[0][0] < at - self.window or len(clicks) > self.max_clicks):
            _, old_link, _ = clicks.popleft()
            state.first += 1
            links[old_link] -= 1
            if not links[old_link]:
                del links[old_link]
        if len(links) < link_count:
            return []
        start = max(state.flagged - state.first, 0)
        state.flagged = state.first + len(clicks)
        return [clicks[i][2] for i in range(start, len(clicks))]

    def _forget(self, now: float) -> None:
        for key in [k for k, v in self._recent.items() if v.clicks[-1][0] < now - self.window]:
            del self._recent[key]
        while len(self._recent) >= self.max_messages:
            del self._recent[next(iter(self._recent))]
