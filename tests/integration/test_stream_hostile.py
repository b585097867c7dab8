"""The streaming server against clients that misbehave, with exec-go (kubelet's SPDY stack, see
test_exec_go.py): one that opens its streams and then says nothing, one that never reads while the
command writes as fast as it can, 200 sessions at once, and a daemon restarted under an interactive
exec. The daemons get short [Streaming] timeouts so that the waits take seconds."""

import os
import time

import pytest

from rktlet_test import wait_until
from test_containers import (cleanup, ctr_registry, cstatus, log_file, no_container_leftovers,  # noqa: F401
                             pytestmark, text, records, unit_of)
from test_exec import live_comms
from test_exec_go import ExecGo, Reader, exec_go, exec_sync, make_sd, read_result, service  # noqa: F401
from test_pods import cni, no_leftovers  # noqa: F401

CREATION, IDLE = 2, 3


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def version_ms(d, pb):
    t0 = time.monotonic()
    d.runtime().Version(pb.VersionRequest(), timeout=10)
    return (time.monotonic() - t0) * 1000


def test_streams_opened_and_then_silence(make_sd, pb, exec_go):
    d = make_sd(StreamCreationTimeoutSec=CREATION, StreamIdleTimeoutSec=IDLE)
    _, cid, _ = service(d, pb)
    unit = unit_of(cid)
    before = live_comms(unit)
    g = ExecGo(exec_go, d)
    # Only the error stream of the three the request expects: the creation timeout ends it, and
    # nothing ran.
    began = time.monotonic()
    p, res = g.exec(cid, ["cat"], stdin=True, flags=["-streams", "error"])
    took = time.monotonic() - began
    assert p.returncode == 1 and res["error"] == "connection closed", res
    assert CREATION - 0.5 <= took < CREATION + 8, took
    # Every stream open, nothing sent, nothing to read (cat waits on its stdin): the idle timeout
    # ends it, and the exec with it.
    proc, path = g.popen(cid, ["cat"], stdin=True, flags=["-nosend"])
    began = time.monotonic()
    wait_until(lambda: live_comms(unit).count("cat") == 1, 10, what="the exec's cat to run")
    assert proc.wait(IDLE + 15) == 1
    took = time.monotonic() - began
    assert read_result(path)["error"] == "connection closed"
    assert IDLE - 1 <= took < IDLE + 10, took
    wait_until(lambda: live_comms(unit) == before, 10, what=f"the exec's cat to be killed ({live_comms(unit)})")
    # Traffic keeps a session alive past the idle timeout.
    proc, path = g.popen(cid, ["cat"], stdin=True)
    out = Reader(proc.stdout)
    for i in range(IDLE * 2):
        proc.stdin.write(f"{i}\n".encode())
        proc.stdin.flush()
        out.until(f"{i}\n".encode())
        time.sleep(1)
    proc.stdin.close()
    assert proc.wait(20) == 0 and read_result(path)["exit_code"] == 0


def test_a_client_that_never_reads(make_sd, pb, exec_go):
    """`yes` into a client that reads nothing: the daemon holds back (its memory stays where it
    was) and answers everything else meanwhile; the client gone, the command goes too."""
    d = make_sd()
    _, cid, _ = service(d, pb)
    unit = unit_of(cid)
    before = live_comms(unit)
    g = ExecGo(exec_go, d)
    assert g.exec(cid, ["echo", "warm"])[0].stdout == b"warm\n"
    rss0 = vm_rss_kib(d.pid)
    proc, path = g.popen(cid, ["yes"], stderr=False, flags=["-noread"])
    try:
        wait_until(lambda: "yes" in live_comms(unit), 10, what="yes to run")
        lat = []
        for _ in range(30):
            lat.append(version_ms(d, pb))
            time.sleep(0.2)
        rss1 = vm_rss_kib(d.pid)
        assert exec_sync(d, pb, cid, ["echo", "meanwhile"]).stdout == b"meanwhile\n"
        p, res = g.exec(cid, ["echo", "another"])
        assert p.stdout == b"another\n" and res["exit_code"] == 0
        print(f"VmRSS {rss0} KiB before, {rss1} KiB after 6 s of yes unread; Version max {max(lat):.1f} ms")
        # The SPDY queue stops the pipe at 1 MiB; what the kernel holds is not ours.
        assert rss1 - rss0 < 16 * 1024, (rss0, rss1)
        assert max(lat) < 1000, lat
    finally:
        proc.kill()
        proc.wait()
        os.unlink(path)
    wait_until(lambda: live_comms(unit) == before, 10, what=f"yes to be killed ({live_comms(unit)})")


