"""The local engine: a real PostgreSQL cluster or redis-server per add-on, on this host.

Each add-on has a directory `<ADDONS_LOCAL_DIR>/<addon_id>/`:

    meta.json, process.json   the control plane's records (which add-on; which process)
    server.log                the server's stdout and stderr
    data/                     the engine's files, owned by the add-on's uid, mode 0700
    run/                      its unix socket(s), owned by the add-on's uid

The directory itself is root's (0711); only `data/` and `run/` are the add-on's. The server runs
as a uid of its own (ADDONS_LOCAL_UID_BASE + the add-on's pk, dropped with `setpriv`, no
capabilities) when the control plane is root — PostgreSQL refuses to run as root — and listens on
127.0.0.1 on a port of its own, with password authentication (SCRAM for PostgreSQL, `requirepass`
for Redis). It is *not* wrapped in the instances' bubblewrap sandbox (docs/addons.md says so): it
shares the host's network namespace, which is how the control plane reaches it.

A restarted control plane finds the server again from `process.json` (the pid checked against its
start time, so a recycled pid is never taken for ours); `ensure_running` starts it again from its
data directory when it is gone. Passwords never reach a command line (where `ps` shows them): the
PostgreSQL one goes through initdb's --pwfile (removed right after) and SQL on a connection, the
Redis one through its configuration file (0600, the add-on's uid) and CONFIG SET.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.conf import settings

from instances.providers import sandbox
from instances.providers.local import live_process, process_record

logger = logging.getLogger(__name__)


class EngineUnavailable(Exception):
    """The host lacks what the engine needs (the binaries): the message says what to install."""


class EngineError(Exception):
    """The engine failed to do what was asked (the message says what, never a password)."""


@dataclass(frozen=True)
class Target:
    """What the engine needs to know of an add-on (no model import: the engine is below services)."""

    addon_id: str
    addon_pk: int
    engine: str
    port: int
    username: str
    database: str
    password: str
    admin_password: str
    # The instance it is attached to: its sandbox reaches the add-on's unix socket (below).
    instance_id: str = ""
    instance_pk: int = 0

    @property
    def directory(self) -> Path:
        return Path(settings.ADDONS_LOCAL_DIR) / self.addon_id

    @property
    def socket_dir(self) -> Path:
        """Where the server puts its unix socket(s): in its instance's sockets directory (bound into
        the instance's sandbox) when the add-on runs as a uid of its own, else its own `run/`."""
        if uid_for(self.addon_pk) is None or not self.instance_id:
            return self.directory / "run"
        return instance_sockets_dir(self.instance_id, self.instance_pk) / self.addon_id


# --- binaries ---------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """The directory of initdb/postgres: ADDONS_POSTGRES_BIN, else the newest installed major."""
    if settings.ADDONS_POSTGRES_BIN:
        path = Path(settings.ADDONS_POSTGRES_BIN)
        return path if (path / "initdb").exists() and (path / "postgres").exists() else None
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if (Path(p).parent / "postgres").exists()]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def redis_server() -> str | None:
    return shutil.which(settings.ADDONS_REDIS_SERVER)


