"""JSON Schemas for each record type (draft 2020-12), and checking records against them."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memkit.records import RECORD_TYPES, Record
from memkit.timeutil import parse_time

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

_TIME_FIELDS = ("created", "updated", "expires", "valid_from", "valid_to", "approved", "rejected")


def schema_dir() -> Path:
    """Where the schema files are: inside the installed package, or the checkout's schemas/."""
    package_copy = Path(__file__).parent / "schemas"
    if (package_copy / "common.schema.json").is_file():
        return package_copy
    return Path(__file__).resolve().parent.parent / "schemas"


def load_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((schema_dir() / f"{name}.schema.json").read_text("utf-8"))
    return data


@functools.cache
def _validators() -> dict[str, Validator]:
    # jsonschema takes ~100 ms to import: only pay for it when something is validated.
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = {name: load_schema(name) for name in ("common", *RECORD_TYPES)}
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    return {name: Draft202012Validator(schemas[name], registry=registry) for name in RECORD_TYPES}


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    message = str(error.message)
    instance = error.instance
    if isinstance(instance, bool) and error.validator == "type":
        message += " (YAML reads yes/no/on/off/true/false as booleans: quote the value)"
    if instance is None and error.validator == "type":
        message += " (YAML reads null/~/an empty value as nothing: quote it or fill it in)"
    return f"{where}: {message}" if where else message


def problems(record: Record) -> list[tuple[int, str]]:
    """Every schema problem of a record as (file line, message); empty when it is valid."""
    validator = _validators().get(record.type)
    if validator is None:
        return [(record.line_of("type"), f"unknown type {record.type!r}")]
    found: list[tuple[int, str]] = []
    for error in sorted(validator.iter_errors(record.meta), key=lambda e: list(e.absolute_path)):
        key = str(error.absolute_path[0]) if error.absolute_path else ""
        found.append((record.line_of(key) if key else record.line_offset, _describe(error)))
    for key in _TIME_FIELDS:
        value = record.meta.get(key)
        if isinstance(value, str) and parse_time(value) is None:
            found.append((record.line_of(key), f"{key}: {value!r} is not a valid date and time"))
    return found
