"""A1111's prompt syntax as pure Python: emphasis weights, prompt editing/alternation schedules, extra-network tags.

No torch or diffusers here: the web UI imports this module. Every parser is a single left-to-right scan with
explicit stacks (no recursion, no backtracking regexes), so hostile prompts with thousands of brackets stay fast.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

BREAK_WEIGHT = -1.0

_ROUND = 1.1  # "(x)" multiplies by this, "[x]" divides by it
_SQUARE = 1 / 1.1

# ---------------------------------------------------------------------------------------------------------------
# Emphasis: "(x)", "(x:1.3)", "[x]", escapes, BREAK.

_PLAIN = re.compile(r"[^\\()\[\]:]+")
# A1111's weighted close ":1.3)"; each alternative is bounded by the next non-matching character, so no blow-up.
_WEIGHT_CLOSE = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
_BREAK_WORD = re.compile(r"\bBREAK\b")


def _split_breaks(run: str) -> list[str]:
    """Split a text run on the word BREAK, eating whitespace around it, as A1111's \\s*\\bBREAK\\b\\s* does.

    Done by hand because that regex backtracks quadratically over long whitespace runs."""
    parts = _BREAK_WORD.split(run)
    if len(parts) > 1:
        parts = [p if i == 0 else p.lstrip() for i, p in enumerate(parts)]
        parts = [p.rstrip() if i < len(parts) - 1 else p for i, p in enumerate(parts)]
    return parts


def _chain(node: int, parents: list[int]) -> list[int]:
    chain = []
    while node >= 0:
        chain.append(node)
        node = parents[node]
    return chain


def _weights(owners: set[tuple[int, int]], parents: list[int], factors: list[float], closed_at: list[int]) -> dict:
    """The weight of each (innermost round, innermost square) bracket pair that pieces sit in.

    A1111 starts every piece at 1.0 and multiplies it by each enclosing bracket as that bracket closes, then by the
    unclosed round brackets outermost first, then the unclosed square ones. Doing the same, bracket by bracket,
    reproduces its floats exactly (which decides what merges). That costs the nesting depth per pair, so past a
    budget (only hostile prompts) each node's product is built once from its parent's instead: linear, and equal
    up to float rounding.
    """
    depth = [0] * len(factors)
    for node, parent in enumerate(parents):  # parents precede children
        depth[node] = depth[parent] + 1 if parent >= 0 else 1
    work = sum((depth[r] if r >= 0 else 0) + (depth[s] if s >= 0 else 0) for r, s in owners)
    result = {}
    if work <= 200_000:
        for r, s in owners:
            chains = _chain(r, parents), _chain(s, parents)
            closed = sorted((closed_at[n], n) for chain in chains for n in chain if closed_at[n] >= 0)
            weight = 1.0
            for n in [n for _, n in closed] + [n for chain in chains for n in reversed(chain) if closed_at[n] < 0]:
                weight *= factors[n]
            result[r, s] = weight
        return result
    cumulative = [1.0] * len(factors)
    for node, (parent, factor) in enumerate(zip(parents, factors)):
        cumulative[node] = (cumulative[parent] if parent >= 0 else 1.0) * factor
    for r, s in owners:
        result[r, s] = (cumulative[r] if r >= 0 else 1.0) * (cumulative[s] if s >= 0 else 1.0)
    return result


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """Text pieces with their attention weights, as A1111's parse_prompt_attention returns them.

    A BREAK is the piece ("BREAK", BREAK_WEIGHT), whatever brackets are around it. Equal-weight neighbours are
    merged; A1111 tokenizes pieces separately, so merging changes tokens, and weights are therefore computed with
    A1111's exact float operations (see _weights) except on hostile nesting, where they may differ in the last bit.
    """
    scan = _BracketScan()
    scan.run(text)
    weights = _weights({o for o in scan.owners if o is not None}, scan.parents, scan.factors, scan.closed_at)
    result: list[list] = []
    for piece, owner in zip(scan.pieces, scan.owners):
        if owner is None:
            result.append([piece, BREAK_WEIGHT, True])
            continue
        weight = weights[owner]
        prev = result[-1] if result else None
        if prev is not None and not prev[2] and prev[1] == weight:
            prev[0] += piece
        else:
            result.append([piece, weight, False])
    if not result:
        return [("", 1.0)]
    return [(piece, float(weight)) for piece, weight, _ in result]


class _BracketScan:
    """One left-to-right pass over a prompt: its text pieces, and the bracket nodes each piece sits in."""

    def __init__(self):
        self.pieces: list[str] = []
        self.owners: list[tuple[int, int] | None] = []  # innermost open (round, square) node when the piece was made
        self.parents: list[int] = []  # bracket nodes: the enclosing node of the same kind, or -1
        self.factors: list[float] = []
        self.closed_at: list[int] = []  # when each node was closed (a count of closings), -1 while open
        self.round: list[int] = []  # the open "(" nodes
        self.square: list[int] = []  # the open "[" nodes
        self.closings = 0

    def add(self, piece: str) -> None:
        self.pieces.append(piece)
        self.owners.append((self.round[-1] if self.round else -1, self.square[-1] if self.square else -1))

    def add_text(self, run: str) -> None:
        for i, part in enumerate(_split_breaks(run)):
            if i:
                self.pieces.append("BREAK")
                self.owners.append(None)  # a chunk break, never weighted (A1111 weights it, then misses the break)
            self.add(part)

    def open(self, stack: list[int], factor: float) -> None:
        self.parents.append(stack[-1] if stack else -1)
        self.factors.append(factor)  # the default stays if the bracket is never closed
        self.closed_at.append(-1)
        stack.append(len(self.factors) - 1)

    def close(self, stack: list[int]) -> int:
        node = stack.pop()
        self.closed_at[node] = self.closings
        self.closings += 1
        return node

    def run(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "\\":
                nxt = text[i + 1 : i + 2]
                if nxt and nxt in "()[]\\":
                    self.add(nxt)
                    i += 2
                else:
                    self.add("")  # A1111 drops a lone backslash
                    i += 1
            elif c in "([":
                self.open(self.round, _ROUND) if c == "(" else self.open(self.square, _SQUARE)
                i += 1
            elif c == ":":
                i = self._weight(text, i)
            elif c in ")]":
                stack = self.round if c == ")" else self.square
                if stack:
                    self.close(stack)
                else:
                    self.add(c)
                i += 1
            else:
                m = _PLAIN.match(text, i)
                self.add_text(m.group(0))
                i = m.end()

    def _weight(self, text: str, i: int) -> int:
        """At a ":": "(text:1.3)" closes the open "(" with that weight. Returns where to go on."""
        m = _WEIGHT_CLOSE.match(text, i)
        if m is None:
            self.add(":")
            return i + 1
        if not self.round:
            self.add_text(m.group(0))  # nothing to close: all of it is text
            return m.end()
        try:
            weight = float(m.group(1))
        except ValueError:
            weight = math.nan
        if math.isfinite(weight):
            self.factors[self.close(self.round)] = weight
            return m.end()
        self.add_text(m.group(0)[:-1])  # "1.2.3" or an overflow: keep it as text, let ")" close with the default
        return m.end() - 1


# ---------------------------------------------------------------------------------------------------------------
# Prompt editing "[from:to:when]" and alternation "[a|b]".
#
# A1111 parses with a lark grammar in which brackets/colons may be stray only at the top level, nested groups must
# be well formed, and a "|" outside an alternation (or an unfinished escape) makes the whole prompt unparsable.
# The same language is recognised here in one scan: brackets are paired with a stack, each closed pair is checked
# (its own-level ":" and "|" and its children), and a pair that is not well formed turns into stray text together
# with every pair around it.

# lark's SIGNED_NUMBER, with optional whitespace around it.
_WHEN = re.compile(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*")


class _Group:
    """One open bracket while scanning; once closed and valid, a "scheduled" or "alternate" node (emphasis groups
    are transparent: their children go to the enclosing group)."""

    __slots__ = ("kind", "start", "end", "colons", "pipes", "children", "parts", "part_nodes", "when")

    def __init__(self, kind: str, start: int):
        self.kind = kind  # "(" or "[" while open
        self.start = start
        self.end = -1
        self.colons: list[int] = []  # ":" and "|" at this group's own level
        self.pipes: list[int] = []
        self.children: list[_Group] = []
        self.parts: list[tuple[int, int]] = []  # text spans: (from, to), or the alternation's options
        self.part_nodes: list[list[_Group]] = []  # the nodes inside each part, in order
        self.when = 0.0


def _classify(group: _Group, text: str) -> str | None:
    """What a closed pair is: "emphasis", "scheduled", "alternate", or None when malformed."""
    colons, pipes = group.colons, group.pipes
    if group.kind == "(":
        return "emphasis" if not pipes and len(colons) <= 1 else None
    if pipes:
        if colons:
            return None
        bounds = [group.start, *pipes, group.end]
        group.parts = [(a + 1, b) for a, b in zip(bounds, bounds[1:])]
        return "alternate"
    if not colons:
        return "emphasis"
    if len(colons) > 2:
        return None
    m = _WHEN.fullmatch(text, colons[-1] + 1, group.end)
    if m is None:
        return None
    group.when = float(m.group(1))
    if len(colons) == 2:
        group.parts = [(group.start + 1, colons[0]), (colons[0] + 1, colons[1])]
    else:  # "[to:when]": nothing before
        group.parts = [(group.start + 1, group.start + 1), (group.start + 1, colons[0])]
    return "scheduled"


def _parse_schedule_tree(text: str) -> list[_Group] | None:
    """Top-level scheduled/alternation nodes, or None when A1111's grammar would reject the prompt."""
    top: list[_Group] = []
    stack: list[_Group] = []
    pipes_total = pipes_used = 0

    def spoil() -> None:
        # Every open group contains the bad spot, so all of them are stray text; the well-formed groups already
        # closed inside them stand on their own at the top level (strays are only allowed there).
        for g in stack:
            top.extend(g.children)
        stack.clear()

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n or text[i + 1] == "\n":
                return None  # lark's plain token needs an escaped character (its "." skips newlines)
            i += 2
            continue
        if c in "([":
            stack.append(_Group(c, i))
        elif c in ")]":
            if stack and stack[-1].kind == ("(" if c == ")" else "["):
                group = stack.pop()
                group.end = i
                kind = _classify(group, text)
                siblings = stack[-1].children if stack else top
                if kind is None:
                    stack.append(group)
                    spoil()
                elif kind == "emphasis":
                    siblings.extend(group.children)
                else:
                    group.kind = kind
                    pipes_used += len(group.pipes)
                    siblings.append(group)
            else:
                spoil()  # a closer that pairs with nothing open is stray text, and so is all around it
        elif c == ":" and stack:
            stack[-1].colons.append(i)
        elif c == "|":
            pipes_total += 1
            if stack:
                stack[-1].pipes.append(i)
        i += 1
    spoil()  # brackets left open are stray text
    if pipes_used != pipes_total:
        return None  # some "|" is outside any alternation
    return top