def installed_version(engine: str) -> str:
    """The major version the host's binaries provide, or EngineUnavailable with what to install."""
    if engine == "postgres":
        path = postgres_bin()
        if path is None:
            raise EngineUnavailable("PostgreSQL add-ons need the host's PostgreSQL server binaries (initdb, postgres): install them (Debian/Ubuntu: apt-get install postgresql) or set ADDONS_POSTGRES_BIN")
        out = subprocess.run([str(path / "postgres"), "--version"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        return match.group(1) if match else path.parent.name
    server = redis_server()
    if server is None:
        raise EngineUnavailable("Redis add-ons need the host's redis-server: install it (Debian/Ubuntu: apt-get install redis-server) or set ADDONS_REDIS_SERVER")
    out = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"v=(\d+)\.(\d+)", out)
    return f"{match.group(1)}.{match.group(2)}" if match else "unknown"


# --- ports and users --------------------------------------------------------------------------


def free_port(taken: set[int]) -> int:
    """A loopback port nothing listens on now and no other live add-on has recorded."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in taken:
            return port
    raise EngineError("no free loopback port for the add-on")


def uid_for(addon_pk: int) -> int | None:
    """The add-on's own uid when the control plane can drop to one (it is root), else None."""
    return settings.ADDONS_LOCAL_UID_BASE + int(addon_pk) if os.geteuid() == 0 else None


# Paths inside the add-on's filesystem view: its data, its private run directory (initdb's
# password file) and the directory of its sockets, which its instance sees too.
DATA = "/var/lib/addon/data"
RUN = "/run/addon"
SOCKETS = "/run/addon-socket"
# Where a sandboxed instance sees its add-ons' socket directories: /run/addons/<addon_id>/.
INSTANCE_SOCKETS = "/run/addons"
REDIS_SOCKET = "redis.sock"


def instance_sockets_dir(instance_id: str, instance_pk: int) -> Path:
    """The directory of an instance's add-ons' sockets, bound read-only into its sandbox at
    /run/addons (instances.hooks.sandbox_binds). Root's; each add-on's directory in it is the
    add-on's uid's with the instance's group (setgid, 2750): that instance and nobody else."""
    return Path(settings.ADDONS_LOCAL_DIR) / "sockets" / f"{instance_id}-{instance_pk}"


def sandbox_binds(*, instance_id: str, instance_pk: int) -> list[tuple[str, str, bool]]:
    """instances' `sandbox_binds` hook: the instance's add-ons' sockets directory, made now (empty
    until an add-on is created) so that add-ons created while it runs appear in it."""
    if os.geteuid() != 0:
        return []  # no add-on runs as a uid of its own: they listen on loopback TCP only
    directory = instance_sockets_dir(instance_id, instance_pk)
    _traversable_dirs(directory)
    return [(str(directory), INSTANCE_SOCKETS, False)]


def _traversable_dirs(directory: Path) -> None:
    """`directory` and its parents up to ADDONS_LOCAL_DIR, root's, traversable by others (an
    instance's bubblewrap may start as the instance's uid and must reach what it binds)."""
    base = Path(settings.ADDONS_LOCAL_DIR)
    for path, mode in ((base, 0o711), (base / "sockets", 0o711), (directory, 0o755)):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)


def instance_socket_dir(target: "Target") -> str | None:
    """The add-on's socket directory as its sandboxed instance sees it, or None when it has none
    there (not run as a uid of its own: the instance reaches it on loopback TCP)."""
    if uid_for(target.addon_pk) is None or not target.instance_id:
        return None
    return f"{INSTANCE_SOCKETS}/{target.addon_id}"


