"""Building blocks of the schema-driven fuzz test (tests/test_fuzz.py): request values generated from botocore's
input shapes, and hostile values to put in them one member at a time.

A mutation is (path, value): the path walks from the operation's input through member names, list index 0 and
map key "k"; the value replaces what the valid baseline request holds there (`DELETE` removes the member). Any
structure the path needs that the baseline lacks is created with its required members filled in, so that a
deep member (`containerOverrides.resourceRequirements[0].value`) is reached with a request that is otherwise
valid.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from typing import Any

from botocore.model import Shape

MAX_DEPTH = 9
DELETE = object()  # the mutation that removes a member


class Raw:
    """A value sent as this exact JSON text (numbers Python's json cannot write, such as 5000 digits)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


def to_json(value: Any) -> bytes:
    """JSON text of a request, with Raw values inlined and strings sent as UTF-8 where they can be."""
    return _dump(value).encode("utf-8", "surrogatepass")


def _dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dump(str(k))}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: only the escaped form is JSON
            return json.dumps(value, ensure_ascii=True)
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    return repr(value) if value == value and abs(value) != float("inf") else json.dumps(value)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode()


# --- values from the model ------------------------------------------------------------------------------------


def minimal(shape: Shape, rng: random.Random, depth: int = 0) -> Any:
    """A small value of the shape: structures hold their required members, enums a seeded choice."""
    kind = shape.type_name
    if kind == "structure":
        if depth > MAX_DEPTH:
            return {}
        return {n: minimal(shape.members[n], rng, depth + 1) for n in shape.required_members}
    if kind == "list":
        lo = shape.metadata.get("min", 0)
        return [minimal(shape.member, rng, depth + 1) for _ in range(max(lo, 1) if lo else 0)]
    if kind == "map":
        return {"k": minimal(shape.value, rng, depth + 1)} if shape.metadata.get("min") else {}
    if kind == "string":
        if shape.enum:
            return rng.choice(list(shape.enum))
        return "fz" + "x" * max(0, shape.metadata.get("min", 0) - 2)
    if kind in ("integer", "long"):
        return max(1, int(shape.metadata.get("min", 1)))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return False
    if kind == "timestamp":
        return 1_700_000_000
    if kind == "blob":
        return ""
    raise ValueError(kind)


