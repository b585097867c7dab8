"""Pod sandboxes: systemd slices, pinned namespaces, CNI bridge networking, persistence.

The CNI network is a bridge defined by the test, living in the harness's own network namespace;
pods get their addresses from a host-local range whose store is in the test's directory."""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

import rktlet_test
from rktlet_test import wait_until

SUBNET = "10.88.7"
CNI_BIN = "/usr/lib/cni"


def cni_available():
    return all(os.access(os.path.join(CNI_BIN, p), os.X_OK) for p in ("bridge", "host-local", "portmap", "loopback"))


needs_cni = pytest.mark.skipif(not cni_available(), reason="CNI plugins (containernetworking-plugins) not installed")


@pytest.fixture
def cni(tmp_path):
    """A CNI configuration directory with a bridge network; yields its paths."""
    conf = tmp_path / "net.d"
    conf.mkdir()
    ipam = tmp_path / "ipam"
    network = {
        "cniVersion": "1.0.0",
        "name": "rktlet-test",
        "plugins": [
            {"type": "bridge", "bridge": "rkt0", "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": f"{SUBNET}.0/24"}]], "dataDir": str(ipam)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (conf / "10-test.conflist").write_text(json.dumps(network))
    return {"conf": str(conf), "ipam": str(ipam / "rktlet-test"), "network": network}


def remove_all(d, pb):
    for i in d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items:
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=i.id), timeout=120)


@pytest.fixture(autouse=True)
def no_leftovers(pb):
    """Every test removes its pods; then no slice of a pod is left in the user manager."""
    yield
    left = units() + units("kubepods")
    for u in left:
        subprocess.run(["systemctl", "--user", "stop", u], capture_output=True)
    assert left == [], "units left behind"


@pytest.fixture
def pod_daemon(make_daemon, cni, pb):
    d = make_daemon(args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d.cni = cni
    yield d
    if d.alive():
        remove_all(d, pb)
        assert ipam_ips(cni) == []


def pod_config(pb, name="pod", namespace="default", uid=None, attempt=0, host_network=False, **kw):
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid or f"uid-{name}", attempt=attempt),
        hostname=kw.pop("hostname", name),
        labels=kw.pop("labels", {"app": name}),
        annotations=kw.pop("annotations", {"note": "test"}),
    )
    if "dns" in kw:
        cfg.dns_config.CopyFrom(pb.DNSConfig(**kw.pop("dns")))
    for pm in kw.pop("ports", []):
        cfg.port_mappings.add(**pm)
    cfg.linux.security_context.namespace_options.network = pb.NODE if host_network else pb.POD
    cfg.linux.security_context.namespace_options.pid = pb.POD if kw.pop("share_pid", False) else pb.CONTAINER
    cfg.linux.security_context.namespace_options.ipc = pb.POD
    for k, v in kw.pop("sysctls", {}).items():
        cfg.linux.sysctls[k] = v
    if "cgroup_parent" in kw:
        cfg.linux.cgroup_parent = kw.pop("cgroup_parent")
    if "userns" in kw:  # UserNamespace fields: mode, uids and gids (lists of IDMapping fields)
        cfg.linux.security_context.namespace_options.userns_options.CopyFrom(pb.UserNamespace(**kw.pop("userns")))
    assert not kw, kw
    return cfg


def run_pod(d, pb, **kw):
    return d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(pb, **kw)), timeout=60).pod_sandbox_id


def status(d, pb, pod_id, verbose=False):
    return d.runtime().PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose), timeout=30)


def ns_path(d, pod_id, ns):
    return os.path.join(d.dir, "run", "pods", pod_id, "ns", ns)


def in_pod(d, pod_id, *cmd, ns=("net", "uts", "ipc")):
    args = ["nsenter"] + [f"--{n}={ns_path(d, pod_id, n)}" for n in ns] + list(cmd)
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=10).stdout


def units(prefix="rktlet-pod"):
    out = subprocess.run(["systemctl", "--user", "list-units", "--all", "--plain", "--no-legend", f"{prefix}*"],
                         capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ipam_ips(cni):
    try:
        return sorted(f for f in os.listdir(cni["ipam"]) if f.startswith(SUBNET))
    except FileNotFoundError:
        return []


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def ping(ip):
    return subprocess.run(["ping", "-c", "1", "-W", "2", ip], capture_output=True).returncode == 0


# --- the basics ------------------------------------------------------------------------------------

@needs_cni
def test_run_status_list_stop_remove(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="web", labels={"app": "web", "tier": "front"})
    assert len(pod_id) == 64

    st = status(d, pb, pod_id).status
    assert st.id == pod_id
    assert st.state == pb.SANDBOX_READY
    assert st.metadata.name == "web" and st.metadata.namespace == "default" and st.metadata.uid == "uid-web"
    assert dict(st.labels) == {"app": "web", "tier": "front"}
    assert dict(st.annotations) == {"note": "test"}
    assert abs(st.created_at / 1e9 - time.time()) < 60
    assert st.network.ip.startswith(SUBNET + ".")
    assert st.linux.namespaces.options.network == pb.POD
    assert st.runtime_handler == ""

    # The pod is a slice of the user manager, active.
    slice_ = f"rktlet-pod{pod_id}.slice"
    assert slice_ in units()
    assert subprocess.run(["systemctl", "--user", "is-active", slice_], capture_output=True, text=True).stdout.strip() == "active"
    # No process exists for the pod itself: the slice's cgroup, and every one below it, is empty.
    assert process_count(slice_) == 0

    # Reachable from the test's namespace over the bridge.
    assert ping(st.network.ip)

    items = d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
    assert [i.id for i in items] == [pod_id]
    assert items[0].state == pb.SANDBOX_READY

    ip = st.network.ip
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    st = status(d, pb, pod_id).status
    assert st.state == pb.SANDBOX_NOTREADY
    assert st.network.ip == ""
    assert ipam_ips(d.cni) == []  # the address went back to host-local
    assert not ping(ip)
    assert mounts_under(os.path.join(d.dir, "run")) == []
    # Stop again: fine.
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)

    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    with pytest.raises(grpc.RpcError) as e:
        status(d, pb, pod_id)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert units() == []
    assert not os.path.exists(os.path.join(d.dir, "run", "pods", pod_id))
    assert not os.path.exists(os.path.join(d.dir, "lib", "pods", pod_id))
    # Remove again, and remove of an id never seen: fine.
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id="f" * 64), timeout=60)


@needs_cni
def test_two_pods_get_different_ips_and_see_each_other(pod_daemon, pb):
    d = pod_daemon
    a = run_pod(d, pb, name="a")
    b = run_pod(d, pb, name="b")
    ip_a = status(d, pb, a).status.network.ip
    ip_b = status(d, pb, b).status.network.ip
    assert ip_a != ip_b
    assert sorted(ipam_ips(d.cni)) == sorted([ip_a, ip_b])
    # From inside pod a, pod b answers.
    in_pod(d, a, "ping", "-c", "1", "-W", "2", ip_b, ns=("net",))
    for p in (a, b):
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=60)
    assert ipam_ips(d.cni) == []