def _wrap(target: Target, uid: int | None, argv: list[str]) -> list[str]:
    """`argv` run as the add-on's uid, in a filesystem view of its own: the system read-only, its
    own `data/` and `run/` and nothing else of the host (not the control plane's var/, not another
    add-on's or instance's files), its own /etc/passwd (PostgreSQL looks its uid up). It keeps the
    host's network namespace: the control plane reaches it on 127.0.0.1. Without root (a
    developer's `make run` as themselves) it runs as the control plane's own user, unwrapped,
    with host paths."""
    if uid is None:
        return argv
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    if bwrap is None or setpriv is None:
        raise EngineUnavailable("local add-ons run as a user of their own in a filesystem view of their own: install bubblewrap and setpriv (Debian/Ubuntu: apt-get install bubblewrap util-linux)")
    mounts: list[str] = []
    for path in sandbox.SYSTEM_DIRS:
        if os.path.islink(path):
            mounts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            mounts += ["--ro-bind", path, path]
    mounts += ["--perms", "0755", "--dir", "/etc"]
    for name in sandbox.SYSTEM_ETC:
        mounts += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    directory = target.directory
    mounts += ["--ro-bind", str(directory / "etc" / "passwd"), "/etc/passwd", "--ro-bind", str(directory / "etc" / "group"), "/etc/group"]
    mounts += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    for parent in ("/run", "/var", "/var/lib", "/var/lib/addon"):
        mounts += ["--perms", "0755", "--dir", parent]
    mounts += ["--bind", str(directory / "data"), DATA, "--bind", str(directory / "run"), RUN, "--bind", str(target.socket_dir), SOCKETS]
    drop = [setpriv, "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    # Its own pid namespace too: it sees none of the host's processes (their command lines).
    return [bwrap, *mounts, "--remount-ro", "/", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", target.addon_id.replace("_", "-"), "--new-session", "--chdir", "/", "--", *drop, *argv]


def _paths(uid: int | None, target: Target) -> tuple[str, str, str]:
    """The data, run and sockets directories as the server sees them."""
    if uid is None:
        return str(target.directory / "data"), str(target.directory / "run"), str(target.socket_dir)
    return DATA, RUN, SOCKETS


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


# --- records ----------------------------------------------------------------------------------


def _process(directory: Path) -> psutil.Process | None:
    record = process_record(directory)
    return live_process(record.get("pid"), record.get("start_time"))


def is_running(target: Target) -> bool:
    return _process(target.directory) is not None


def _prepare(target: Target, uid: int | None) -> bool:
    """The add-on's directory; True when its data directory is new (the engine must initialise it)."""
    base = Path(settings.ADDONS_LOCAL_DIR)
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o711)
    directory = target.directory
    directory.mkdir(mode=0o711, exist_ok=True)
    data, run = directory / "data", directory / "run"
    fresh = not data.exists()
    for path in (data, run):
        path.mkdir(mode=0o700, exist_ok=True)
        if uid is not None:
            os.chown(path, uid, uid, follow_symlinks=False)
    if target.socket_dir != run:
        # Its sockets, in its instance's sockets directory: the add-on's uid writes it, the
        # instance's group (its uid's own) may reach what is in it, nobody else.
        _traversable_dirs(target.socket_dir.parent)
        target.socket_dir.mkdir(exist_ok=True)
        os.chown(target.socket_dir, uid, sandbox.uid_for(target.instance_pk), follow_symlinks=False)
        os.chmod(target.socket_dir, 0o2750)
    etc = directory / "etc"
    etc.mkdir(mode=0o755, exist_ok=True)
    user = uid if uid is not None else os.getuid()
    (etc / "passwd").write_text(f"root:x:0:0:root:/root:/usr/sbin/nologin\naddon:x:{user}:{user}:{target.addon_id}:{DATA}:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\naddon:x:{user}:\n")
    (directory / "meta.json").write_text(json.dumps({"addon_id": target.addon_id, "addon_pk": target.addon_pk, "engine": target.engine, "port": target.port}))
    return fresh


def _reap(proc: subprocess.Popen) -> None:
    threading.Thread(target=proc.wait, name=f"reap-addon-{proc.pid}", daemon=True).start()


def _launch(target: Target, argv: list[str], uid: int | None) -> None:
    directory = target.directory
    with open(directory / "server.log", "ab") as log:
        proc = subprocess.Popen(
            _wrap(target, uid, argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=str(directory), start_new_session=True, close_fds=True
        )
    _reap(proc)
    try:
        started = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        started = None
    (directory / "process.json").write_text(json.dumps({"pid": proc.pid, "start_time": started, "uid": uid, "port": target.port}))


def _log_tail(directory: Path, limit: int = 600) -> str:
    try:
        text = (directory / "server.log").read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return text[-limit:].strip() or "(no output)"


def _wait_ready(target: Target, check) -> None:
    deadline = time.monotonic() + settings.ADDONS_START_TIMEOUT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        if not is_running(target):
            raise EngineError(f"the {target.engine} server exited on start: {_log_tail(target.directory)}")
        try:
            check()
            return
        except Exception as exc:  # noqa: BLE001 - not ready yet: any connection error
            last = type(exc).__name__
        time.sleep(0.1)
    raise EngineError(f"the {target.engine} server did not accept connections within {settings.ADDONS_START_TIMEOUT_SECONDS:g}s ({last})")


# --- PostgreSQL -------------------------------------------------------------------------------

ADMIN_USER = "postgres"


def _pg_connect(target: Target, *, user: str, password: str, dbname: str):
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=target.port, user=user, password=password, dbname=dbname, connect_timeout=3, autocommit=True)


def _pg_admin(target: Target, dbname: str = "postgres"):
    return _pg_connect(target, user=ADMIN_USER, password=target.admin_password, dbname=dbname)


def _pg_start(target: Target, uid: int | None) -> None:
    binaries = postgres_bin()
    if binaries is None:
        installed_version("postgres")  # raises with what to install
    data, run = target.directory / "data", target.directory / "run"
    fresh = _prepare(target, uid)
    inside_data, inside_run, inside_sockets = _paths(uid, target)
    if fresh or not (data / "PG_VERSION").exists():
        pwfile = run / "initdb.pw"
        pwfile.write_text(target.admin_password + "\n")
        os.chmod(pwfile, 0o600)
        if uid is not None:
            os.chown(pwfile, uid, uid)
        argv = [str(binaries / "initdb"), "-D", inside_data, "-U", ADMIN_USER, "--auth=scram-sha-256", f"--pwfile={inside_run}/initdb.pw", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]
        try:
            result = subprocess.run(_wrap(target, uid, argv), capture_output=True, text=True, timeout=120, env=_env(), cwd=str(target.directory))
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EngineError(f"initdb failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[-400:]}")
    argv = [
        str(binaries / "postgres"), "-D", inside_data, "-p", str(target.port), "-c", "listen_addresses=127.0.0.1",
        "-c", f"unix_socket_directories={inside_sockets}", "-c", "unix_socket_permissions=0770",
        "-c", "password_encryption=scram-sha-256", "-c", "log_statement=none",
    ]  # fmt: skip
    _launch(target, argv, uid)
    _wait_ready(target, lambda: _pg_admin(target).close())


def _pg_setup(target: Target) -> None:
    """The tenant's role (not a superuser: a superuser could run programs as the add-on's uid) and
    its database; idempotent, so a job run again finds them made."""
    from psycopg import sql

    with _pg_admin(target) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [target.username]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD {}").format(sql.Identifier(target.username), sql.Literal(target.password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [target.database]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(target.database), sql.Identifier(target.username)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE postgres FROM PUBLIC"))


