"""The suite's main flows through a Go CRI client, the way kubelet and crictl talk to rktlet.

Every other test speaks CRI through Python's grpcio, which sends `:authority: localhost`. kubelet
and crictl use grpc-go, and kubelet dials `grpc.DialContext(ctx, "/path/to/sock",
WithContextDialer(unix dialer), WithInsecure(), 16 MiB messages)`: grpc-go then sends the socket path
as `:authority`. The client here, tests/integration/cri-go (built by gocri.py from Debian's
grpc-go 1.33), dials that way by default; the tests also vary the authority (-authority,
-dial unix) rather than depend on one form. Requests and responses are protojson with the proto
field names, every field present (int64 fields are JSON strings, enums their names, bytes base64).

Only the daemon, the registry, CNI and the assertions on files are Python; every CRI call here goes
through cri-go.
"""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse

import h2.config
import h2.connection
import h2.events
import pytest

import registry as reg
from gocri import cri_go  # noqa: F401 (a fixture)
from rktlet_test import SOURCE_DIR, grpc_frame, project_version, wait_until
from test_containers import RUNC, SERVICE, ctr_registry, no_container_leftovers, records, text  # noqa: F401
from test_images import assert_size, registries_config
from test_pods import CNI_BIN, SUBNET, cni, ipam_ips, needs_cni, no_leftovers  # noqa: F401

T = 60  # deadline of calls that may wait on systemd, the runtime or a pull
EXIT_WAIT = 20

needs_registry = [
    pytest.mark.skipif(not os.access(reg.DOCKER_REGISTRY, os.X_OK),
                       reason="docker-registry (Debian package docker-registry) is not installed"),
    pytest.mark.skipif(not os.access(reg.BUSYBOX, os.X_OK),
                       reason="/bin/busybox (Debian package busybox-static) is not installed"),
]
needs_runc = [pytest.mark.skipif(RUNC is None, reason="runc (Debian package runc) is not installed"), *needs_registry]


def with_marks(marks):
    def apply(f):
        for m in marks:
            f = m(f)
        return f
    return apply


HEX64 = re.compile(r"[0-9a-f]{64}")


# --- fixtures and helpers --------------------------------------------------------------------------

@pytest.fixture
def go(daemon, cri_go):  # noqa: F811
    """A plain daemon and a cri-go client dialing it as kubelet does."""
    daemon.cri = cri_go.client(daemon.socket)
    return daemon


@pytest.fixture
def gd(make_daemon, ctr_registry, cni, cri_go):  # noqa: F811
    """A daemon that knows the test registry (plain HTTP) and the test CNI network, with nothing
    pulled yet; d.cri is its cri-go client; d.pull(name) pulls one of test_containers.IMAGES through
    it and gives (reference, registry.Image). Whatever the test leaves is removed through cri-go."""
    r, images = ctr_registry
    d = make_daemon(config=registries_config([r.url]), args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d.cri = cri_go.client(d.socket)
    d.registry = r
    d.cni = cni
    d.test_images = images  # {name: (reference, registry.Image)}, none pulled
    pulled = set()

    def pull(name="busybox"):
        ref, image = images[name]
        if name not in pulled:
            assert d.cri.call("PullImage", {"image": {"image": ref}}, timeout=T)["image_ref"] == image.id
            pulled.add(name)
        return ref, image

    d.pull = pull
    yield d
    if d.alive():
        remove_everything(d.cri)


def remove_everything(cri):
    for c in cri.call("ListContainers")["containers"]:
        cri.call("RemoveContainer", {"container_id": c["id"]}, timeout=T)
    for p in cri.call("ListPodSandbox")["items"]:
        cri.call("RemovePodSandbox", {"pod_sandbox_id": p["id"]}, timeout=T)


def pod_config(d, name, labels=None, uid=None, attempt=0, host_network=True):
    """A pod's config (host network unless told otherwise: no CNI needed) with a log directory."""
    uid = uid or f"uid-{name}"
    log_dir = os.path.join(d.dir, "logs", f"default_{name}_{uid}")
    os.makedirs(log_dir, exist_ok=True)  # kubelet makes it before RunPodSandbox
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid, "attempt": attempt},
        "hostname": name,
        "labels": labels if labels is not None else {"app": name},
        "annotations": {"client": "cri-go"},
        "log_directory": log_dir,
        "linux": {"security_context": {"namespace_options": {"network": "NODE" if host_network else "POD", "pid": "CONTAINER", "ipc": "POD"}}},
    }


def ctr_config(name, image, command=None, args=None, labels=None, annotations=None, envs=None, attempt=0):
    c = {"metadata": {"name": name, "attempt": attempt}, "image": {"image": image},
         "log_path": f"{name}_{attempt}.log", "labels": labels or {}, "annotations": annotations or {}}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    if envs:
        # KeyValue.value is bytes in proto/api.proto: base64 in protojson.
        c["envs"] = [{"key": k, "value": base64.b64encode(v.encode()).decode()} for k, v in envs.items()]
    return c


