"""A cross-check by an implementation nobody here wrote (docs/contracts.md): the official
`protovalidate` and the running server give the same verdict on every boundary request.

For every unary RPC of the public services, the valid request of `tests/contracts/*.json` is
changed one field at a time to values generated here from the annotations read off the
descriptors (the zero value; lengths, byte sizes, item counts and numbers around each bound, with
ASCII and multi-byte fillers; enum values in and out of range; the samples of the contract
files). protovalidate says whether the request breaks a rule at that field; the server, called
over gRPC with a real bearer token, refuses it (INVALID_ARGUMENT naming the field) or lets it
through (any other answer). Every disagreement is printed before the test fails; a refusal
protovalidate cannot see is excused only for a field the entry lists under "relations" (a rule
relating it to other fields, stated in its comment), and only when a request of the entry's
"also_valid" takes the same value at the same field path (one naming another request with
"@request" is sent to that request's RPC).
"""

import json
import pathlib
import re
import uuid
from dataclasses import dataclass

import grpc
import protovalidate
import pytest
from google.protobuf import json_format, message_factory, symbol_database
from google.protobuf.descriptor import FieldDescriptor
from rpc_status import RPC

CONTRACTS = pathlib.Path(__file__).resolve().parents[1] / "contracts"
SERVICES = [
    "chatmesh.user.v1.UserService",
    "chatmesh.channel.v1.ChannelService",
    "chatmesh.chat.v1.ChatService",
    "chatmesh.dispatcher.v1.DispatcherService",
    "chatmesh.feed.v1.FeedService",
]
# Calls that end the caller's session run on a throwaway login of their own.
SESSION_ENDING = {"Logout", "LogoutAll"}
# Calls that may change the caller's password or delete the account run on a new account each.
ACCOUNT_CHANGING = {"ChangePassword", "DeleteMe"}
# Calls that need no token (the user service's "Open."): UNAUTHENTICATED is their own answer.
OPEN = {"CreateUser", "Login", "RefreshToken"}
# Fewer cases than this means the generation lost its way.
MIN_CASES = 2000
# The key of patterns.json whose samples go to every `string.email` field.
EMAIL_SAMPLES = "(buf.validate.field).string.email"
# The HTML standard's valid e-mail address (what `string.email` means); used only to keep a
# generated length case an email address, so that it tests the length alone.
WHATWG_EMAIL = re.compile(
    r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*"
)
# One code point each, of 1, 2, 3 and 4 UTF-8 bytes (the last outside the BMP: 2 UTF-16 units).
FILLERS = ["a", "é", "中", "🌸"]
# Appended to a valid value: line breaks, tab, C0 and C1 controls, a character outside the BMP.
PROBE_SUFFIXES = ["\n", "\t", "\x00", "\x1f", "\x7f", "\x85", "\x9f", "🌸"]
# Blank values: ASCII and Unicode spaces.
BLANKS = [" ", "\t", "\u00a0", "\u3000", "\u2028"]
# Each integer type: the name of its rules in `buf.validate.FieldRules`, and its range.
INTEGERS = {
    FieldDescriptor.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: ("sint32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: ("sfixed32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: ("sint64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: ("sfixed64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: ("fixed32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: ("fixed64", 0, 2**64 - 1),
}
NANOS = 10**9

@dataclass
class Case:
    path: str
    label: str
    value: object
    request: object


@dataclass
class Verdict:
    # Refused naming the case's field.
    refused: bool
    says: str
    # Refused naming another field, or none.
    refused_elsewhere: bool = False


# ---------------------------------------------------------------------------------------------
# The contracts: valid requests and samples.


def _load_contracts() -> tuple[dict, dict]:
    entries = {}
    for name in ["user", "channel", "chat", "dispatcher", "feed"]:
        path = CONTRACTS / f"{name}.json"
        if path.exists():
            entries.update(json.loads(path.read_text()))
    return entries, json.loads((CONTRACTS / "patterns.json").read_text())


def _rules(field):
    """The field's `buf.validate.field` rules, read with the generated validate_pb2; None when
    it has none."""
    from buf.validate import validate_pb2

    options = field.GetOptions()
    return options.Extensions[validate_pb2.field] if options.HasExtension(validate_pb2.field) else None


def _has_rules(rules) -> bool:
    """Whether there is a rule to break (`ignore` alone is none)."""
    return rules is not None and any(f.name != "ignore" for f, _ in rules.ListFields())


def _pattern(rules) -> re.Pattern | None:
    """A string rule's RE2 pattern as a Python regex (None when there is none or it does not
    translate); used only to pick fillers that keep a value within the other rules."""
    if not rules.HasField("pattern"):
        return None
    python = re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: f"\\U{int(m.group(1), 16):08x}", rules.pattern)
    try:
        return re.compile(python.replace(r"\z", r"\Z"))
    except re.error:
        return None


def _fits(value: str, rules) -> bool:
    """Whether a string keeps the rules other than lengths (pattern, email, in, affixes)."""
    pattern = _pattern(rules)
    return (
        (pattern is None or pattern.fullmatch(value) is not None)
        and (not rules.email or WHATWG_EMAIL.fullmatch(value) is not None)
        and (not rules.HasField("prefix") or value.startswith(rules.prefix))
        and (not rules.HasField("suffix") or value.endswith(rules.suffix))
        and (not rules.HasField("contains") or rules.contains in value)
        and (not getattr(rules, "in") or value in getattr(rules, "in"))
    )


def _sized(seed: str, rules, target: int, filler: str, measure) -> str:
    """A string of `target` units (code points or bytes, by `measure`) made of the seed and the
    filler, keeping the rules other than lengths when some arrangement does."""
    seed = seed or filler
    unit = measure(filler)
    candidates = []
    local, at, domain = seed.partition("@")
    for head, tail in [(seed, ""), ("", seed), ("", ""), ("", at + domain if at else "")]:
        room = target - measure(head) - measure(tail)
        if room >= 0:
            candidates.append(head + filler * (room // unit) + "a" * (room % unit) + tail)
    if measure(seed) >= target:
        cut = seed
        while measure(cut) > target:
            cut = cut[:-1]
        candidates.append(cut + "a" * (target - measure(cut)))
    return next((c for c in candidates if _fits(c, rules)), candidates[0])


def _chars(value: str) -> int:
    return len(value)


def _bytes(value: str) -> int:
    return len(value.encode())


# ---------------------------------------------------------------------------------------------
# Boundary values, generated from the rules.


def _string_values(rules, seed: str, samples: list, patterns: dict) -> list[tuple[str, object]]:
    values = [("zero value", ""), ("valid value", seed)]
    values += [("sample", s) for s in samples]
    if rules is None:
        # why: a string without rules is opaque (a page token); the server may refuse a value it
        # did not issue, as it answers NOT_FOUND for an unknown id
        return values
    if rules.HasField("pattern"):
        values += [("pattern sample", s) for s in patterns.get(rules.pattern, [])]
    if rules.email:
        values += [("email sample", s) for s in patterns.get(EMAIL_SAMPLES, [])]
    base = seed or "x"
    values += [(f"valid + {s!r}", base + s) for s in PROBE_SUFFIXES]
    values += [(f"blank {s!r}", s) for s in BLANKS] + [("padded with spaces", f" {base} ")]
    lengths = [("min_len", _chars), ("max_len", _chars), ("len", _chars)]
    sizes = [("min_bytes", _bytes), ("max_bytes", _bytes), ("len_bytes", _bytes)]
    for rule, measure in lengths + sizes:
        if not rules.HasField(rule):
            continue
        bound = getattr(rules, rule)
        for target in [n for n in (bound - 1, bound, bound + 1) if n >= 0]:
            for filler in FILLERS if target > 0 else ["a"]:
                value = _sized(seed, rules, target, filler, measure)
                values.append((f"{rule} {bound}: {target} with {filler!r}", value))
    for rule in ["in", "not_in"]:
        values += [(f"{rule} value", v) for v in getattr(rules, rule)]
    if getattr(rules, "in"):
        values.append(("not in", getattr(rules, "in")[0] + "x"))
    if rules.HasField("const"):
        values += [("const", rules.const), ("not const", rules.const + "x")]
    for rule in ["prefix", "suffix", "contains", "not_contains"]:
        if rules.HasField(rule):
            values.append((f"{rule} alone", getattr(rules, rule)))
    return values


def _integer_values(rules, field_type, seed) -> list[tuple[str, object]]:
    kind, low, high = INTEGERS[field_type]
    values = [("zero value", 0), ("valid value", seed), ("-1", -1), ("1", 1), ("largest", high), ("smallest", low)]
    typed = getattr(rules, kind) if rules is not None and rules.HasField(kind) else None
    if typed is not None:
        for rule in ["gt", "gte", "lt", "lte", "const"]:
            if typed.HasField(rule):
                bound = getattr(typed, rule)
                values += [(f"{rule} {bound}: {bound + d}", bound + d) for d in (-1, 0, 1)]
        values += [("in value", v) for v in getattr(typed, "in")] + [("not_in value", v) for v in typed.not_in]
    return [(label, v) for label, v in values if low <= v <= high]


def _enum_values(field, rules, seed) -> list[tuple[str, object]]:
    numbers = [v.number for v in field.enum_type.values]
    values = [("zero value", 0), ("valid value", seed)]
    values += [(f"defined {field.enum_type.values_by_number[n].name}", n) for n in numbers]
    values += [("undefined, above", max(numbers) + 1), ("undefined, -1", -1), ("undefined, 1000", 1000)]
    if rules is not None and rules.HasField("enum"):
        values += [("in value", v) for v in getattr(rules.enum, "in")] + [("not_in value", v) for v in rules.enum.not_in]
    return values


def _timestamp_values(rules) -> list[tuple[str, object]]:
    from google.protobuf.timestamp_pb2 import Timestamp

    def ts(total_nanos: int):
        return Timestamp(seconds=total_nanos // NANOS, nanos=total_nanos % NANOS)

    # why: only normalized times (nanos 0 to 999,999,999): google.protobuf.Timestamp itself
    # says no other value is a time, and protovalidate's bounds compare without checking that
    values = [("epoch", Timestamp()), ("2024-01-01", Timestamp(seconds=1704067200))]
    if rules is not None and rules.HasField("timestamp"):
        for rule in ["gt", "gte", "lt", "lte", "const"]:
            if rules.timestamp.HasField(rule):
                bound = getattr(rules.timestamp, rule)
                total = bound.seconds * NANOS + bound.nanos
                values += [(f"{rule} {bound.ToJsonString()} {d:+d} ns", ts(total + d)) for d in (-1, 0, 1)]
        relative = rules.timestamp.gt_now or rules.timestamp.lt_now or rules.timestamp.HasField("within")
        if relative:
            import time

            # why: made from the clock now and judged on it read again (by protovalidate and the
            # server) a moment later, so each case keeps 10 minutes or more from a bound
            # relative to now
            now, slack, hour, day = time.time_ns(), 600 * NANOS, 3600 * NANOS, 86400 * NANOS
            offsets = [("10 min", slack), ("1 h", hour), ("366 days", 366 * day)]
            if rules.timestamp.HasField("within"):
                within = rules.timestamp.within.seconds * NANOS + rules.timestamp.within.nanos
                around = [("- 1 day", within - day), ("- 10 min", within - slack)]
                around += [("+ 10 min", within + slack), ("+ 1 day", within + day)]
                offsets += [(f"(within {tail})", offset) for tail, offset in around if offset > 0]
            for label, offset in offsets:
                values += [(f"now - {label}", ts(now - offset)), (f"now + {label}", ts(now + offset))]
    return values


def _scalar_values(field, rules, seed, samples, patterns) -> list[tuple[str, object]]:
    """Values of one scalar (a field or a list item) around a valid `seed`."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return _string_values(rules.string if _has_rules(rules) else None, seed, samples, patterns)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_values(field, rules, seed) + [("sample", s) for s in samples]
    if field.type == FieldDescriptor.TYPE_BOOL:
        return [("false", False), ("true", True)]
    if field.type in INTEGERS:
        return _integer_values(rules, field.type, seed) + [("sample", s) for s in samples]
    return [("valid value", seed)] + [("sample", s) for s in samples]


def _item_samples(field, raw: list) -> tuple[list, list]:
    """Samples of a field as whole values and (for a list) as single items, in Python form."""
    whole, items = [], []
    for sample in raw:
        if field.is_repeated and not isinstance(sample, list):
            items.append(_from_json(field, [sample])[0])
        else:
            whole.append(_from_json(field, sample))
    return whole, items


def _from_json(field, value):
    """A proto3 JSON value of the field as the Python value the message takes."""
    holder = message_factory.GetMessageClass(field.containing_type)()
    json_format.ParseDict({field.json_name: value}, holder)
    got = getattr(holder, field.name)
    return list(got) if field.is_repeated else got


def _field_cases(field, base, samples: dict, patterns: dict, prefix: str) -> list[tuple[str, str, object]]:
    """(path, label, value) of every case of one field of `base` (a message); `value` None
    clears the field. Recurses into chatmesh messages."""
    path = prefix + field.name
    rules = _rules(field)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        raise NotImplementedError(f"{path}: a map field in a unary request; generate its cases here")
    whole, items = _item_samples(field, samples.get(path, []))
    current = getattr(base, field.name)
    if field.is_repeated:
        return [(path, label, value) for label, value in _list_values(field, rules, list(current), whole, items, patterns)]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        cases = [(path, "unset", None)] + [(path, "sample", v) for v in whole]
        if field.message_type.full_name == "google.protobuf.Timestamp":
            cases += [(path, label, v) for label, v in _timestamp_values(rules)]
        elif field.message_type.full_name.startswith("chatmesh."):
            for inner in field.message_type.fields:
                cases += _field_cases(inner, current, samples, patterns, path + ".")
        return cases
    values = _scalar_values(field, rules, current, whole, patterns)
    return [(path, label, value) for label, value in values]


def _list_values(field, rules, current: list, whole: list, items: list, patterns: dict) -> list[tuple[str, object]]:
    repeated = rules.repeated if rules is not None and rules.HasField("repeated") else None
    item_rules = repeated.items if repeated is not None and repeated.HasField("items") else None
    opaque = field.type == FieldDescriptor.TYPE_STRING and repeated is None
    if field.type == FieldDescriptor.TYPE_MESSAGE or opaque:
        samples = [("sample", v) for v in whole] + [("sample item", [v]) for v in items]
        return [("no items", []), ("valid items", current)] + samples
    # A valid item: the base's, a sample, or the first generated value the item rules keep.
    seed = "" if field.type == FieldDescriptor.TYPE_STRING else 0
    generated = [v for _, v in _scalar_values(field, item_rules, seed, [], patterns)]
    string_rules = item_rules.string if item_rules is not None and item_rules.HasField("string") else None
    valid_item = next(
        v for v in current + items + generated if v != seed and (string_rules is None or _fits(v, string_rules))
    )
    values = [("no items", []), ("valid items", current or [valid_item])] + [("sample", v) for v in whole]
    if repeated is not None:
        for rule in ["min_items", "max_items"]:
            if repeated.HasField(rule):
                bound = getattr(repeated, rule)
                for count in [bound - 1, bound, bound + 1]:
                    if count >= 0:
                        values.append((f"{rule} {bound}: {count} copies", [valid_item] * count))
                        values.append((f"{rule} {bound}: {count} distinct", _distinct(valid_item, count)))
    max_items = repeated.max_items if repeated is not None and repeated.HasField("max_items") else None
    for label, item in _scalar_values(field, item_rules, valid_item, items, patterns):
        values.append((f"second item: {label}", [valid_item, item] if max_items is None or max_items >= 2 else [item]))
    return values


def _distinct(item, count: int) -> list:
    """`count` different items like `item`: numbers counted up from it, else it numbered."""
    if isinstance(item, int):
        return [item + i for i in range(count)]
    if item.isdigit():
        return [str(int(item) + i) for i in range(count)]
    return [f"{item}{i}" if i else item for i in range(count)]


def _with(base, path: str, value):
    """A copy of `base` with the field at the dotted path set to `value` (None: cleared)."""
    request = type(base)()
    request.CopyFrom(base)
    *outer, name = path.split(".")
    target = request
    for part in outer:
        target = getattr(target, part)
    field = target.DESCRIPTOR.fields_by_name[name]
    if value is None:
        target.ClearField(name)
    elif field.is_repeated:
        target.ClearField(name)
        getattr(target, name).extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(target, name).CopyFrom(value)
    else:
        setattr(target, name, value)
    return request


# ---------------------------------------------------------------------------------------------
# The two verdicts.


def _names(reported: str, path: str) -> bool:
    """Whether a reported field path (subscripts ignored) names the case's field path."""
    reported = re.sub(r"\[[^\]]*\]", "", reported)
    return reported == path or reported.startswith(path + ".") or path.startswith(reported + ".")


def protovalidate_verdict(request, path: str) -> Verdict:
    try:
        violations = protovalidate.collect_violations(request)
    except (protovalidate.CompilationError, protovalidate.EvaluationError) as e:
        return Verdict(False, f"error: {e}")
    said = []
    for violation in violations:
        proto = violation.proto
        field = ".".join(e.field_name for e in proto.field.elements)
        said.append(f"{field}: {proto.rule_id}: {proto.message}")
        if _names(field, path):
            return Verdict(True, f"refused {field} ({proto.rule_id}: {proto.message})")
    return Verdict(False, "accepted" + (f" (but: {'; '.join(said)})" if said else ""))


def _refused_field(err: grpc.RpcError) -> str | None:
    """The field an INVALID_ARGUMENT names: its BadRequest field violation, else the message's
    `field:` prefix."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = RPC["Status"].FromString(value)
            for detail in status.details:
                if detail.type_url.endswith("/google.rpc.BadRequest"):
                    for violation in RPC["BadRequest"].FromString(detail.value).field_violations:
                        return violation.field
    head, sep, _ = (err.details() or "").partition(":")
    return head if sep else None


class Server:
    """Calls the running server by method path, with a real bearer token."""

    def __init__(self, addr: str):
        from chatmesh.user.v1 import user_service_pb2 as pb

        self.pb = pb
        self.channel = grpc.insecure_channel(addr)
        self.password = "correct horse battery"
        self.email = self.new_account()
        self.token = self.login(self.email)
        # why: LogoutAll ends every session of its account, so those calls get an account of their own
        self.throwaway = self.new_account()

    def new_account(self) -> str:
        email = f"contract-{uuid.uuid4().hex[:8]}@example.com"
        new_user = self.pb.CreateUserRequest(email=email, password=self.password, name="Contract")
        self.call("chatmesh.user.v1.UserService", "CreateUser", new_user, token=None)
        return email

    def login(self, email: str) -> str:
        """A new login session's access token."""
        login = self.pb.LoginRequest(email=email, password=self.password)
        answer = self.call("chatmesh.user.v1.UserService", "Login", login, token=None)
        return self.pb.LoginResponse.FromString(answer).tokens.access_token

    def call(self, service: str, method: str, request, token: str | None):
        stub = self.channel.unary_unary(
            f"/{service}/{method}", request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b
        )
        metadata = [("authorization", f"Bearer {token}")] if token else []
        return stub(request, metadata=metadata, timeout=30)

    def verdict(self, service: str, method: str, request, path: str) -> Verdict:
        if method in ACCOUNT_CHANGING:
            token = self.login(self.new_account())
        else:
            token = self.login(self.throwaway) if method in SESSION_ENDING else self.token
        try:
            self.call(service, method, request, token)
        except grpc.RpcError as err:
            code = err.code()
            # why: a limit, an outage or a token refused answer before validation: no verdict
            unanswered = [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE]
            if method not in OPEN:
                unanswered.append(grpc.StatusCode.UNAUTHENTICATED)
            assert code not in unanswered, f"{method}: {code.name} {err.details()}"
            said = f"{code.name}: {err.details()}"
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                field = _refused_field(err)
                if field is not None and _names(field, path):
                    return Verdict(True, f"refused {said}")
                return Verdict(False, f"refused, naming {field!r} ({said})", refused_elsewhere=True)
            return Verdict(False, f"passed ({said})")
        return Verdict(False, "passed (OK)")


# ---------------------------------------------------------------------------------------------
# The test.


def _public_rpcs():
    """(service, method descriptor) of every unary RPC of the public services."""
    pool = symbol_database.Default().pool
    for name in SERVICES:
        service = pool.FindServiceByName(name)
        for method in service.methods:
            if not (method.client_streaming or method.server_streaming):
                yield service, method


def _field_at(message, path: str):
    """The field a dotted path leads to from a message descriptor; None when it leads nowhere."""
    field = None
    for name in path.split("."):
        if message is None or name not in message.fields_by_name:
            return None
        field = message.fields_by_name[name]
        message = field.message_type
    return field


def _same_field_at(one, other, path: str) -> bool:
    """Whether a dotted path leads to the same field from two message descriptors."""
    ours, theirs = _field_at(one, path), _field_at(other, path)
    return ours is not None and theirs is not None and ours.full_name == theirs.full_name


def _also_valid(entry: dict, request_type, methods: dict, calls: "Server") -> tuple[list, list]:
    """The entry's `also_valid` requests as (service, method, request), and the problems with
    them. An item naming another request (`"@request"`) goes to that request's RPC, which must
    be a public one (this test calls no other), and each relation's path must lead there to the
    same field (the nested message both requests carry). Each request must be accepted by
    protovalidate and by the server."""
    bases, problems = [], []
    relations = entry.get("relations", {})
    for i, item in enumerate(entry.get("also_valid", [])):
        at = f"{request_type.full_name}: also_valid[{i}]"
        item = dict(item)
        name = item.pop("@request", request_type.full_name)
        if name not in methods:
            problems.append(f"{at}: {name} is the request of no public RPC (this test calls only those)")
            continue
        service, method = methods[name]
        other_type = symbol_database.Default().pool.FindMessageTypeByName(name)
        unfit = [path for path in relations if not _same_field_at(request_type, other_type, path)]
        if unfit:
            problems.append(f"{at}: the relations' paths {unfit} do not lead to the same fields in {name}")
            continue
        try:
            base = json_format.ParseDict(item, message_factory.GetMessageClass(other_type)())
        except json_format.ParseError as e:
            problems.append(f"{at}: does not parse as {name}: {e}")
            continue
        if violations := protovalidate.collect_violations(base):
            said = [f"{'.'.join(e.field_name for e in v.proto.field.elements)}: {v.proto.message}" for v in violations]
            problems.append(f"{at}: protovalidate refuses it: {said}")
        server_says = calls.verdict(service, method, base, "")
        if server_says.refused_elsewhere:
            problems.append(f"{at}: the server refuses it: {server_says.says}")
        bases.append((service, method, base))
    return bases, problems


def _accepted_elsewhere(calls: "Server", others: list, path: str, value) -> bool:
    """Whether the server takes the value at the field path in one of the `also_valid` requests."""
    for service, method, other in others:
        says = calls.verdict(service, method, _with(other, path, value), path)
        if not (says.refused or says.refused_elsewhere):
            return True
    return False


def _import_services():
    from chatmesh.channel.v1 import channel_service_pb2  # noqa: F401
    from chatmesh.chat.v1 import chat_service_pb2  # noqa: F401
    from chatmesh.dispatcher.v1 import dispatcher_service_pb2  # noqa: F401
    from chatmesh.feed.v1 import feed_service_pb2  # noqa: F401
    from chatmesh.user.v1 import user_service_pb2  # noqa: F401


def _short(value) -> str:
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:12]!r}…{value[-12:]!r} ({len(value)} chars, {len(value.encode())} bytes)"
    if isinstance(value, list) and len(value) > 3:
        return f"[{_short(value[0])}, … ×{len(value)}]"
    if hasattr(value, "ListFields"):
        return f"{type(value).__name__}({str(value).strip() or 'empty'})".replace("\n", " ")
    return repr(value)


def test_the_generated_stubs_carry_the_vendored_rules(stubs):
    from buf.validate import validate_pb2
    from chatmesh.user.v1 import user_service_pb2

    assert pathlib.Path(validate_pb2.__file__).is_relative_to(stubs), validate_pb2.__file__
    assert validate_pb2.DESCRIPTOR in user_service_pb2.DESCRIPTOR.dependencies
    rules = _rules(user_service_pb2.CreateUserRequest.DESCRIPTOR.fields_by_name["name"])
    name = "é" * (rules.string.max_len + 1)
    too_long = user_service_pb2.CreateUserRequest(email="a@b.co", password="correct horse", name=name)
    assert [v.proto.rule_id for v in protovalidate.collect_violations(too_long)] == ["string.max_len"]


def test_protovalidate_and_the_server_agree_on_every_boundary_request(stubs, server):
    _import_services()
    entries, patterns = _load_contracts()
    calls = Server(server)
    methods = {method.input_type.full_name: (service.full_name, method.name) for service, method in _public_rpcs()}
    problems, disagreements = [], []
    cases_per_service, disagreements_per_service, by_relation = {}, {}, {}
    # (rpc, field) of every field with rules, and of those some case of which protovalidate refuses.
    ruled, broken = set(), set()
    for service, method in _public_rpcs():
        rpc = f"{service.name}/{method.name}"
        request_type = method.input_type
        entry = entries.get(request_type.full_name)
        if entry is None:
            problems.append(f"{request_type.full_name}: no entry in tests/contracts/*.json")
            continue
        try:
            base = json_format.ParseDict(entry.get("valid", {}), message_factory.GetMessageClass(request_type)())
        except json_format.ParseError as e:
            problems.append(f"{request_type.full_name}: valid does not parse: {e}")
            continue
        if violations := protovalidate.collect_violations(base):
            said = [f"{'.'.join(e.field_name for e in v.proto.field.elements)}: {v.proto.message}" for v in violations]
            problems.append(f"{request_type.full_name}: protovalidate refuses the valid request: {said}")
        server_says = calls.verdict(service.full_name, method.name, base, "")
        if server_says.refused_elsewhere:
            problems.append(f"{rpc}: the server refuses the valid request: {server_says.says}")
        others, trouble = _also_valid(entry, request_type, methods, calls)
        problems += trouble
        relations = entry.get("relations", {})
        cases, seen = [], set()
        for field in request_type.fields:
            if _has_rules(_rules(field)):
                ruled.add((rpc, field.name))
            for path, label, value in _field_cases(field, base, entry.get("samples", {}), patterns, ""):
                request = _with(base, path, value)
                key = (path, request.SerializeToString(deterministic=True))
                if key not in seen:
                    seen.add(key)
                    cases.append(Case(path, label, value, request))
        cases_per_service[service.name] = cases_per_service.get(service.name, 0) + len(cases)
        for case in cases:
            ours = protovalidate_verdict(case.request, case.path)
            theirs = calls.verdict(service.full_name, method.name, case.request, case.path)
            if ours.refused:
                broken.add((rpc, case.path.split(".")[0]))
            if ours.refused != theirs.refused or theirs.refused_elsewhere:
                # why: a relation to other fields is stated in the field's comment, not annotated
                # (docs/contracts.md); the entry names the fields whose values such a relation
                # refuses, and gives requests where it does not
                related = not ours.refused and case.path in relations
                if related and _accepted_elsewhere(calls, others, case.path, case.value):
                    by_relation[service.name] = by_relation.get(service.name, 0) + 1
                    continue
                hint = "\n    (a stated relation excuses it only where a request of also_valid takes it)"
                hint = hint if related else ""
                disagreements_per_service[service.name] = disagreements_per_service.get(service.name, 0) + 1
                disagreements.append(
                    f"{rpc} {case.path} [{case.label}] = {_short(case.value)}\n"
                    f"    protovalidate: {ours.says}\n    server:        {theirs.says}{hint}"
                )
    # why: a field whose every case protovalidate accepts had its rules tested by nothing
    problems += [f"{rpc} {field}: no generated case breaks its rules" for rpc, field in sorted(ruled - broken)]

    total = sum(cases_per_service.values())
    summary = "\n".join(
        f"  {service}: {n} cases, {disagreements_per_service.get(service, 0)} disagreements, "
        f"{by_relation.get(service, 0)} refused by a stated relation"
        for service, n in cases_per_service.items()
    )
    print(f"\n{total} cases over the public services:\n{summary}")
    if problems or disagreements:
        heading = f"{len(disagreements)} disagreements, {len(problems)} problems ({total} cases):\n{summary}"
        pytest.fail("\n".join([heading, *problems, *disagreements]), pytrace=False)
    assert total > MIN_CASES, f"only {total} cases (floor {MIN_CASES})"