def _pg_set_password(target: Target, password: str) -> None:
    from psycopg import sql

    with _pg_admin(target) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(target.username), sql.Literal(password)))


# --- Redis ------------------------------------------------------------------------------------


def _redis_client(target: Target, password: str):
    import redis

    return redis.Redis(host="127.0.0.1", port=target.port, password=password, socket_timeout=3, socket_connect_timeout=3)


def _redis_start(target: Target, uid: int | None, *, load_rdb: bool = False) -> None:
    server = redis_server()
    if server is None:
        installed_version("redis")
    _prepare(target, uid)
    data = target.directory / "data"
    inside_data, _, inside_sockets = _paths(uid, target)
    conf = data / "redis.conf"
    # Where its files and socket are is the control plane's to say (a restore puts dump.rdb in its
    # data directory; its instance finds the socket at one place), whatever CONFIG REWRITE wrote.
    ours = {
        "dir": inside_data, "dbfilename": "dump.rdb", "appenddirname": "appendonlydir",
        "unixsocket": f"{inside_sockets}/{REDIS_SOCKET}", "unixsocketperm": "770",
        # A backup (`redis-cli --rdb`) is a replica's sync: start it at once, not after the 5 s
        # Redis waits by default for more replicas to share a diskless transfer (it has none).
        "repl-diskless-sync-delay": "0",
    }  # fmt: skip
    if not conf.exists():
        # In the add-on's data directory (its own, 0600): CONFIG REWRITE keeps a rotated password.
        lines = [f"port {target.port}", "bind 127.0.0.1", "protected-mode yes", "daemonize no", "appendonly yes", "save 60 1", f"requirepass {target.password}"]
    else:
        lines = [line for line in conf.read_text().splitlines() if line.split(" ", 1)[0] not in ours]
    conf.write_text("\n".join([*lines, *(f"{key} {value}" for key, value in ours.items())]) + "\n")
    os.chmod(conf, 0o600)
    if uid is not None:
        os.chown(conf, uid, uid)
    # A restore starts it once without its append-only file, so that it loads the RDB put in place
    # (with appendonly on, Redis reads only the AOF), then turns the AOF on again (below).
    extra = ["--appendonly", "no"] if load_rdb else []
    _launch(target, [server, f"{inside_data}/redis.conf", *extra], uid)
    _wait_ready(target, lambda: _redis_client(target, target.password).ping())


def _redis_set_password(target: Target, password: str) -> None:
    client = _redis_client(target, target.password)
    client.config_set("requirepass", password)
    try:
        _redis_client(target, password).config_rewrite()
    except Exception as exc:  # noqa: BLE001 - the live password changed; say the file did not
        raise EngineError(f"redis took the new password but could not save it to its configuration ({type(exc).__name__})") from exc


# --- the engine's operations (each idempotent: a job run again finds its work done) ----------


def ensure_running(target: Target) -> None:
    """Start the server (initialising its data on the first start) unless it runs already."""
    if is_running(target):
        return
    uid = uid_for(target.addon_pk)
    if target.engine == "postgres":
        _pg_start(target, uid)
    else:
        _redis_start(target, uid)


def provision(target: Target) -> None:
    ensure_running(target)
    if target.engine == "postgres":
        _pg_setup(target)


