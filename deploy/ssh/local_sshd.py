#!/usr/bin/env python3
"""A real ``sshd`` on 127.0.0.1 with throwaway keys, for trying ``--kind ssh`` and for the tests.

    sudo python deploy/ssh/local_sshd.py start /tmp/fluxscale-sshd   # prints the options
    python deploy/launch.py --kind ssh --ssh-host 127.0.0.1 --ssh-host 127.0.0.1 \\
        --ssh-port PORT --ssh-user root --ssh-key /tmp/fluxscale-sshd/client_key \\
        --ssh-known-hosts /tmp/fluxscale-sshd/known_hosts integrals DIR
    sudo python deploy/ssh/local_sshd.py stop /tmp/fluxscale-sshd

Debian's ``openssh-server`` (installed with ``apt-get`` when missing, as root) runs from one
directory with its own configuration: a fresh host key and client key, an
``authorized_keys`` with the client key, a ``known_hosts`` with the host key,
``ListenAddress 127.0.0.1`` on a free port, ``PermitRootLogin prohibit-password``,
``PasswordAuthentication no``, ``UsePAM no`` and ``StrictModes no`` (temporary directories
are world-writable). Nothing in ``/etc`` is changed and the system's sshd is not touched;
``stop`` ends exactly the sshd ``start`` started (its pid is in ``DIR/sshd.pid``).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class SshdUnavailable(RuntimeError):
    """sshd cannot be had here (not root, no apt-get, the install failed)."""


def _sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/sbin/sshd") if os.access(p, os.X_OK)), None)


def ensure_sshd() -> str:
    """The sshd binary, installing ``openssh-server`` with apt-get (as root) when missing."""
    found = _sshd()
    if found and shutil.which("ssh-keygen"):
        return found
    if os.geteuid() != 0:
        raise SshdUnavailable("sshd missing and not root to install openssh-server")
    apt = shutil.which("apt-get")
    if apt is None:
        raise SshdUnavailable("sshd missing and no apt-get to install openssh-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [apt, "install", "-y", "--no-install-recommends", "openssh-server", "openssh-client"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        subprocess.run([apt, "update"], capture_output=True, text=True, env=env)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    found = _sshd()
    if res.returncode != 0 or not found:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        raise SshdUnavailable(f"apt-get install openssh-server failed: {tail[0]}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSshd:
    """An sshd on 127.0.0.1 whose files all live in ``workdir`` (a new temporary directory
    by default, removed by :meth:`stop`). ``port``, ``user``, ``client_key`` and
    ``known_hosts`` are what a client needs."""

    def __init__(self, workdir: str | Path | None = None):
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="fluxscale-sshd-")).resolve()
        self.user = getpass.getuser()
        self.port = 0
        self.client_key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "LocalSshd":
        """Keys, configuration, then ``sshd -D``; returns once it accepts connections."""
        sshd = ensure_sshd()
        self.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        host_key = self.dir / "host_ed25519"
        for key in (host_key, self.client_key):
            key.unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fluxscale-test", "-f", str(key)],
                           check=True, capture_output=True)
        (self.dir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.port = _free_port()
        host_pub = Path(f"{host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        conf = self.dir / "sshd_config"
        conf.write_text(f"""# written by deploy/ssh/local_sshd.py
Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {self.dir / 'sshd.pid'}
AuthorizedKeysFile {self.dir / 'authorized_keys'}
PubkeyAuthentication yes
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowUsers {self.user}
""")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # Debian's privilege separation directory
        log = open(self.dir / "sshd.log", "w")
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        self.start_s = time.monotonic() - t0
                        return self
            except OSError:
                time.sleep(0.2)
        lines = (self.dir / "sshd.log").read_text(errors="replace").strip().splitlines()
        self.stop()
        raise SshdUnavailable(f"sshd did not start within {timeout:g} s ({lines[-1] if lines else 'no output'})")

    def options(self) -> list[str]:
        """The ``fluxscale cluster`` options that reach this sshd."""
        return ["--ssh-port", str(self.port), "--ssh-user", self.user, "--ssh-key", str(self.client_key),
                "--ssh-known-hosts", str(self.known_hosts)]

    def stop(self) -> None:
        """Stop the sshd this object started (its sessions end with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: local_sshd.py start|stop DIR", file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            d = LocalSshd(argv[1]).start()
            print(f"sshd on 127.0.0.1:{d.port} (pid {d.proc.pid}); fluxscale cluster --kind ssh --ssh-host 127.0.0.1 "
                  f"--ssh-host 127.0.0.1 {' '.join(d.options())} STAGE ...")
        else:
            pid = int((Path(argv[1]) / "sshd.pid").read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
    except (SshdUnavailable, FileNotFoundError, ProcessLookupError, ValueError) as e:
        print(f"local_sshd.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
