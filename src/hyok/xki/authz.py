"""Secondary authorization of XKS requests with Cedar policies.

A key store with ``cedar_policy_file`` set runs every GetKeyMetadata, Encrypt
and Decrypt request through a :class:`CedarAuthorizer` before the backend is
called. GetHealthStatus is never authorized here, because the XKS proxy API v1
excludes it from secondary authorization.

Each request becomes one Cedar request::

    principal  Xks::Principal::"<awsPrincipalArn>"
    action     Xks::Action::"GetKeyMetadata" | "Encrypt" | "Decrypt"
    resource   Xks::Key::"<externalKeyId>"
    context    every name in CONTEXT_FIELDS, each a String

A metadata field that the request does not carry is the empty string, so a
policy never needs a ``has`` check. docs/xki-authorization.md explains why, and
gives example policies.

Decisions deny by default, and any policy evaluation error denies the request.
This module logs nothing: the caller logs the returned :class:`AuthzDecision`.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cedarpy

from hyok.common.errors import ConfigError

__all__ = [
    "AUTHORIZED_OPERATIONS",
    "CEDAR_SCHEMA",
    "CONTEXT_FIELDS",
    "DEFAULT_CACHE_SIZE",
    "MAX_CACHED_KEY_CHARS",
    "METADATA_FIELDS",
    "AuthzDecision",
    "CedarAuthorizer",
]

AUTHORIZED_OPERATIONS: Final = frozenset({"GetKeyMetadata", "Encrypt", "Decrypt"})

# requestMetadata fields that policies can read, by their wire names.
METADATA_FIELDS: Final = (
    "awsPrincipalArn",
    "kmsOperation",
    "kmsRequestId",
    "kmsKeyArn",
    "kmsViaService",
    "awsSourceVpc",
    "awsSourceVpce",
)

# The context record: the metadata fields, plus the key ID and the key store
# name. The principal ARN and key ID also appear here as strings because Cedar
# cannot read an entity's ID as a string, so `like` patterns need these copies.
CONTEXT_FIELDS: Final = (*METADATA_FIELDS, "externalKeyId", "keyStore")

CEDAR_SCHEMA: Final = """\
namespace Xks {
  entity Principal;
  entity Key;

  type RequestContext = {
    awsPrincipalArn: String,
    kmsOperation: String,
    kmsRequestId: String,
    kmsKeyArn: String,
    kmsViaService: String,
    awsSourceVpc: String,
    awsSourceVpce: String,
    externalKeyId: String,
    keyStore: String,
  };