def _walk(groups: list[_Group]):
    """All nodes under groups, without recursion."""
    todo = list(groups)
    while todo:
        g = todo.pop()
        yield g
        todo.extend(g.children)


def _by_part(node: _Group) -> list[list[_Group]]:
    """node.children sorted into its parts (a child always lies inside exactly one part)."""
    starts = [a for a, _ in node.parts]
    grouped: list[list[_Group]] = [[] for _ in node.parts]
    for child in sorted(node.children, key=lambda g: g.start):
        grouped[bisect.bisect_right(starts, child.start) - 1].append(child)
    return grouped


def _render(text: str, top: list[_Group], step: int) -> str:
    """The prompt text at a step, each node replaced by its chosen part; iterative for deep nesting."""
    out: list[str] = []
    frames = [[0, len(text), top, 0]]  # [position, end, nodes in order, next node]
    while frames:
        frame = frames[-1]
        pos, end, nodes, k = frame
        if k == len(nodes):
            out.append(text[pos:end])
            frames.pop()
            continue
        node = nodes[k]
        out.append(text[pos : node.start])
        frame[0], frame[3] = node.end + 1, k + 1
        if node.kind == "scheduled":
            part = 0 if step <= node.when else 1
        else:
            part = (step - 1) % len(node.parts)
        frames.append([*node.parts[part], node.part_nodes[part], 0])
    return "".join(out)


