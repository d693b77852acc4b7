"""Render a campaign's templates once, then splice each subscriber's values into them.

Most of a campaign's bytes are the same for every subscriber: only their
name, address and personal links change. When a template set uses the
subscriber's data (``subscriber``) and their links (``links``) only as
plain output — ``{{ subscriber.email }}``, ``{{ links.unsubscribe }}``,
``{{ subscriber.first_name | default("there", true) }}`` — it is compiled a
second time with a marker in place of each such output, rendered once per
campaign, and cut at the markers. Per subscriber only those few values are
worked out (by the very filters and escaping Jinja would use) and joined
with the pieces.

A set that uses them in any other way (a condition, a loop, a ``set``, a
filter block, a macro, any other filter) is not spliceable: it keeps the
full render, and ``reason`` says why. The first message of every compiled
form is also rendered in full and compared; if they ever differ, the set
falls back to the full render for good. Pure: no I/O beyond the template
loader's.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

# The names that differ per subscriber; everything else a campaign renders with is
# the same for all its subscribers.
PERSONAL = ("subscriber", "links")
# Filters a spliced value may go through: they need nothing but their arguments.
_FILTERS = ("default", "d")
# Nodes whose output is captured or changed before it is written: a marker inside
# one would not come out as written.
_CAPTURING = (
    nodes.FilterBlock,
    nodes.AssignBlock,
    nodes.Macro,
    nodes.CallBlock,
    nodes.EvalContextModifier,
)


class NotSpliceable(Exception):
    """The template uses personal data in a way that splicing cannot reproduce."""


Slot = Callable[[Mapping[str, Any]], str]


def _slot(expr: nodes.Expr, environment: jinja2.Environment, escaped: bool) -> Slot | None:
    """How one output expression is worked out per subscriber, if it is a personal value.

    None when the expression uses no personal name at all (it stays in the
    compiled template); NotSpliceable when it uses one in a form not handled.
    """
    names = {n.name for n in expr.find_all(nodes.Name)}
    if isinstance(expr, nodes.Name):
        names.add(expr.name)
    if not names & set(PERSONAL):
        return None
    filters: list[tuple[Callable[..., Any], list[Any], dict[str, Any]]] = []
    while isinstance(expr, nodes.Filter):
        if expr.name not in _FILTERS or expr.dyn_args or expr.dyn_kwargs or expr.node is None:
            raise NotSpliceable(f"a personal value goes through the filter {expr.name!r}")
        try:
            args = [a.as_const() for a in expr.args]
            # Jinja's parser makes Keyword nodes here, though the field is typed as Pair.
            kwargs = {str(k.key): k.value.as_const() for k in expr.kwargs}
        except nodes.Impossible:
            raise NotSpliceable(
                "a filter of a personal value has an argument that varies"
            ) from None
        filters.insert(0, (environment.filters[expr.name], args, kwargs))
        expr = expr.node
    if not (
        isinstance(expr, nodes.Getattr)
        and isinstance(expr.node, nodes.Name)
        and expr.node.name in PERSONAL
    ):
        raise NotSpliceable("a personal value is used in an expression")
    name, attribute = expr.node.name, expr.attr
    getattr_ = environment.getattr
    write = escape if escaped else str

    def value(context: Mapping[str, Any]) -> str:
        # What the compiled template does: the sandbox's attribute lookup, the
        # filters in order, then escaping (HTML) or str() (text).
        found = getattr_(context[name], attribute)
        for function, args, kwargs in filters:
            found = function(found, *args, **kwargs)
        return str(write(found))

    return value


class _SpliceSandbox(ImmutableSandboxedEnvironment):
    """Compiles templates with a marker in place of every personal output value.

    The values themselves are worked out with ``main``'s attribute lookup and
    filters: the environment of the full render.
    """

    def __init__(self, marker: str, main: jinja2.Environment, **options: Any):
        super().__init__(**options)
        self.marker, self.main = marker, main
        self.slots: list[Slot] = []

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for imported in tree.find_all((nodes.Import, nodes.FromImport)):
            if isinstance(imported, nodes.Import):
                names = [imported.target]
            else:
                assert isinstance(imported, nodes.FromImport)
                names = [n if isinstance(n, str) else n[1] for n in imported.names]
            if set(names) & set(PERSONAL):
                raise NotSpliceable("an import takes the name of a personal value")
        escaped = bool(self.autoescape(name) if callable(self.autoescape) else self.autoescape)
        replaced: set[int] = set()
        for output in tree.find_all(nodes.Output):
            for index, child in enumerate(output.nodes):
                if isinstance(child, nodes.TemplateData):
                    continue
                slot = _slot(child, self.main, escaped)
                if slot is None:
                    continue
                self.slots.append(slot)
                const = nodes.Const(f"{self.marker}{len(self.slots) - 1}\ue001")
                output.nodes[index] = const
                replaced.add(id(const))
        for kind in _CAPTURING:
            for block in tree.find_all(kind):
                if any(id(c) in replaced for c in block.find_all(nodes.Const)):
                    raise NotSpliceable(f"a personal value is inside a {type(block).__name__}")
                # What another template, block or macro writes in here could hold one.
                if any(True for _ in block.find_all((nodes.Include, nodes.Call, nodes.Block))):
                    raise NotSpliceable(
                        f"a {type(block).__name__} holds an include, a block or a call"
                    )
        if any(n.name in PERSONAL for n in tree.find_all(nodes.Name)):
            raise NotSpliceable("a personal value decides what the template does")
        return tree


class Splicer:
    """The compiled form of a template set, and its pieces per campaign context."""

    def __init__(self, main: jinja2.Environment, options: Mapping[str, Any], parts: list[str]):
        # A marker no article or setting can forge: private-use characters and a
        # secret per set. Hex digits and private-use characters need no escaping.
        self.marker = f"\ue000{secrets.token_hex(8)}:"
        self._find = re.compile(re.escape(self.marker) + r"(\d+)\ue001")
        self.env = _SpliceSandbox(self.marker, main, loader=main.loader, **options)
        self.templates = {part: self.env.get_template(part) for part in parts}
        # Compile what they include now, so a set that cannot be spliced is known
        # before the first message, not part way through it.
        todo, seen = list(parts), set(parts)
        while todo:
            source = main.loader.get_source(main, todo.pop())[0] if main.loader else ""
            for name in meta.find_referenced_templates(main.parse(source)):
                if name is None:
                    raise NotSpliceable("a template includes one whose name varies")
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
                    self.env.get_template(name)
        self._plans: dict[tuple[Any, ...], tuple[Any, dict[str, list[Any]]]] = {}
        # The plans whose spliced render has been compared with the full one.
        self._proven: set[tuple[Any, ...]] = set()

    def _key(self, context: Mapping[str, Any]) -> tuple[Any, ...]:
        """The campaign's part of a context, by identity: a campaign passes the same
        objects for every subscriber, and its mail is never changed once built."""
        return tuple((k, id(v)) for k, v in context.items() if k not in PERSONAL)

    def plan(self, context: Mapping[str, Any]) -> tuple[dict[str, list[Any]], bool]:
        """The pieces of every part for this campaign context, and whether they are
        still to be proven (``proven``)."""
        key = self._key(context)
        found = self._plans.get(key)
        if found is not None:
            return found[1], key not in self._proven
        shared = {k: v for k, v in context.items() if k not in PERSONAL}
        pieces: dict[str, list[Any]] = {}
        for part, template in self.templates.items():
            # Even pieces are text, odd ones the index of a personal value.
            cut = self._find.split(template.render(shared))
            pieces[part] = [int(p) if i % 2 else p for i, p in enumerate(cut)]
        if len(self._plans) >= 64:
            self._plans.clear()  # many article subsets (automatic campaigns): start over
            self._proven.clear()
        # The context's objects are kept with the plan, so their ids cannot be reused.
        self._plans[key] = (shared, pieces)
        return pieces, True

    def proven(self, context: Mapping[str, Any]) -> None:
        """This context's plan rendered as the full render does."""
        self._proven.add(self._key(context))

    def render(
        self, pieces: list[Any], context: Mapping[str, Any], values: dict[int, str] | None = None
    ) -> str:
        """Join the pieces with this context's values; each value is worked out once,
        into ``values`` when given (the parts of one message share them)."""
        values = {} if values is None else values
        out = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                out.append(piece)
                continue
            if piece not in values:
                values[piece] = self.env.slots[piece](context)
            out.append(values[piece])
        return "".join(out)

    def forget(self, context: Mapping[str, Any]) -> None:
        key = self._key(context)
        self._plans.pop(key, None)
        self._proven.discard(key)
