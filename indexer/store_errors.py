"""What goes wrong reaching a database, as one typed error naming the URL or the path.

``Store`` parses its URL with ``database_url``, builds its engine inside ``driver_errors`` and runs
every connection inside ``connection_errors``; what SQLAlchemy, the driver or the file system
raises becomes one of our errors (``indexer.errors`` says what each becomes):

- a string that is no URL, a dialect SQLAlchemy does not know, a driver that is not installed, an
  SQLite file in a folder that does not exist, a data directory that is a file: ``InvalidArgument``
  (the operator named something unusable);
- no server listening, a refused login, a read-only or forbidden file or folder:
  ``StoreUnavailable`` (what was named exists but cannot be used now);
- a lock held past the busy timeout: ``StoreBusy``.

Passwords never appear in a message (``render_as_string(hide_password=True)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from indexer.errors import InvalidArgument, StoreBusy, StoreUnavailable

URL_EXAMPLES = "sqlite:////path/to/albatross.db or postgresql+psycopg://user@host:5432/dbname"
SHIPPED_DRIVERS = "sqlite and postgresql+psycopg"


def database_url(raw: str) -> URL:
    """``raw`` parsed, or InvalidArgument naming it."""
    try:
        return make_url(raw)
    except ArgumentError as exc:
        raise InvalidArgument(f"database URL {raw!r} is not a URL (e.g. {URL_EXAMPLES})", field="db") from exc


def shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


@contextmanager
def driver_errors(url: URL) -> Iterator[None]:
    """Around ``create_engine``: an unknown dialect or a missing driver module is a bad URL."""
    try:
        yield
    except NoSuchModuleError as exc:
        raise InvalidArgument(
            f"database URL {shown(url)}: SQLAlchemy has no dialect {url.drivername!r} "
            f"(Albatross is tested with {SHIPPED_DRIVERS})",
            field="db",
        ) from exc
    except ImportError as exc:
        raise InvalidArgument(
            f"database URL {shown(url)}: its driver {exc.name or url.drivername!r} is not installed "
            f"(Albatross ships {SHIPPED_DRIVERS})",
            field="db",
        ) from exc


def data_dir_error(folder: Path, exc: OSError) -> InvalidArgument | StoreUnavailable:
    """The error for a data directory that could not be created."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return InvalidArgument(
            f"data directory {folder}: a file is in the way, not a folder", field="data_dir"
        )
    return StoreUnavailable(f"cannot create the data directory {folder}: {exc.strerror or exc}")


@contextmanager
def connection_errors(url: URL, busy_timeout_s: float) -> Iterator[None]:
    """Around connecting and every transaction: OperationalError -> one of our errors."""
    try:
        yield
    except OperationalError as exc:
        raise _operational(url, busy_timeout_s, exc) from exc


def _operational(url: URL, busy_timeout_s: float, exc: OperationalError) -> Exception:
    message = str(exc.orig).strip()
    lowered = message.lower()
    if url.get_backend_name() == "sqlite":
        return _sqlite_error(url, busy_timeout_s, lowered) or exc
    if getattr(exc.orig, "sqlstate", None) == "55P03":  # PostgreSQL's lock_not_available
        return StoreBusy(
            f"PostgreSQL database {url.database}: a row lock stayed held for {busy_timeout_s:g}s: "
            "another writer is working on this collection. Retry later, or raise the busy timeout."
        )
    first_line = message.splitlines()[0] if message else type(exc.orig).__name__
    return StoreUnavailable(f"cannot reach the database {shown(url)}: {first_line}")


def sqlite_path(url: URL) -> Path:
    """The file of an SQLite URL, also in its ``file:PATH?mode=ro&uri=true`` form."""
    database = url.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database)


def _sqlite_error(url: URL, busy_timeout_s: float, lowered: str) -> Exception | None:
    path = sqlite_path(url)
    if "database is locked" in lowered or "database table is locked" in lowered:
        return StoreBusy(
            f"the SQLite database {path} stayed locked for {busy_timeout_s:g}s: another process is "
            "writing to it. Retry later, or raise the busy timeout."
        )
    if "readonly database" in lowered:
        return StoreUnavailable(
            f"the SQLite database {path} is read-only (the file's or its folder's permissions, or a "
            "read-only mount)"
        )
    if "unable to open database file" in lowered:
        folder = path.parent
        if not folder.is_dir():
            return InvalidArgument(f"SQLite database {path}: folder {folder} does not exist", field="db")
        return StoreUnavailable(
            f"cannot open the SQLite database {path}: the file or its folder {folder} is not writable"
        )
    if "disk i/o error" in lowered or "database or disk is full" in lowered:
        return StoreUnavailable(f"the SQLite database {path}: {lowered}")
    return None
