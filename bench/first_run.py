"""First `make run` on a fresh clone until /health answers, then a later start (docs/BENCHMARKS.md,
"First run").

    python3 bench/first_run.py [--no-cache] [--port 8765] [--keep]

Clones this checkout's HEAD into a temporary directory (no .venv, no var/), runs `make run` there
and times it until `GET /health` answers, stops it, and times a second `make run` the same way.
`--no-cache` runs both with the installers' download and wheel caches off (pip's and uv's), as on a
machine that never installed these packages. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_run(clone: Path, port: int, env: dict[str, str], log: Path, timeout: float = 600) -> float:
    """Seconds from `make run` to the first answer of /health; the server is stopped again."""
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # 503 (degraded) is an answer too
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"make run exited with {proc.returncode}; see {log}") from None
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"/health did not answer within {timeout:.0f} s; see {log}") from None
                time.sleep(0.1)
        return time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cache", action="store_true", help="no pip or uv cache (a machine that never installed them)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--keep", action="store_true", help="keep the clone and its logs")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="orchestrio-first-run-"))
    workdir.chmod(0o755)  # as a checkout's parent: sandboxed instances must reach the clone's files
    clone = workdir / "clone"
    log = workdir / "make-run.log"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = dict(os.environ)
    for name in ("DEBUG", "SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL", "ORCHESTRIO_VAR_DIR", "VIRTUAL_ENV"):
        env.pop(name, None)
    if args.no_cache:
        env.update(PIP_NO_CACHE_DIR="1", UV_NO_CACHE="1")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
        first = timed_run(clone, args.port, env, log)
        later = timed_run(clone, args.port, env, log)
        warnings = [line for line in log.read_text(errors="replace").splitlines() if "warning" in line.lower()]
        print(f"commit {commit}, cache {'off' if args.no_cache else 'on'}, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
        print(f"first make run until /health answers: {first:.1f} s")
        print(f"later make run until /health answers: {later:.1f} s")
        print(f"lines saying 'warning' in make run's output: {len(warnings)}")
        for line in warnings[:10]:
            print(f"  {line.strip()[:160]}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