@needs_cni
def test_hostname_resolv_conf_and_hosts(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="named", hostname="my-host",
                     dns={"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local", "svc.cluster.local"],
                          "options": ["ndots:5"]})
    assert in_pod(d, pod_id, "hostname").strip() == "my-host"
    run = os.path.join(d.dir, "run", "pods", pod_id)
    resolv = open(os.path.join(run, "resolv.conf")).read()
    assert resolv == ("search default.svc.cluster.local svc.cluster.local\n"
                      "nameserver 10.96.0.10\noptions ndots:5\n")
    ip = status(d, pb, pod_id).status.network.ip
    hosts = open(os.path.join(run, "hosts")).read()
    assert "127.0.0.1\tlocalhost" in hosts
    assert f"{ip}\tmy-host" in hosts
    assert open(os.path.join(run, "hostname")).read() == "my-host\n"
    # The pod's network namespace has lo up and eth0 with the IP, in the network's /24, and no
    # other IPv4 address.
    links = json.loads(in_pod(d, pod_id, "ip", "-j", "addr", "show", ns=("net",)))
    inet = {link["ifname"]: [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"]
            for link in links}
    assert {name: addrs for name, addrs in inet.items() if addrs} == {"lo": [("127.0.0.1", 8)], "eth0": [(ip, 24)]}
    flags = {link["ifname"]: link["flags"] for link in links}
    assert "UP" in flags["lo"] and "UP" in flags["eth0"]


# A realistic pod name longer than the kernel's 64-byte host names (a Deployment's pod of a long name).
LONG_NAME = "payments-reconciliation-worker-canary-eu-west-1-7f9c8d6b5d-x2kqz-abc"


@needs_cni
@pytest.mark.parametrize("name", [LONG_NAME, "short"], ids=["long-name", "short-name"])
def test_no_hostname_gets_the_nodes_host_name(pod_daemon, pb, name):
    # As containerd: an empty hostname is the node's, in the UTS namespace, /etc/hostname and hosts;
    # never the pod's name (which may not even fit in a host name).
    assert len(LONG_NAME) == 68
    d = pod_daemon
    node = socket.gethostname()  # the harness shares the host's UTS namespace
    assert node != name
    pod_id = run_pod(d, pb, name=name, hostname="")
    assert status(d, pb, pod_id).status.state == pb.SANDBOX_READY
    assert in_pod(d, pod_id, "hostname", ns=("uts",)).strip() == node
    assert os.stat(ns_path(d, pod_id, "uts")).st_ino != os.stat("/proc/self/ns/uts").st_ino  # its own namespace
    run = os.path.join(d.dir, "run", "pods", pod_id)
    assert open(os.path.join(run, "hostname")).read() == node + "\n"
    ip = status(d, pb, pod_id).status.network.ip
    hosts = open(os.path.join(run, "hosts")).read().splitlines()
    assert [line for line in hosts if line.startswith(ip + "\t")] == [f"{ip}\t{node}"]


@needs_cni
def test_an_explicit_hostname_wins_over_a_long_name(pod_daemon, pb):
    d = pod_daemon
    hostname = "h" * 64  # the kernel's longest
    pod_id = run_pod(d, pb, name=LONG_NAME, hostname=hostname)
    assert in_pod(d, pod_id, "hostname", ns=("uts",)).strip() == hostname
    assert open(os.path.join(d.dir, "run", "pods", pod_id, "hostname")).read() == hostname + "\n"


def test_host_network_pod_without_hostname_gets_the_nodes_host_name(make_daemon, pb):
    d = make_daemon()
    pod_id = run_pod(d, pb, name=LONG_NAME, hostname="", host_network=True)
    assert status(d, pb, pod_id).status.state == pb.SANDBOX_READY
    assert open(os.path.join(d.dir, "run", "pods", pod_id, "hostname")).read() == socket.gethostname() + "\n"
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)


@needs_cni
def test_no_dns_config_takes_the_hosts_resolv_conf(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="nodns")
    with open("/etc/resolv.conf") as f:
        host = f.read()
    assert open(os.path.join(d.dir, "run", "pods", pod_id, "resolv.conf")).read() == host


@needs_cni
def test_namespaced_sysctls_apply_inside_the_pod(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="sysctl", sysctls={"net.ipv4.ip_unprivileged_port_start": "53",
                                                     "kernel.shm_rmid_forced": "1"})
    assert in_pod(d, pod_id, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start", ns=("net",)).strip() == "53"
    assert in_pod(d, pod_id, "cat", "/proc/sys/kernel/shm_rmid_forced", ns=("ipc",)).strip() == "1"
    # The test's own namespace is untouched.
    assert open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read().strip() != "53"


@needs_cni
def test_host_port_reaches_a_listener_in_the_pod(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="hp", ports=[{"protocol": pb.TCP, "container_port": 8080, "host_port": 18080}])
    ip = status(d, pb, pod_id).status.network.ip
    server = subprocess.Popen(["nsenter", f"--net={ns_path(d, pod_id, 'net')}", "/usr/bin/python3", "-c",
                               "import socket\n"
                               "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                               "s.bind(('0.0.0.0', 8080)); s.listen(1); print('ready', flush=True)\n"
                               "c, _ = s.accept(); c.sendall(b'hello from the pod'); c.close()\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        # The bridge's address is local in the test's namespace: portmap DNATs it to the pod.
        with socket.create_connection((f"{SUBNET}.1", 18080), timeout=5) as c:
            assert c.recv(100) == b"hello from the pod"
    finally:
        server.kill()
        server.wait()
    assert status(d, pb, pod_id).status.network.ip == ip


@needs_cni
def test_verbose_status_has_unit_netns_and_cni_result(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="verbose")
    r = status(d, pb, pod_id, verbose=True)
    info = json.loads(r.info["info"])
    assert info["unit"] == f"rktlet-pod{pod_id}.slice"
    assert info["netns"] == ns_path(d, pod_id, "net")
    assert info["cniNetwork"] == "rktlet-test"
    assert info["cniResult"]["ips"][0]["address"].startswith(r.status.network.ip + "/")
    assert info["cniCheck"] == "ok"


@needs_cni
def test_list_filters(pod_daemon, pb):
    d = pod_daemon
    a = run_pod(d, pb, name="fa", labels={"app": "x", "tier": "1"})
    b = run_pod(d, pb, name="fb", labels={"app": "x", "tier": "2"})
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=b), timeout=60)
    ls = lambda **f: sorted(i.id for i in d.runtime().ListPodSandbox(
        pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**f)), timeout=10).items)
    assert ls() == sorted([a, b])
    assert ls(id=a[:12]) == [a]
    assert ls(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)) == [a]
    assert ls(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)) == [b]
    assert ls(label_selector={"app": "x"}) == sorted([a, b])
    assert ls(label_selector={"app": "x", "tier": "2"}) == [b]
    assert ls(label_selector={"app": "y"}) == []
    # A unique prefix works where an id is expected.
    assert status(d, pb, a[:10]).status.id == a


