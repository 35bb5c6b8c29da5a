"""A real, throwaway PostgreSQL server for the tests (no mocks, no docker).

``start_postgres(folder)`` runs ``initdb`` into ``folder``, starts the server on a free loopback
port with its unix socket in ``folder``, and returns a handle whose ``new_database()`` gives each
test a fresh database as a SQLAlchemy URL. PostgreSQL refuses to run as root, so when the tests run
as root the server runs as the ``postgres`` user (``runuser``) in a folder it owns.

Missing binaries are a failure with a message saying what to install, never a silent skip: CI
installs them, and a store battery that quietly ran on SQLite only would prove nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

USER = "albatross"
SERVER_SETTINGS = (
    # Throwaway data: durability off makes CREATE DATABASE and commits fast.
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c listen_addresses=127.0.0.1 -c max_connections=50"
)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not on this machine or the server did not start."""


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    installs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(installs):
        if (bindir / "pg_ctl").exists() and (bindir / "initdb").exists():
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in "
        "/usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: apt-get install postgresql) "
        "to run the store tests against PostgreSQL."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as ``postgres`` then."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: list[str]) -> None:
    result = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@dataclass
class PostgresServer:
    folder: Path
    bindir: Path
    port: int
    databases: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True
        )

    def new_database(self) -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self._admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self._admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def empty_tables(self, url: str, tables: tuple[str, ...]) -> None:
        """TRUNCATE ``tables`` of the database at ``url`` where they exist (ids keep counting)."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname=url.rsplit("/", 1)[1], autocommit=True
        ) as connection:
            existing = [
                t
                for t in tables
                if connection.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is not None
            ]
            if existing:
                connection.execute(f"TRUNCATE {', '.join(existing)} CASCADE")

    def stop(self) -> None:
        subprocess.run(
            _as_server_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"]
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def _server_folder(base: Path) -> Path:
    """A folder the server user owns. As root, pytest's own tmp tree (mode 0700, owned by root)
    is not reachable by ``postgres``, so a short folder under the system temp dir is used."""
    if os.geteuid() != 0:
        folder = base / "pg"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    folder = Path(tempfile.mkdtemp(prefix="albatross-pg-"))
    account = pwd.getpwnam("postgres")
    os.chown(folder, account.pw_uid, account.pw_gid)
    return folder


def start_postgres(base: Path, attempts: int = 3) -> PostgresServer:
    """initdb + start on a free loopback port; retries when the port was taken meanwhile."""
    bindir = find_bindir()
    folder = _server_folder(base)
    data_dir = folder / "data"
    _run([str(bindir / "initdb"), "-D", str(data_dir), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync"])
    last_error: Exception | None = None
    for _ in range(attempts):
        port = _free_port()
        options = f"-p {port} -k {folder} {SERVER_SETTINGS}"
        try:
            _run(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data_dir),
                    "-l",
                    str(folder / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        except PostgresUnavailable as exc:
            last_error = exc
            continue
        return PostgresServer(folder=folder, bindir=bindir, port=port)
    log_text = (folder / "server.log").read_text(errors="replace") if (folder / "server.log").exists() else ""
    shutil.rmtree(folder, ignore_errors=True)
    raise PostgresUnavailable(f"PostgreSQL did not start: {last_error}\n{log_text[-2000:]}")