def set_password(target: Target, password: str) -> None:
    """Make `password` the tenant's password (from `target.password`, the one in force)."""
    ensure_running(target)
    if target.engine == "postgres":
        _pg_set_password(target, password)
        return
    try:
        _redis_set_password(target, password)
    except Exception as exc:  # noqa: BLE001 - a retried job: the new password may be in force already
        import redis

        if isinstance(exc, redis.AuthenticationError):
            _redis_client(target, password).ping()  # in force: done (raises if not)
            return
        raise


# --- backups and restores ------------------------------------------------------------------
#
# A backup is a file of the control plane's: PostgreSQL's `pg_dump -Fc` of the tenant's database
# (the host's binaries of the server's major version, run as the add-on's uid, talking to the
# server over loopback), Redis' RDB snapshot streamed over the replication protocol
# (`redis-cli --rdb`). Neither reads a file of the add-on's data directory, which the tenant's
# server can write (a symlink planted there is never followed by the control plane).


def _as_addon(target: Target) -> list[str]:
    """The prefix that runs a client program as the add-on's uid (not root), when there is one."""
    uid = uid_for(target.addon_pk)
    if uid is None:
        return []
    setpriv = shutil.which("setpriv") or "setpriv"
    return [setpriv, "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]


def _pg_client_env(target: Target) -> dict[str, str]:
    # The tenant's own role dumps and restores (it owns everything in its database): never the
    # superuser, which a tenant's function in an index or a default would run as during a
    # restore. Its password in the child's environment only (never on a command line):
    # /proc/<pid>/environ is readable by its own uid and root alone.
    return {**_env(), "PGPASSWORD": target.password, "PGCONNECT_TIMEOUT": "5", "PGOPTIONS": "-c lock_timeout=60000"}


def _failed(what: str, result: subprocess.CompletedProcess) -> EngineError:
    output = (result.stderr or b"").decode("utf-8", "replace").strip()[-400:]
    return EngineError(f"{what} failed (exit {result.returncode}): {output or '(no output)'}")


def backup(target: Target, dest: Path) -> None:
    """Write the add-on's backup to `dest` (a file of ours): the client runs as the add-on's uid
    and writes to its stdout, which is that file."""
    ensure_running(target)
    if target.engine == "postgres":
        what = "pg_dump"
        argv = [str(postgres_bin() / "pg_dump"), "-Fc", "--no-password", "-h", "127.0.0.1", "-p", str(target.port), "-U", target.username, "-d", target.database]
        env = _pg_client_env(target)
    else:
        what = "redis-cli --rdb"
        cli = shutil.which("redis-cli", path=str(Path(redis_server() or "/usr/bin/redis-server").parent)) or shutil.which("redis-cli")
        if cli is None:
            raise EngineUnavailable("Redis backups need redis-cli (Debian/Ubuntu: apt-get install redis-tools)")
        argv = [cli, "-h", "127.0.0.1", "-p", str(target.port), "--no-auth-warning", "--rdb", "-"]
        env = {**_env(), "REDISCLI_AUTH": target.password}  # never on the command line
    with open(dest, "wb") as out:
        os.chmod(dest, 0o600)
        result = subprocess.run([*_as_addon(target), *argv], stdout=out, stderr=subprocess.PIPE, env=env, timeout=settings.ADDONS_BACKUP_TIMEOUT_SECONDS)
    if result.returncode != 0 or not dest.stat().st_size:
        raise _failed(what, result)


def restore(target: Target, source: Path) -> None:
    """Put the backup at `source` (verified by the caller) back in place of the add-on's data."""
    if target.engine == "postgres":
        _pg_restore(target, source)
        return
    _redis_restore(target, source)


def _pg_databases(conn) -> set[str]:
    return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def _pg_restore(target: Target, source: Path) -> None:
    """The database exactly as it was at the backup (tables made since gone too): the archive is
    restored, by the tenant's role in one transaction, into a new database of the role's; only
    when that succeeded does it take the database's name (connections to the old one are ended),
    and the old one is dropped. A restore that fails leaves the data as it was; one cut off
    between the two renames is finished by the next attempt (the old database is found under its
    interim name)."""
    from psycopg import sql

    ensure_running(target)
    name, fresh, old = target.database, f"{target.database}__restore", f"{target.database}__old"
    with _pg_admin(target) as conn:
        if name not in _pg_databases(conn) and old in _pg_databases(conn):
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(fresh)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(fresh), sql.Identifier(target.username)))
    binaries = postgres_bin()
    argv = [
        *_as_addon(target), str(binaries / "pg_restore"), "--single-transaction", "--exit-on-error", "--no-owner", "--no-password",
        "-h", "127.0.0.1", "-p", str(target.port), "-U", target.username, "-d", fresh,
    ]  # fmt: skip
    with open(source, "rb") as archive:
        result = subprocess.run(argv, stdin=archive, capture_output=True, env=_pg_client_env(target), timeout=settings.ADDONS_BACKUP_TIMEOUT_SECONDS)
    with _pg_admin(target) as conn:
        if result.returncode != 0:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(fresh)))
            raise _failed("pg_restore", result)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(old)))
        # Nobody may connect to the database while it changes name: its sessions end (the
        # instance's client reconnects to the restored one).
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name])
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(old)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(fresh), sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))