  action "GetKeyMetadata", "Encrypt", "Decrypt" appliesTo {
    principal: [Principal],
    resource: [Key],
    context: RequestContext,
  };
}
"""

DEFAULT_CACHE_SIZE: Final = 1024
# Typical cache keys are a few hundred characters. Longer ones are evaluated
# but not cached, which bounds a full cache of DEFAULT_CACHE_SIZE entries to an
# estimated 20 MB even when every character takes 4 bytes (17 MB measured with
# tracemalloc for keys of 3,559 such characters).
MAX_CACHED_KEY_CHARS: Final = 4096

_POSITIONAL_ID = re.compile(r"policy(\d+)")
_VALIDATION_PREFIX = re.compile(r"for policy `([^`]*)`, ")
_EVALUATION_ERROR = re.compile(r"error while evaluating policy `([^`]*)`: ")


@dataclass(frozen=True, slots=True)
class AuthzDecision:
    """The outcome of one authorization request, for the caller to act on and log."""

    allowed: bool
    # The determining policies: the permits that allowed, the forbids that
    # denied, or the policies whose evaluation failed. Empty when no policy matched.
    policy_ids: tuple[str, ...]
    # One line for the log, such as "denied by policy deny-reencrypt".
    reason: str
    # Policy evaluation errors. Any error denies the request.
    errors: tuple[str, ...] = ()


class CedarAuthorizer:
    """Cedar policies of one key store, checked against the hyok entity model at load time.

    Create one with :meth:`from_file` or :meth:`from_text`. An instance is
    immutable apart from its decision cache and can be shared between threads.

    Example::

        authorizer = CedarAuthorizer.from_text(
            '@id("ebs") permit(principal, action, resource)'
            ' when { context.kmsViaService == "ebs" };',
            source="example",
        )
        decision = authorizer.authorize(
            operation="Encrypt", key_id="k1", key_store="team-a",
            metadata={"awsPrincipalArn": "arn:aws:iam::111122223333:role/App",
                      "kmsOperation": "Encrypt", "kmsRequestId": "r-1",
                      "kmsViaService": "ebs"},
        )
        assert decision.allowed and decision.policy_ids == ("ebs",)
    """

    def __init__(
        self,
        *,
        policies: cedarpy.PolicySet,
        policy_ids: Mapping[str, str],
        cache_fields: tuple[str, ...],
        source: str,
        cache_size: int,
    ) -> None:
        # Callers use from_text or from_file, which validate the arguments
        # that this constructor accepts unchecked.
        self._policies = policies
        self._entities = cedarpy.Entities.from_json_str("[]")
        self._policy_ids = dict(policy_ids)
        self._order = {cedar_id: index for index, cedar_id in enumerate(self._policy_ids)}
        self._cache_fields = cache_fields
        self._cache = _DecisionCache(cache_size) if cache_size > 0 else None
        self.source = source

    @classmethod
    def from_file(cls, path: Path, *, cache_size: int = DEFAULT_CACHE_SIZE) -> CedarAuthorizer:
        """Load and validate a UTF-8 Cedar policy file, or raise ConfigError naming the file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"Cedar policy file {path} does not exist") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"Cedar policy file {path} is not valid UTF-8: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"Cedar policy file {path} cannot be read: {exc}") from None
        return cls.from_text(text, source=str(path), cache_size=cache_size)

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        source: str = "<policy text>",
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> CedarAuthorizer:
        """Parse and validate Cedar policy text, or raise ConfigError naming ``source``.

        The text must parse, contain at least one policy and no templates, give
        each policy a distinct id, and pass Cedar's strict validation against
        :data:`CEDAR_SCHEMA`. ``cache_size`` bounds the decision cache, and 0
        turns it off.
        """
        if cache_size < 0:
            raise ValueError(f"cache_size must be 0 or more, not {cache_size}")
        starts = _statement_lines(text)
        try:
            policies = cedarpy.PolicySet.from_str(text)
        except ValueError as exc:
            raise ConfigError(_describe_parse_error(text, starts, source, str(exc))) from None

        document = json.loads(cedarpy.policies_to_json_str(text))
        count = len(document.get("staticPolicies") or {}) + len(document.get("templates") or {})
        if len(starts) != count:
            # Cedar assigns policyN in statement order, so lines are known only
            # when the statement count matches.
            starts = []
        policy_ids = _policy_ids(document, starts, source)

        result = cedarpy.validate_policies(text, CEDAR_SCHEMA)
        if not result.validation_passed:
            problems = _describe_validation_errors(result.errors, policy_ids, starts)
            raise ConfigError(
                f"Cedar policies in {source} do not match the hyok entity model "
                f"(see docs/xki-authorization.md): {problems}"
            )

        # The cache key always contains the principal ARN and the key ID, so
        # only the other context fields are looked up.
        names = set(_strings(document)) - {"awsPrincipalArn", "externalKeyId"}
        cache_fields = tuple(field for field in CONTEXT_FIELDS if field in names)
        return cls(
            policies=policies,
            policy_ids=policy_ids,
            cache_fields=cache_fields,
            source=source,
            cache_size=cache_size,
        )

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """Policy ids in file order: each ``@id`` annotation, else Cedar's ``policyN``."""
        return tuple(self._policy_ids.values())

    def authorize(
        self,
        *,
        operation: str,
        key_id: str,
        key_store: str,
        metadata: Mapping[str, str],
    ) -> AuthzDecision:
        """Decide whether the policies permit one XKS request.

        ``operation`` is the XKS operation name (one of AUTHORIZED_OPERATIONS)
        and ``metadata`` the request's ``requestMetadata``. Fields other than
        METADATA_FIELDS are ignored, and absent ones become the empty string.
        Raises ValueError for any other operation, GetHealthStatus included.
        """
        if operation not in AUTHORIZED_OPERATIONS:
            raise ValueError(
                f"operation {operation!r} is not subject to authorization; use one of "
                f"{', '.join(sorted(AUTHORIZED_OPERATIONS))} (GetHealthStatus is never authorized)"
            )
        for field in METADATA_FIELDS:
            if not isinstance(metadata.get(field, ""), str):
                return _deny(f"denied because requestMetadata.{field} is not a string")
        principal = metadata.get("awsPrincipalArn", "")
        if not principal:
            return _deny("denied because requestMetadata.awsPrincipalArn is missing")

        cache = self._cache
        cache_key: tuple[str, ...] = ()
        if cache is not None:
            cache_key = self._cache_key(operation, key_id, key_store, metadata)
            if sum(map(len, cache_key)) > MAX_CACHED_KEY_CHARS:
                cache = None
            else:
                cached = cache.get(cache_key)
                if cached is not None:
                    return cached

        decision = self._evaluate(operation, key_id, key_store, metadata)
        if cache is not None:
            cache.put(cache_key, decision)
        return decision

    def _cache_key(
        self, operation: str, key_id: str, key_store: str, metadata: Mapping[str, str]
    ) -> tuple[str, ...]:
        # A Cedar policy can observe a context attribute only through an
        # expression that names it as a literal (`context.x`, `context["x"]`,
        # `context has x`, or a record literal compared with `context`), and
        # the entities carry no attributes. So a field whose name is not among
        # the strings of the parsed policies cannot change a decision, and
        # leaving it out of the key lets requests that differ only in, say,
        # kmsRequestId share a cache entry.
        key = [operation, key_id, metadata.get("awsPrincipalArn", "")]
        for field in self._cache_fields:
            key.append(key_store if field == "keyStore" else metadata.get(field, ""))
        return tuple(key)

    def _evaluate(
        self, operation: str, key_id: str, key_store: str, metadata: Mapping[str, str]
    ) -> AuthzDecision:
        context = {field: metadata.get(field, "") for field in METADATA_FIELDS}
        context["externalKeyId"] = key_id
        context["keyStore"] = key_store
        # The dict form of entity UIDs takes any string as an ID, so no value
        # from the request is ever spliced into Cedar syntax.
        request = {
            "principal": {"type": "Xks::Principal", "id": context["awsPrincipalArn"]},
            "action": {"type": "Xks::Action", "id": operation},
            "resource": {"type": "Xks::Key", "id": key_id},
            "context": context,
        }
        try:
            result = cedarpy.is_authorized(request, self._policies, self._entities)
        except ValueError as exc:
            # A lone surrogate from a JSON escape such as "\ud800" has no UTF-8
            # form, and cedarpy raises UnicodeEncodeError, a ValueError, for it.
            return _deny(
                "denied because the authorization request could not be built",
                errors=(str(exc),),
            )

        diagnostics = result.diagnostics
        if diagnostics.errors:
            return self._deny_on_errors(diagnostics.errors)
        determining = self._reported_ids(diagnostics.reasons)
        if result.allowed:
            return AuthzDecision(True, determining, f"allowed by {_name_policies(determining)}")
        if determining:
            return _deny(f"denied by {_name_policies(determining)}", policy_ids=determining)
        return _deny("no permit policy matched")

    def _deny_on_errors(self, errors: list[str]) -> AuthzDecision:
        # Cedar skips a policy whose evaluation fails and decides with the
        # rest, so a failing forbid would let the request through. hyok denies
        # instead, whatever the other policies decide.
        failed: list[str] = []
        messages: list[str] = []
        for error in errors:
            match = _EVALUATION_ERROR.match(error)
            if match is None:
                messages.append(error)
                continue
            failed.append(match.group(1))
            label = self._policy_ids.get(match.group(1), match.group(1))
            messages.append(f"policy {label}: {error[match.end():]}")
        policy_ids = self._reported_ids(failed)
        if policy_ids:
            reason = f"denied because evaluation of {_name_policies(policy_ids)} failed"
        else:
            reason = "denied because the authorization request could not be evaluated"
        return _deny(reason, policy_ids=policy_ids, errors=tuple(messages))

    def _reported_ids(self, cedar_ids: list[str]) -> tuple[str, ...]:
        # Cedar lists determining policies in no fixed order. Sorting them in
        # file order keeps log lines stable.
        last = len(self._order)
        ordered = sorted(set(cedar_ids), key=lambda cedar_id: self._order.get(cedar_id, last))
        return tuple(self._policy_ids.get(cedar_id, cedar_id) for cedar_id in ordered)


