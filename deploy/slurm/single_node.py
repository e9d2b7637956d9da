#!/usr/bin/env python3
"""A real single-node SLURM on this machine, for trying the launcher and for the tests.

    sudo python deploy/slurm/single_node.py start /tmp/fluxscale-slurm   # prints SLURM_CONF
    export SLURM_CONF=/tmp/fluxscale-slurm/slurm.conf
    sinfo; python deploy/launch.py --kind slurm --job cores=1 --job memory=2GiB ... integrals DIR
    sudo python deploy/slurm/single_node.py stop /tmp/fluxscale-slurm

Debian's packages (``slurmctld``, ``slurmd``, ``slurm-client``, ``munge``; installed with
``apt-get`` when missing, as root) run from one directory: a throwaway 128-byte munge key
and ``munged`` (as user ``munge``) on a private socket, and a minimal ``slurm.conf``
(``NodeName=localhost NodeAddr=127.0.0.1`` with this machine's CPUs and 85 % of its memory,
``proctrack/linuxproc``, ``task/none``, ``select/cons_tres`` with ``CR_Core_Memory``, no
cgroups, no accounting, every daemon on 127.0.0.1 and on free ports). Nothing in
``/etc`` is changed and no system service is started; ``stop`` ends the jobs, then exactly
the daemons ``start`` started (their pids are in ``DIR/pids.json``). Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
COMMANDS = ("slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel", "munged")
SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be had here (not root, no apt-get, the install failed)."""


def _which(cmd: str) -> str | None:
    return shutil.which(cmd) or next((f"{d}/{cmd}" for d in SBIN if os.access(f"{d}/{cmd}", os.X_OK)), None)