def run_pod(cri, config):
    pod_id = cri.call("RunPodSandbox", {"config": config}, timeout=T)["pod_sandbox_id"]
    assert HEX64.fullmatch(pod_id), pod_id
    return pod_id


def create(cri, pod_id, pod_cfg, cfg):
    cid = cri.call("CreateContainer", {"pod_sandbox_id": pod_id, "config": cfg, "sandbox_config": pod_cfg},
                   timeout=T)["container_id"]
    assert HEX64.fullmatch(cid), cid
    return cid


def cstatus(cri, cid, verbose=False):
    return cri.call("ContainerStatus", {"container_id": cid, "verbose": verbose}, timeout=30)["status"]


def wait_state(cri, cid, state, timeout=EXIT_WAIT):
    def reached():
        st = cstatus(cri, cid)
        return st if st["state"] == state else None
    return wait_until(reached, timeout, interval=0.05, what=f"container {cid[:12]} to be {state}")


def log_text(pod_cfg, cfg, stream="stdout"):
    return text(records(os.path.join(pod_cfg["log_directory"], cfg["log_path"])), stream)


def wait_log(pod_cfg, cfg, needle, stream="stdout", timeout=EXIT_WAIT):
    return wait_until(lambda: needle in log_text(pod_cfg, cfg, stream), timeout, interval=0.05,
                      what=f"{needle!r} in the log of {cfg['metadata']['name']}")


def ns(value):
    """An int64/uint64 of protojson (a string) as an int."""
    return int(value)


def ids(items):
    return sorted(i["id"] for i in items)


def percent_encoded(path):
    return urllib.parse.quote(path, safe="")


# The forms of :authority a CRI client may send: (id, -dial, -authority), and what goes on the wire.
AUTHORITY_FORMS = [
    ("socket-path", "path", None),            # kubelet: grpc-go's default for a path target
    ("localhost", "path", "localhost"),       # grpcio's and a unix: target's
    ("percent-encoded-path", "path", "%"),    # the socket path, percent-encoded
    ("unix-scheme", "unix", None),            # crictl's unix:///path target: grpc-go sends localhost
    ("unix-scheme-path-authority", "unix", "/"),
]


def authority_args(form, socket_path):
    _, dial, authority = form
    if authority == "%":
        authority = percent_encoded(socket_path)
    elif authority == "/":
        authority = socket_path
    return dial, authority


def expected_authority(form, socket_path):
    dial, authority = authority_args(form, socket_path)
    if authority is not None:
        return authority
    return socket_path if dial == "path" else "localhost"


# --- the client itself: what it puts on the wire ---------------------------------------------------

class RecordingServer:
    """A gRPC server of a few lines (python3-h2) on a unix socket: it records the request headers
    of every stream and answers each with an empty message and grpc-status 0."""

    def __init__(self, path):
        self.path = path
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(30)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(30)
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                for ev in h2c.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        with self.lock:
                            self.requests.append(dict(ev.headers))
                    elif isinstance(ev, h2.events.DataReceived):
                        h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        h2c.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                        h2c.send_data(ev.stream_id, grpc_frame(b""))
                        h2c.send_headers(ev.stream_id, [("grpc-status", "0")], end_stream=True)
                out = h2c.data_to_send()
                if out:
                    conn.sendall(out)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("form", AUTHORITY_FORMS, ids=[f[0] for f in AUTHORITY_FORMS])
def test_the_client_sends_the_authority_each_form_claims(cri_go, tmp_path, form):  # noqa: F811
    """The premise of the tests below: the default dial really sends the socket path, as kubelet's
    grpc-go does, and each other form sends what it says. Checked against a recording server."""
    path = str(tmp_path / "recorder.sock")
    server = RecordingServer(path)
    try:
        dial, authority = authority_args(form, path)
        cri = cri_go.client(path, dial=dial, authority=authority, timeout=10)
        assert cri.call("Version", {"version": "v1"}) == {"version": "", "runtime_name": "", "runtime_version": "",
                                                          "runtime_api_version": ""}
    finally:
        server.close()
    assert len(server.requests) == 1
    h = server.requests[0]
    assert h[":authority"] == expected_authority(form, path)
    assert h[":path"] == "/runtime.v1.RuntimeService/Version"
    assert h[":method"] == "POST" and h[":scheme"] == "http"
    assert h["content-type"] == "application/grpc" and h["te"] == "trailers"
    assert "grpc-go/1.33" in h["user-agent"], h["user-agent"]
    assert "grpc-timeout" in h  # the call's deadline travels


