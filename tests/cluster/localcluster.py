"""A real, throw-away Redis Cluster for tests and local runs: N masters, no replicas, no persistence.

    cluster = RedisClusterProcess(masters=3).start()
    settings = Settings(redis_url=cluster.url, ...)   # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
    ...
    cluster.stop()

Each node is a ``redis-server --cluster-enabled yes`` on its own free loopback port, with its cluster bus on a
second free port (``cluster-port``, Redis >= 7), its config file and working directory in one temp dir. The
nodes are joined with ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`` and ``start()``
returns once ``CLUSTER INFO`` reports ``cluster_state:ok`` with every slot assigned on every node. Every wait
is bounded and fails with the node's log tail.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from livegate.cli.devstack import redis_server_binary

CLUSTER_SLOTS = 16384


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so they are distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found:
        return found
    raise FileNotFoundError("no redis-cli on PATH (it joins the cluster nodes); install redis-tools / redis-server")


def _command(port: int, *args: str, timeout_s: float = 2.0, password: str | None = None) -> bytes:
    """One command to one node over a plain socket (RESP2; simple, error, integer and bulk string replies)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        if password:
            s.sendall(_pack("AUTH", password))
            if not s.recv(1024).startswith(b"+OK"):
                raise RuntimeError(f"127.0.0.1:{port}: AUTH failed")
        s.sendall(_pack(*args))
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"127.0.0.1:{port} closed the connection")
            buf += chunk
            if buf[:1] in (b"+", b"-", b":") and buf.endswith(b"\r\n"):
                if buf[:1] == b"-":
                    raise RuntimeError(f"127.0.0.1:{port} {' '.join(args)}: {buf[1:].strip().decode()}")
                return buf[1:-2]
            if buf[:1] == b"$":
                head, _, rest = buf.partition(b"\r\n")
                size = int(head[1:])
                if size < 0:
                    return b""
                if len(rest) >= size + 2:
                    return rest[:size]


def _pack(*args: str) -> bytes:
    return (f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)).encode()


class RedisClusterProcess:
    """``masters`` redis-server processes joined into one cluster (no replicas). See the module docstring."""

    def __init__(self, masters: int = 3, *, password: str | None = None, node_timeout_ms: int = 2000,
                 extra_args: tuple[str, ...] = ()) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.masters = masters
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = extra_args
        self.ports: list[int] = []
        self.bus_ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        return f"<RedisClusterProcess ports={self.ports} running={self.running}>"

    @property
    def url(self) -> str:
        auth = f"default:{quote(self.password, safe='')}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def _log(self, i: int) -> Path:
        assert self._dir is not None
        return Path(self._dir.name) / f"node-{i}" / "redis.log"

    def _log_tail(self, i: int, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self._log(i).read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def start(self, timeout_s: float = 20.0) -> RedisClusterProcess:
        if self.procs:
            raise RuntimeError("already started")
        deadline = time.monotonic() + timeout_s
        try:
            self._start_nodes(deadline)
            self._create(deadline)
            self._wait_ok(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nodes(self, deadline: float) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="livegate-rediscluster-")
        ports = _free_ports(2 * self.masters)
        self.ports, self.bus_ports = ports[: self.masters], ports[self.masters:]
        binary = redis_server_binary()
        for i, (port, bus) in enumerate(zip(self.ports, self.bus_ports)):
            node_dir = Path(self._dir.name) / f"node-{i}"
            node_dir.mkdir()
            self.procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-port", str(bus), "--cluster-config-file", str(node_dir / "nodes.conf"),
                 "--cluster-node-timeout", str(self.node_timeout_ms), "--save", "", "--appendonly", "no",
                 "--dir", str(node_dir), "--logfile", str(node_dir / "redis.log"),
                 *(("--requirepass", self.password, "--masterauth", self.password) if self.password else ()),
                 *self.extra_args],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i, port in enumerate(self.ports):
            while True:
                proc = self.procs[i]
                if proc.poll() is not None:
                    raise RuntimeError(f"cluster node {i} (port {port}) exited with {proc.returncode}:\n"
                                       f"{self._log_tail(i)}")
                with contextlib.suppress(OSError, ConnectionError, RuntimeError):
                    if _command(port, "PING", timeout_s=0.5, password=self.password) == b"PONG":
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cluster node {i} did not answer PING on port {port}:\n{self._log_tail(i)}")
                time.sleep(0.02)

    def _create(self, deadline: float) -> None:
        cmd = [redis_cli_binary(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
               "--cluster-replicas", "0", "--cluster-yes"]
        if self.password:
            cmd += ["-a", self.password, "--no-auth-warning"]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=max(1.0, deadline - time.monotonic()),
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"`{' '.join(cmd)}` did not finish in time: {exc.stdout!r}") from None
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{out[-2000:]}")

    def cluster_info(self, port: int) -> dict[str, str]:
        text = _command(port, "CLUSTER", "INFO", password=self.password).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def _wait_ok(self, deadline: float) -> None:
        while True:
            states = {}
            for port in self.ports:
                try:
                    info = self.cluster_info(port)
                    states[port] = (info.get("cluster_state"), info.get("cluster_slots_ok"),
                                    info.get("cluster_known_nodes"))
                except (OSError, ConnectionError, RuntimeError) as exc:
                    states[port] = (repr(exc), None, None)
            want = ("ok", str(CLUSTER_SLOTS), str(self.masters))
            if all(s == want for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok on every node in time (state, slots_ok, known_nodes): {states}")
            time.sleep(0.05)

    def slot_owners(self) -> dict[int, list[tuple[int, int]]]:
        """Master port -> its slot ranges (inclusive), from ``CLUSTER NODES`` on the first node."""
        out: dict[int, list[tuple[int, int]]] = {}
        for line in _command(self.ports[0], "CLUSTER", "NODES", password=self.password).decode().splitlines():
            parts = line.split()
            if len(parts) < 8 or "master" not in parts[2].split(","):
                continue
            port = int(parts[1].split("@")[0].rpartition(":")[2])
            ranges = out.setdefault(port, [])
            for r in parts[8:]:
                if r.startswith("["):  # a slot being migrated/imported
                    continue
                lo, _, hi = r.partition("-")
                ranges.append((int(lo), int(hi or lo)))
        return out

    def port_for_slot(self, slot: int) -> int:
        """The port of the master that serves ``slot``."""
        for port, ranges in self.slot_owners().items():
            if any(lo <= slot <= hi for lo, hi in ranges):
                return port
        raise LookupError(f"no master serves slot {slot}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisClusterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["RedisClusterProcess", "CLUSTER_SLOTS", "redis_cli_binary"]
