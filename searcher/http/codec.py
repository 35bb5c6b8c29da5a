"""The proto3 JSON mapping of ``albatross.v1`` messages, with errors that name the field.

Request bodies are parsed by ``google.protobuf.json_format`` into the generated messages, so every
field the contract gains is accepted (and every misspelt one refused) without code here. Names may
be lowerCamelCase or the proto's snake_case; answers use lowerCamelCase, print fields at their zero
value (a hit at ``start`` 0 still says so) and, as the mapping asks, 64-bit integers as strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from indexer.errors import InvalidArgument

M = TypeVar("M", bound=Message)

_NESTED = re.compile(r"Failed to parse (\S+) field: ")
_UNKNOWN = re.compile(r'has no field named "([^"]+)" at "([^"]+)"')
_AVAILABLE = re.compile(r"Available Fields\(except extensions\): \"\[(.*)\]\"")
_TRAILING_AT = re.compile(r"\s+at \S+\.?$")


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def to_json(message: Message) -> str:
    return json.dumps(to_dict(message), ensure_ascii=False, separators=(",", ":"))


def parse_object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or ``InvalidArgument`` saying where it stopped being one."""
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{what} is not UTF-8 (byte {exc.start})", field=what) from exc
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", field=what
        ) from exc
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object, got {type(value).__name__}", field=what)
    return value


def from_dict(values: Mapping[str, Any], message: M) -> M:
    """Fill ``message`` from its proto3 JSON form; ``InvalidArgument`` names the offending field."""
    try:
        json_format.ParseDict(dict(values), message)
    except json_format.ParseError as exc:
        raise _invalid(str(exc)) from exc
    return message


def _invalid(text: str) -> InvalidArgument:
    """A ``json_format`` message (nested "Failed to parse X field: " prefixes) -> field + reason."""
    path = _NESTED.findall(text)
    reason = _NESTED.sub("", text).strip()
    unknown = _UNKNOWN.search(reason)
    if unknown is not None:
        name, where = unknown.groups()
        field = ".".join([*where.split(".")[1:], name])
        available = _AVAILABLE.search(reason)
        known = available.group(1).replace("'", "") if available else ""
        return InvalidArgument(f"{field}: unknown field (known here: {known})", field=field)
    field = ".".join(path) or "body"
    reason = _TRAILING_AT.sub("", reason.splitlines()[0]).rstrip(".")
    return InvalidArgument(f"{field}: {reason}", field=field)