@needs_cni
def test_same_metadata_twice_is_already_exists(pod_daemon, pb):
    d = pod_daemon
    first = run_pod(d, pb, name="dup", uid="u1")
    with pytest.raises(grpc.RpcError) as e:
        run_pod(d, pb, name="dup", uid="u1")
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first in e.value.details()
    # Another attempt is a different pod.
    second = run_pod(d, pb, name="dup", uid="u1", attempt=1)
    assert second != first
    assert len(units()) == 2


def test_host_network_pod_without_cni(make_daemon, pb, tmp_path):
    # No CNI configuration at all: host-network pods still run, others are refused.
    empty = tmp_path / "empty-net.d"
    empty.mkdir()
    d = make_daemon(args=["--cni-conf-dir", str(empty), "--cni-bin-dir", CNI_BIN])
    conds = {c.type: c for c in d.runtime().Status(pb.StatusRequest(), timeout=10).status.conditions}
    assert conds["NetworkReady"].status is False
    assert str(empty) in conds["NetworkReady"].message
    pod_id = run_pod(d, pb, name="hostnet", host_network=True)
    st = status(d, pb, pod_id).status
    assert st.state == pb.SANDBOX_READY
    assert st.network.ip == ""
    assert st.linux.namespaces.options.network == pb.NODE
    assert not os.path.exists(ns_path(d, pod_id, "net"))
    with pytest.raises(grpc.RpcError) as e:
        run_pod(d, pb, name="needs-net")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "network is not ready" in e.value.details()
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert units() == []


@needs_cni
def test_network_ready_follows_the_config_directory(make_daemon, pb, tmp_path, cni):
    conf = tmp_path / "late-net.d"
    d = make_daemon(args=["--cni-conf-dir", str(conf), "--cni-bin-dir", CNI_BIN])

    def net_ready():
        c = {c.type: c for c in d.runtime().Status(pb.StatusRequest(), timeout=10).status.conditions}
        return c["NetworkReady"]

    assert net_ready().status is False
    conf.mkdir()
    (conf / "10-test.conflist").write_text(json.dumps(cni["network"]))
    wait_until(lambda: net_ready().status, timeout=10, what="NetworkReady after the config appeared")
    # A plugin that does not exist: not ready, and the message says which.
    broken = dict(cni["network"], plugins=[{"type": "no-such-plugin"}])
    (conf / "10-test.conflist").write_text(json.dumps(broken))
    wait_until(lambda: not net_ready().status, timeout=10, what="NetworkReady false")
    assert "no-such-plugin" in net_ready().message


@needs_cni
def test_cgroup_parent_slice(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="qos", cgroup_parent="kubepods-besteffort-pod1234.slice")
    assert "kubepods-besteffort-pod1234.slice" in units("kubepods")
    info = json.loads(status(d, pb, pod_id, verbose=True).info["info"])
    assert info["unit"] == "kubepods-besteffort-pod1234.slice"
    # systemd made the parents (kubelet's QoS slices) on its own; they are kubelet's to manage.
    assert {"kubepods.slice", "kubepods-besteffort.slice"} <= set(units("kubepods"))
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert "kubepods-besteffort-pod1234.slice" not in units("kubepods")
    subprocess.run(["systemctl", "--user", "stop", "kubepods.slice"], check=True)


# --- what systemd refuses to stop is not rktlet's to stop (issue 15, item 2) ------------------------

def refuse_manual_stop(unit):
    """RefuseManualStop=yes for unit, in a drop-in of the user manager's runtime directory (as an
    administrator would add one): every StopUnit of it then fails with OnlyByDependency ("Operation
    refused"), however often asked. Returns the drop-in directory."""
    dropin = os.path.join(os.environ["XDG_RUNTIME_DIR"], "systemd", "user", unit + ".d")
    os.makedirs(dropin, exist_ok=True)
    with open(os.path.join(dropin, "50-refuse-stop.conf"), "w") as f:
        f.write("[Unit]\nRefuseManualStop=yes\n")
    subprocess.run(["systemctl", "--user", "daemon-reload"], check=True)
    return dropin


def allow_stop(dropin, unit):
    import shutil
    shutil.rmtree(dropin, ignore_errors=True)
    subprocess.run(["systemctl", "--user", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "--user", "stop", unit], capture_output=True)


def forgotten_warnings(pod_id, unit):
    """The daemon's warnings, in the journal, that it left unit to systemd for the pod."""
    entries = rktlet_test.wait_journal(f"POD_SANDBOX_ID={pod_id}", f"RKTLET_UNIT={unit}", "PRIORITY=4")
    return [e["MESSAGE"] for e in entries]


def pod_gone(d, pb, pod_id, cni=None):
    assert [i.id for i in d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items] == []
    with pytest.raises(grpc.RpcError) as e:
        status(d, pb, pod_id)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert not os.path.exists(os.path.join(d.dir, "run", "pods", pod_id))
    assert not os.path.exists(os.path.join(d.dir, "lib", "pods", pod_id))
    assert mounts_under(os.path.join(d.dir, "run")) == []
    if cni:
        assert ipam_ips(cni) == []


@needs_cni
def test_a_slice_systemd_refuses_to_stop_is_forgotten_and_the_removal_finishes(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="unstoppable")
    slice_ = f"rktlet-pod{pod_id}.slice"
    dropin = refuse_manual_stop(slice_)
    try:
        assert systemctl_show(slice_, "RefuseManualStop") == "yes"
        r = subprocess.run(["systemctl", "--user", "stop", slice_], capture_output=True, text=True)
        assert r.returncode != 0 and "refused" in r.stderr, r  # systemd refuses anyone, not just rktlet
        # The removal finishes: the network, the namespaces, the files and the record go; the slice
        # is systemd's to keep, and the warning says so.
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
        pod_gone(d, pb, pod_id, d.cni)
        messages = forgotten_warnings(pod_id, slice_)
        assert len(messages) == 1, messages
        assert f"systemd refuses to stop {slice_}, so it is not rktlet's to stop: forgetting it" in messages[0]
        assert "org.freedesktop.systemd1.OnlyByDependency" in messages[0]
        assert systemctl_show(slice_, "ActiveState") == "active"
        # Removing it again is the success of a pod that is gone.
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    finally:
        allow_stop(dropin, slice_)
    assert units() == []


def test_a_pod_an_older_rktlet_put_in_the_root_slice_stops_and_is_removed(make_daemon, pb):
    # An rktlet that took cgroup_parent "-.slice" (issue 15) started the root slice (systemd took the
    # transient unit's description) and recorded it as its own; systemd never stops the root slice
    # (JobTypeNotApplicable), and every Stop/RemovePodSandbox failed with INTERNAL. A record that
    # such an rktlet left is made here from a real pod's, as it wrote it.
    d = make_daemon()
    pod_id = run_pod(d, pb, name="rooted", host_network=True)
    assert d.stop() == 0
    subprocess.run(["systemctl", "--user", "stop", f"rktlet-pod{pod_id}.slice"], check=True)
    path = os.path.join(d.dir, "lib", "pods", pod_id, "state.json")
    with open(path) as f:
        record = json.load(f)
    record.update(slice="-.slice", sliceOwned=True, sliceStarted=True)
    record["spec"]["cgroupParent"] = "-.slice"
    with open(path, "w") as f:
        json.dump(record, f)

    d2 = make_daemon("rktlet", start=False)
    d2.start()
    assert json.loads(status(d2, pb, pod_id, verbose=True).info["info"])["unit"] == "-.slice"
    d2.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert status(d2, pb, pod_id).status.state == pb.SANDBOX_NOTREADY
    assert pod_records(d2)[pod_id]["sliceStarted"] is False  # forgotten: a retry does not ask again
    d2.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    pod_gone(d2, pb, pod_id)
    messages = forgotten_warnings(pod_id, "-.slice")
    assert len(messages) == 1, messages
    assert "org.freedesktop.systemd1.JobTypeNotApplicable" in messages[0]
    assert subprocess.run(["systemctl", "--user", "show", "-P", "ActiveState", "--", "-.slice"], capture_output=True,
                          text=True).stdout.strip() == "active"