def prompt_schedule(text: str, steps: int) -> list[tuple[int, str]]:
    """[(end_at_step, text)] for A1111's prompt editing and alternation, e.g. "a [cat:dog:0.5]" over 10 steps gives
    [(5, "a cat"), (10, "a dog")]. `when` below 1 is a fraction of the steps, otherwise a step; emphasis brackets are
    kept as text for parse_emphasis. A prompt A1111's grammar rejects comes back unchanged: [(steps, text)]."""
    top = _parse_schedule_tree(text)
    if top is None:
        return [(steps, text)]
    switch = {steps}
    nodes = list(_walk(top))
    for node in nodes:
        node.part_nodes = _by_part(node)
        if node.kind == "scheduled":
            when = node.when * steps if node.when < 1 else node.when
            node.when = steps if when >= steps else int(when) if when > 0 else 0  # "1e999" is a NUMBER too
            if node.when >= 1:
                switch.add(node.when)
            # else the edit never shows its "from" part: step <= when can not hold
        else:
            switch.update(range(1, steps + 1))
    top = sorted(top, key=lambda g: g.start)
    return [(t, _render(text, top, t)) for t in sorted(switch)]


def schedule_index(schedule: list[tuple[int, str]], step_index: int) -> int:
    """Which schedule entry conditions sampling step `step_index` (0-based): the first with step_index <= end.

    Past the last entry A1111 falls back to entry 0, and so does this."""
    for index, (end_at_step, _) in enumerate(schedule):
        if step_index <= end_at_step:
            return index
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Extra-network tags: "<lora:name:te:unet>", "<lora:name:te=0.5:unet=0.7>", "<hypernet:name:1>".

