"""Ray's cluster launcher (``ray up`` / ``ray submit`` / ``ray down``) against this machine, for tests.

An SSH server of the test's own (Debian's ``sshd``) listens on 127.0.0.1 only, on a free port,
accepting one key the test generates, and gives every session a home folder of the test's
(``SetEnv HOME``): what the launcher puts in ``~`` on the "head" (the checkout, the
environment link, the bootstrap config and key, the submitted script, the MLflow store) lands
in the test's folder, not in the account's real home. ssh reaches that port through
``ProxyCommand nc 127.0.0.1 PORT`` (the launcher has no port option; ``auth.ssh_proxy_command``
is how it passes one to ssh and rsync).

The cluster file is ``clusters/local.yaml`` itself, with what a user fills in filled in (user,
key, the proxy) and what would collide on a shared test machine moved (free ports, a Ray temp
folder of the test's, a cluster name of its own). Its setup commands run as written but for
``pip install``: the test's environment is already installed, and ``~/sweeplab-venv`` links to it.

Everything it starts is found again by what only it uses (its Ray temp folder, its MLflow port)
and stopped by process id. ``ray down`` runs ``ray stop`` on the head, which ends every Ray
process of the SSH account on this machine: ``foreign_ray_processes`` tells the test whether
any other is running (then the test does not run).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml

from cluster import LOOPBACK, descendants, free_port, listening_sockets

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLUSTER_FILE = REPO / "clusters" / "local.yaml"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard.py", "monitor.py",
                     "log_monitor.py", "runtime_env_agent", "dashboard_agent")


def missing_tools() -> list[str]:
    """What this machine lacks to run the launcher's SSH path (``.ci/run`` installs it)."""
    missing = [name for name, path in (("sshd (openssh-server)", SSHD), ("ssh", shutil.which("ssh")),
                                       ("rsync", shutil.which("rsync")), ("nc (netcat-openbsd)", shutil.which("nc")),
                                       ("ssh-keygen", shutil.which("ssh-keygen")))
               if not path or not os.access(path, os.X_OK)]
    if os.geteuid() != 0:
        missing.append("root (sshd switches to the SSH account)")
    return missing


@dataclass(frozen=True)
class Process:
    pid: int
    uid: int
    cmdline: str


def processes() -> list[Process]:
    """Live (not zombie) processes, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z":
                continue
            uid = int(next(line for line in Path(f"/proc/{entry}/status").read_text().splitlines()
                           if line.startswith("Uid:")).split()[1])
            line = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, StopIteration, IndexError, ValueError):
            continue
        out.append(Process(int(entry), uid, line))
    return out


def foreign_ray_processes(own_marker: str | None = None) -> list[str]:
    """Ray processes of this account that the test did not start (``ray stop`` would end them)."""
    return [f"{p.pid}: {p.cmdline[:120]}" for p in processes()
            if p.uid == os.getuid() and "ray" in p.cmdline and any(n in p.cmdline for n in RAY_PROCESS_NAMES)
            and (own_marker is None or own_marker not in p.cmdline)]


def processes_with(marker: str) -> list[Process]:
    """Live processes whose command line holds ``marker`` (a folder or a port only the test uses)."""
    return [p for p in processes() if marker in p.cmdline]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


def stop_processes(procs: list[Process], wait: float = 15.0) -> list[Process]:
    """SIGTERM, then SIGKILL, these processes (by pid); returns any still alive."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while (procs := [p for p in procs if _alive(p.pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not procs:
            break
    return procs


@dataclass
class SshServer:
    port: int
    key: Path  # the client's private key
    home: Path  # the sessions' home folder
    process: subprocess.Popen
    log: Path

    @property
    def proxy(self) -> str:
        return f"nc {LOOPBACK} {self.port}"

    def listening(self) -> list[str]:
        return listening_sockets({self.process.pid})