def systemctl_show(unit, prop):
    return subprocess.run(["systemctl", "--user", "show", "-P", prop, unit], capture_output=True, text=True).stdout.strip()


def proc_field(pid, field):
    """A field of /proc/<pid>/status, as the kernel shows it to the test's PID namespace."""
    with open(f"/proc/{pid}/status") as f:
        return [line.split(":", 1)[1].strip() for line in f if line.startswith(field + ":")][0]


def process_count(slice_):
    """Processes in a unit's cgroup (tasks of the name=systemd hierarchy or cgroup v2)."""
    cg = systemctl_show(slice_, "ControlGroup")
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"):
        path = root + cg
        if os.path.isdir(path):
            n = 0
            for dirpath, _, files in os.walk(path):
                if "cgroup.procs" in files:
                    n += len(open(os.path.join(dirpath, "cgroup.procs")).read().split())
            return n
    return None


@needs_cni
def test_pod_without_shared_pid_namespace_has_no_process(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="noproc")
    assert process_count(f"rktlet-pod{pod_id}.slice") == 0


@needs_cni
def test_shared_pid_namespace_gets_an_init(pod_daemon, pb):
    d = pod_daemon
    pod_id = run_pod(d, pb, name="sharedpid", share_pid=True)
    init_unit = f"rktlet-init-{pod_id}.service"
    assert systemctl_show(init_unit, "ActiveState") == "active"
    assert systemctl_show(init_unit, "Slice") == f"rktlet-pod{pod_id}.slice"
    pid = int(systemctl_show(init_unit, "MainPID"))
    # The main process is PID 1 of a namespace of its own, and it lives in the pod's network namespace.
    nspid = [l for l in open(f"/proc/{pid}/status") if l.startswith("NSpid:")][0].split()
    assert nspid[-1] == "1" and len(nspid) == 3
    assert open(f"/proc/{pid}/comm").read().strip() == "rktlet-pod-init"
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(ns_path(d, pod_id, "net")).st_ino
    assert os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat(ns_path(d, pod_id, "pid")).st_ino
    assert process_count(f"rktlet-pod{pod_id}.slice") == 1
    info = json.loads(status(d, pb, pod_id, verbose=True).info["info"])
    assert info["initUnit"] == init_unit and info["pidns"] == ns_path(d, pod_id, "pid")
    assert status(d, pb, pod_id).status.linux.namespaces.options.pid == pb.POD

    # An orphan in the namespace is reaped by the pod's init: no zombie stays. The sh that starts
    # it has exited when nsenter returns, so the kernel has given the orphan to the init; killed, it
    # stays in /proc (a zombie) until its parent reaps it.
    pidns = os.stat(ns_path(d, pod_id, "pid")).st_ino
    r = subprocess.run(["nsenter", f"--pid={ns_path(d, pod_id, 'pid')}", "sh", "-c",
                        "sleep 1001 </dev/null >/dev/null 2>&1 & exit 0"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    orphans = []
    for p in os.listdir("/proc"):
        try:
            if (p.isdigit() and os.stat(f"/proc/{p}/ns/pid").st_ino == pidns and
                    open(f"/proc/{p}/cmdline").read() == "sleep\x001001\x00"):
                orphans.append(int(p))
        except OSError:
            continue
    assert len(orphans) == 1, orphans
    opid = orphans[0]
    assert proc_field(opid, "PPid") == str(pid)
    os.kill(opid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{opid}"), what="the pod's init to reap the killed orphan")
    zombies = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                st = open(f"/proc/{p}/status").read()
            except OSError:
                continue
            if "State:\tZ" in st and os.stat(f"/proc/{p}/ns/pid").st_ino == os.stat(ns_path(d, pod_id, "pid")).st_ino:
                zombies.append(p)
    assert zombies == []

    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert systemctl_show(init_unit, "ActiveState") in ("inactive", "")
    assert not os.path.exists(f"/proc/{pid}")
    assert mounts_under(os.path.join(d.dir, "run")) == []


RECORDER = """#!/bin/sh
# A CNI plugin of the test, chained after the real ones: it records what the runtime passed and
# hands the previous result on unchanged (CNI 1.0: ADD and CHECK print prevResult, DEL prints nothing).
env | grep -E '^CNI_' | sort > "$0.$CNI_COMMAND.env"
cat > "$0.$CNI_COMMAND.json"
[ "$CNI_COMMAND" = VERSION ] && { echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}'; exit 0; }
[ "$CNI_COMMAND" = DEL ] && exit 0
/usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])).get("prevResult", {})))' "$0.$CNI_COMMAND.json"
"""


@needs_cni
def test_cni_arguments_and_port_mappings_reach_the_plugins(make_daemon, pb, tmp_path, cni):
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    rec = bindir / "recorder"
    rec.write_text(RECORDER)
    rec.chmod(0o755)
    conf = tmp_path / "rec-net.d"
    conf.mkdir()
    network = dict(cni["network"])
    network["plugins"] = network["plugins"][:1] + [{"type": "recorder", "capabilities": {"portMappings": True}, "x": 1}]
    (conf / "10-rec.conflist").write_text(json.dumps(network))
    d = make_daemon(args=["--cni-conf-dir", str(conf), "--cni-bin-dir", f"{bindir}:{CNI_BIN}"])
    pod_id = run_pod(d, pb, name="rec", namespace="ns1", uid="uid-42",
                     ports=[{"protocol": pb.UDP, "container_port": 53, "host_port": 5353, "host_ip": "127.0.0.1"},
                            {"protocol": pb.TCP, "container_port": 80}])
    env = dict(line.split("=", 1) for line in (bindir / "recorder.ADD.env").read_text().splitlines())
    assert env["CNI_COMMAND"] == "ADD"
    assert env["CNI_CONTAINERID"] == pod_id
    assert env["CNI_NETNS"] == ns_path(d, pod_id, "net")
    assert env["CNI_IFNAME"] == "eth0"
    assert env["CNI_PATH"] == f"{bindir}:{CNI_BIN}"
    args = dict(kv.split("=", 1) for kv in env["CNI_ARGS"].split(";"))
    assert args == {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "ns1", "K8S_POD_NAME": "rec",
                    "K8S_POD_INFRA_CONTAINER_ID": pod_id, "K8S_POD_UID": "uid-42"}
    stdin = json.loads((bindir / "recorder.ADD.json").read_text())
    assert stdin["name"] == "rktlet-test" and stdin["cniVersion"] == "1.0.0" and stdin["x"] == 1
    assert stdin["prevResult"]["ips"][0]["address"].startswith(SUBNET)
    # Only mappings with a host port, as the portmap plugin expects them.
    assert stdin["runtimeConfig"] == {"portMappings": [
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]}
    # The recorder's result (the bridge's, passed on) gave the pod its IP.
    assert status(d, pb, pod_id).status.network.ip == stdin["prevResult"]["ips"][0]["address"].split("/")[0]

    status(d, pb, pod_id, verbose=True)
    assert json.loads((bindir / "recorder.CHECK.json").read_text())["prevResult"]["ips"]
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    # DEL runs the chain backwards with the ADD result.
    assert "CNI_COMMAND=DEL" in (bindir / "recorder.DEL.env").read_text()
    assert json.loads((bindir / "recorder.DEL.json").read_text())["prevResult"]["ips"]
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert ipam_ips(cni) == []


@needs_cni
def test_a_failing_plugin_rolls_the_pod_back(make_daemon, pb, tmp_path, cni):
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    failing = bindir / "failing"
    failing.write_text('#!/bin/sh\ncat >/dev/null\n[ "$CNI_COMMAND" = DEL ] && exit 0\n'
                       'echo \'{"cniVersion":"1.0.0","code":11,"msg":"no luck today","details":"by design"}\'\nexit 1\n')
    failing.chmod(0o755)
    conf = tmp_path / "fail-net.d"
    conf.mkdir()
    network = dict(cni["network"])
    network["plugins"] = network["plugins"][:1] + [{"type": "failing"}]
    (conf / "10-fail.conflist").write_text(json.dumps(network))
    d = make_daemon(args=["--cni-conf-dir", str(conf), "--cni-bin-dir", f"{bindir}:{CNI_BIN}"])
    with pytest.raises(grpc.RpcError) as e:
        run_pod(d, pb, name="unlucky")
    assert "CNI ADD failing: no luck today: by design (code 11)" in e.value.details()
    # Nothing is left: no pod, no unit, no address (the bridge's ADD was undone by DEL), no mount.
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    assert units() == []
    assert ipam_ips(cni) == []
    assert mounts_under(os.path.join(d.dir, "run")) == []
    assert os.listdir(os.path.join(d.dir, "lib", "pods")) == []


# --- CNI plugin timeout ----------------------------------------------------------------------------

HANGING = """#!/bin/sh
# A CNI plugin of the test, chained after the bridge. On the commands listed in $0.hang it hangs,
# deaf to SIGTERM, waiting on a child of its own (as a script waiting on a tool would) and writing
# "its pid, the child's pid" to $0.COMMAND.pids; otherwise it hands the previous result on, like
# the recorder. $0.log gets every command it was run with.
cat > "$0.$CNI_COMMAND.json"
echo "$CNI_COMMAND" >> "$0.log"
if grep -qx "$CNI_COMMAND" "$0.hang"; then
        trap '' TERM
        sleep 3600 &
        echo "$$ $!" > "$0.$CNI_COMMAND.pids.tmp" && mv "$0.$CNI_COMMAND.pids.tmp" "$0.$CNI_COMMAND.pids"
        wait
fi
[ "$CNI_COMMAND" = DEL ] && exit 0
exec /usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])).get("prevResult", {})))' "$0.$CNI_COMMAND.json"
"""

PLUGIN_TIMEOUT = 4  # seconds, PluginTimeoutSec= of these tests (the test must see the hang before it ends)


def hanging_network(tmp_path, cni, hang=()):
    """The test's bridge network with the HANGING plugin after the bridge; returns (bin dir, conf dir)."""
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    plugin = bindir / "hang"
    plugin.write_text(HANGING)
    plugin.chmod(0o755)
    (bindir / "hang.hang").write_text("".join(c + "\n" for c in hang))
    conf = tmp_path / "hang-net.d"
    conf.mkdir()
    network = dict(cni["network"])
    network["plugins"] = network["plugins"][:1] + [{"type": "hang"}]
    (conf / "10-hang.conflist").write_text(json.dumps(network))
    return bindir, conf


def hanging_daemon(make_daemon, bindir, conf):
    return make_daemon(config=f"[CNI]\nPluginTimeoutSec={PLUGIN_TIMEOUT}\n",
                       args=["--cni-conf-dir", str(conf), "--cni-bin-dir", f"{bindir}:{CNI_BIN}"])


def running(pid, needle):
    """True while pid is a live process (not a zombie) whose command line holds needle."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        return needle in cmdline and not proc_field(pid, "State").startswith("Z")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def hung_plugin(bindir, command):
    """Waits until the HANGING plugin hangs on command; returns [(pid, cmdline needle)] of its processes."""
    pids = bindir / f"hang.{command}.pids"
    wait_until(pids.exists, timeout=5 * PLUGIN_TIMEOUT, what=f"the plugin to hang on {command}")
    sh, sleep = map(int, pids.read_text().split())
    procs = [(sh, str(bindir / "hang").encode()), (sleep, b"sleep\x003600\x00")]
    assert all(running(p, n) for p, n in procs), procs
    return procs


def kill_leftovers(procs):
    for pid, needle in procs:
        if running(pid, needle):
            os.kill(pid, signal.SIGKILL)


@needs_cni
def test_a_hanging_plugin_is_killed_after_the_timeout_and_the_pod_rolled_back(make_daemon, pb, tmp_path, cni):
    bindir, conf = hanging_network(tmp_path, cni, hang=["ADD"])
    d = hanging_daemon(make_daemon, bindir, conf)
    start = time.monotonic()
    future = d.runtime().RunPodSandbox.future(pb.RunPodSandboxRequest(config=pod_config(pb, name="stuck")), timeout=60)
    procs = hung_plugin(bindir, "ADD")
    try:
        # While the plugin hangs, the daemon answers other calls.
        assert d.runtime().Version(pb.VersionRequest(), timeout=10).runtime_name == "rktlet"
        conds = {c.type: c.status for c in d.runtime().Status(pb.StatusRequest(), timeout=10).status.conditions}
        assert conds == {"RuntimeReady": True, "NetworkReady": True}
        d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10)
        assert not future.done() and all(running(p, n) for p, n in procs)

        with pytest.raises(grpc.RpcError) as e:
            future.result()
        elapsed = time.monotonic() - start
        # The daemon's own timeout (the call's deadline is 60 s away), naming the plugin and the limit.
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value.details()
        assert f"CNI ADD hang: timed out after {PLUGIN_TIMEOUT}s (PluginTimeoutSec=)" in e.value.details()
        assert PLUGIN_TIMEOUT <= elapsed < 5 * PLUGIN_TIMEOUT
        # The plugin is killed, and so is what it started.
        wait_until(lambda: not any(running(p, n) for p, n in procs), timeout=5, what="the plugin's processes to die")
    finally:
        kill_leftovers(procs)
    # The rollback ran DEL through the chain (the plugin's and the bridge's, which gave the address
    # back and removed the veth), and nothing of the pod is left.
    assert (bindir / "hang.log").read_text().split() == ["ADD", "DEL"]
    assert json.loads((bindir / "hang.DEL.json").read_text())["name"] == "rktlet-test"
    assert ipam_ips(cni) == []
    links = subprocess.run(["ip", "-o", "link", "show", "master", "rkt0"], capture_output=True, text=True).stdout
    assert links.strip() == ""
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    assert units() == []
    assert mounts_under(os.path.join(d.dir, "run")) == []
    assert listdir(os.path.join(d.dir, "run", "pods")) == []
    assert listdir(os.path.join(d.dir, "lib", "pods")) == []


def stop_with_a_hanging_del(make_daemon, pb, tmp_path, cni):
    """Runs a pod, then stops it with the plugin hanging on DEL; returns (daemon, pod id, bin dir)
    once the stop failed on the timeout, the plugin's processes gone."""
    bindir, conf = hanging_network(tmp_path, cni)
    d = hanging_daemon(make_daemon, bindir, conf)
    pod_id = run_pod(d, pb, name="sticky")
    ip = status(d, pb, pod_id).status.network.ip
    assert ipam_ips(cni) == [ip]
    (bindir / "hang.hang").write_text("DEL\n")
    start = time.monotonic()
    future = d.runtime().StopPodSandbox.future(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    procs = hung_plugin(bindir, "DEL")
    try:
        assert status(d, pb, pod_id).status.id == pod_id  # answered meanwhile
        assert not future.done()
        with pytest.raises(grpc.RpcError) as e:
            future.result()
        elapsed = time.monotonic() - start
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value.details()
        assert f"CNI DEL hang: timed out after {PLUGIN_TIMEOUT}s (PluginTimeoutSec=)" in e.value.details()
        assert PLUGIN_TIMEOUT <= elapsed < 5 * PLUGIN_TIMEOUT
        wait_until(lambda: not any(running(p, n) for p, n in procs), timeout=5, what="the plugin's processes to die")
    finally:
        kill_leftovers(procs)
    return d, pod_id, bindir


@needs_cni
def test_a_del_that_hangs_fails_the_stop_and_a_retry_completes_it(make_daemon, pb, tmp_path, cni):
    # StopPodSandbox must reclaim the pod's network: a DEL that never answers fails the stop (as
    # containerd's does), and what is left stays for kubelet's retry, which then completes.
    d, pod_id, bindir = stop_with_a_hanging_del(make_daemon, pb, tmp_path, cni)
    # DEL went on down the chain: the bridge gave the address back. The network namespace, which a
    # DEL that failed may still need, is kept.
    assert ipam_ips(cni) == []
    assert ns_path(d, pod_id, "net") in mounts_under(os.path.join(d.dir, "run"))
    assert [i.id for i in d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items] == [pod_id]

    # The retry, the plugin answering again: the stop completes.
    (bindir / "hang.hang").write_text("")
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert (bindir / "hang.log").read_text().split() == ["ADD", "DEL", "DEL"]
    st = status(d, pb, pod_id).status
    assert st.state == pb.SANDBOX_NOTREADY
    assert st.network.ip == ""
    assert mounts_under(os.path.join(d.dir, "run")) == []
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert units() == []
    assert listdir(os.path.join(d.dir, "lib", "pods")) == []


@needs_cni
def test_a_pod_whose_stop_failed_after_its_slice_stopped_is_notready(make_daemon, pb, tmp_path, cni):
    # The stop failed on DEL, after the pod's slice (and every container in it) was stopped: the
    # pod no longer runs, and kubelet must see that (and make a new sandbox) rather than READY.
    d, pod_id, bindir = stop_with_a_hanging_del(make_daemon, pb, tmp_path, cni)
    assert units() == []
    seen = (status(d, pb, pod_id).status.state,
            [i.state for i in d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items],
            pod_records(d)[pod_id]["state"])
    (bindir / "hang.hang").write_text("")
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert ipam_ips(cni) == []
    assert mounts_under(os.path.join(d.dir, "run")) == []
    assert seen == (pb.SANDBOX_NOTREADY, [pb.SANDBOX_NOTREADY], "notready")


# --- IPv6 and dual stack ---------------------------------------------------------------------------

V4_SUBNET = "10.88.16.0/24"
V6_SUBNET = "fd00:1234::/64"     # unique local addresses, on a bridge of the harness's namespace only
V6_ONLY_SUBNET = "fd00:1235::/64"


def require_ipv6():
    if not os.path.isdir("/proc/sys/net/ipv6"):
        rktlet_test.machine_skip("IPv6 is disabled in this kernel (ipv6.disable=1)")
    if open("/proc/sys/net/ipv6/conf/all/disable_ipv6").read().strip() != "0":
        rktlet_test.machine_skip("IPv6 is disabled in new network namespaces (net.ipv6.conf.all.disable_ipv6)")


def network_dir(tmp_path, name, bridge, subnets):
    """A bridge network whose host-local IPAM has one range per subnet, in that order; returns
    (conf dir, IPAM store)."""
    conf = tmp_path / f"{name}-net.d"
    conf.mkdir()
    network = {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": s}] for s in subnets],
                              "dataDir": str(tmp_path / "ipam")}}],
    }
    (conf / "10-net.conflist").write_text(json.dumps(network))
    return str(conf), str(tmp_path / "ipam" / name)


def ipam_allocated(store):
    """The addresses host-local has handed out: one file each, named by the address."""
    return sorted((ipaddress.ip_address(f) for f in listdir(store) if f != "lock" and not f.startswith("last_reserved_ip")),
                  key=lambda a: (a.version, a))


def pod_addresses(d, pod_id):
    """eth0's global addresses inside the pod's network namespace, as the kernel shows them:
    {"inet": [(address, prefix)], "inet6": [...]}."""
    links = json.loads(in_pod(d, pod_id, "ip", "-j", "addr", "show", "dev", "eth0", ns=("net",)))
    out = {"inet": [], "inet6": []}
    for a in links[0]["addr_info"]:
        if a["scope"] == "global":
            out[a["family"]].append((ipaddress.ip_address(a["local"]), a["prefixlen"]))
    return out


def pod_pings(d, pod_id, ip):
    return subprocess.run(["nsenter", f"--net={ns_path(d, pod_id, 'net')}", "ping", "-c", "1", "-W", "1", str(ip)],
                          capture_output=True, timeout=10).returncode == 0


@needs_cni
@pytest.mark.parametrize("v6_first", [False, True], ids=["v4-range-first", "v6-range-first"])
def test_dual_stack_ip_is_the_ipv4_address_and_additional_ips_the_ipv6_one(make_daemon, pb, tmp_path, v6_first):
    # As containerd: the pod's IP is the first IPv4 address of the result whatever the ranges'
    # order, and additional_ips holds the others.
    require_ipv6()
    subnets = [V6_SUBNET, V4_SUBNET] if v6_first else [V4_SUBNET, V6_SUBNET]
    conf, store = network_dir(tmp_path, "dual", "rkt6", subnets)
    d = make_daemon(args=["--cni-conf-dir", conf, "--cni-bin-dir", CNI_BIN])
    pods = [run_pod(d, pb, name=n) for n in ("dual-a", "dual-b")]
    kernel = {}
    for pod_id in pods:
        addrs = pod_addresses(d, pod_id)
        assert len(addrs["inet"]) == 1 and len(addrs["inet6"]) == 1, addrs
        (v4, p4), (v6, p6) = addrs["inet"][0], addrs["inet6"][0]
        assert v4 in ipaddress.ip_network(V4_SUBNET) and p4 == 24
        assert v6 in ipaddress.ip_network(V6_SUBNET) and p6 == 64
        net = status(d, pb, pod_id).status.network
        assert net.ip == str(v4)
        assert [a.ip for a in net.additional_ips] == [str(v6)]
        kernel[pod_id] = (v4, v6)
    assert ipam_allocated(store) == sorted((a for pair in kernel.values() for a in pair), key=lambda a: (a.version, a))
    # The pods reach each other over both families (on the harness's bridge).
    a, b = pods
    for ip in kernel[b]:
        wait_until(lambda: pod_pings(d, a, ip), timeout=15, what=f"pod a to reach pod b at {ip}")
    for pod_id in pods:
        d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
        net = status(d, pb, pod_id).status.network
        assert net.ip == "" and list(net.additional_ips) == []
    assert ipam_allocated(store) == []
    for pod_id in pods:
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert units() == []


@needs_cni
def test_dual_stack_hosts_maps_every_ip_to_the_host_name(make_daemon, pb, tmp_path):
    # As kubelet's managed hosts file: one line per pod IP, the primary first.
    require_ipv6()
    conf, _ = network_dir(tmp_path, "dual", "rkt6", [V4_SUBNET, V6_SUBNET])
    d = make_daemon(args=["--cni-conf-dir", conf, "--cni-bin-dir", CNI_BIN])
    pod_id = run_pod(d, pb, name="dual-hosts", hostname="dual-host")
    addrs = pod_addresses(d, pod_id)
    v4, v6 = addrs["inet"][0][0], addrs["inet6"][0][0]
    hosts = open(os.path.join(d.dir, "run", "pods", pod_id, "hosts")).read().splitlines()
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    mine = [line for line in hosts if line.split("\t")[0] in (str(v4), str(v6))]
    assert mine == [f"{v4}\tdual-host", f"{v6}\tdual-host"]


@needs_cni
def test_ipv6_only_pod_ip_is_the_ipv6_address(make_daemon, pb, tmp_path):
    require_ipv6()
    conf, store = network_dir(tmp_path, "v6only", "rkt66", [V6_ONLY_SUBNET])
    d = make_daemon(args=["--cni-conf-dir", conf, "--cni-bin-dir", CNI_BIN])
    pod_id = run_pod(d, pb, name="v6", hostname="six")
    addrs = pod_addresses(d, pod_id)
    assert addrs["inet"] == [] and len(addrs["inet6"]) == 1, addrs
    v6, prefix = addrs["inet6"][0]
    assert v6 in ipaddress.ip_network(V6_ONLY_SUBNET) and prefix == 64
    net = status(d, pb, pod_id).status.network
    assert net.ip == str(v6)
    assert list(net.additional_ips) == []
    assert ipam_allocated(store) == [v6]
    hosts = open(os.path.join(d.dir, "run", "pods", pod_id, "hosts")).read().splitlines()
    assert [line for line in hosts if line.startswith(f"{v6}\t")] == [f"{v6}\tsix"]
    # Reachable from the harness's namespace, where the bridge holds the gateway address.
    wait_until(lambda: ping(str(v6)), timeout=15, what=f"the pod to answer at {v6}")
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert ipam_allocated(store) == []
    assert not ping(str(v6))
    assert units() == []


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.ClearField("metadata"), "metadata"),
    (lambda c: setattr(c.metadata, "name", ""), "metadata.name is empty"),
    (lambda c: setattr(c.metadata, "namespace", ""), "metadata.namespace is empty"),
    (lambda c: setattr(c.metadata, "uid", ""), "metadata.uid is empty"),
    (lambda c: setattr(c.metadata, "name", "x" * 300), "longer than"),
    (lambda c: setattr(c.metadata, "name", "a/b"), "'/' or '..'"),
    (lambda c: setattr(c.metadata, "namespace", ".."), "'/' or '..'"),
    (lambda c: setattr(c.metadata, "name", "line\nbreak"), "control character"),
    (lambda c: setattr(c, "hostname", "bad host"), "not a valid host name"),
    (lambda c: setattr(c, "hostname", "h" * 65), "longer than 64 characters"),
    (lambda c: c.linux.sysctls.__setitem__("kernel.hostname", "x"), "not a namespaced sysctl"),
    (lambda c: c.linux.sysctls.__setitem__("net.ipv4.ip_forward", "1+kernel.core_pattern=|/x"), "forbidden character"),
    (lambda c: c.linux.sysctls.__setitem__("net.ipv4.ip_forward", "1\nkernel.x=1"), "forbidden character"),
    (lambda c: c.linux.sysctls.__setitem__("net.ipv4.ip_forward", "1=2"), "forbidden character"),
    (lambda c: c.linux.sysctls.__setitem__("../../etc/passwd", "1"), "contains '/'"),
    (lambda c: c.linux.sysctls.__setitem__("kernel.shm_rmid_forced", "1") or
     setattr(c.linux.security_context.namespace_options, "ipc", 2), "IPC namespace"),
    (lambda c: setattr(c.linux, "cgroup_parent", "/kubepods/besteffort"), "config.linux.cgroup_parent"),
    (lambda c: c.port_mappings.add(container_port=0, host_port=80), "ports must be within"),
])
def test_bad_input_is_invalid_argument_and_creates_nothing(make_daemon, pb, tmp_path, mutate, needle):
    d = make_daemon()
    cfg = pod_config(pb, name="bad")
    mutate(cfg)
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert needle in e.value.details()
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    assert units() == []
    assert not os.path.exists(os.path.join(d.dir, "lib", "pods")) or os.listdir(os.path.join(d.dir, "lib", "pods")) == []


