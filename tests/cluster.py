"""A real Ray cluster on this machine, for tests: two nodes, the Jobs API, token
authentication on, and an MLflow tracking server. Everything listens on 127.0.0.1 only.

Why both nodes are 127.0.0.1 (and not 127.0.0.2 / 127.0.0.3): Ray's core servers (GCS,
raylet, dashboard agent, metrics) bind to 127.0.0.1 when the node's address is exactly
127.0.0.1, and to every interface (0.0.0.0) for any other address, 127.0.0.2 included,
so a node at 127.0.0.2 listens on the machine's network address too (checked with
``ss -ltnp``). A node stays at 127.0.0.1 only with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(otherwise Ray swaps 127.0.0.1 for the network address), and with that setting
``ray start --address`` refuses to start a second node. So the head is started with
``ray start --head`` as on a real cluster, and the worker node with the same call
``ray start --address ... --block`` makes internally (``ray._private.node.Node``), run as
``python tests/cluster.py worker``. Ray supports several nodes on one host (a driver
connects to the head node's raylet); they are told apart by node id.

Every process is started in a session of its own and ended by process id (SIGTERM, then
SIGKILL for what is left of that session), never by name and never with ``ray stop``.

    with local_cluster(tmp_path) as c:      # or:  python tests/cluster.py up DIR
        c.dashboard_url, c.mlflow_uri, c.client_env()
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

BIN = Path(sys.executable).parent  # ray and mlflow of this environment
LOOPBACK = "127.0.0.1"
# Unix socket paths (temp dir + /session_<date>_<pid>/sockets/plasma_store) must stay under 108 bytes
MAX_RAY_TEMP_CHARS = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of the session whose leader is ``sid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields after "(comm)": state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


def descendants(roots: set[int]) -> set[int]:
    """``roots`` and every live process below them (a job's driver starts a session of its own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def listening_sockets(pids: set[int]) -> list[str]:
    """``address:port`` of every TCP socket these processes listen on (from ``ss -ltnp``)."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        owners = {int(p.split("=")[1]) for p in line.split(",") if p.startswith("pid=")}
        if owners & pids:
            found.append(parts[3])
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    host = host.removeprefix("::ffff:")
    return host.startswith("127.") or host == "::1"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def sid(self) -> int:
        return self.popen.pid  # started with start_new_session: its pid is the session id

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalCluster:
    root: Path
    gcs_address: str
    dashboard_url: str
    mlflow_uri: str | None
    token_file: Path
    procs: list[Proc] = field(default_factory=list)

    def client_env(self, base: dict | None = None) -> dict:
        """The environment of a client (sweeplab submit/jobs/logs/stop, ray job ...): Ray's
        token authentication as Ray documents it, and no loopback-only switch (it would stop
        nothing here, but a client has no business with it)."""
        env = dict(os.environ if base is None else base)
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_file),
                   PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        return env

    def pids(self) -> set[int]:
        """Every live process the cluster started: its sessions and what descends from them."""
        return descendants({pid for p in self.procs for pid in session_pids(p.sid)})

    def request(self, path: str) -> dict:
        """GET from the dashboard with the token (Ray's state and jobs APIs)."""
        req = urllib.request.Request(self.dashboard_url + path,
                                     headers={"Authorization": f"Bearer {self.token_file.read_text().strip()}"})
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.loads(response.read())

    def nodes(self) -> list[dict]:
        """Every node the cluster has seen (Ray's state API), alive or not."""
        return self.request("/api/v0/nodes?detail=1&limit=100")["data"]["result"]["result"]

    def alive_nodes(self) -> list[dict]:
        return [n for n in self.nodes() if n["state"] == "ALIVE"]


def _start(name: str, cmd: list[str], env: dict, root: Path) -> Proc:
    log = root / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=root)
    return Proc(name, popen, log)


def _wait(what: str, ready, procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode} while waiting for {what}:\n{p.tail()}")
        try:
            if ready():
                return
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n" + "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs))


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start_time(pid: int) -> str | None:
    """When a live process started (None: gone or a zombie), to tell it from a later one with its pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # fields[19]: starttime (field 22 of stat)


def stop(procs: list[Proc], grace: float = 20.0) -> list[int]:
    """SIGTERM each process we started, wait, then SIGKILL whatever is left of their sessions
    and of the processes below them (a job's driver has a session of its own). A process is
    known by pid and start time, so a pid reused meanwhile is never signalled. Returns the
    pids still alive at the end (empty when all is gone)."""
    ours = {pid: _start_time(pid) for pid in descendants({pid for p in procs for pid in session_pids(p.sid)})}

    def alive() -> list[int]:
        now = {pid for p in procs for pid in session_pids(p.sid)}
        now |= {pid for pid, started in ours.items() if started is not None and _start_time(pid) == started}
        return sorted(now)

    for p in reversed(procs):
        if p.popen.poll() is None:
            try:
                p.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive():
        time.sleep(0.5)
    for pid in alive():
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, FileNotFoundError):
            pass
    deadline = time.monotonic() + 10
    left: list[int] = []
    while time.monotonic() < deadline:
        for p in procs:
            if p.popen.poll() is None:
                try:
                    p.popen.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
        left = alive()
        if not left:
            break
        time.sleep(0.5)
    return left


@contextmanager
def local_cluster(root: Path, *, sweep_slots: int = 1, cpus_per_node: int = 1, worker: bool = True,
                  mlflow: bool = True, pin_seconds: int = 2, timeout: float = 120.0) -> Iterator[LocalCluster]:
    """Head (``sweep_slots`` slots, dashboard), a worker node and an MLflow server; torn down
    by process id on exit, raising if anything it started is still alive."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    token.chmod(0o600)
    with ExitStack() as stack:
        ray_tmp = root / "ray"
        if len(str(ray_tmp)) > MAX_RAY_TEMP_CHARS:  # pytest's tmp paths can be long
            ray_tmp = Path(tempfile.mkdtemp(prefix="slray-"))
            stack.callback(shutil.rmtree, ray_tmp, ignore_errors=True)
        gcs_port, dash_port = free_port(), free_port()
        cluster = LocalCluster(root, f"{LOOPBACK}:{gcs_port}", f"http://{LOOPBACK}:{dash_port}",
                               None, token)
        node_env = cluster.client_env()
        node_env.update(
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # keeps 127.0.0.1 as the node address (see above)
            RAY_JOB_START_TIMEOUT_SECONDS="86400",  # a queued sweep may wait for hours (default: 15 min, then FAILED)
            RAY_USAGE_STATS_ENABLED="0",
            # an uploaded working dir is pinned for 10 min until a job refers to it; short here, so the
            # queue test shows that a job waiting for its slot keeps its package
            RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S=str(pin_seconds),
        )
        try:
            cluster.procs.append(_start("head", [
                str(BIN / "ray"), "start", "--head", "--block",
                "--node-ip-address", LOOPBACK, "--port", str(gcs_port),
                "--dashboard-host", LOOPBACK, "--dashboard-port", str(dash_port),
                "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                "--num-cpus", str(cpus_per_node), "--num-gpus", "0", "--object-store-memory", str(200 * 2**20),
                "--resources", json.dumps({"sweep_slot": sweep_slots}),
                "--temp-dir", str(ray_tmp / "h"), "--disable-usage-stats",
            ], node_env, root))
            if mlflow:
                port = free_port()
                db = root / "mlflow.db"
                cluster.mlflow_uri = f"http://{LOOPBACK}:{port}"
                env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
                cluster.procs.append(_start("mlflow", [
                    str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
                    "--artifacts-destination", str(root / "mlartifacts"),
                    "--host", LOOPBACK, "--port", str(port), "--workers", "1",
                ], env, root))
            _wait("the head node's Jobs API", lambda: cluster.request("/api/jobs/") is not None, cluster.procs, timeout)
            if worker:
                cluster.procs.append(_start("worker", [
                    sys.executable, str(Path(__file__).resolve()), "worker", "--address", cluster.gcs_address,
                    "--num-cpus", str(cpus_per_node), "--temp-dir", str(ray_tmp / "w"),
                ], node_env, root))
                _wait("the worker node", lambda: len(cluster.alive_nodes()) == 2, cluster.procs, timeout)
            if mlflow:
                _wait("the MLflow server", lambda: _http_ok(cluster.mlflow_uri + "/health"), cluster.procs, timeout)
            yield cluster
        finally:
            left = stop(cluster.procs)
            if left:
                raise RuntimeError(f"processes of the test cluster still alive after SIGKILL: {left}")


def assert_loopback_only(cluster: LocalCluster) -> list[str]:
    """Every socket the cluster's processes listen on is on loopback; returns them."""
    sockets = listening_sockets(cluster.pids())
    outside = [s for s in sockets if not is_loopback(s)]
    assert not outside, f"listening beyond loopback: {outside}"
    return sockets


# -- python tests/cluster.py worker | up ---------------------------------------------------------

def _worker(args) -> None:
    """A worker node at 127.0.0.1, as ``ray start --address ADDR --block`` starts one (which
    refuses to under RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). Ends its node on SIGTERM."""
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(
        gcs_address=args.address, node_ip_address=LOOPBACK, num_cpus=args.num_cpus, num_gpus=0,
        object_store_memory=200 * 2**20, temp_dir=args.temp_dir, node_manager_port=0,
        min_worker_port=0, max_worker_port=0, dashboard_agent_listen_port=free_port(),
    )
    node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit hooks end the node's processes
    print(f"worker node {node.node_id} joined {args.address}", flush=True)
    while True:
        time.sleep(3600)


def _up(args) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # either way the cluster is torn down
    with local_cluster(Path(args.dir), sweep_slots=args.slots) as c:
        print(f"dashboard / Jobs API: {c.dashboard_url}\nMLflow:  {c.mlflow_uri}\n"
              f"clients: export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={c.token_file}\n"
              f"listening: {', '.join(sorted(assert_loopback_only(c)))}\nCtrl-C stops it all.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="a worker node at 127.0.0.1 (used by local_cluster)")
    w.add_argument("--address", required=True)
    w.add_argument("--num-cpus", type=int, default=1)
    w.add_argument("--temp-dir", required=True)
    u = sub.add_parser("up", help="head + worker + MLflow server until Ctrl-C")
    u.add_argument("dir")
    u.add_argument("--slots", type=int, default=1)
    a = parser.parse_args()
    {"worker": _worker, "up": _up}[a.command](a)