def test_the_client_knows_every_method_of_the_proto(cri_go):  # noqa: F811
    r = cri_go.run("methods")
    assert r.returncode == 0, r.stderr
    methods = {m["path"]: m for m in json.loads(r.stdout)}
    with open(os.path.join(SOURCE_DIR, "proto", "api.proto")) as f:
        proto = f.read()
    declared = set()
    for service, body in re.findall(r"service (\w+) \{(.*?)\n\}", proto, re.S):
        for name, req, stream, resp in re.findall(r"rpc (\w+)\((\w+)\) returns \((stream )?(\w+)\)", body):
            path = f"/runtime.v1.{service}/{name}"
            declared.add(path)
            assert methods[path]["input"] == f"runtime.v1.{req}" and methods[path]["output"] == f"runtime.v1.{resp}"
            assert methods[path]["server_streaming"] == bool(stream), path
    assert declared == set(methods)
    assert len(declared) > 40


# --- authority forms against the daemon ------------------------------------------------------------

@pytest.mark.parametrize("form", AUTHORITY_FORMS, ids=[f[0] for f in AUTHORITY_FORMS])
def test_every_authority_form_is_served(go, cri_go, form):  # noqa: F811
    dial, authority = authority_args(form, go.socket)
    cri = cri_go.client(go.socket, dial=dial, authority=authority, timeout=10)
    # One call per connection ...
    v = cri.call("Version", {"version": "v1"})
    assert v["runtime_name"] == "rktlet" and v["runtime_api_version"] == "v1"
    assert cri.call("ListPodSandbox", {}) == {"items": []}
    # ... and several on one.
    with cri.session() as s:
        for _ in range(3):
            assert s.call("Version")["runtime_name"] == "rktlet"
            assert s.call("ListPodSandbox", {"filter": {"label_selector": {"a": "b"}}}) == {"items": []}
            assert s.call("ImageFsInfo")["image_filesystems"]
        assert s.stats()["connections"] == 1
    assert go.alive()


# --- Version, Status, RuntimeConfig ------------------------------------------------------------------

def test_version_status_runtime_config(go):
    cri = go.cri
    v = cri.call("Version", {"version": "v1"})
    # version: the kubelet runtime API's, 0.1.0 for every CRI runtime; runtime_version: the project's.
    assert v["version"] == "0.1.0" and v["runtime_name"] == "rktlet" and v["runtime_api_version"] == "v1"
    assert v["runtime_version"] == project_version()

    st = cri.call("Status", {})
    conditions = {c["type"]: c for c in st["status"]["conditions"]}
    assert conditions["RuntimeReady"]["status"] is True, conditions
    assert "NetworkReady" in conditions
    assert st["info"] == {}

    st = cri.call("Status", {"verbose": True})
    assert set(st["info"]) >= {"config", "systemd"}, st["info"].keys()
    info = {k: json.loads(v) for k, v in st["info"].items()}  # every value is JSON
    assert info["config"]["listen"] == go.socket
    assert info["config"]["stateDirectory"] == os.path.join(go.dir, "run")
    assert info["systemd"]["bus"] == "user"

    rc = cri.call("RuntimeConfig", {})
    assert rc["linux"]["cgroup_driver"] == "SYSTEMD"


# --- images --------------------------------------------------------------------------------------------