def member_paths(shape: Shape) -> list[tuple[tuple[Any, ...], Shape]]:
    """Every (path, shape) below an input shape, depth-first; list items as index 0, map values as key "k"."""
    out: list[tuple[tuple[Any, ...], Shape]] = []

    def walk(node: Shape, path: tuple[Any, ...], depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if node.type_name == "structure":
            for name, member in node.members.items():
                if member.serialization.get("location") in ("header", "headers"):
                    continue
                out.append(((*path, name), member))
                walk(member, (*path, name), depth + 1)
        elif node.type_name == "list":
            out.append(((*path, 0), node.member))
            walk(node.member, (*path, 0), depth + 1)
        elif node.type_name == "map":
            out.append(((*path, "k"), node.value))
            walk(node.value, (*path, "k"), depth + 1)

    walk(shape, (), 0)
    return out


def shape_at(root: Shape, path: tuple[Any, ...]) -> Shape:
    node = root
    for step in path:
        node = node.member if node.type_name == "list" else node.value if node.type_name == "map" else (
            node.members[step]
        )
    return node


def mutate(
    baseline: dict[str, Any], root: Shape, path: tuple[Any, ...], value: Any, rng: random.Random
) -> dict[str, Any]:
    """A copy of the baseline with `value` at `path`, creating what the path passes through."""
    request = copy.deepcopy(baseline)
    node: Any = request
    shape = root
    for i, step in enumerate(path):
        child = shape_at(shape, (step,))
        if i == len(path) - 1:
            _set(node, step, value, child, rng)
            break
        if isinstance(node, list):
            while len(node) <= step:
                node.append(minimal(child, rng))
        elif not isinstance(node.get(step), (dict, list)):
            node[step] = minimal(child, rng)
        following = node[step]
        if child.type_name == "list" and not following:
            following.append(minimal(child.member, rng))
        elif child.type_name == "map" and not following:
            following["k"] = minimal(child.value, rng)
        node, shape = following, child
    return request


def concrete(path: tuple[Any, ...], baseline: dict[str, Any], root: Shape) -> list[tuple[Any, ...]]:
    """The path through each of the (first 3) list items and map entries the baseline has there."""
    out: list[tuple[Any, ...]] = [()]
    nodes: list[Any] = [baseline]
    shape = root
    for step in path:
        next_out, next_nodes = [], []
        for prefix, node in zip(out, nodes, strict=True):
            if shape.type_name == "list" and isinstance(node, list) and node:
                steps: list[Any] = list(range(min(len(node), 3)))
            elif shape.type_name == "map" and isinstance(node, dict) and node:
                steps = sorted(node)[:3]
            else:
                steps = [step]
            for choice in steps:
                inner = node.get(choice) if isinstance(node, dict) else (
                    node[choice] if isinstance(node, list) and choice < len(node) else None)
                next_out.append((*prefix, choice))
                next_nodes.append(inner)
        out, nodes, shape = next_out, next_nodes, shape_at(shape, (step,))
    return out


def reaches(path: tuple[Any, ...], baseline: dict[str, Any]) -> int:
    """How many leading steps of the path the baseline already holds."""
    node: Any = baseline
    for depth, step in enumerate(path):
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return depth
    return len(path)


def _set(node: Any, step: Any, value: Any, shape: Shape, rng: random.Random) -> None:
    if isinstance(node, list):
        if value is DELETE:
            if node:
                del node[step]
            return
        while len(node) <= step:
            node.append(minimal(shape, rng))
        node[step] = value
    elif value is DELETE:
        node.pop(step, None)
    else:
        node[step] = value


# --- hostile values ---------------------------------------------------------------------------------------------

NUMERIC_TEXT = [
    "1e30", "-1e30", "1e400", "inf", "-inf", "Infinity", "nan", "NaN", "-0", "-1", "0", "0.0000001", "1.5",
    "1" * 25, "9" * 5000, "0x10", " 2 ", "1_000", "١٢", "²", "+3", "2147483648", "9223372036854775808",
]
STRINGS = [
    "", " ", "x" * 129, "y" * 5000, "ünïcødé ☃ 𝄞", "\x00", "a\x00b", "\x01\x07\x1b[31m\x7f", "line\nbreak\r\t",
    "\u202e\u200b\ufeff", "\ud800", "%", "%*", "_*", "*", "**", "a*b", "\\", "'\"", "../../etc/passwd",
    "Ref::x", "AWS_BATCH_X", "aws:k", "arn:aws:batch:us-east-1:123456789012:job-queue/" + "q" * 300,
    "arn:aws:batch:us-east-1:999999999999:job-queue/fzq", "arn:aws:batch:us-east-1:123456789012:job/x:1",
    "arn:aws:batch:us-east-1:123456789012:job-definition/fz:" + "9" * 25,
    "fz:" + "9" * 25, "fz:" + "9" * 5000, "fz:١", "1:" + "9" * 5000, ":" + "9" * 5000, "9" * 5000 + ":",
    "00000000-0000-0000-0000-000000000000", "fzjob/default/" + "1" * 25, "fzjob/default/x/1/" + "9" * 5000,
    *NUMERIC_TEXT,
]
NUMBERS = [
    -1, 0, -(2**31) - 1, 2**31, 2**63, 2**64, Raw("-" + "9" * 25), Raw("1" + "0" * 25), Raw("9" * 5000),
    1e30, -1e30, 1.5, 1e308, 5e-324, -0.0, Raw("1e400"), Raw("NaN"), Raw("Infinity"), "5", True,
]
COMMON = [None, DELETE, True, "text", 7, 2.5, [], {}, [None], {"k": None}]


def token_values(real_tokens: list[str]) -> list[str]:
    """Page tokens: broken, foreign, and real ones re-encoded with numbers that do not fit."""
    numbers = ["-1", "1" * 25, "9" * 5000, "١", " 1"]
    out = ["!!!", "a", b64("\x00"), b64("jobs"), "x" * 5000, "f/" + "9" * 5000 + "/s", "f/" + "1" * 25 + "/s",
           "f/" + "9" * 20 + "/s", "b/" + "9" * 20 + "-" + "9" * 20 + "/s", "f/١/s", "b/-1/s"]
    out += [b64(f"{scope}:{n}") for scope in ("jobs", "jd", "ce", "jq", "sp") for n in numbers]
    for token in real_tokens:
        try:
            scope = base64.urlsafe_b64decode(token.encode()).decode().rpartition(":")[0]
        except ValueError:
            continue
        out += [b64(f"{scope}:{n}") for n in ("0", "18446744073709551616", "1e3")] + [token + "x"]
    return out


def values_for(shape: Shape, member: Any, tokens: list[str]) -> list[Any]:
    """Hostile values for one member: the common ones plus those aimed at its type."""
    kind = shape.type_name
    out = list(COMMON)
    if kind == "string":
        out += STRINGS
        if member == "nextToken":
            out += tokens
        if shape.enum:
            out += [list(shape.enum)[0].lower(), list(shape.enum)[0] + " "]
    elif kind in ("integer", "long", "float", "double", "timestamp"):
        out += NUMBERS
    elif kind == "list":
        out += [[{}], [{"value": "x"}], [[]], ["x"] * 1000, [0], [{"name": None}]]
    elif kind == "map":
        out += [{"": "v"}, {"k": 5}, {f"k{i}": "v" for i in range(60)}, {"k" * 300: "v"}, {"aws:x": "v"},
                {"\x00": "v"}, {"k": "\x00"}]
    elif kind == "structure":
        out += [{"unknown": 1}, "x", [{}]]
    elif kind == "boolean":
        out += ["true", 1, 0]
    return out


# The values that found faults before, tried on every kind of member. No wrong JSON types here: the validator
# refuses those generically from the model (tiers 2 and 3 still send them).
CORE = {
    "string": ["", "1e30", "inf", "-1", "1" * 25, "9" * 5000, "y" * 5000, "z" * 60000 + "*", "a\x00b"],
    "number": [-1, 2**63, Raw("1" + "0" * 25), Raw("9" * 5000), 1e30, 1.5],
    "list": [[None], [{}], [{"value": "x"}], [{"name": None}]],
    "map": [{"k": None}, {"": "v"}, {"k": "\x00"}],
    "structure": [{}],
    "boolean": [],
}


def core_values(shape: Shape, member: Any, tokens: list[str]) -> list[Any]:
    kind = shape.type_name
    kind = "number" if kind in ("integer", "long", "float", "double", "timestamp") else kind
    out = [None, DELETE, *CORE.get(kind, [])]
    if kind == "string" and member == "nextToken":
        out += tokens
    return out


Mutation = tuple[int, tuple[Any, ...], Any, bool]  # (which baseline, concrete path, value, a core value)


def mutations(
    root: Shape, baselines: list[dict[str, Any]], tokens: list[str], rng: random.Random, extra: int
) -> list[Mutation]:
    """Seeded mutations of an operation's baselines, in three tiers.

    Each member path goes to the baseline that holds most of it (a path under ecsProperties to the ECS job
    definition), through each list item and map entry that baseline has there.
    1. every core value on (up to 2) paths the baselines hold of each (parent shape, member) pair
       (`containerOverrides.environment[0].name` with null, "1e30", 5000 digits...);
    2. every path once, with a random value of its type;
    3. `extra` more, drawn from all the remaining (path, hostile value) pairs.
    A member no baseline reaches gets only null, absent and a wrong type in tier 1.
    """
    placed: list[tuple[int, tuple[Any, ...], Shape, bool]] = []  # (baseline, path, shape, held by it)
    abstract: list[tuple[Any, ...]] = []  # the member path each placed one is a variant of
    groups: dict[tuple[str, Any], list[int]] = {}
    for path, shape in member_paths(root):
        reach = [reaches(path, b) for b in baselines]
        best = [i for i, r in enumerate(reach) if r == max(reach)]
        # Held when a baseline has all but the last step: then each baseline that holds most of it (two at most
        # for a top-level member, which every baseline "holds").
        cap = 2 if len(path) == 1 else len(best)
        holders = rng.sample(best, min(cap, len(best))) if max(reach) >= len(path) - 1 else []
        for which in holders or [rng.choice(best)]:
            parent = shape_at(root, path[:-1])
            key = (parent.name, path[-1] if parent.type_name == "structure" else "[]")
            for variant in concrete(path, baselines[which], root):
                groups.setdefault(key, []).append(len(placed))
                placed.append((which, variant, shape, bool(holders)))
                abstract.append(path)
    chosen: list[Mutation] = []
    taken: set[tuple[int, tuple[Any, ...], int]] = set()

    def take(where: int, value: Any, core: bool = False) -> None:
        b, path, _, _ = placed[where]
        key = (b, path, id(value))
        if key not in taken:
            taken.add(key)
            chosen.append((b, path, value, core))

    for members in groups.values():
        held = [m for m in members if placed[m][3]]
        if held:
            # Every core value, on two of the places the pair is held, through each list item there (both
            # resource requirements, not one of them at random).
            places = sorted({(placed[m][0], abstract[m]) for m in held})
            picked = set(rng.sample(places, min(2, len(places))))
            for where in [m for m in held if (placed[m][0], abstract[m]) in picked]:
                _, path, shape, _ = placed[where]
                for value in core_values(shape, path[-1], tokens):
                    take(where, value, core=True)
        else:  # a member no baseline reaches: null, absent and a wrong type
            where = rng.choice(members)
            _, path, shape, _ = placed[where]
            for value in core_values(shape, path[-1], tokens)[:3]:
                take(where, value, core=True)
    for where, (_, path, shape, _) in enumerate(placed):
        take(where, rng.choice(values_for(shape, path[-1], tokens)))
    rest = [(where, value) for where, (_, path, shape, _) in enumerate(placed)
            for value in values_for(shape, path[-1], tokens)]
    rng.shuffle(rest)
    budget = len(chosen) + extra
    for where, value in rest:
        if len(chosen) >= budget:
            break
        take(where, value)
    return chosen