class _DecisionCache:
    """A least-recently-used map of decisions with a maximum size, safe to share between threads."""

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._entries: OrderedDict[tuple[str, ...], AuthzDecision] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> AuthzDecision | None:
        with self._lock:
            decision = self._entries.get(key)
            if decision is not None:
                self._entries.move_to_end(key)
            return decision

    def put(self, key: tuple[str, ...], decision: AuthzDecision) -> None:
        with self._lock:
            self._entries[key] = decision
            self._entries.move_to_end(key)
            if len(self._entries) > self._max_size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _deny(
    reason: str, *, policy_ids: tuple[str, ...] = (), errors: tuple[str, ...] = ()
) -> AuthzDecision:
    return AuthzDecision(False, policy_ids, reason, errors)


def _name_policies(policy_ids: tuple[str, ...]) -> str:
    noun = "policy" if len(policy_ids) == 1 else "policies"
    return f"{noun} {', '.join(policy_ids)}"


# Loading -------------------------------------------------------------------


def _statement_lines(text: str) -> list[int]:
    """Return the line where each policy statement starts, annotations included.

    A statement ends at a ';' outside string literals and '//' comments, which
    is the only place Cedar policy syntax has one. Text after the last ';' that
    is not blank or a comment counts as an unterminated statement.
    """
    starts: list[int] = []
    line = 1
    start: int | None = None
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\n":
            line += 1
        elif char == "/" and text.startswith("//", index):
            end = text.find("\n", index)
            index = length if end < 0 else end
            continue
        elif char.isspace():
            pass
        else:
            if start is None:
                start = line
            if char == '"':
                index, line = _skip_string(text, index + 1, line)
                continue
            if char == ";":
                starts.append(start)
                start = None
        index += 1
    if start is not None:
        starts.append(start)
    return starts