@with_marks(needs_registry)
def test_pull_list_status_and_fs_info(gd):
    d, cri = gd, gd.cri
    r = d.registry
    busybox_ref, busybox = d.test_images["busybox"]
    ep_ref, ep = d.test_images["entrypoint"]
    before = cri.call("ImageFsInfo")["image_filesystems"]
    assert cri.call("ListImages") == {"images": []}
    # ImageStatus of an image not present: OK with no image (the CRI's "nil").
    assert cri.call("ImageStatus", {"image": {"image": busybox_ref}})["image"] is None

    # The digests are the ones the registry serves (registry.py computed them), not rktlet's say.
    assert cri.call("PullImage", {"image": {"image": busybox_ref}}, timeout=T)["image_ref"] == busybox.id
    assert cri.call("PullImage", {"image": {"image": ep_ref}}, timeout=T)["image_ref"] == ep.id
    assert cri.call("PullImage", {"image": {"image": busybox_ref}}, timeout=T)["image_ref"] == busybox.id  # again

    images = {i["id"]: i for i in cri.call("ListImages")["images"]}
    assert set(images) == {busybox.id, ep.id}
    for ref, image in ((busybox_ref, busybox), (ep_ref, ep)):
        i = images[image.id]
        assert i["repo_tags"] == [ref]
        assert i["repo_digests"] == [f"{ref.rsplit(':', 1)[0]}@{image.digest}"]
        assert_size(image, ns(i["size"]))
        assert i["pinned"] is False

    for ref in (busybox_ref, busybox.id, f"{r.url}/ctr/busybox@{busybox.digest}"):
        st = cri.call("ImageStatus", {"image": {"image": ref}})
        assert st["image"]["id"] == busybox.id, ref
        assert st["image"]["repo_digests"] == [f"{r.url}/ctr/busybox@{busybox.digest}"]
        assert st["info"] == {}
    st = cri.call("ImageStatus", {"image": {"image": busybox.id}, "verbose": True})
    info = json.loads(st["info"]["info"])
    spec = info.get("imageSpec", info)
    assert spec["rootfs"]["diff_ids"] == busybox.diff_ids
    assert spec["config"]["Env"] == busybox.config["config"]["Env"]

    # ListImages by filter.
    def listed(ref):
        return ids(cri.call("ListImages", {"filter": {"image": {"image": ref}}})["images"])
    assert listed("") == sorted([busybox.id, ep.id])
    assert listed(busybox_ref) == [busybox.id]
    assert listed(ep.id) == [ep.id]
    assert listed(f"{r.url}/ctr/entrypoint@{ep.digest}") == [ep.id]
    assert listed(f"{r.url}/ctr/nothing:v1") == []

    after = cri.call("ImageFsInfo")["image_filesystems"]
    assert len(before) == len(after) == 1
    fs = after[0]
    assert fs["fs_id"]["mountpoint"] == os.path.join(d.dir, "lib", "images")
    assert ns(fs["used_bytes"]["value"]) >= ns(before[0]["used_bytes"]["value"]) + busybox.layers[0].size
    assert ns(fs["inodes_used"]["value"]) > ns(before[0]["inodes_used"]["value"])
    assert ns(fs["timestamp"]) >= ns(before[0]["timestamp"])

    cri.call("RemoveImage", {"image": {"image": ep_ref}}, timeout=T)
    assert ids(cri.call("ListImages")["images"]) == [busybox.id]
    cri.call("RemoveImage", {"image": {"image": ep_ref}}, timeout=T)  # idempotent
    assert cri.call("ImageStatus", {"image": {"image": ep_ref}})["image"] is None


# --- a pod and its containers over one connection ------------------------------------------------------

@needs_cni
@with_marks(needs_runc)
def test_a_pod_with_two_containers_through_its_life_on_one_connection(gd):
    """kubelet's sequence for a pod on the pod network, every call on one connection."""
    d = gd
    ref, image = d.pull()
    with d.cri.session(timeout=T) as s:
        pod_cfg = pod_config(d, "life", labels={"app": "life", "k": "v"}, host_network=False)
        pod_id = run_pod(s, pod_cfg)
        st = s.call("PodSandboxStatus", {"pod_sandbox_id": pod_id})["status"]
        assert st["id"] == pod_id and st["state"] == "SANDBOX_READY"
        assert st["metadata"] == pod_cfg["metadata"] and st["labels"] == pod_cfg["labels"]
        assert st["linux"]["namespaces"]["options"]["network"] == "POD"
        assert st["network"]["ip"].startswith(SUBNET + "."), st["network"]  # from the test's host-local range
        assert len(ipam_ips(d.cni)) == 1

        svc = ctr_config("svc", ref, command=SERVICE, labels={"role": "svc"}, envs={"GREETING": "hello go"})
        job = ctr_config("job", ref, command=["sh", "-c", 'echo "job $GREETING"; echo job-err >&2; exit 7'],
                         labels={"role": "job"}, envs={"GREETING": "from cri-go"})
        svc_id = create(s, pod_id, pod_cfg, svc)
        job_id = create(s, pod_id, pod_cfg, job)
        for cid, name in ((svc_id, "svc"), (job_id, "job")):
            st = cstatus(s, cid)
            assert st["id"] == cid and st["state"] == "CONTAINER_CREATED"
            assert st["metadata"] == {"name": name, "attempt": 0}
            assert st["image_id"] == image.id and st["image"]["image"] == ref
            assert ns(st["created_at"]) > 0 and ns(st["started_at"]) == 0 and ns(st["finished_at"]) == 0
        listed = {c["id"]: c for c in s.call("ListContainers")["containers"]}
        assert set(listed) == {svc_id, job_id}
        assert all(c["pod_sandbox_id"] == pod_id and c["state"] == "CONTAINER_CREATED" for c in listed.values())

        s.call("StartContainer", {"container_id": svc_id})
        s.call("StartContainer", {"container_id": job_id})
        wait_log(pod_cfg, svc, "ready\n")
        st = cstatus(s, svc_id)
        assert st["state"] == "CONTAINER_RUNNING" and ns(st["started_at"]) >= ns(st["created_at"])
        st = wait_state(s, job_id, "CONTAINER_EXITED")
        assert st["exit_code"] == 7 and st["reason"] == "Error"
        assert ns(st["created_at"]) <= ns(st["started_at"]) <= ns(st["finished_at"])
        wait_until(lambda: (log_text(pod_cfg, job), log_text(pod_cfg, job, "stderr")) == ("job from cri-go\n", "job-err\n"),
                   10, what="the job's output in its log")
        states = {c["id"]: c["state"] for c in s.call("ListContainers")["containers"]}
        assert states == {svc_id: "CONTAINER_RUNNING", job_id: "CONTAINER_EXITED"}

        s.call("StopContainer", {"container_id": svc_id, "timeout": 10}, timeout=10 + T)
        st = cstatus(s, svc_id)
        assert st["state"] == "CONTAINER_EXITED" and st["exit_code"] == 0 and st["reason"] == "Completed"
        wait_log(pod_cfg, svc, "got-TERM\n")
        s.call("StopContainer", {"container_id": svc_id, "timeout": 10}, timeout=10 + T)  # idempotent

        for cid in (svc_id, job_id):
            s.call("RemoveContainer", {"container_id": cid})
            assert s.error("ContainerStatus", {"container_id": cid}).code == "NotFound"
            s.call("RemoveContainer", {"container_id": cid})  # idempotent
        assert s.call("ListContainers") == {"containers": []}

        s.call("StopPodSandbox", {"pod_sandbox_id": pod_id})
        assert s.call("PodSandboxStatus", {"pod_sandbox_id": pod_id})["status"]["state"] == "SANDBOX_NOTREADY"
        s.call("RemovePodSandbox", {"pod_sandbox_id": pod_id})
        assert s.error("PodSandboxStatus", {"pod_sandbox_id": pod_id}).code == "NotFound"
        assert s.call("ListPodSandbox") == {"items": []}
        assert ipam_ips(d.cni) == []  # the address went back to the range
        s.call("RemovePodSandbox", {"pod_sandbox_id": pod_id})  # idempotent
        assert s.stats()["connections"] == 1