HTTPD_SERVICE = ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /tmp/www; echo hello > /tmp/www/index.html; "
                 "httpd -p 8080 -h /tmp/www; echo ready; sleep 1000 & wait"]


@pytest.mark.parametrize("max_connections", [1000, 20])
def test_200_sessions_at_once(make_sd, pb, exec_go, max_connections):
    d = make_sd(MaxConnections=max_connections)
    pod, cid, _ = service(d, pb, command=HTTPD_SERVICE)
    unit = unit_of(cid)
    before = live_comms(unit)
    g = ExecGo(exec_go, d)
    req = f'{{"container_id": "{cid}", "cmd": ["true"], "stdout": true}}'
    p, res = g.run("many", "200", pod.id, "8080", req, timeout=240)
    assert p.returncode == 0, p
    print(f"MaxConnections={max_connections}: {res}")
    assert set(res) <= {"exec ok", "exec refused", "portforward ok", "portforward refused"}, res
    assert sum(res.values()) == 200 and res.get("exec ok", 0) > 0 and res.get("portforward ok", 0) > 0, res
    if max_connections == 1000:
        assert res == {"exec ok": 100, "portforward ok": 100}, res
    # Healthy afterwards: calls, an exec, a port-forward; no exec left in the container.
    assert version_ms(d, pb) < 1000
    p, res = g.exec(cid, ["echo", "after"])
    assert p.stdout == b"after\n" and res["exit_code"] == 0, res
    p, res = g.port_forward(pod.id, 8080, input=b"GET / HTTP/1.0\r\n\r\n")
    assert p.stdout.endswith(b"hello\n"), (p, res)
    wait_until(lambda: live_comms(unit) == before, 20, what=f"the execs to be gone ({live_comms(unit)})")


TICK_SERVICE = ["sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do echo tick; sleep 0.2; done"]


def test_daemon_restarted_during_an_interactive_exec(ctr_registry, cni, pb, exec_go, tmp_path):  # noqa: F811
    """rktlet.service killed under an interactive exec and restarted by systemd (whose fd store
    keeps the containers' pipes, as in production): the client's exec fails with the connection;
    the container runs on, its log goes on, and the exec's process is killed."""
    import chaos
    from test_images import pull
    from test_pods import CNI_BIN
    from test_exec_go import streaming_config
    r, images = ctr_registry
    svc = chaos.Service(tmp_path / "svc", streaming_config(r), ["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d = svc.d
    svc.install()
    try:
        svc.start()
        d.busybox = images["busybox"][0]
        pull(d, pb, d.busybox)
        pod, cid, cfg = service(d, pb, command=TICK_SERVICE)
        unit = unit_of(cid)
        before = [c for c in live_comms(unit) if c != "sleep"]
        g = ExecGo(exec_go, d)
        proc, path = g.popen(cid, ["cat"], stdin=True)
        out = Reader(proc.stdout)
        proc.stdin.write(b"one\n")
        proc.stdin.flush()
        out.until(b"one\n")
        assert "cat" in live_comms(unit)
        old = svc.kill()
        # The client's exec fails with the connection, at once.
        assert proc.wait(15) == 1
        res = read_result(path)
        assert res["error"] == "connection closed" and res["exit_code"] == -1, res
        svc.wait_restarted(old)
        d.close_channels()
        # The exec's cat is killed by the new daemon; the container goes on, and so does its log.
        wait_until(lambda: [c for c in live_comms(unit) if c != "sleep"] == before, 15,
                   what=f"the old exec to be gone ({live_comms(unit)})")
        assert cstatus(d, pb, cid).status.state == pb.CONTAINER_RUNNING
        assert exec_sync(d, pb, cid, ["echo", "again"]).stdout == b"again\n"
        n = text(records(log_file(pod, cfg))).count("tick")
        wait_until(lambda: text(records(log_file(pod, cfg))).count("tick") > n + 3, 10, what="new log lines")
        p, res = g.exec(cid, ["echo", "new"])
        assert p.stdout == b"new\n" and res["exit_code"] == 0, res
        cleanup(d, pb)
    finally:
        svc.uninstall()