_TAG = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class NetworkTag:
    kind: str  # "lora", "lyco", "hypernet", ... as written, lower-cased
    name: str
    te_multiplier: float
    unet_multiplier: float
    text: str  # the tag as written, e.g. "<lora:add_detail:0.7>"


def _multiplier(value: str, default: float, what: str, tag: str, warnings: list[str]) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        warnings.append(f"{tag}: {what} multiplier {value!r} is not a number; using {default:g}")
        return default
    return number


def _tag(match: re.Match, warnings: list[str]) -> NetworkTag | None:
    written = match.group(0)
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in match.group(2).split(":"):
        parts = item.split("=", 2)  # as A1111's ExtraNetworkParams: exactly one "=" makes a named argument
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    if not positional or not positional[0].strip():
        warnings.append(f"{written}: no network name; ignored")
        return None
    te = 1.0
    if len(positional) > 1:
        te = _multiplier(positional[1], te, "te", written, warnings)
    if "te" in named:
        te = _multiplier(named["te"], te, "te", written, warnings)
    unet = te  # the unet multiplier follows the text encoder's unless given
    if len(positional) > 2:
        unet = _multiplier(positional[2], unet, "unet", written, warnings)
    if "unet" in named:
        unet = _multiplier(named["unet"], unet, "unet", written, warnings)
    return NetworkTag(match.group(1).lower(), positional[0], te, unet, written)


def extract_network_tags(text: str) -> tuple[str, list[NetworkTag], list[str]]:
    """(text without the tags, the tags in order, warnings). Every tag is removed, whatever its kind."""
    tags: list[NetworkTag] = []
    warnings: list[str] = []

    def found(match: re.Match) -> str:
        tag = _tag(match, warnings)
        if tag is not None:
            tags.append(tag)
        return ""

    # Nothing after the last ">" can be a tag; cutting it off keeps "[^>]+" from rescanning to the end per "<".
    cut = text.rfind(">") + 1
    return _TAG.sub(found, text[:cut]) + text[cut:], tags, warnings
