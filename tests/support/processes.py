"""Start and stop real ``redis-server`` and gunicorn processes for tests.

Every process binds 127.0.0.1 on a port the OS picked as free, lives in a temp dir, and is
stopped by the fixture that started it, so tests never touch a server they did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import redis

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Ask the OS for a currently unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last error: {last_error})")


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may contain spaces


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1, optionally with extra config lines."""

    binary = shutil.which("redis-server")

    def __init__(self, workdir: Path, port: int | None = None, *args: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = list(args)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **kwargs)

    def command(self) -> list[str]:
        """The redis-server command line; subclasses put a config file in front."""
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
            *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 10) -> RedisServer:
        if self.binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: self.client(socket_timeout=0.5).ping(), timeout, what="redis PING")
        return self

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class RedisClusterServers:
    """A Redis Cluster of ``masters`` masters (no replicas) joined by ``redis-cli --cluster``."""

    cli = shutil.which("redis-cli")

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.workdir = Path(workdir)
        self.nodes = [self._node(self.workdir / f"node{i}") for i in range(masters)]

    @staticmethod
    def _node(workdir: Path) -> RedisServer:
        # The bus defaults to port+10000, which overflows for high ephemeral ports: pick one.
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
            "--cluster-port", str(free_port()),
        ]  # fmt: skip
        return RedisServer(workdir, None, *args)

    @property
    def seed_url(self) -> str:
        """One node's URL: enough for a cluster client to discover the others."""
        return self.nodes[0].url

    def start(self, timeout: float = 30) -> RedisClusterServers:
        if self.cli is None:
            raise RuntimeError("redis-cli is not on PATH")
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [self.cli, "--cluster", "create", *addresses, "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout,
            )  # fmt: skip
            for node in self.nodes:
                wait_until(
                    lambda n=node: (
                        "cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO")
                    ),
                    timeout,
                    what=f"cluster_state:ok on {node.port}",
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` watching one master, with test-short failover timings."""

    def __init__(self, workdir: Path, master_name: str, master_port: int, quorum: int) -> None:
        super().__init__(workdir)
        # Sentinel rewrites its config file, so each one gets its own, in its own dir.
        self.config = self.workdir / "sentinel.conf"
        self.config.write_text(
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master_name} 500\n"
            f"sentinel failover-timeout {master_name} 3000\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary, str(self.config), "--sentinel",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "sentinel.log"),
        ]  # fmt: skip


class SentinelSet:
    """A master, one replica and ``sentinels`` sentinels (quorum: a majority) on loopback."""

    def __init__(self, workdir: Path, sentinels: int = 3, master_name: str = "chatmaster") -> None:
        self.workdir = Path(workdir)
        self.master_name = master_name
        self.master = RedisServer(self.workdir / "master")
        self.replica = RedisServer(
            self.workdir / "replica", None, "--replicaof", "127.0.0.1", str(self.master.port)
        )
        quorum = sentinels // 2 + 1
        self.sentinels = [
            SentinelServer(self.workdir / f"sentinel{i}", master_name, self.master.port, quorum)
            for i in range(sentinels)
        ]

    @property
    def sentinel_addresses(self) -> str:
        """The value for ``REDIS_SENTINELS``."""
        return ",".join(s.address for s in self.sentinels)

    def master_port(self) -> int:
        """The port the first live sentinel names as master now."""
        for sentinel in self.sentinels:
            if sentinel.process and sentinel.process.poll() is None:
                _, port = sentinel.client(socket_timeout=1).sentinel_get_master_addr_by_name(
                    self.master_name
                )
                return int(port)
        raise RuntimeError("no sentinel is running")

    def start(self, timeout: float = 30) -> SentinelSet:
        try:
            self.master.start()
            self.replica.start()
            wait_until(
                lambda: self.replica.client().info("replication")["master_link_status"] == "up",
                timeout,
                what="replica in sync",
            )
            for sentinel in self.sentinels:
                sentinel.start()
            # Ready when every sentinel knows the replica (the promotion candidate) and the
            # other sentinels (needed to elect a leader for the failover).
            for sentinel in self.sentinels:
                wait_until(
                    lambda s=sentinel: self._sees_everyone(s.client(socket_timeout=1)),
                    timeout,
                    what=f"sentinel {sentinel.port} discovering replica and peers",
                )
        except BaseException:
            self.stop()
            raise
        return self

    def _sees_everyone(self, client: redis.Redis) -> bool:
        master = client.sentinel_master(self.master_name)
        return (
            int(master["num-slaves"]) >= 1
            and int(master["num-other-sentinels"]) >= len(self.sentinels) - 1
        )

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()


class GunicornServer:
    """The real service under gunicorn (``gunicorn.conf.py`` + ``wsgi:app``) on loopback."""

    def __init__(
        self,
        env: Mapping[str, str],
        workdir: Path,
        port: int | None = None,
        app: str = "wsgi:app",
        ready_path: str = "/api/session/00000000/validate",
        args: tuple[str, ...] = (),
        python: str = sys.executable,
    ) -> None:
        self.app = app
        self.python = python  # the interpreter (its venv) gunicorn runs under
        self.args = args  # extra gunicorn command-line options, e.g. ("-w", "1")
        self.ready_path = ready_path
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SESSION_"))},
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "RATE_LIMIT_ENABLED": "0",
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / f"gunicorn-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> GunicornServer:
        import urllib.request

        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [self.python, "-m", "gunicorn", "-c", "gunicorn.conf.py", *self.args, self.app],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            with urllib.request.urlopen(f"{self.base_url}{self.ready_path}", timeout=2):
                return True

        wait_until(answers, timeout, what="gunicorn answering")
        return self

    def worker_pids(self) -> set[int]:
        """Pids of the master's current worker processes, read from ``/proc``."""
        assert self.process is not None
        return {pid for pid in _pids() if _parent_pid(pid) == self.process.pid}

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


class NginxServer:
    """Debian's nginx running ``deploy/nginx.conf`` on loopback, everything else in a temp dir.

    The shipped server config is used as is, except for the two lines that name places:
    the upstream (compose's ``app:8000``) and the listen port. The wrapper supplies what the
    official image's main nginx.conf would: pid, logs, temp paths, ``events`` and ``http``.
    """

    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    config_source = REPO_ROOT / "deploy" / "nginx.conf"

    def __init__(self, workdir: Path, upstream: str, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.upstream = upstream
        self.process: subprocess.Popen | None = None
        self.error_log = self.workdir / "error.log"
        self.access_log = self.workdir / "access.log"
        self.main_config = self.workdir / "nginx.conf"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """Render the shipped config for this port and upstream; return the main file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        server = self.config_source.read_text()
        for shipped, local in (
            ("server app:8000;", f"server {self.upstream};"),
            ("listen 80;", f"listen 127.0.0.1:{self.port};"),
        ):
            # exactly once, so a reshaped config breaks this loudly instead of testing nothing
            assert server.count(shipped) == 1, f"{shipped!r} must appear once in nginx.conf"
            server = server.replace(shipped, local)
        (self.workdir / "server.conf").write_text(server)
        temp = {name: self.workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir(exist_ok=True)
        # As root, workers would drop to `nobody`, who cannot enter pytest's 0700 temp dirs.
        user = "user root;" if os.geteuid() == 0 else ""
        self.main_config.write_text(
            f"""daemon off;
{user}
worker_processes 1;
pid {self.workdir}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 128; }}
http {{
    access_log {self.access_log};
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {self.workdir}/server.conf;
}}
"""
        )
        return self.main_config

    def command(self) -> list[str]:
        """The nginx command line for the rendered config (add ``-t`` or ``-T`` to check it)."""
        return [self.binary, "-p", str(self.workdir), "-c", str(self.main_config),
                "-e", str(self.error_log)]  # fmt: skip

    def test_config(self) -> subprocess.CompletedProcess:
        """``nginx -t`` on the rendered config."""
        self.write_config()
        return subprocess.run(
            [*self.command(), "-t"], capture_output=True, text=True, timeout=30, check=False
        )

    def start(self, timeout: float = 10) -> NginxServer:
        if self.binary is None:
            raise RuntimeError("nginx is not installed")
        self.write_config()
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def listening() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log.read_text()[-2000:]}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_until(listening, timeout, what="nginx listening")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