def test_unknown_runtime_handler(make_daemon, pb):
    d = make_daemon()
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(pb, host_network=True), runtime_handler="kata"),
                                  timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kata" in e.value.details()


def test_unknown_and_empty_ids(make_daemon, pb):
    d = make_daemon()
    with pytest.raises(grpc.RpcError) as e:
        status(d, pb, "0" * 64)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    for call, req in (("PodSandboxStatus", pb.PodSandboxStatusRequest()), ("StopPodSandbox", pb.StopPodSandboxRequest()),
                      ("RemovePodSandbox", pb.RemovePodSandboxRequest())):
        with pytest.raises(grpc.RpcError) as e:
            getattr(d.runtime(), call)(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, call
    # Stopping an id that does not exist: nothing to reclaim, so OK (as the CRI asks).
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id="0" * 64), timeout=10)


def test_update_runtime_config_pod_cidr(make_daemon, pb):
    d = make_daemon()
    d.runtime().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.244.1.0/24"))), timeout=10)
    with open(os.path.join(d.dir, "lib", "runtime.json")) as f:
        assert json.load(f)["podCIDR"] == "10.244.1.0/24"
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="not a cidr"))), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@needs_cni
def test_pod_cidr_renders_the_cni_config_template(make_daemon, pb, tmp_path, cni):
    conf = tmp_path / "tmpl-net.d"
    template = tmp_path / "template.conflist"
    network = json.loads(json.dumps(cni["network"]))
    network["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "{{.PodCIDR}}"}]]
    network["plugins"][0]["bridge"] = "rkt9"  # rkt0 keeps the other tests' gateway address
    template.write_text(json.dumps(network))
    d = make_daemon(config=f"[CNI]\nConfTemplate={template}\n",
                    args=["--cni-conf-dir", str(conf), "--cni-bin-dir", CNI_BIN])

    def net_ready():
        return {c.type: c for c in d.runtime().Status(pb.StatusRequest(), timeout=10).status.conditions}["NetworkReady"].status

    assert net_ready() is False
    d.runtime().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.88.9.0/24"))), timeout=10)
    rendered = json.loads((conf / "10-rktlet.conflist").read_text())
    assert rendered["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.88.9.0/24"}]]
    wait_until(net_ready, timeout=10, what="NetworkReady from the rendered config")
    pod_id = run_pod(d, pb, name="templated")
    assert status(d, pb, pod_id).status.network.ip.startswith("10.88.9.")
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    # A template that is gone: the call says so.
    template.unlink()
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.88.10.0/24"))), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "template" in e.value.details()