def _skip_string(text: str, index: int, line: int) -> tuple[int, int]:
    # Returns the index after the closing quote, or the end of an unterminated literal.
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "\n":
            line += 1
        index += 1
        if char == '"':
            break
    return index, line


def _describe_parse_error(text: str, starts: list[int], source: str, message: str) -> str:
    # NOTE: cedarpy 4.12 reports parse errors without a source position, so
    # the position given is the first line of the first statement that fails
    # to parse on its own.
    line = _first_unparsable_line(text, starts)
    where = f" in the policy that starts at line {line}" if line is not None else ""
    return f"invalid Cedar policy in {source}{where}: {message}"


def _first_unparsable_line(text: str, starts: list[int]) -> int | None:
    for line, statement in _statement_texts(text, starts):
        try:
            cedarpy.PolicySet.from_str(statement)
        except ValueError:
            return line
    return None


def _statement_texts(text: str, starts: list[int]) -> Iterator[tuple[int, str]]:
    """Yield each start line with the text from that line to the next start line.

    Statements that start on the same line stay together, which only blurs the
    position.
    """
    lines = text.splitlines(keepends=True)
    bounds = sorted(set(starts))
    for number, first in enumerate(bounds):
        last = bounds[number + 1] - 1 if number + 1 < len(bounds) else len(lines)
        yield first, "".join(lines[first - 1 : last])


def _policy_ids(document: dict[str, Any], starts: list[int], source: str) -> dict[str, str]:
    """Map Cedar's positional ids to the ids hyok reports, or raise ConfigError for a bad set."""
    templates = document.get("templates") or {}
    if templates:
        names = ", ".join(sorted(templates))
        raise ConfigError(
            f"Cedar policies in {source} contain templates ({names}); hyok links no templates, "
            "so replace each ?principal or ?resource slot with a concrete entity"
        )
    static: dict[str, Any] = document.get("staticPolicies") or {}
    if not static:
        raise ConfigError(
            f"Cedar policy file {source} contains no policies; every request would be denied. "
            "Write 'forbid(principal, action, resource);' if that is intended"
        )

    def position(cedar_id: str) -> int:
        match = _POSITIONAL_ID.fullmatch(cedar_id)
        return int(match.group(1)) if match else len(static)

    reported: dict[str, str] = {}
    first_use: dict[str, str] = {}
    for cedar_id in sorted(static, key=position):
        annotations = static[cedar_id].get("annotations") or {}
        # A bare @id has the value null in Cedar's JSON form.
        label = annotations.get("id", cedar_id)
        if not label:
            raise ConfigError(
                f"Cedar policy{_where(cedar_id, starts)} in {source} has an empty @id; "
                'write @id("name")'
            )
        if label in first_use:
            raise ConfigError(
                f"policy id {label!r} is used by more than one policy in {source} "
                f"({first_use[label]} and {_describe_position(cedar_id, starts)}); "
                "give each policy a distinct @id"
            )
        first_use[label] = _describe_position(cedar_id, starts)
        reported[cedar_id] = label
    return reported


def _describe_position(cedar_id: str, starts: list[int]) -> str:
    where = _where(cedar_id, starts).strip()
    return where or f"Cedar id {cedar_id}"


def _where(cedar_id: str, starts: list[int]) -> str:
    match = _POSITIONAL_ID.fullmatch(cedar_id)
    if match is None or int(match.group(1)) >= len(starts):
        return ""
    return f" at line {starts[int(match.group(1))]}"


def _describe_validation_errors(
    errors: list[cedarpy.ValidationError], policy_ids: Mapping[str, str], starts: list[int]
) -> str:
    messages: list[str] = []
    for error in errors:
        text = error.error
        match = _VALIDATION_PREFIX.match(text)
        cedar_id = match.group(1) if match else error.policy_id
        if match:
            text = text[match.end() :]
        if cedar_id:
            label = policy_ids.get(cedar_id, cedar_id)
            text = f"policy {label}{_where(cedar_id, starts)}: {text}"
        if text not in messages:
            messages.append(text)
    return "; ".join(messages)


def _strings(value: Any) -> Iterator[str]:
    """Yield every string in a JSON document, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
