"""Server-side request validation, compiled from the botocore input shapes plus the limits AWS only documents.

botocore validates required members and types on the client, but other SDKs and raw HTTP callers do not, and
nothing client-side checks enums, maxima or the limits that exist only in the AWS documentation. So every
request is checked here before it reaches a handler.

Two sources of rules:

* the model: structure/list/map/scalar types, `required`, `enum`, `min`/`max`, `pattern`;
* `LIMITS` (api/limits.py): a declarative table of documented limits the model does not encode, keyed by
  (operation or shape name, member path relative to it).

Validation also decodes: an optional member sent as `null` is removed (no handler sees a None), and numbers
carried as strings are checked with api/decode.py's bounds.

On first use, each operation's input shape is compiled into generated Python source with every check
inlined. Big structures that repeat become shared functions. The result is cached per operation, so a
request costs a few microseconds. The first problem found is raised as a ClientException whose message names
the dotted path (with list indexes) and the offending value, in the AWS style:

    1 validation error detected: Value 'FOO' at 'jobQueue.state' failed to satisfy constraint:
    Member must satisfy enum value set: [ENABLED, DISABLED]
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from botocore.model import Shape

from batchd.api.decode import decimal_ok
from batchd.api.errors import ClientException
from batchd.api.limits import _ARN_TEXT, LIMITS, Limit, Setting, _valid_arn
from batchd.api.limits import limits_table_markdown as limits_table_markdown  # re-exported (docs, tests)

# Request-body caps AWS documents per operation (service quotas page); app.py enforces them before decoding.
BODY_LIMITS: dict[str, int] = {
    "SubmitJob": 30 * 1024,
    "RegisterJobDefinition": 24 * 1024,
    "SubmitServiceJob": 30 * 1024,
}

# Minimums that tests (and impatient operators) lower through server settings; read at validation time.
_SETTINGS: dict[str, int] = {"min_attempt_duration": 60, "min_state_time_limit": 600}


def set_min_attempt_duration(seconds: int) -> None:
    """Smallest accepted `timeout.attemptDurationSeconds` (AWS: 60)."""
    _SETTINGS["min_attempt_duration"] = _non_negative(seconds)


def set_min_state_time_limit(seconds: int) -> None:
    """Smallest accepted `jobStateTimeLimitActions[].maxTimeSeconds` (AWS: 600)."""
    _SETTINGS["min_state_time_limit"] = _non_negative(seconds)


def _non_negative(seconds: int) -> int:
    if type(seconds) is not int or seconds < 0:
        raise ValueError(f"expected a non-negative integer number of seconds, got {seconds!r}")
    return seconds


# --------------------------------------------------------------------------------------------------------------
# Errors
#
# A generated validator raises `_Invalid(spec_id, value, *slots)`: the spec (per operation) holds the constraint
# text and a path template whose `{}` slots are list indexes / map keys. Keeping message building out of the
# generated code keeps that code small (it compiles faster) and puts all wording in one place.

Constraint = str | Callable[[Any], str]


@dataclass(frozen=True)
class _Spec:
    constraint: Constraint
    template: str
    subject: str


class _Invalid(Exception):
    __slots__ = ("spec", "value", "slots", "outer")

    def __init__(self, spec: int, value: Any, *slots: Any) -> None:
        self.spec = spec
        self.value = value
        self.slots = slots
        # (prefix spec, *slots) added by each shared-shape call site on the way out, innermost first.
        self.outer: list[tuple[Any, ...]] = []


_JSON_TYPE = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _expect(expected: str) -> Constraint:
    return lambda value: f"be {expected}, not {_json_type(value)}"


def _range_text(what: str, lo: float | None, hi: float | None, lo_setting: str | None) -> Constraint:
    def text(value: Any) -> str:
        measured = len(value) if what == "length" else value
        low = _SETTINGS[lo_setting] if lo_setting is not None else lo
        if low is not None and measured < low:
            return f"have {what} greater than or equal to {low}"
        return f"have {what} less than or equal to {hi}"

    return text


def _show(value: Any) -> str:
    """The value as it appears in a message: strings quoted, long values shortened."""
    if value is None:
        return "null"
    if isinstance(value, str):
        if len(value) > 100:
            return f"'{value[:60]}...' ({len(value)} characters)"
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list) and len(value) > 5:
        return f"[...{len(value)} items]"
    if isinstance(value, dict) and len(value) > 5:
        return f"{{...{len(value)} entries}}"
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 120 else text[:100] + "..."


def _message(specs: list[_Spec], exc: _Invalid) -> str:
    spec = specs[exc.spec]
    path = spec.template.format(*exc.slots)
    for prefix_spec, *slots in exc.outer:
        prefix = specs[prefix_spec].template.format(*slots)
        path = f"{prefix}.{path}" if prefix and path else prefix or path
    constraint = spec.constraint if isinstance(spec.constraint, str) else spec.constraint(exc.value)
    return (
        f"1 validation error detected: Value {_show(exc.value)} at '{path or 'request body'}' "
        f"failed to satisfy constraint: {spec.subject} must {constraint}"
    )


def _timestamp_ok(value: Any) -> bool:
    # rest-json sends epoch seconds; ISO 8601 strings are accepted too, as AWS does.
    if type(value) in (int, float):
        return math.isfinite(value)
    if type(value) is str:
        try:
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return True
        except ValueError:
            return False
    return False


def _blob_ok(value: Any) -> bool:
    if type(value) is not str:
        return False
    try:
        base64.b64decode(value, validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


# --------------------------------------------------------------------------------------------------------------
# Compiling an input shape into one Python function
#
# Why generate source instead of nesting closures: a closure call per JSON node cost ~0.5 µs, so a rich
# SubmitJob took ~40 µs. One generated function with the checks inlined does the same work several times faster.

Validator = Callable[[Any], None]
_ABSENT = object()  # what `.get` returns for a member the request does not have
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_MAX_DEPTH = 40  # the Batch model is not recursive; a recursive shape would be refused here, loudly


class _Path:
    """A member path: literal text, plus the generated variables that hold list indexes / map keys."""

    __slots__ = ("template", "slots")

    def __init__(self, template: str = "", slots: tuple[str, ...] = ()) -> None:
        self.template = template
        self.slots = slots

    def member(self, name: str) -> _Path:
        name = name.replace("{", "{{").replace("}", "}}")
        return _Path(f"{self.template}.{name}" if self.template else name, self.slots)

    def index(self, var: str) -> _Path:
        return _Path(self.template + "[{}]", (*self.slots, var))

    def key(self, var: str) -> _Path:
        return _Path(self.template + ".{}", (*self.slots, var))


class _Codegen:
    def __init__(self, operation: str, used: set[tuple[str, str]]) -> None:
        self.operation = operation
        self.used = used
        self.lines: list[str] = []
        self.specs: list[_Spec] = []
        self.env: dict[str, Any] = {
            "_Invalid": _Invalid,
            "_S": _SETTINGS,
            "_isfinite": math.isfinite,
            "_valid_arn": _valid_arn,
            "_timestamp_ok": _timestamp_ok,
            "_blob_ok": _blob_ok,
            "_decimal_ok": decimal_ok,
            "_A": _ABSENT,
        }
        self.counter = 0
        # Structures that occur more than once (and are not tiny) become one shared function each.
        self.sizes: dict[str, int] = {}
        self.occurrences: dict[str, int] = {}
        self.defs: list[list[str]] = []
        self.shared: dict[tuple[Any, ...], str] = {}
        # The LIMITS rows applied while generating the current shared function: its identity.
        self.applied: list[tuple[Any, ...]] = []
        self.shared_start = ""

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any) -> str:
        name = self.fresh("_c")
        self.env[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def fail(
        self, depth: int, var: str, constraint: Constraint, path: _Path, subject: str = "Member"
    ) -> None:
        self.specs.append(_Spec(constraint, path.template, subject))
        self.emit(depth, f"raise _Invalid({', '.join((str(len(self.specs) - 1), var, *path.slots))})")

    def limits_for(self, shape: Shape, apath: str, ancestors: tuple[tuple[str, str], ...]) -> list[Limit]:
        keys = [(self.operation, apath)]
        keys += [(name, apath[len(start) + 1 :] if start else apath) for name, start in ancestors]
        keys.append((shape.name, ""))
        found = []
        for key in keys:
            limit = LIMITS.get(key)
            if limit is not None:
                found.append(limit)
                self.used.add(key)
                self.applied.append((apath[len(self.shared_start) :], key))
        return found

    def survey(self, shape: Shape, depth: int = 0) -> int:
        """Count structure occurrences and subtree sizes (in shape nodes) before generating."""
        if depth > _MAX_DEPTH:
            raise ValueError(f"shape nesting too deep (recursive shape?) at {shape.name}")
        if shape.type_name == "structure":
            size = 1 + sum(self.survey(m, depth + 1) for m in shape.members.values())
            self.occurrences[shape.name] = self.occurrences.get(shape.name, 0) + 1
            self.sizes[shape.name] = size
            return size
        if shape.type_name == "list":
            return 1 + self.survey(shape.member, depth + 1)
        if shape.type_name == "map":
            return 1 + self.survey(shape.key, depth + 1) + self.survey(shape.value, depth + 1)
        return 1

    def shared_call(
        self,
        shape: Shape,
        var: str,
        path: _Path,
        apath: str,
        ancestors: tuple[tuple[str, str], ...],
        depth: int,
    ) -> None:
        """Emit a call to the shared function for this structure, generating it unless an identical one exists.

        Why: RegisterJobDefinition repeats big shapes (node ranges repeat container/ECS/EKS properties), and
        generated source compiles at ~20 µs a line, so sharing cuts its first-use cost by more than half.
        Two occurrences share a function only if they applied exactly the same LIMITS rows.
        """
        saved = self.lines, self.applied, self.shared_start
        self.lines, self.applied, self.shared_start = [], [], apath
        fname = self.fresh("_f")
        self.emit(0, f"def {fname}(p):")
        self.structure(shape, "p", _Path(), apath, ancestors, 1)
        body, identity = self.lines, (shape.name, tuple(self.applied))
        self.lines, self.applied, self.shared_start = saved
        self.applied.append(("call", identity))
        if identity in self.shared:
            fname = self.shared[identity]
        else:
            self.shared[identity] = fname
            self.defs.append(body)
        self.specs.append(_Spec("", path.template, ""))
        self.emit(depth, "try:")
        self.emit(depth + 1, f"{fname}({var})")
        self.emit(depth, "except _Invalid as x:")
        self.emit(depth + 1, f"x.outer.append(({', '.join((str(len(self.specs) - 1), *path.slots))},))")
        self.emit(depth + 1, "raise")

    # One method per shape type; each emits code that checks the non-null value held in `var`.
    # `apath` is the abstract path used for LIMITS lookups (`[]` for items, `{}` for map values).

    def node(
        self,
        shape: Shape,
        var: str,
        path: _Path,
        apath: str,
        ancestors: tuple[tuple[str, str], ...],
        depth: int,
        subject: str = "Member",
        limits: list[Limit] | None = None,
    ) -> None:
        if len(ancestors) > _MAX_DEPTH:
            raise ValueError(f"shape nesting too deep (recursive shape?) at {apath}")
        if limits is None:
            limits = self.limits_for(shape, apath, ancestors)
        kind = shape.type_name
        if kind == "structure":
            inner = (*ancestors, (shape.name, apath))
            if apath and self.occurrences.get(shape.name, 0) > 1 and self.sizes.get(shape.name, 0) >= 8:
                self.shared_call(shape, var, path, apath, inner, depth)
            else:
                self.structure(shape, var, path, apath, inner, depth)
        elif kind == "list":
            self.list(shape, var, path, apath, ancestors, depth, limits)
        elif kind == "map":
            self.map(shape, var, path, apath, ancestors, depth, limits)
        elif kind == "string":
            self.string(shape, var, path, depth, limits, subject)
        elif kind in ("integer", "long", "float", "double"):
            self.number(shape, var, path, depth, limits)
        elif kind == "boolean":
            self.emit(depth, f"if type({var}) is not bool:")
            self.fail(depth + 1, var, _expect("a boolean (true or false)"), path)
        elif kind == "timestamp":
            self.emit(depth, f"if not _timestamp_ok({var}):")
            self.fail(depth + 1, var, "be a timestamp (epoch seconds or an ISO 8601 string)", path)
        elif kind == "blob":
            self.emit(depth, f"if not _blob_ok({var}):")
            self.fail(depth + 1, var, "be a base64-encoded string", path)
        else:
            raise ValueError(f"unsupported shape type {kind!r} at {apath or shape.name}")

    def structure(
        self,
        shape: Shape,
        var: str,
        path: _Path,
        apath: str,
        ancestors: tuple[tuple[str, str], ...],
        depth: int,
    ) -> None:
        self.emit(depth, f"if not isinstance({var}, dict):")
        self.fail(depth + 1, var, _expect("an object"), path)
        member_limits = {
            name: self.limits_for(member, f"{apath}.{name}" if apath else name, ancestors)
            for name, member in shape.members.items()
        }
        required = set(shape.required_members)
        required |= {name for name, limits in member_limits.items() if any(lim.required for lim in limits)}
        # Required members first, so "missing X" wins over a problem deeper in the body.
        order = [n for n in shape.members if n in required] + [n for n in shape.members if n not in required]
        for name in order:
            member = shape.members[name]
            m = self.fresh("m")
            mpath = path.member(name)
            mapath = f"{apath}.{name}" if apath else name
            limits = member_limits[name]
            # Unknown members are never looked at (AWS ignores them).
            if name in required:
                self.emit(depth, f"{m} = {var}.get({name!r})")
                self.emit(depth, f"if {m} is None:")
                self.fail(depth + 1, "None", "not be null", mpath)
                if member.type_name == "string":
                    self.emit(depth, f"if {m} == '':")
                    self.fail(depth + 1, m, "not be empty", mpath)
                self.node(member, m, mpath, mapath, ancestors, depth, limits=limits)
            else:
                # An optional member sent as null is "not set": it is removed, so that no handler sees a None.
                self.emit(depth, f"{m} = {var}.get({name!r}, _A)")
                self.emit(depth, f"if {m} is None:")
                self.emit(depth + 1, f"del {var}[{name!r}]")
                self.emit(depth, f"elif {m} is not _A:")
                self.node(member, m, mpath, mapath, ancestors, depth + 1, limits=limits)

    def _range(
        self,
        var: str,
        value: str,
        lo: float | None,
        hi: float | None,
        lo_setting: str | None,
        what: str,
        path: _Path,
        depth: int,
        subject: str = "Member",
    ) -> None:
        """Emit one chained comparison for `lo <= value <= hi`; `lo_setting` is read at call time."""
        lo_expr = f"_S[{lo_setting!r}]" if lo_setting is not None else (repr(lo) if lo is not None else None)
        hi_expr = repr(hi) if hi is not None else None
        if lo_expr is not None and hi_expr is not None:
            self.emit(depth, f"if not {lo_expr} <= {value} <= {hi_expr}:")
        elif lo_expr is not None:
            self.emit(depth, f"if {value} < {lo_expr}:")
        elif hi_expr is not None:
            self.emit(depth, f"if {value} > {hi_expr}:")
        else:
            return
        self.fail(depth + 1, var, _range_text(what, lo, hi, lo_setting), path, subject)

    def _length(
        self, var: str, shape: Shape, limits: list[Limit], path: _Path, depth: int, subject: str
    ) -> None:
        lo, hi = _length_bounds(shape, limits)
        # A minimum length of 0 checks nothing.
        self._range(var, f"len({var})", lo or None, hi, None, "length", path, depth, subject)

    def list(
        self,
        shape: Shape,
        var: str,
        path: _Path,
        apath: str,
        ancestors: tuple[tuple[str, str], ...],
        depth: int,
        limits: list[Limit],
    ) -> None:
        self.emit(depth, f"if not isinstance({var}, list):")
        self.fail(depth + 1, var, _expect("an array"), path)
        self._length(var, shape, limits, path, depth, "Member")
        i, e = self.fresh("i"), self.fresh("e")
        ipath = path.index(i)
        self.emit(depth, f"for {i}, {e} in enumerate({var}):")
        self.emit(depth + 1, f"if {e} is None:")
        self.fail(depth + 2, "None", "not be null", ipath)
        self.node(shape.member, e, ipath, apath + "[]", ancestors, depth + 1)

    def map(
        self,
        shape: Shape,
        var: str,
        path: _Path,
        apath: str,
        ancestors: tuple[tuple[str, str], ...],
        depth: int,
        limits: list[Limit],
    ) -> None:
        self.emit(depth, f"if not isinstance({var}, dict):")
        self.fail(depth + 1, var, _expect("an object"), path)
        self._length(var, shape, limits, path, depth, "Member")
        k, w = self.fresh("k"), self.fresh("w")
        self.emit(depth, f"for {k}, {w} in {var}.items():")
        # A bad key is reported at the map's own path, as "Map keys must ...".
        self.node(shape.key, k, path, apath + "{key}", ancestors, depth + 1, subject="Map keys")
        kpath = path.key(k)
        self.emit(depth + 1, f"if {w} is None:")
        self.fail(depth + 2, "None", "not be null", kpath)
        self.node(shape.value, w, kpath, apath + "{}", ancestors, depth + 1)

    def string(
        self, shape: Shape, var: str, path: _Path, depth: int, limits: list[Limit], subject: str
    ) -> None:
        self.emit(depth, f"if type({var}) is not str:")
        self.fail(depth + 1, var, _expect("a string"), path, subject)
        enum = list(shape.enum or ())
        if enum:
            enum_ci = any(limit.enum_ci for limit in limits)
            allowed = self.const(frozenset(e.lower() for e in enum) if enum_ci else frozenset(enum))
            text = f"satisfy enum value set: [{', '.join(enum)}]" + (" (case-insensitive)" if enum_ci else "")
            self.emit(depth, f"if {var}{'.lower()' if enum_ci else ''} not in {allowed}:")
            self.fail(depth + 1, var, text, path, subject)
        self._length(var, shape, limits, path, depth, subject)
        model_pattern = shape.metadata.get("pattern")
        if model_pattern:  # Smithy patterns are unanchored searches
            rx = self.const(re.compile(model_pattern))
            self.emit(depth, f"if {rx}.search({var}) is None:")
            self.fail(depth + 1, var, f"satisfy regular expression pattern: {model_pattern}", path, subject)
        for limit in limits:
            if limit.pattern:
                rx = self.const(re.compile(limit.pattern))
                text = limit.pattern_text or f"satisfy regular expression pattern: {limit.pattern}"
                self.emit(depth, f"if {rx}.fullmatch({var}) is None:")
                self.fail(depth + 1, var, text, path, subject)
            if limit.forbid_prefix:
                prefix = limit.forbid_prefix
                probe = f"{var}.lower()" if limit.prefix_ci else var
                self.emit(
                    depth, f"if {probe}.startswith({(prefix.lower() if limit.prefix_ci else prefix)!r}):"
                )
                self.fail(depth + 1, var, f"not start with '{prefix}'", path, subject)
            if limit.arn:
                self.emit(depth, f"if not _valid_arn({var}):")
                self.fail(depth + 1, var, _ARN_TEXT, path, subject)
            if limit.decimal:
                lo, hi = limit.decimal
                # Short whole numbers ("2", "4096") are inside the bounds without being converted.
                short = len(str(int(hi))) - 1 if lo <= 0 else 0
                quick = f"{var}.isdigit() and {var}.isascii() and len({var}) <= {short} or " if short else ""
                self.emit(depth, f"if not ({quick}_decimal_ok({var}, {lo!r}, {hi!r})):")
                text = f"be a decimal number from {lo} to {hi} ({limit.decimal_text})"
                self.fail(depth + 1, var, text, path, subject)

    def number(self, shape: Shape, var: str, path: _Path, depth: int, limits: list[Limit]) -> None:
        lo: float | None = shape.metadata.get("min")
        hi: float | None = shape.metadata.get("max")
        lo_setting: str | None = None
        for limit in limits:
            if isinstance(limit.min_value, Setting):
                lo_setting = limit.min_value.name
            elif limit.min_value is not None:
                lo = limit.min_value if lo is None else max(lo, limit.min_value)
            if limit.max_value is not None:
                hi = limit.max_value if hi is None else min(hi, limit.max_value)
        kind = shape.type_name
        if kind in _INT_RANGE:
            # bool is an int subclass in Python but not an integer in JSON.
            self.emit(depth, f"if type({var}) is not int:")
            self.fail(depth + 1, var, _expect("an integer"), path)
            # Out-of-type-range integers (Java int/long on AWS) fail the same range check.
            type_lo, type_hi = _INT_RANGE[kind]
            lo = type_lo if lo is None else lo
            hi = type_hi if hi is None else hi
        else:
            self.emit(depth, f"if type({var}) is float:")
            self.emit(depth + 1, f"if not _isfinite({var}):")
            self.fail(depth + 2, var, "be a finite number", path)
            self.emit(depth, f"elif type({var}) is not int:")
            self.fail(depth + 1, var, _expect("a number"), path)
        self._range(var, var, lo, hi, lo_setting, "value", path, depth)

    def build(self, shape: Shape) -> tuple[Validator, list[_Spec], str]:
        self.survey(shape)
        self.emit(0, "def validate(p):")
        self.node(shape, "p", _Path(), "", (), 1)
        source = "\n\n".join("\n".join(lines) for lines in [*self.defs, self.lines]) + "\n"
        code = compile(source, f"<batchd.validate:{self.operation}>", "exec")
        namespace = dict(self.env)
        exec(code, namespace)  # noqa: S102 - source generated above from the botocore model, not from input
        return namespace["validate"], self.specs, source


def _length_bounds(shape: Shape, limits: list[Limit]) -> tuple[int | None, int | None]:
    """Model min/max combined with the table's, keeping the stricter of each.

    A map's model `min` is not applied: AWS accepts `"tags": {}` (TagrisTagsMap, min 1), which Airflow's
    BatchOperator sends with every job; docs/api-validation.md, "Minimum counts", has the evidence.
    """
    lo = None if shape.type_name == "map" else shape.metadata.get("min")
    hi = shape.metadata.get("max")
    for limit in limits:
        if limit.min_len is not None:
            lo = limit.min_len if lo is None else max(lo, limit.min_len)
        if limit.max_len is not None:
            hi = limit.max_len if hi is None else min(hi, limit.max_len)
    return lo, hi


# --------------------------------------------------------------------------------------------------------------
# Entry point

_COMPILED: dict[tuple[str, str], tuple[Validator, list[_Spec]]] = {}
_SOURCES: dict[str, str] = {}
_USED: set[tuple[str, str]] = set()


def _compiled(operation: str, shape: Shape) -> tuple[Validator, list[_Spec]]:
    key = (operation, shape.name)
    entry = _COMPILED.get(key)
    if entry is None:
        fn, specs, _SOURCES[operation] = _Codegen(operation, _USED).build(shape)
        entry = _COMPILED[key] = (fn, specs)
    return entry


def compile_operation(operation: str, shape: Shape) -> Validator:
    """The cached validator for one operation's input shape (generated on first use)."""
    return _compiled(operation, shape)[0]


def validate_request(operation: str, shape: Shape | None, params: dict[str, Any]) -> None:
    """Raise ClientException naming the first invalid member of `params`, or return None."""
    if shape is None:
        return
    fn, specs = _COMPILED.get((operation, shape.name)) or _compiled(operation, shape)
    try:
        fn(params)
    except _Invalid as exc:
        raise ClientException(_message(specs, exc)) from None


def generated_source(operation: str) -> str | None:
    """The generated validator source for an already-compiled operation (for debugging)."""
    return _SOURCES.get(operation)


def used_limits() -> set[tuple[str, str]]:
    """LIMITS keys matched by the operations compiled so far (tests compile all and compare with LIMITS)."""
    return set(_USED)