# --- List filters -----------------------------------------------------------------------------------------

@with_marks(needs_runc)
def test_list_filters(gd):
    d, cri = gd, gd.cri
    ref, _ = d.pull()
    with cri.session(timeout=T) as s:
        c1 = pod_config(d, "fa", labels={"app": "x", "tier": "1"})
        c2 = pod_config(d, "fb", labels={"app": "x", "tier": "2"})
        p1, p2 = run_pod(s, c1), run_pod(s, c2)
        running = create(s, p1, c1, ctr_config("running", ref, command=SERVICE, labels={"app": "x", "tier": "1"}))
        created = create(s, p1, c1, ctr_config("created", ref, labels={"app": "x", "tier": "2"}))
        exited = create(s, p2, c2, ctr_config("exited", ref, command=["true"], labels={"app": "y"}))
        s.call("StartContainer", {"container_id": running})
        s.call("StartContainer", {"container_id": exited})
        wait_state(s, running, "CONTAINER_RUNNING")
        wait_state(s, exited, "CONTAINER_EXITED")
        s.call("StopPodSandbox", {"pod_sandbox_id": p2})

        def pods(**f):
            return ids(s.call("ListPodSandbox", {"filter": f} if f else {})["items"])

        def state(v):
            return {"state": v}
        assert pods() == sorted([p1, p2])
        assert pods(id=p1) == [p1]
        assert pods(id=p2[:12]) == [p2]
        assert pods(id="f" * 64) == []
        assert pods(state=state("SANDBOX_READY")) == [p1]
        assert pods(state=state("SANDBOX_NOTREADY")) == [p2]
        assert pods(label_selector={"app": "x"}) == sorted([p1, p2])
        assert pods(label_selector={"app": "x", "tier": "2"}) == [p2]
        assert pods(label_selector={"app": "z"}) == []
        assert pods(id=p1, state=state("SANDBOX_NOTREADY")) == []
        items = {i["id"]: i for i in s.call("ListPodSandbox")["items"]}
        assert items[p1]["metadata"] == c1["metadata"] and items[p1]["labels"] == c1["labels"]
        assert items[p1]["annotations"] == c1["annotations"] and ns(items[p1]["created_at"]) > 0

        def ctrs(**f):
            return ids(s.call("ListContainers", {"filter": f} if f else {})["containers"])
        assert ctrs() == sorted([running, created, exited])
        assert ctrs(id=running) == [running]
        assert ctrs(id=created[:12]) == [created]
        assert ctrs(id="f" * 64) == []
        assert ctrs(pod_sandbox_id=p1) == sorted([running, created])
        assert ctrs(pod_sandbox_id=p2) == [exited]
        assert ctrs(pod_sandbox_id="f" * 64) == []
        assert ctrs(state=state("CONTAINER_RUNNING")) == [running]
        assert ctrs(state=state("CONTAINER_CREATED")) == [created]
        assert ctrs(state=state("CONTAINER_EXITED")) == [exited]
        assert ctrs(label_selector={"app": "x"}) == sorted([running, created])
        assert ctrs(label_selector={"app": "x", "tier": "2"}) == [created]
        assert ctrs(label_selector={"app": "z"}) == []
        assert ctrs(pod_sandbox_id=p1, state=state("CONTAINER_RUNNING")) == [running]
        assert ctrs(pod_sandbox_id=p2, label_selector={"app": "x"}) == []
        # A unique prefix works where an id is expected.
        assert cstatus(s, running[:10])["id"] == running
        assert s.call("PodSandboxStatus", {"pod_sandbox_id": p1[:10]})["status"]["id"] == p1
        assert s.stats()["connections"] == 1


