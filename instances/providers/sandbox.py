"""The local provider's sandbox: every instance runs as a user of its own, in namespaces of its own.

Tenants are untrusted, and so is everything their instances run. A local instance is started as

    setpriv --reuid N --regid N --clear-groups            (its own unprivileged uid and gid)
      bwrap --unshare-user --disable-userns               (a user namespace: no nested ones)
            --unshare-pid --unshare-ipc --unshare-uts --unshare-net --unshare-cgroup-try
            --ro-bind /usr …                              (the system, read-only; its root too)
            --bind <instance>/state /var/lib/orchestrio    (its own writable dirs, nothing else)
            --tmpfs /run/orchestrio                        (secrets: memory only, mode 0700)
        python3 agent.py --listen-fd K …                   (the bundled agent, or it supervising
                                                           the blueprint's `command`)

so it sees only its own files (not the control plane's `var/`, not another instance's), runs as a
uid no other instance has (it cannot signal or ptrace their processes, or read their files), and
has a network namespace of its own: nothing on the host's loopback (PostgreSQL, Redis, the other
instances' ports) is reachable from it. The control plane reaches the agent through a unix socket
it binds itself, in a directory only it can reach, and hands to the sandbox as an inherited file
descriptor: no path the instance can write is ever connected to, opened or followed by the
control plane after the instance's directory was created.

Where the kernel does not allow unprivileged user namespaces, bwrap runs as root and drops to the
instance's uid inside (`setpriv` after the namespaces are set up); its reaper (pid 1 inside) then
runs as root, holding no capability the instance can use. Without bwrap, or when the control
plane is not root, there is no sandbox: the provider runs only the bundled agent (as the
instance's uid when it can) and refuses tenant commands; `GET /health` and the admin say so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

# Paths inside the sandbox.
STATE = "/var/lib/orchestrio"
SECRETS = "/run/orchestrio"
HOME = "/home/instance"
OPT = "/opt"
AGENT = "/orchestrio/agent.py"
APP_PORT = 8080  # every instance has a network namespace of its own: the port is always free

SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/sbin")
# Read-only files of the host's /etc that programs expect (the loader's cache, CA certificates,
# time zones). Nothing with accounts or secrets: /etc/passwd and /etc/group are the instance's own.
SYSTEM_ETC = ("ld.so.cache", "alternatives", "ssl", "ca-certificates", "localtime", "mime.types", "protocols", "services")
TMP_BYTES = 256 << 20
SECRETS_BYTES = 16 << 20


@dataclass(frozen=True)
class Support:
    """Whether instances get the sandbox here, how (`mode`: userns or root), and why (not)."""

    enabled: bool
    mode: str  # "userns" | "root" | "off"
    reason: str

    def as_dict(self) -> dict:
        return {"enabled": self.enabled, "mode": self.mode, "reason": self.reason}


def uid_for(instance_pk: int) -> int:
    """The instance's own uid (and gid): never the control plane's, never another instance's."""
    return settings.LOCAL_SANDBOX_UID_BASE + int(instance_pk)


def _bwrap() -> str | None:
    return shutil.which("bwrap")


def _setpriv() -> str | None:
    return shutil.which("setpriv")


def interpreter() -> tuple[str, list[str]]:
    """The Python that runs the agent inside the sandbox, and what to bind for it: the system's
    python3 when there is one (the agent needs only the standard library), else this process's
    own installation, read-only."""
    system = Path("/usr/bin/python3")
    if system.exists():
        return str(system), []
    base = os.path.realpath(sys.base_prefix)
    executable = os.path.realpath(sys.executable)
    if not executable.startswith(base + os.sep):
        executable = os.path.join(base, "bin", "python3")
    return executable, [base]


def _system_binds() -> list[str]:
    argv: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in SYSTEM_ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return argv


def _namespaces(hostname: str) -> list[str]:
    return ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try", "--hostname", hostname, "--new-session"]