def ensure_packages(install: bool = True) -> None:
    """Install Debian's SLURM and munge packages when a command is missing (as root, with
    ``apt-get``); raises :class:`SlurmUnavailable` with the reason when that is not possible."""
    missing = [c for c in COMMANDS if _which(c) is None]
    if not missing:
        return
    if not install:
        raise SlurmUnavailable(f"SLURM commands missing: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"SLURM commands missing ({', '.join(missing)}) and not root to install them")
    apt = shutil.which("apt-get")
    if apt is None:
        raise SlurmUnavailable(f"SLURM commands missing ({', '.join(missing)}) and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    res = subprocess.run([apt, "install", "-y", "--no-install-recommends", *PACKAGES], capture_output=True,
                         text=True, env=env)
    if res.returncode != 0:  # stale package lists: update once, then retry
        subprocess.run([apt, "update"], capture_output=True, text=True, env=env)
        res = subprocess.run([apt, "install", "-y", "--no-install-recommends", *PACKAGES], capture_output=True,
                             text=True, env=env)
    missing = [c for c in COMMANDS if _which(c) is None]
    if res.returncode != 0 or missing:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {tail[0]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmUnavailable("no MemTotal in /proc/meminfo")


class SingleNodeSlurm:
    """A single-node SLURM whose files all live in ``workdir`` (see the module's doc).

    ``env`` is the environment for SLURM's commands (``SLURM_CONF``); ``cpus`` and
    ``memory_mb`` are the node's size as configured."""

    def __init__(self, workdir: str | Path | None = None):
        import tempfile

        # munged (user munge) must reach its socket: a directory whose parents it can enter
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="fluxscale-slurm-")).resolve()
        self.conf = self.dir / "slurm.conf"
        self.cpus = os.cpu_count() or 1
        self.memory_mb = int(_mem_total_mb() * 0.85)
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` with ``SLURM_CONF`` pointing at this SLURM."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _config(self, ctld_port: int, slurmd_port: int, munge_socket: Path) -> str:
        d = self.dir
        return f"""# single-node SLURM written by deploy/slurm/single_node.py
ClusterName=fluxscale
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=30
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

    def start(self, timeout: float = 60.0) -> "SingleNodeSlurm":
        """Write the configuration, start munged, slurmctld and slurmd, and wait until
        ``sinfo`` shows the node idle."""
        import pwd

        if os.geteuid() != 0:
            raise SlurmUnavailable("a single-node SLURM needs root (slurmd runs jobs as their users)")
        ensure_packages()
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool", "munge"):
            (self.dir / sub).mkdir(exist_ok=True)
        munge = pwd.getpwnam("munge")
        mdir = self.dir / "munge"
        os.chmod(self.dir, 0o755)
        os.chown(mdir, munge.pw_uid, munge.pw_gid)
        os.chmod(mdir, 0o700)
        key = mdir / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(128))
        os.chown(key, munge.pw_uid, munge.pw_gid)
        sock = mdir / "munge.socket"
        self.conf.write_text(self._config(_free_port(), _free_port(), sock))
        t0 = time.monotonic()
        munged = [_which("munged"), "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                  f"--pid-file={mdir / 'munged.pid'}", f"--log-file={mdir / 'munged.log'}",
                  f"--seed-file={mdir / 'munged.seed'}"]
        self._spawn("munged", ["runuser", "-u", "munge", "--", *munged])
        self._wait(lambda: sock.exists(), timeout, "munged did not create its socket", "munged")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
        self._save_pids()
        self._wait(lambda: self.node_state() == "idle", max(1.0, timeout - (time.monotonic() - t0)),
                   "the node did not become idle", "slurmctld")
        self.start_s = time.monotonic() - t0
        return self

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.dir / f"{name}.out", "w")
        # a new session: a Ctrl-C in the terminal does not reach the daemons
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, start_new_session=True)

    def _save_pids(self) -> None:
        (self.dir / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.procs.items()}))

    def _wait(self, ok, timeout: float, what: str, log: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ok():
                return
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                break
            time.sleep(0.3)
        out = ""
        for n in (log, *self.procs):
            f = self.dir / f"{n}.out"
            lines = f.read_text(errors="replace").strip().splitlines() if f.exists() else []
            if lines:
                out = f"{n}: {lines[-1]}"
                break
        self.stop()
        raise SlurmUnavailable(f"single-node SLURM: {what} within {timeout:.0f} s ({out or 'no output'})")

    def run(self, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """A SLURM command against this SLURM."""
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, timeout=timeout)

    def node_state(self) -> str:
        """The node's state as ``sinfo`` reports it (``idle``, ``mixed``, ``alloc``, …)."""
        try:
            res = self.run("sinfo", "-h", "-N", "-o", "%t")
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return res.stdout.strip().rstrip("*~#!%$@^-")

    def jobs(self) -> list[dict[str, str]]:
        """The jobs SLURM knows (id, name, state, reason)."""
        res = self.run("squeue", "-h", "-o", "%i|%j|%T|%r")
        return [dict(zip(("id", "name", "state", "reason"), ln.split("|"))) for ln in res.stdout.splitlines() if ln]

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job and wait until the queue is empty."""
        ids = [j["id"] for j in self.jobs()]
        if ids:
            self.run("scancel", *ids)
        end = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < end:
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel the jobs, then stop the daemons this object started (by pid)."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            try:
                self.cancel_all()
            except (OSError, subprocess.TimeoutExpired):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.procs.clear()
        (self.dir / "pids.json").unlink(missing_ok=True)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _stop_dir(workdir: Path) -> None:
    """``stop`` from another process: cancel the jobs, then end the recorded pids."""
    import signal

    node = SingleNodeSlurm(workdir)
    pids = json.loads((node.dir / "pids.json").read_text())
    try:
        node.cancel_all()
    except (OSError, subprocess.TimeoutExpired):
        pass
    for name in ("slurmd", "slurmctld", "munged"):
        pid = pids.get(name)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    (node.dir / "pids.json").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: single_node.py start|stop DIR", file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            node = SingleNodeSlurm(argv[1]).start()
            node.procs.clear()  # the daemons outlive this script; stop with: single_node.py stop DIR
            print(f"SLURM up in {node.start_s:.1f} s: {node.cpus} CPUs, {node.memory_mb} MB on node localhost\n"
                  f"export SLURM_CONF={node.conf}")
        else:
            _stop_dir(Path(argv[1]))
    except (SlurmUnavailable, FileNotFoundError) as e:
        print(f"single_node.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
