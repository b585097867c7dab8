"""The Prometheus endpoint of [Metrics] Address=: `GET /metrics` in the text format 0.0.4, scraped
and parsed with prometheus_client (Debian's python3-prometheus-client), as Prometheus would.

The daemon serves it on a loopback port the test picks; the counters are compared before and after
the calls a test makes, since the daemon's own start-up makes calls of its own (systemd jobs)."""

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request

import grpc
import pytest

from rktlet_test import journal, project_version, wait_journal, wait_until
from test_containers import (SERVICE, T, cleanup, ctr_config, ctr_registry, make_pod, no_container_leftovers,  # noqa: F401
                             pytestmark, remove, run, stop, wait_state)
from test_images import pull, registries_config
from test_pods import CNI_BIN, cni, needs_cni, no_leftovers  # noqa: F401

parser = pytest.importorskip("prometheus_client.parser",
                             reason="prometheus_client (Debian package python3-prometheus-client) is not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_config(port, extra=""):
    return extra + f"[Metrics]\nAddress=127.0.0.1:{port}\n"


def fetch(port, path="/metrics", method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers, resp.read().decode()


class Scrape:
    """One scrape, parsed: value(sample name, **labels), 0 when there is no such sample."""

    def __init__(self, port):
        status, headers, text = fetch(port)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        self.text = text
        self.families = {f.name: f for f in parser.text_string_to_metric_families(text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0)

    def labelled(self, name):
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]


@pytest.fixture
def md(make_daemon, ctr_registry, cni, pb):  # noqa: F811
    """A daemon with the metrics endpoint, the module registry's images and the test CNI network."""
    r, images = ctr_registry
    port = free_port()
    d = make_daemon(config=metrics_config(port, registries_config([r.url])),
                    args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d.port = port
    d.images_by_name = images
    yield d
    if d.alive():
        cleanup(d, pb)


def listening_sockets(pid):
    """The inodes of the TCP sockets the process listens on (IPv4 and IPv6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    listening.add(fields[9])
    return listening


def test_calls_counted_by_method_and_code(md, pb):
    before = Scrape(md.port)
    rt = md.runtime()
    for _ in range(5):
        rt.Version(pb.VersionRequest(), timeout=10)
    for _ in range(3):
        rt.Status(pb.StatusRequest(), timeout=10)
    with pytest.raises(grpc.RpcError) as e:
        rt.ContainerStatus(pb.ContainerStatusRequest(container_id="0" * 64), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    after = Scrape(md.port)

    name = "rktlet_grpc_requests_total"
    assert after.value(name, method="Version", code="OK") - before.value(name, method="Version", code="OK") == 5
    assert after.value(name, method="Status", code="OK") - before.value(name, method="Status", code="OK") == 3
    assert after.value(name, method="ContainerStatus", code="NOT_FOUND") == \
        before.value(name, method="ContainerStatus", code="NOT_FOUND") + 1
    assert after.families["rktlet_grpc_requests"].type == "counter"

    # The latency histogram: cumulative buckets up to +Inf, whose count is _count.
    h = after.families["rktlet_grpc_request_duration_seconds"]
    assert h.type == "histogram"
    count = after.value("rktlet_grpc_request_duration_seconds_count", method="Version")
    assert count - before.value("rktlet_grpc_request_duration_seconds_count", method="Version") == 5
    buckets = sorted(((float(lb["le"]), v) for lb, v in after.labelled("rktlet_grpc_request_duration_seconds_bucket")
                      if lb["method"] == "Version"))
    assert buckets[-1] == (float("inf"), count)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[0][0] == 0.0001 and (10.0, count) in buckets  # a Version takes less than 10 s
    assert 0 < after.value("rktlet_grpc_request_duration_seconds_sum", method="Version") < 5 * 10


def test_unknown_method_is_one_series(md, pb):
    before = Scrape(md.port)
    ch = md.channel()
    for path in ("/runtime.v1.RuntimeService/NoSuchMethod", "/x.Y/Z"):
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(path)(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    after = Scrape(md.port)
    name = "rktlet_grpc_requests_total"
    assert after.value(name, method="unknown", code="UNIMPLEMENTED") - \
        before.value(name, method="unknown", code="UNIMPLEMENTED") == 2
    assert not any(lb["method"] in ("NoSuchMethod", "Z") for lb, _ in after.labelled(name))


@needs_cni
def test_pods_containers_cni_and_systemd_jobs(md, pb):
    def states(s, name):
        return {lb["state"]: v for lb, v in s.labelled(name)}

    s0 = Scrape(md.port)
    assert states(s0, "rktlet_pods") == {"creating": 0, "ready": 0, "notready": 0}
    assert states(s0, "rktlet_containers") == {"created": 0, "running": 0, "exited": 0, "unknown": 0}

    pod = make_pod(md, pb, name="metrics", host_network=False)
    s1 = Scrape(md.port)
    assert states(s1, "rktlet_pods") == {"creating": 0, "ready": 1, "notready": 0}
    cni_add = dict(command="ADD", result="success")
    assert s1.value("rktlet_cni_duration_seconds_count", **cni_add) == \
        s0.value("rktlet_cni_duration_seconds_count", **cni_add) + 1
    start_ok = dict(type="start", result="success")
    assert s1.value("rktlet_systemd_job_duration_seconds_count", **start_ok) >= \
        s0.value("rktlet_systemd_job_duration_seconds_count", **start_ok) + 1  # the pod's slice

    ref, image = md.images_by_name["busybox"]
    assert pull(md, pb, ref) == image.id
    cfg = ctr_config(pb, "svc", ref, command=SERVICE)
    cid = run(md, pb, pod, cfg)
    s2 = Scrape(md.port)
    assert states(s2, "rktlet_containers")["running"] == 1
    assert s2.value("rktlet_systemd_job_duration_seconds_count", **start_ok) >= \
        s1.value("rktlet_systemd_job_duration_seconds_count", **start_ok) + 1  # the container's service

    stop(md, pb, cid)
    wait_state(md, pb, cid, pb.CONTAINER_EXITED)
    s3 = Scrape(md.port)
    assert states(s3, "rktlet_containers") == {"created": 0, "running": 0, "exited": 1, "unknown": 0}
    kill_ok = dict(type="kill", result="success")  # StopContainer signals the service's processes
    assert s3.value("rktlet_systemd_job_duration_seconds_count", **kill_ok) > \
        s2.value("rktlet_systemd_job_duration_seconds_count", **kill_ok), s3.labelled("rktlet_systemd_job_duration_seconds_count")
    remove(md, pb, cid)

    rt = md.runtime()
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    s4 = Scrape(md.port)
    assert states(s4, "rktlet_pods") == {"creating": 0, "ready": 0, "notready": 1}
    assert states(s4, "rktlet_containers") == {"created": 0, "running": 0, "exited": 0, "unknown": 0}
    cni_del = dict(command="DEL", result="success")
    assert s4.value("rktlet_cni_duration_seconds_count", **cni_del) == \
        s3.value("rktlet_cni_duration_seconds_count", **cni_del) + 1
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    s5 = Scrape(md.port)
    assert states(s5, "rktlet_pods") == {"creating": 0, "ready": 0, "notready": 0}
    assert s5.families["rktlet_cni_duration_seconds"].type == "histogram"
    assert s5.families["rktlet_systemd_job_duration_seconds"].type == "histogram"


def test_pulls(md, pb):
    ref, image = md.images_by_name["entrypoint"]
    before = Scrape(md.port)
    assert pull(md, pb, ref) == image.id
    with pytest.raises(grpc.RpcError) as e:
        pull(md, pb, ref.rsplit(":", 1)[0] + ":no-such-tag")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    after = Scrape(md.port)

    assert after.value("rktlet_image_pulls_total", result="success") - \
        before.value("rktlet_image_pulls_total", result="success") == 1
    assert after.value("rktlet_image_pulls_total", result="failure") - \
        before.value("rktlet_image_pulls_total", result="failure") == 1
    got = after.value("rktlet_image_pull_bytes_total") - before.value("rktlet_image_pull_bytes_total")
    assert got >= sum(len(blob) for blob in image.blobs.values())  # and the manifest, and the failed pull's answer
    assert after.value("rktlet_image_pull_duration_seconds_count", result="success") - \
        before.value("rktlet_image_pull_duration_seconds_count", result="success") == 1
    assert 0 < after.value("rktlet_image_pull_duration_seconds_sum", result="success") < 60


def test_process_metrics(md, pb):
    s = Scrape(md.port)
    fds = s.value("process_open_fds")
    assert 5 < fds < 1000
    assert abs(fds - len(os.listdir(f"/proc/{md.pid}/fd"))) <= 5
    rss = s.value("process_resident_memory_bytes")
    with open(f"/proc/{md.pid}/statm") as f:
        resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert 1 << 20 < rss < 1 << 30
    assert abs(rss - resident) < 16 << 20
    assert abs(s.value("process_start_time_seconds") - time.time()) < 120
    assert s.value("rktlet_build_info", version=project_version()) == 1
    it = s.value("rktlet_loop_iterations_total")
    assert it > 0
    md.runtime().Version(pb.VersionRequest(), timeout=10)
    assert Scrape(md.port).value("rktlet_loop_iterations_total") > it


def test_http(md):
    status, headers, text = fetch(md.port, method="HEAD")
    assert status == 200 and text == ""
    for path in ("/", "/metric", "/metrics/", "/metrics/x"):
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(md.port, path)
        assert e.value.code == 404, path
    for method in ("POST", "PUT", "DELETE"):
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(md.port, method=method)
        assert e.value.code == 405, method
        assert "GET" in e.value.headers["Allow"]
    # Still serving after all of that, and to several clients at once.
    conns = [socket.create_connection(("127.0.0.1", md.port)) for _ in range(3)]
    Scrape(md.port)
    for c in conns:
        c.close()


def test_off_by_default(make_daemon):
    off = make_daemon("off")
    port = free_port()
    on = make_daemon("on", config=metrics_config(port))
    wait_journal(f"_PID={on.pid}", f"MESSAGE=Metrics on http://127.0.0.1:{port}/metrics.")
    # The streaming server listens in both; only the second one serves metrics as well.
    assert len(listening_sockets(off.pid)) == 1
    assert len(listening_sockets(on.pid)) == 2
    assert not journal(f"_PID={off.pid}", "MESSAGE=Metrics on http://127.0.0.1:0/metrics.")
    Scrape(port)


@pytest.mark.parametrize("value", ["localhost:9899", "127.0.0.1", "::1:9899", "127.0.0.1:70000", "[127.0.0.1]:80"])
def test_bad_address_is_a_config_error(make_daemon, value):
    d = make_daemon(start=False, config=f"[Metrics]\nAddress={value}\n")
    d.expect_exit = True
    d.start(wait=False)
    assert d.wait() != 0
    assert f"{d.config}:2: invalid value '{value}' for Address" in d.log()
    assert not os.path.exists(d.socket)


def test_address_in_use_stops_start_up(make_daemon):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        d = make_daemon(start=False, config=metrics_config(port))
        d.expect_exit = True
        d.start(wait=False)
        assert d.wait() != 0
    assert f"Failed to serve metrics on 127.0.0.1:{port}: Address already in use" in d.log()


def test_ipv6_loopback(make_daemon):
    port = free_port()
    d = make_daemon(config=f"[Metrics]\nAddress=[::1]:{port}\n")
    wait_journal(f"_PID={d.pid}", f"MESSAGE=Metrics on http://[::1]:{port}/metrics.")
    with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as resp:
        assert "rktlet_build_info" in resp.read().decode()


# --- SIGHUP ---------------------------------------------------------------------------------------

def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def serving(port):
    try:
        return Scrape(port)
    except (urllib.error.URLError, ConnectionError):
        return None


def n_sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        except OSError:
            pass
    return n


def logged(d, text):
    return text in d.log() or any(text in e["MESSAGE"] for e in journal(f"_PID={d.pid}"))


def reload(d, config):
    with open(d.config, "w") as f:
        f.write(config)
    d.send_signal(signal.SIGHUP)


def config_in_use(d, pb):
    return json.loads(d.runtime().Status(pb.StatusRequest(verbose=True), timeout=10).info["config"])


def test_sighup_starts_moves_and_stops_the_endpoint(make_daemon, pb):
    d = make_daemon()
    assert len(listening_sockets(d.pid)) == 1  # the streaming server only
    rt = d.runtime()
    for _ in range(3):
        rt.Version(pb.VersionRequest(), timeout=10)

    # unset -> set: served on the new address, with what was counted before it.
    port1 = free_port()
    reload(d, metrics_config(port1))
    first = wait_until(lambda: serving(port1), what="the endpoint on the first port")
    wait_until(lambda: logged(d, f"metrics on http://127.0.0.1:{port1}/metrics."), what="the reload's log line")
    version_ok = dict(method="Version", code="OK")
    assert first.value("rktlet_grpc_requests_total", **version_ok) >= 3
    assert config_in_use(d, pb)["metricsAddress"] == f"127.0.0.1:{port1}"

    # A move: a scrape in flight on the old port (its headers not yet ended) is still answered.
    port2 = free_port()
    n = n_sockets(d.pid)
    held = socket.create_connection(("127.0.0.1", port1), timeout=10)
    held.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    wait_until(lambda: n_sockets(d.pid) > n, what="the daemon to accept the held connection")
    reload(d, metrics_config(port2))
    moved = wait_until(lambda: refused(port1) and serving(port2), what="the endpoint to move")
    assert moved.value("rktlet_grpc_requests_total", **version_ok) >= first.value("rktlet_grpc_requests_total",
                                                                                    **version_ok)
    assert moved.value("rktlet_build_info", version=project_version()) == 1
    held.sendall(b"\r\n")
    answer = b""
    while chunk := held.recv(65536):  # the old server closes the connection after its answer
        answer += chunk
    held.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"rktlet_grpc_requests_total" in body
    assert len(listening_sockets(d.pid)) == 2

    # An address in use: the whole reload fails (the registries too), the old port still serves.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port3 = taken.getsockname()[1]
        reload(d, "[Registries]\nInsecure=127.0.0.1:1\n" + metrics_config(port3))
        wait_until(lambda: logged(d, f"Reload failed: cannot serve metrics on 127.0.0.1:{port3}: Address already in "
                                     "use; the configuration in use is unchanged."), what="the failed reload")
        assert serving(port2)
        info = config_in_use(d, pb)
        assert info["metricsAddress"] == f"127.0.0.1:{port2}"
        assert info["registryInsecure"] == ""
        assert len(listening_sockets(d.pid)) == 2

    # set -> unset: the port closes; the daemon goes on.
    reload(d, "[Metrics]\nAddress=\n")
    wait_until(lambda: refused(port2), what="the metrics port to close")
    wait_until(lambda: logged(d, "CNI plugins in /usr/lib/cni:/opt/cni/bin, metrics off."), what="the log line")
    assert len(listening_sockets(d.pid)) == 1
    assert config_in_use(d, pb)["metricsAddress"] == ""
    assert not logged(d, "take effect at the next start")
    assert rt.Version(pb.VersionRequest(), timeout=10).runtime_name == "rktlet"
