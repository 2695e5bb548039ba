"""A throw-away PostgreSQL server for tests (docs/store.md, "PostgreSQL").

:func:`start_server` runs ``initdb`` and ``pg_ctl start`` from the PostgreSQL server binaries
(found on PATH or under ``/usr/lib/postgresql/<version>/bin``) on a fresh data directory in a
temporary folder, with trust authentication, listening on 127.0.0.1 on a free port and on a unix
socket in that folder; ``fsync`` is off (the data is thrown away). PostgreSQL refuses to run as
root, so as root the server runs as the ``postgres`` system user (``runuser``/``su``), which owns
the folder. :meth:`PgServer.stop` stops it at once (``pg_ctl stop -m immediate``) and removes
the folder. Anything that goes wrong raises :class:`PgUnavailable` with a line saying what, which
the fixtures in ``conftest.py`` turn into a skip.

``BENCH_TEST_POSTGRES_URL`` (e.g. ``postgresql://user:pw@host:5432/postgres``) makes the
fixtures use that server instead of starting one; its user must be allowed to create databases.

Usage in a test: the session fixture ``postgres_server`` is a :class:`PgServer` (``.url(db)``,
``.create_database(name)``); the function fixture ``pg_url`` is the URL of a fresh, empty
database, e.g. ``postgresql://postgres@127.0.0.1:54321/t_3``.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ENV_URL = "BENCH_TEST_POSTGRES_URL"
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be had; the message says why."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then the newest Debian install."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
                        reverse=True):
        return Path(found).parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(text: str, lines: int = 3) -> str:
    rows = [r.strip() for r in (text or "").strip().splitlines() if r.strip()]
    return " | ".join(rows[-lines:]) or "no output"


@dataclass
class PgServer:
    """A running server (or, with ``external``, one given by ``BENCH_TEST_POSTGRES_URL``)."""

    host: str
    port: int
    user: str = SUPERUSER
    password: str | None = None
    admin_db: str = "postgres"
    root: Path | None = None            # temp folder: data/, socket/, server.log
    bindir: Path | None = None
    external: bool = False
    _counter: int = field(default=0, repr=False)

    def url(self, database: str = "bench") -> str:
        """A URL for one database, in the form users type (``postgresql://``; bench picks the driver)."""
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def _admin(self):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=self.admin_db, autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name unless given); returns its URL."""
        if name is None:
            self._counter += 1
            name = f"t_{os.getpid()}_{self._counter}"
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.external or self.root is None:
            return
        _as_owner([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.root / "data"), "-m", "immediate", "-w"],
                  timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_owner(cmd: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    """Run a server command; as root, as the ``postgres`` system user (initdb and postgres refuse root)."""
    if os.geteuid() == 0:
        if shutil.which("runuser"):
            cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
        else:
            cmd = ["su", SYSTEM_USER, "-s", "/bin/sh", "-c", " ".join(_quote(c) for c in cmd)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    if check and out.returncode != 0:
        raise PgUnavailable(f"`{' '.join(cmd)}` exited {out.returncode}: {_tail(out.stderr + out.stdout)}")
    return out


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _wait_ready(server: PgServer, timeout: float = 30.0) -> None:
    import psycopg

    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            with server._admin():
                return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.2)
    raise PgUnavailable(f"the server on 127.0.0.1:{server.port} did not accept connections: {_tail(str(last))}")


def start_server() -> PgServer:
    """Start a private server (see the module docstring); raises :class:`PgUnavailable` saying what failed."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PgUnavailable(f"psycopg is not installed ({exc}); pip install 'bench[postgres]'") from None
    external = os.environ.get(ENV_URL)
    if external:
        return _external(external)
    bindir = find_bindir()
    if bindir is None:
        raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
                            "/usr/lib/postgresql/*/bin; install the Debian package postgresql")
    if os.geteuid() == 0:
        try:
            import pwd

            owner = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PgUnavailable(f"running as root and there is no '{SYSTEM_USER}' system user to run the server as") \
                from None
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))   # directly under /tmp: reachable by the postgres user
    try:
        (root / "socket").mkdir()
        if os.geteuid() == 0:
            for path in (root, root / "socket"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        _as_owner([str(bindir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"], timeout=120)
        last = None
        for _ in range(3):   # the free port may be taken between choosing and binding it
            port = free_port()
            opts = (f"-p {port} -c listen_addresses=127.0.0.1 -k {root / 'socket'} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            out = _as_owner([str(bindir / "pg_ctl"), "start", "-D", str(root / "data"), "-l", str(root / "server.log"),
                             "-w", "-t", "60", "-o", opts], timeout=90, check=False)
            if out.returncode == 0:
                server = PgServer("127.0.0.1", port, root=root, bindir=bindir)
                try:
                    _wait_ready(server)
                except PgUnavailable:
                    server.stop()
                    raise
                return server
            log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else ""
            last = f"pg_ctl start exited {out.returncode}: {_tail(out.stderr + out.stdout + log)}"
        raise PgUnavailable(last or "pg_ctl start failed")
    except PgUnavailable:
        shutil.rmtree(root, ignore_errors=True)
        raise
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PgUnavailable(f"starting PostgreSQL failed: {exc}") from None


def _external(url: str) -> PgServer:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    server = PgServer(u.host or "127.0.0.1", u.port or 5432, user=u.username or SUPERUSER, password=u.password,
                      admin_db=u.database or "postgres", external=True)
    _wait_ready(server, timeout=10)
    return server