# --- bad input ------------------------------------------------------------------------------------------------

@with_marks(needs_runc)
def test_bad_input_answers_the_status_codes_the_cri_means(gd):
    """The codes are what the CRI and gRPC mean for each case, not a copy of what rktlet answers:
    an id nothing has is NotFound, a request missing what it must carry is InvalidArgument, stop and
    remove of what is already gone succeed (they are idempotent), an absent image's status is an
    empty answer, a name taken is AlreadyExists, a container in a pod that is not ready is
    FailedPrecondition, what rktlet does not serve is Unimplemented. Every case runs; the test
    fails at the end with the list of those answered otherwise."""
    d = gd
    ref, image = d.pull()
    unknown = "0" * 64
    wrong = []
    with d.cri.session(timeout=T) as s:
        def expect(method, request, *codes):
            a = s.answer(method, request)
            got = a.get("code", "OK")
            what = f"{method} {json.dumps(request)[:160]}"
            if got not in codes:
                wrong.append(f"{what}: {got} {a.get('message', '')!r}, expected {' or '.join(codes)}")
            elif got != "OK" and not a["message"]:
                wrong.append(f"{what}: {got} without a message saying why")
            return a

        pod_cfg = pod_config(d, "bad")
        pod_id = run_pod(s, pod_cfg)

        # Ids nothing has.
        for method, field in (("PodSandboxStatus", "pod_sandbox_id"), ("ContainerStatus", "container_id"),
                              ("StartContainer", "container_id"), ("ReopenContainerLog", "container_id")):
            expect(method, {field: unknown}, "NotFound")
            # Not an id at all: still nothing has it (or it is refused as malformed).
            for bad in ("../../etc/passwd", "not hex!", "\u00e9t\u00e9", "x" * 300):
                expect(method, {field: bad}, "NotFound", "InvalidArgument")
        # Empty ids: the request lacks what it must carry.
        for method, field in (("PodSandboxStatus", "pod_sandbox_id"), ("StopPodSandbox", "pod_sandbox_id"),
                              ("RemovePodSandbox", "pod_sandbox_id"), ("ContainerStatus", "container_id"),
                              ("StartContainer", "container_id"), ("StopContainer", "container_id"),
                              ("RemoveContainer", "container_id"), ("ReopenContainerLog", "container_id")):
            expect(method, {field: ""}, "InvalidArgument")
        # Stop and remove are idempotent: what is not there is already stopped and removed.
        expect("StopPodSandbox", {"pod_sandbox_id": unknown}, "OK")
        expect("RemovePodSandbox", {"pod_sandbox_id": unknown}, "OK")
        expect("StopContainer", {"container_id": unknown, "timeout": 1}, "OK")
        expect("RemoveContainer", {"container_id": unknown}, "OK")

        # RunPodSandbox.
        expect("RunPodSandbox", {}, "InvalidArgument")
        no_meta = pod_config(d, "nometa")
        del no_meta["metadata"]
        expect("RunPodSandbox", {"config": no_meta}, "InvalidArgument")
        for field in ("name", "namespace", "uid"):
            cfg = pod_config(d, "empty-" + field)
            cfg["metadata"][field] = ""
            expect("RunPodSandbox", {"config": cfg}, "InvalidArgument")
        expect("RunPodSandbox", {"config": pod_config(d, "handler"), "runtime_handler": "no-such-handler"},
               "InvalidArgument", "NotFound")
        expect("RunPodSandbox", {"config": pod_cfg}, "AlreadyExists")  # the metadata of a live pod

        # CreateContainer.
        def create_expect(pod, cfg, *codes, sandbox=pod_cfg):
            return expect("CreateContainer", {"pod_sandbox_id": pod, "config": cfg, "sandbox_config": sandbox}, *codes)
        create_expect("", ctr_config("c", ref), "InvalidArgument")
        create_expect(unknown, ctr_config("c", ref), "NotFound")
        no_meta = ctr_config("c", ref)
        del no_meta["metadata"]
        create_expect(pod_id, no_meta, "InvalidArgument")
        no_image = ctr_config("c", ref)
        del no_image["image"]
        create_expect(pod_id, no_image, "InvalidArgument")
        create_expect(pod_id, {**ctr_config("c", ref), "image": {"image": ""}}, "InvalidArgument")
        create_expect(pod_id, ctr_config("c", ref.rsplit(":", 1)[0] + ":not-pulled"), "NotFound")
        first = create(s, pod_id, pod_cfg, ctr_config("dup", ref))
        create_expect(pod_id, ctr_config("dup", ref), "AlreadyExists")
        second = create(s, pod_id, pod_cfg, ctr_config("dup", image.id, attempt=1))  # another attempt, by id
        assert ids(s.call("ListContainers")["containers"]) == sorted([first, second])
        stopped_cfg = pod_config(d, "stopped")
        stopped = run_pod(s, stopped_cfg)
        s.call("StopPodSandbox", {"pod_sandbox_id": stopped})
        create_expect(stopped, ctr_config("late", ref), "FailedPrecondition", sandbox=stopped_cfg)

        # Images.
        expect("PullImage", {"image": {"image": ""}}, "InvalidArgument")
        expect("PullImage", {}, "InvalidArgument")
        for bad in ("UPPER/case:v1", "a//b", "busybox:bad tag", f"{d.registry.url}/ctr/busybox@sha256:short"):
            expect("PullImage", {"image": {"image": bad}}, "InvalidArgument")
        expect("PullImage", {"image": {"image": f"{d.registry.url}/ctr/busybox:no-such-tag"}}, "NotFound")
        expect("PullImage", {"image": {"image": f"{d.registry.url}/ctr/no-such-repo:v1"}}, "NotFound")
        expect("ImageStatus", {"image": {"image": ""}}, "InvalidArgument")
        expect("RemoveImage", {"image": {"image": ""}}, "InvalidArgument")
        a = expect("ImageStatus", {"image": {"image": "sha256:" + "e" * 64}}, "OK")
        assert a.get("response", {}).get("image", "absent") is None, a  # present, and null
        expect("RemoveImage", {"image": {"image": f"{d.registry.url}/never:seen"}}, "OK")  # nothing to remove

        # Runtime configuration.
        expect("UpdateRuntimeConfig", {"runtime_config": {"network_config": {"pod_cidr": "not a cidr"}}},
               "InvalidArgument")

        # What is not served: kubelet falls back to another API version only on Unimplemented.
        for path in ("/runtime.v1alpha2.RuntimeService/Version", "/runtime.v1alpha2.ImageService/ListImages",
                     "/runtime.v1.RuntimeService/NoSuchMethod", "/nonsense"):
            expect(path, {}, "Unimplemented")
        # CheckpointContainer where criu does not work (this kernel): Unimplemented, naming itself
        # and what is missing, before the request is judged.
        criu = shutil.which("criu")
        if criu and subprocess.run([criu, "check"], capture_output=True, timeout=60).returncode == 0:
            expect("CheckpointContainer", {"container_id": first, "location": "/tmp/cp.tar"}, "FailedPrecondition")
        else:
            a = expect("CheckpointContainer", {"container_id": first}, "Unimplemented")
            assert "CheckpointContainer" in a.get("message", "") and "criu" in a.get("message", ""), a
        # Updates judge their requests: a created container's resources are not updated.
        expect("UpdateContainerResources", {"container_id": first, "linux": {"memory_limit_in_bytes": 67108864}},
               "FailedPrecondition")
        expect("UpdateContainerResources", {"container_id": "f" * 64, "linux": {}}, "NotFound")
        # Exec and PortForward judge their requests at the call, before any URL.
        expect("Exec", {"container_id": "f" * 64, "cmd": ["true"], "stdout": True}, "NotFound")
        expect("Exec", {"container_id": first, "cmd": ["true"]}, "InvalidArgument", "FailedPrecondition")
        expect("PortForward", {"pod_sandbox_id": "f" * 64, "port": [80]}, "NotFound")
        # ExecSync judges its request before it runs anything.
        expect("ExecSync", {"container_id": first, "cmd": [], "timeout": 1}, "InvalidArgument")
        expect("ExecSync", {"container_id": "f" * 64, "cmd": ["true"], "timeout": 1}, "NotFound")

        # Still serving, on the same connection, and nothing was made by the refused calls.
        assert s.call("Version")["runtime_name"] == "rktlet"
        assert s.stats()["connections"] == 1
        assert ids(s.call("ListPodSandbox")["items"]) == sorted([pod_id, stopped])
        assert ids(s.call("ListContainers")["containers"]) == sorted([first, second])
    assert not wrong, "answered otherwise than the CRI means:\n" + "\n".join(wrong)


