"""Command-line options shared by several subcommands, and the workspace configuration they give."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.config import AppConfig, config_from_environment
from indexer.errors import InvalidArgument
from indexer.records import CollectionSpec
from indexer.spec import MODEL_DEFAULTS_FILE, enum_type, example, field_info, is_sequence, spec_fields

if TYPE_CHECKING:
    from indexer.workspace import Workspace


def open_workspace(config: AppConfig) -> Workspace:
    """The store, catalog and ingestor of ``config``. Imported when a command runs, never when the
    parser is built: the workspace brings torch and transformers (seconds), and ``--help`` must
    answer at once."""
    from indexer.workspace import Workspace

    return Workspace.open(config)


def add_store_options(parser: argparse.ArgumentParser, *, listed: bool = True) -> None:
    """The store and encoder flags; ``listed`` False accepts them without listing them in --help
    (a client command, whose server owns the store, takes them so that one flag set fits all)."""

    def say(text: str) -> str:
        return text if listed else argparse.SUPPRESS

    parser.add_argument("--data-dir", type=Path, help=say("folder of the SQLite file and snapshots"))
    parser.add_argument(
        "--db", help=say("SQLAlchemy URL of a shared database (e.g. postgresql+psycopg://...)")
    )
    parser.add_argument("--device", help=say("encoder device: auto (default), cpu, cuda, cuda:1 ..."))
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "int8", "bfloat16", "float16"],
        help=say(
            "encoder precision: auto (default: bf16 on GPU; on CPU fp32, and int8 for bulk "
            "ingestion where the model keeps its vectors), float32 (exact), int8 (CPU) ..."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


def add_collection_spec_options(parser: argparse.ArgumentParser) -> None:
    """One option per declared spec field (``indexer.spec``): ``--max-length`` for ``max_length``.

    Options left out stay unset, so the spec's own defaults apply (``spec_from_args``).
    """
    group = parser.add_argument_group("new collection (used only when the collection is created)")
    for spec_field in spec_fields():
        group.add_argument(_flag(spec_field), dest=_dest(spec_field), **_option(spec_field))
    # Not a spec field: a fact of the space (Collection.dimension), given only for --model none.
    group.add_argument(
        "--dimension", type=int, help="vector length: required with --model none, else checked against the model"
    )


def spec_from_args(args: argparse.Namespace) -> CollectionSpec:
    """The spec the command line asks for; fields without an option given keep their defaults."""
    values = given_spec_values(args)
    for spec_field in spec_fields():
        default = field_info(spec_field).cli_default
        if spec_field.name not in values and default is not None:
            values[spec_field.name] = _parsed(spec_field, default)
    return CollectionSpec(**values)


def given_spec_values(args: argparse.Namespace) -> dict[str, Any]:
    """Spec field name -> value, for the options the command line gave (``--layers 0,-1``: (0, -1))."""
    values: dict[str, Any] = {}
    for spec_field in spec_fields():
        value = getattr(args, _dest(spec_field), None)
        if value is not None:
            values[spec_field.name] = _parsed(spec_field, value)
    return values


def flag_of(name: str) -> str:
    """The option of spec field ``name``: ``--max-length`` for ``max_length``."""
    return "--" + name.replace("_", "-")


def _parsed(spec_field: dataclasses.Field[Any], value: Any) -> Any:
    return parse_integers(value, _flag(spec_field)) if is_sequence(spec_field) else value


def parse_integers(raw: str, flag: str) -> tuple[int, ...]:
    """``"0,-1"`` -> ``(0, -1)``, or ``InvalidArgument`` naming the flag."""
    field = flag.removeprefix("--").replace("-", "_")
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise InvalidArgument(f"{flag} {raw!r} must be comma-separated integers", field=field) from exc
    if not values:
        raise InvalidArgument(f"{flag} must name at least one value", field=field)
    return values


def _flag(spec_field: dataclasses.Field[Any]) -> str:
    return flag_of(spec_field.name)


def _dest(spec_field: dataclasses.Field[Any]) -> str:
    return f"spec_{spec_field.name}"


def _option(spec_field: dataclasses.Field[Any]) -> dict[str, Any]:
    """argparse keywords for one field; every default is None (= not given)."""
    option: dict[str, Any] = {"default": None, "help": _help(spec_field)}
    members = enum_type(spec_field)
    if members is not None:
        option["choices"] = [member.value for member in members]
    elif isinstance(example(spec_field), bool):
        option["action"] = argparse.BooleanOptionalAction
    elif isinstance(example(spec_field), int):
        option["type"] = int
    elif isinstance(example(spec_field), float):
        option["type"] = float
    return option


def _help(spec_field: dataclasses.Field[Any]) -> str:
    info = field_info(spec_field)
    if info.derive is not None:
        return info.help  # says how its default is derived
    value = example(spec_field)
    shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    if info.from_model:
        return f"{info.help} (default: the model folder's {MODEL_DEFAULTS_FILE}, else {shown})"
    return f"{info.help} (default: {shown})"


def app_config(args: argparse.Namespace) -> AppConfig:
    """Environment and defaults, overridden by the flags given on the command line."""
    config = config_from_environment()
    store = config.store
    if getattr(args, "data_dir", None) is not None:
        store = replace(store, data_dir=args.data_dir)
    if getattr(args, "db", None):
        store = replace(store, db_url=args.db)
    encoder = config.encoder
    if getattr(args, "device", None):
        encoder = replace(encoder, device=replace(encoder.device, device=args.device))
    if getattr(args, "dtype", None):
        encoder = replace(encoder, device=replace(encoder.device, dtype=args.dtype))
    server = config.server
    if getattr(args, "port", None) is not None:
        server = replace(server, port=args.port)
    if getattr(args, "host", None):
        server = replace(server, host=args.host)
    return replace(config, store=store, encoder=encoder, server=server)