# --- restart and concurrency -----------------------------------------------------------------------

@needs_cni
def test_sigkill_and_restart_between_run_and_stop(pod_daemon, make_daemon, pb):
    d = pod_daemon
    a = run_pod(d, pb, name="survivor")
    b = run_pod(d, pb, name="stopped-one")
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=b), timeout=60)
    before = {p: status(d, pb, p).status for p in (a, b)}
    d.kill()

    d2 = make_daemon("rktlet", start=False, args=["--cni-conf-dir", d.cni["conf"], "--cni-bin-dir", CNI_BIN])
    d2.start()
    for p in (a, b):
        st = status(d2, pb, p).status
        assert st.state == before[p].state
        assert st.network.ip == before[p].network.ip
        assert st.created_at == before[p].created_at
        assert dict(st.labels) == dict(before[p].labels)
    assert ping(before[a].network.ip)
    for p in (a, b):
        d2.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p), timeout=60)
        d2.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=60)
    assert units() == []
    assert ipam_ips(d.cni) == []
    assert mounts_under(os.path.join(d.dir, "run")) == []


def pod_records(d):
    """The pods' records on disk: {pod id: state.json}."""
    out = {}
    for p in listdir(os.path.join(d.dir, "lib", "pods")):
        try:
            with open(os.path.join(d.dir, "lib", "pods", p, "state.json")) as f:
                out[p] = json.load(f)
        except (OSError, ValueError):
            continue  # being written
    return out


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