# Empty requests: what each method must answer when it is given nothing (the CRI's meaning).
EMPTY_OK = {"Version", "Status", "RuntimeConfig", "ListPodSandbox", "ListContainers", "ListImages", "ImageFsInfo",
            "UpdateRuntimeConfig", "StreamPodSandboxes", "StreamContainers", "StreamImages",
            "ListContainerStats", "ListPodSandboxStats", "ListMetricDescriptors", "ListPodSandboxMetrics",
            "StreamContainerStats", "StreamPodSandboxStats", "StreamPodSandboxMetrics"}
# A subscription: it never ends on its own, so it ends at the client's deadline, without an event (none
# happens meanwhile).
EMPTY_ENDLESS = {"GetContainerEvents"}
EMPTY_INVALID = {"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus", "CreateContainer",
                 "StartContainer", "StopContainer", "RemoveContainer", "ContainerStatus", "ReopenContainerLog",
                 "PullImage", "ImageStatus", "RemoveImage", "ContainerStats", "PodSandboxStats"}


def test_every_method_answers_an_empty_request_on_one_connection(go, cri_go):  # noqa: F811
    methods = json.loads(cri_go.run("methods").stdout)
    assert len(methods) > 40
    answers = {}
    with go.cri.session(timeout=10) as s:
        for m in methods:
            name = m["path"].rsplit("/", 1)[1]
            a = s.answer(m["path"], {}, timeout=1 if name in EMPTY_ENDLESS else None)
            answers[name] = a.get("code", "OK")
            if name in EMPTY_ENDLESS:
                assert a.get("code") == "DeadlineExceeded" and not a.get("responses"), (name, a)
                assert a["elapsed_ms"] >= 900, (name, a)
            elif name in EMPTY_OK:
                assert "code" not in a, (name, a)
            elif name in EMPTY_INVALID:
                assert a.get("code") == "InvalidArgument", (name, a)
            else:
                # Not served yet (the README lists them), or served: never a reset, a crash or an
                # answer without a status ("Internal"/"Unknown" is how grpc-go reports those).
                assert a.get("code", "OK") in ("OK", "InvalidArgument", "Unimplemented"), (name, a)
                if a.get("code") == "Unimplemented":
                    assert name in a["message"], (name, a)
        assert s.stats()["connections"] == 1
        assert s.call("Version")["runtime_name"] == "rktlet"
    assert go.alive()
    assert "Internal" not in answers.values() and "Unknown" not in answers.values(), answers