def _redis_restore(target: Target, source: Path) -> None:
    """Stop the server, replace its data with the snapshot, start it on the snapshot, then write
    its append-only file again from what it loaded."""
    uid = uid_for(target.addon_pk)
    stop(target)
    data = target.directory / "data"
    aof = data / "appendonlydir"
    if aof.is_symlink() or aof.is_file():
        aof.unlink()
    elif aof.exists():
        shutil.rmtree(aof)
    rdb = data / "dump.rdb"
    rdb.unlink(missing_ok=True)  # never follows a link the server may have put there
    fd = os.open(rdb, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as snapshot:
        shutil.copyfileobj(snapshot, out)
        if uid is not None:
            os.fchown(out.fileno(), uid, uid)
    _redis_start(target, uid, load_rdb=True)
    client = _redis_client(target, target.password)
    client.config_set("appendonly", "yes")  # rewrites the AOF from the data loaded
    deadline = time.monotonic() + settings.ADDONS_BACKUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if info.get("aof_enabled") == 1 and not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        time.sleep(0.1)
    raise EngineError("redis loaded the snapshot but did not finish writing its append-only file")


SERVER_NAMES = ("postgres", "redis-server")


def _server(root: psutil.Process) -> list[psutil.Process]:
    """The server itself, to signal: the topmost process of the tree that is the engine's binary
    (under bubblewrap, whose processes do not pass signals on, it is a grandchild; unwrapped, the
    process we started)."""
    try:
        tree = [root, *root.children(recursive=True)]
        return [proc for proc in tree if proc.name() in SERVER_NAMES and (proc.parent() is None or proc.parent().name() not in SERVER_NAMES)][:1]
    except psutil.NoSuchProcess:
        return []


def stop(target: Target, grace: float = 10) -> None:
    root = _process(target.directory)
    if root is None:
        return
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    # PostgreSQL: SIGINT is the fast shutdown (disconnect clients, checkpoint); Redis: SIGTERM saves.
    for proc in _server(root):
        try:
            proc.send_signal(signal.SIGINT if target.engine == "postgres" else signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs([root], timeout=grace)
    leftovers = [p for p in tree if p.is_running()] if alive else [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leftovers, timeout=5)


def destroy(target: Target) -> None:
    """Stop the server and remove its directory, data included."""
    stop(target)
    shutil.rmtree(target.directory, ignore_errors=True)
    shutil.rmtree(target.socket_dir, ignore_errors=True)
    if target.directory.exists():
        raise EngineError(f"the add-on's directory could not be removed: {target.directory}")


def connection_url(*, engine: str, host: str, port: int, username: str, password: str, database: str, socket_dir: str | None = None) -> str:
    """The tenant's URL: over loopback TCP, or, with `socket_dir` (as its sandboxed instance sees
    it), over the unix socket in it — libpq's `postgres://user:pw@/db?host=<dir>&port=<port>`
    (the socket is `<dir>/.s.PGSQL.<port>`), redis-py's `unix://:pw@<dir>/redis.sock?db=0`."""
    from urllib.parse import quote

    user, secret = quote(username, safe=""), quote(password, safe="")
    if engine == "postgres":
        if socket_dir:
            return f"postgres://{user}:{secret}@/{quote(database, safe='')}?host={quote(socket_dir, safe='/')}&port={port}"
        return f"postgres://{user}:{secret}@{host}:{port}/{quote(database, safe='')}"
    if socket_dir:
        return f"unix://:{secret}@{quote(socket_dir, safe='/')}/{REDIS_SOCKET}?db=0"
    return f"redis://:{secret}@{host}:{port}/0"