@contextmanager
def ssh_server(root: Path, timeout: float = 20.0) -> Iterator[SshServer]:
    """``sshd`` on 127.0.0.1:<free port> for this account, key-only, sessions homed in ``root/home``."""
    root.mkdir(parents=True, exist_ok=True)
    home = root / "home"
    home.mkdir(exist_ok=True)
    key, host_key = root / "client_key", root / "host_key"
    for path in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {LOOPBACK}", f"Port {port}", f"HostKey {host_key}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", f"AllowUsers {getpass.getuser()}",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "X11Forwarding no", "AllowTcpForwarding no", "PrintMotd no",
        f"SetEnv HOME={home}", "",
    ]))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    log = root / "sshd.log"
    with open(log, "w") as out:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = SshServer(port, key, home, process, log)
    try:
        deadline = time.monotonic() + timeout
        while not server.listening():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        sessions = [p for p in processes() if p.pid in descendants({process.pid}) - {process.pid}]
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stop_processes(sessions)  # its SSH sessions (and what still runs in them)


@dataclass
class LauncherCluster:
    """``clusters/local.yaml`` as the test runs it, and how to reach what it starts."""

    file: Path
    name: str
    ray_temp: Path
    gcs_port: int
    dashboard_port: int
    mlflow_port: int
    env: dict = field(default_factory=dict)  # the launcher commands' environment (their own HOME)

    @property
    def mlflow_uri(self) -> str:
        return f"http://{LOOPBACK}:{self.mlflow_port}"

    def ray(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """A ``ray`` launcher command on this cluster file, from the repository root."""
        return subprocess.run([str(BIN / "ray"), *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def started(self) -> list[Process]:
        """What ``ray up`` started on the head: its Ray processes and its MLflow server."""
        return processes_with(str(self.ray_temp)) + processes_with(f"--port {self.mlflow_port}")


def launcher_cluster(root: Path, server: SshServer) -> LauncherCluster:
    """Write the test's copy of ``clusters/local.yaml`` for ``server`` (see the module's docstring)."""
    text = CLUSTER_FILE.read_text()
    gcs, dash, mlflow = free_port(), free_port(), free_port()
    ray_temp = Path(tempfile.mkdtemp(prefix="slup-"))  # short: Ray's socket paths have a length limit
    text = (text.replace("--port=6379", f"--port={gcs}").replace("--dashboard-port=8265", f"--dashboard-port={dash}")
            .replace("--port 5000", f"--port {mlflow}"))
    config = yaml.safe_load(text)
    name = f"sweeplab-test-{uuid.uuid4().hex[:8]}"
    config["cluster_name"] = name
    config["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(server.key),
                      "ssh_proxy_command": server.proxy}
    config["setup_commands"] = [c for c in config["setup_commands"] if "pip install" not in c]
    head = config["head_start_ray_commands"]
    start = next(i for i, c in enumerate(head) if "ray start --head" in c)
    head[start] += (f" --temp-dir={ray_temp} --num-cpus=2 --object-store-memory={200 * 2**20}"
                    f" --ray-client-server-port={free_port()} --dashboard-agent-listen-port={free_port()}"
                    f" --node-manager-port={free_port()} --object-manager-port={free_port()}"
                    f" --metrics-export-port={free_port()} --runtime-env-agent-port={free_port()}")
    path = root / "local.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    launcher_home = root / "launcher_home"  # the launcher's ~ (its token; ssh's own files stay untouched)
    (launcher_home / ".ray").mkdir(parents=True, exist_ok=True)
    token = launcher_home / ".ray" / "auth_token"
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)  # what `ray get-auth-token --generate` writes
    token.chmod(0o600)
    (server.home / "sweeplab-venv").symlink_to(Path(sys.prefix))  # the installed environment, as setup makes it
    (server.home / ".bashrc").touch()
    env = {**os.environ, "HOME": str(launcher_home), "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return LauncherCluster(path, name, ray_temp, gcs, dash, mlflow, env)


def remove_cluster_state(name: str) -> None:
    """The local provider's record of the cluster's nodes (``/tmp/ray/cluster-<name>.state``)."""
    for path in Path(tempfile.gettempdir(), "ray").glob(f"cluster-{name}.*"):
        path.unlink(missing_ok=True)