# --- deadlines ---------------------------------------------------------------------------------------------

def test_a_deadline_ends_a_call_waiting_for_systemd_and_the_connection_goes_on(go, stopped_systemd):
    # Status asks systemd, which is frozen: the call's deadline (grpc-timeout, as kubelet's
    # runtime-request-timeout sets it) ends it; the connection keeps serving.
    with go.cri.session(timeout=10) as s:
        assert s.call("Version")["runtime_name"] == "rktlet"
        a = s.answer("Status", {}, timeout=1)
        assert a.get("code") == "DeadlineExceeded", a
        assert 900 <= a["elapsed_ms"] < 5000, a
        assert s.call("Version", timeout=5)["runtime_name"] == "rktlet"
        assert s.call("ListPodSandbox", timeout=5) == {"items": []}
        assert s.stats()["connections"] == 1
    assert go.alive()


# --- concurrency ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,request_", [
    ("Version", {"version": "v1"}),
    ("Status", {"verbose": True}),
    ("ListPodSandbox", {"filter": {"label_selector": {"app": "x"}}}),
    ("ImageFsInfo", {}),
])
def test_50_concurrent_calls_on_one_connection(go, method, request_):
    rc, summary = go.cri.concurrent(50, method, request_, timeout=30)
    assert rc == 0 and summary["codes"] == {"OK": 50}, summary
    assert summary["connections"] == 1, summary
    assert go.alive()


def test_large_requests_cross_flow_control_windows(go):
    # grpc-go's 64 KiB initial windows, its BDP pings and window updates against nghttp2's: a
    # request of several MiB (under kubelet's and rktlet's 16 MiB) arrives whole, on one connection.
    with go.cri.session(timeout=30) as s:
        for size in (70_000, 1 << 20, 6 << 20):
            assert s.call("Version", {"version": "v" * size})["runtime_name"] == "rktlet", size
        assert s.stats()["connections"] == 1


@with_marks(needs_runc)
def test_50_concurrent_status_calls_while_containers_run(gd):
    d = gd
    ref, _ = d.pull()
    pod_cfg = pod_config(d, "busy")
    pod_id = run_pod(d.cri, pod_cfg)
    cfg = ctr_config("svc", ref, command=SERVICE)
    cid = create(d.cri, pod_id, pod_cfg, cfg)
    d.cri.call("StartContainer", {"container_id": cid}, timeout=T)
    wait_log(pod_cfg, cfg, "ready\n")
    for method, request in (("ContainerStatus", {"container_id": cid, "verbose": True}),
                            ("PodSandboxStatus", {"pod_sandbox_id": pod_id, "verbose": True}),
                            ("ListContainers", {"filter": {"pod_sandbox_id": pod_id}})):
        rc, summary = d.cri.concurrent(50, method, request, timeout=30)
        assert rc == 0 and summary["codes"] == {"OK": 50}, (method, summary)
        assert summary["connections"] == 1
    assert cstatus(d.cri, cid)["state"] == "CONTAINER_RUNNING"
