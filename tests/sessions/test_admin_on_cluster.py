"""The operator commands on a real 3-master Redis Cluster: scans cover every master."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from redis.cluster import RedisCluster

from tests.conftest import require
from tests.support.processes import RedisServer, free_port, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.cluster]
TOKEN = {"Authorization": "Bearer t"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three cluster-enabled redis-servers joined by ``redis-cli --cluster create``."""
    require(RedisServer.binary is not None, "redis-server is not installed")
    require(shutil.which("redis-cli") is not None, "redis-cli is not installed")
    base = tmp_path_factory.mktemp("cluster")
    nodes = []
    try:
        for i in range(3):
            workdir = base / f"n{i}"
            # An explicit bus port: the default (port + 10000) overflows for high free ports.
            nodes.append(
                RedisServer(workdir, None, "--cluster-enabled", "yes",
                            "--cluster-port", str(free_port()),
                            "--cluster-config-file", str(workdir / "nodes.conf")).start()
            )  # fmt: skip
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_until(
            lambda: all(n.client().cluster("info")["cluster_state"] == "ok" for n in nodes),
            timeout=30,
            what="cluster state ok",
        )
        client = RedisCluster(host="127.0.0.1", port=nodes[0].port, decode_responses=True)
        yield client, nodes
        client.close()
    finally:
        for node in nodes:
            node.stop()


def test_stats_count_memory_and_purge_cover_every_master(make_app, cluster):
    client, nodes = cluster
    app = make_app({"ADMIN_TOKEN": "t"}, client=client)
    http = app.test_client()
    sids = [
        http.post("/api/send-message", json={"question": f"q{i}"}).get_json()["sessionId"]
        for i in range(40)
    ]
    client.set("not-a-session", "1")
    assert all(n.client().dbsize() > 0 for n in nodes), "keys should spread over all masters"

    body = http.get("/api/admin/stats", headers=TOKEN).get_json()
    assert body["activeSessions"] == 40
    assert len(body["memory"]["nodes"]) == 3 and body["memory"]["usedMemory"] > 0

    for n, sid in enumerate(sids[:20]):  # one script per rating, each in its session's slot
        rated = http.post(
            f"/api/session/{sid}/messages/1/feedback", json={"rating": ("up", "down")[n % 2]}
        )
        assert rated.status_code == 200
    assert all(
        m.get("feedback")
        for m in http.get(f"/api/session/{sids[0]}/history").get_json()["messages"][1:]
    )

    cli = app.test_cli_runner()
    assert cli.invoke(args=["sessions", "count"]).stdout == "40\n"
    exported = cli.invoke(args=["sessions", "feedback", "--rating", "down"]).stdout.splitlines()
    assert sorted(json.loads(line)["sessionId"] for line in exported) == sorted(sids[1:20:2])
    assert cli.invoke(args=["sessions", "persist", sids[0]]).exit_code == 0
    assert cli.invoke(args=["sessions", "show", sids[0]]).exit_code == 0
    purge = cli.invoke(args=["sessions", "purge", "--yes"])
    assert purge.stdout == "deleted 140 key(s)\n"  # 40 sessions of 3 keys, 20 feedback keys
    assert sorted(client.scan_iter()) == ["not-a-session"]
    client.delete("not-a-session")