@needs_cni
def test_sigkill_during_run_leaves_nothing_half_made(pod_daemon, make_daemon, pb, user_manager_pid):
    d = pod_daemon
    # Kill the daemon while several RunPodSandbox calls are provably in flight: each pod's record is
    # on disk (saved before its first step) and systemd, frozen, cannot answer the slice jobs.
    ready = run_pod(d, pb, name="done-before")  # one pod complete before the kill
    os.kill(user_manager_pid, signal.SIGSTOP)
    try:
        futures = [d.runtime().RunPodSandbox.future(pb.RunPodSandboxRequest(config=pod_config(pb, name=f"k{i}")),
                                                    timeout=60) for i in range(6)]
        wait_until(lambda: len(pod_records(d)) == 7, what="the 6 new pods' records")
        assert [r["state"] for p, r in pod_records(d).items() if p != ready] == ["creating"] * 6
        assert not any(f.done() for f in futures)
        d.stopped = True
        d.proc.kill()  # SIGKILL, the client's channels left open: they see the daemon go
        d.proc.wait()
        for f in futures:
            with pytest.raises(grpc.RpcError) as e:
                f.result()
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        d.close_channels()
    finally:
        os.kill(user_manager_pid, signal.SIGCONT)
    d2 = make_daemon("rktlet", start=False, args=["--cni-conf-dir", d.cni["conf"], "--cni-bin-dir", CNI_BIN])
    d2.start()
    # The half-made pods are undone; the complete one is as it was.
    def settled():
        items = d2.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
        return ([i.id for i in items] == [ready] and units() == [f"rktlet-pod{ready}.slice"] and
                list(pod_records(d)) == [ready])
    wait_until(settled, timeout=30, what="half-made pods to be cleaned up")
    st = status(d2, pb, ready).status
    assert st.state == pb.SANDBOX_READY
    assert ipam_ips(d.cni) == [st.network.ip]
    assert ping(st.network.ip)
    d2.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=ready), timeout=60)
    assert units() == []
    assert ipam_ips(d.cni) == []
    assert mounts_under(os.path.join(d.dir, "run")) == []
    assert os.listdir(os.path.join(d.dir, "lib", "pods")) == []


