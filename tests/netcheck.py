"""The listening sockets of the processes a test starts, for the tests that check that
fluxscale binds nothing but loopback unless told to (psutil's table, the same as
``ss -ltnp``)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import threading
import time

import psutil


def _tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid, *(c.pid for c in p.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _with_env(name: str, value: str) -> set[int]:
    """Processes (and their children) whose environment has ``name=value``: the jobs that a
    test's own SLURM runs carry its ``SLURM_CONF``."""
    out: set[int] = set()
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(name) == value:
                out |= _tree(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def listeners(*roots: int, env: tuple[str, str] | None = None) -> list[tuple[str, int, int, str]]:
    """``(address, port, pid, command)`` of every listening TCP socket owned by the process
    trees of ``roots`` (default: this process) and, with ``env=(NAME, VALUE)``, of the
    processes whose environment holds that variable."""
    pids: set[int] = set()
    for r in roots or (os.getpid(),):
        pids |= _tree(r)
    if env:
        pids |= _with_env(*env)
    out = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status != psutil.CONN_LISTEN or c.pid not in pids:
            continue
        try:
            cmd = " ".join(psutil.Process(c.pid).cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out.append((c.laddr.ip, c.laddr.port, c.pid, cmd[:160]))
    return out


def dask_listeners() -> list[tuple[str, int, int, str]]:
    """The listening sockets of this process and its children."""
    return listeners()


def run_watching(cmd: list[str], *, env: dict, timeout: float, cwd=None, roots: tuple[int, ...] = (),
                 env_marker: tuple[str, str] | None = None):
    """Run ``cmd`` and sample, every 0.3 s while it runs, the listening sockets of its process
    tree, of ``roots`` and of the processes marked by ``env_marker``. Returns the completed
    process (stdout, stderr as text) and ``{(address, port): (address, port, pid, command)}``."""
    seen: dict = {}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for x in listeners(proc.pid, *roots, env=env_marker):
                seen[x[:2]] = x
            time.sleep(0.3)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        t.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), seen


def public(entries) -> list:
    """The entries not on a loopback address."""
    return [e for e in entries if not ipaddress.ip_address(e[0].split("%")[0]).is_loopback]