def _drop(uid: int) -> list[str]:
    setpriv = _setpriv() or "setpriv"
    return [setpriv, "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]


def wrap(*, uid: int, hostname: str, binds: list[tuple[str, str, bool]], argv: list[str], mode: str, chdir: str = HOME) -> list[str]:
    """The command line that runs `argv` sandboxed as `uid`. `binds`: (host path, sandbox path,
    writable). The listening socket is passed as an inherited descriptor."""
    bwrap = _bwrap() or "bwrap"
    python, extra = interpreter()
    mounts = _system_binds()
    for path in extra:
        mounts += ["--ro-bind", path, path]
    mounts += ["--proc", "/proc", "--dev", "/dev"]
    mounts += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    mounts += ["--perms", "0755", "--dir", "/run", "--perms", "0755", "--dir", "/home"]
    for source, target, writable in binds:
        mounts += ["--bind" if writable else "--ro-bind", source, target]
    command = [python if part == "{python}" else part for part in argv]
    if mode == "userns":
        # bwrap itself starts as the instance's uid: the tmpfs it mounts is the instance's.
        return [
            *_drop(uid), bwrap, "--unshare-user", "--uid", str(uid), "--gid", str(uid), "--disable-userns", *mounts,
            "--perms", "0700", "--size", str(SECRETS_BYTES), "--tmpfs", SECRETS, "--remount-ro", "/",
            *_namespaces(hostname), "--chdir", chdir, "--", *command,
        ]  # fmt: skip
    # root mode: bwrap mounts as root, so the secrets tmpfs is sticky and world-writable like /tmp
    # (the instance's uid is the only one inside that could write it); the agent's file is 0600.
    return [
        bwrap, *mounts, "--perms", "1777", "--size", str(SECRETS_BYTES), "--tmpfs", SECRETS, "--remount-ro", "/",
        *_namespaces(hostname), "--chdir", chdir, "--", *_drop(uid), "--no-new-privs", *command,
    ]  # fmt: skip


def _smoke(mode: str) -> str | None:
    """None when a sandbox of this mode starts here, else what went wrong."""
    uid = settings.LOCAL_SANDBOX_UID_BASE
    try:
        argv = wrap(uid=uid, hostname="probe", binds=[], argv=["/bin/sh", "-c", "test \"$(id -u)\" = " + str(uid)], mode=mode, chdir="/")
        result = subprocess.run(argv, capture_output=True, timeout=20, env={"PATH": "/usr/bin:/bin"}, close_fds=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if result.returncode != 0:
        return (result.stderr.decode("utf-8", "replace").strip() or f"exit code {result.returncode}")[:300]
    return None


def _traversable(path: Path) -> bool:
    """Whether every directory from / down to `path` lets other users through (o+x)."""
    path = path.resolve()
    return all(os.stat(part).st_mode & 0o001 for part in (path, *path.parents))


@lru_cache(maxsize=1)
def support() -> Support:
    """Decided once per process: whether this host can sandbox instances, and how."""
    if not settings.LOCAL_SANDBOX:
        return Support(False, "off", "the sandbox is switched off (LOCAL_SANDBOX=0)")
    if os.name != "posix" or not Path("/proc/self/ns").exists():
        return Support(False, "off", "the sandbox needs Linux namespaces")
    if os.geteuid() != 0:
        return Support(False, "off", "the control plane does not run as root, so it cannot give each instance a user of its own")
    if _bwrap() is None:
        return Support(False, "off", "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    if _setpriv() is None:
        return Support(False, "off", "setpriv (util-linux) is not installed")
    problems = []
    # In a user namespace bwrap starts as the instance's uid, so it can only bind directories that
    # others may traverse to; otherwise (a project under /root, a 0700 parent) it runs as root.
    base = Path(settings.LOCAL_PROVIDER_DIR)
    base.mkdir(parents=True, exist_ok=True)
    modes = ("userns", "root") if _traversable(base) else ("root",)
    if modes == ("root",):
        problems.append(f"userns: a parent of {base} is not traversable by other users")
    for mode in modes:
        problem = _smoke(mode)
        if problem is None:
            how = "in a user namespace" if mode == "userns" else "started by root, dropping to the instance's user inside"
            return Support(True, mode, f"bubblewrap {how}: own uid, pid/ipc/uts/network namespaces, private filesystem")
        problems.append(f"{mode}: {problem}")
    logger.warning("local sandbox unavailable: %s", "; ".join(problems))
    return Support(False, "off", "bubblewrap cannot create the sandbox here (" + "; ".join(problems) + ")")


def sandbox_report() -> dict | None:
    """For /health and the admin: whether local instances are sandboxed (None when the local
    provider is not enabled)."""
    if "local" not in settings.ENABLED_PROVIDERS:
        return None
    return support().as_dict()


def refuse_command_reason() -> str | None:
    """Why a tenant `command` cannot run on the local provider here (None: it can)."""
    status = support()
    if status.enabled:
        return None
    return f"the local provider's sandbox is off on this installation ({status.reason}), so it runs only the bundled agent: a blueprint `command` is refused"