def test_shutdown_during_run_then_restart_cleans_up(make_daemon, pb, user_manager_pid):
    d = make_daemon(args=["--shutdown-timeout", "1"])
    os.kill(user_manager_pid, signal.SIGSTOP)
    try:
        # systemd is frozen: the run waits on its slice job when SIGTERM comes.
        pending = d.runtime().RunPodSandbox.future(
            pb.RunPodSandboxRequest(config=pod_config(pb, name="interrupted", host_network=True)), timeout=60)
        wait_until(lambda: os.path.isdir(os.path.join(d.dir, "lib", "pods")) and
                   os.listdir(os.path.join(d.dir, "lib", "pods")), what="the pod record")
        assert d.stop() == 0  # no crash while dropping the operation in flight
        with pytest.raises(grpc.RpcError):
            pending.result()
    finally:
        os.kill(user_manager_pid, signal.SIGCONT)
    d2 = make_daemon("rktlet", start=False)
    d2.start()
    # The half-made pod is undone at start: no pod, no slice, no record.
    wait_until(lambda: os.listdir(os.path.join(d.dir, "lib", "pods")) == [], what="the clean-up")
    assert len(d2.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    wait_until(lambda: units() == [], what="the slice to go")


@needs_cni
def test_50_pods_concurrently_leave_nothing_behind(pod_daemon, pb):
    d = pod_daemon
    errors = []

    def life(i):
        try:
            stub = d.runtime()
            pod_id = stub.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(pb, name=f"c{i}")), timeout=120).pod_sandbox_id
            ip = stub.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=30).status.network.ip
            assert ip.startswith(SUBNET)
            stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
            stub.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"pod {i}: {e!r}")

    threads = [threading.Thread(target=life, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    assert units() == []
    assert ipam_ips(d.cni) == []
    assert mounts_under(os.path.join(d.dir, "run")) == []
    assert os.listdir(os.path.join(d.dir, "run", "pods")) == []
    assert os.listdir(os.path.join(d.dir, "lib", "pods")) == []
    # No veth left on the bridge.
    links = subprocess.run(["ip", "-o", "link", "show", "master", "rkt0"], capture_output=True, text=True).stdout
    assert links.strip() == ""
