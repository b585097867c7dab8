"""Stats: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats,
ListMetricDescriptors, ListPodSandboxMetrics and ImageFsInfo's container filesystems.

The figures come from the units' cgroups (the container's service, the pod's slice), the pod's
network namespace and a background walk of each writable layer; every expectation here is taken from
the kernel (the cgroup files, /proc/net/dev inside the pod's namespace, st_blocks of the upper
directory) or from the CRI's meaning, never from rktlet's own output.
"""

import os
import subprocess
import time

import grpc
import pytest

from rktlet_test import wait_until
from test_containers import (SERVICE, T, cd, cleanup, ctr_config, ctr_dirs, ctr_registry, make_pod,  # noqa: F401
                             no_container_leftovers, remove, run, show, unit_of, wait_state)
from test_containers import pytestmark  # noqa: F401
from test_exec import exec_sync
from test_pods import SUBNET, cni, no_leftovers  # noqa: F401

V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
BUSY = ["sh", "-c", "echo ready; while :; do :; done"]


def cgroup(unit, v1, v2):
    """A file of a unit's cgroup: <controller>/<name> in its v1 hierarchy, <name> on v2."""
    cg = show(unit, "ControlGroup")
    assert cg, f"{unit} has no control group"
    if V2:
        return f"/sys/fs/cgroup{cg}/{v2}"
    controller, name = v1.split("/")
    if controller == "cpuacct" and not os.path.exists("/sys/fs/cgroup/cpuacct"):
        controller = "cpu,cpuacct"
    return f"/sys/fs/cgroup/{controller}{cg}/{name}"


def kernel_cpu_ns(unit):
    with open(cgroup(unit, "cpuacct/cpuacct.usage", "cpu.stat")) as f:
        text = f.read()
    if V2:
        return int(dict(line.split() for line in text.splitlines())["usage_usec"]) * 1000
    return int(text)


def kernel_memory(unit):
    with open(cgroup(unit, "memory/memory.usage_in_bytes", "memory.current")) as f:
        return int(f.read())


def cstats(d, pb, cid):
    return d.runtime().ContainerStats(pb.ContainerStatsRequest(container_id=cid), timeout=10).stats


def list_cstats(d, pb, **f):
    r = d.runtime().ListContainerStats(pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(**f)), timeout=10)
    return r.stats


def pstats(d, pb, pod_id):
    return d.runtime().PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod_id), timeout=10).stats


def list_pstats(d, pb, **f):
    r = d.runtime().ListPodSandboxStats(pb.ListPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(**f)), timeout=10)
    return r.stats


def test_cpu_of_a_busy_loop(cd, pb):
    """usage_core_nano_seconds is the cgroup's counter; usage_nano_cores is absent on the first
    sample and then the rate since the previous one: about one core for one busy loop."""
    d = cd
    pod = make_pod(d, pb, name="cpu")
    cid = run(d, pb, pod, ctr_config(pb, "busy", d.ref(), command=BUSY))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    unit = unit_of(cid)

    k0 = kernel_cpu_ns(unit)
    s = cstats(d, pb, cid)
    k1 = kernel_cpu_ns(unit)
    t0 = time.monotonic()
    assert s.attributes.id == cid and s.attributes.metadata.name == "busy"
    assert s.cpu.HasField("usage_core_nano_seconds")
    assert k0 <= s.cpu.usage_core_nano_seconds.value <= k1
    assert not s.cpu.HasField("usage_nano_cores"), "the first sample has no rate"
    assert s.cpu.timestamp > 0

    time.sleep(4)  # the interval the rate is measured over
    k2 = kernel_cpu_ns(unit)
    s2 = list_cstats(d, pb, id=cid)[0]
    k3 = kernel_cpu_ns(unit)
    elapsed = time.monotonic() - t0
    assert k2 <= s2.cpu.usage_core_nano_seconds.value <= k3
    assert s2.cpu.HasField("usage_nano_cores")
    rate = s2.cpu.usage_nano_cores.value
    # What the kernel counted over (about) the same interval; one thread is never more than a core.
    kernel_rate = (k3 - k0) / elapsed
    assert 0.75 * kernel_rate <= rate <= 1.25 * kernel_rate, (rate, kernel_rate)
    assert rate <= 1.5e9, rate
    # One busy core, about 1e9, when the loop had its core: on a shared machine the container's CPU
    # group may get less (its cgroup competes with the whole machine), which the kernel's own
    # count shows.
    if kernel_rate >= 0.6e9:
        assert 0.5e9 <= rate, (rate, kernel_rate)
    remove(d, pb, cid)


def test_memory_rises_after_writing_to_dev_shm(cd, pb):
    """60 MiB written to the pod's /dev/shm (a tmpfs: pages charged to the writer's cgroup) show in
    usage_bytes and working_set_bytes; available_bytes is the limit less the working set."""
    d = cd
    pod = make_pod(d, pb, name="mem")
    linux = pb.LinuxContainerConfig()
    linux.resources.memory_limit_in_bytes = 256 << 20
    cid = run(d, pb, pod, ctr_config(pb, "mem", d.ref(), command=SERVICE, linux=linux))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    unit = unit_of(cid)

    before = cstats(d, pb, cid).memory
    r = exec_sync(d, pb, cid, ["dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=60"])
    assert r.exit_code == 0, r.stderr
    k0 = kernel_memory(unit)
    after = cstats(d, pb, cid).memory
    k1 = kernel_memory(unit)
    assert after.usage_bytes.value - before.usage_bytes.value >= 56 << 20, (before, after)
    assert after.working_set_bytes.value - before.working_set_bytes.value >= 56 << 20, (before, after)
    assert min(k0, k1) - (1 << 20) <= after.usage_bytes.value <= max(k0, k1) + (1 << 20)
    assert after.working_set_bytes.value <= after.usage_bytes.value
    assert after.available_bytes.value == (256 << 20) - after.working_set_bytes.value
    assert after.rss_bytes.value > 0 and after.page_faults.value > 0
    assert after.HasField("major_page_faults")
    remove(d, pb, cid)


def test_writable_layer_rises_after_writing_a_file(cd, pb):
    """used_bytes and inodes_used of the container's upper directory, walked in the background: a
    new 8 MiB file shows up in a later answer (with a later timestamp) without any call waiting
    for a walk."""
    d = cd
    pod = make_pod(d, pb, name="layer")
    cid = run(d, pb, pod, ctr_config(pb, "layer", d.ref(), command=SERVICE))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    upper = os.path.join(ctr_dirs(d, cid)[0], "upper")

    first = wait_until(lambda: cstats(d, pb, cid).writable_layer if cstats(d, pb, cid).HasField("writable_layer")
                       else None, timeout=30, interval=0.2, what="a first walk of the writable layer")
    assert first.fs_id.mountpoint == os.path.join(d.dir, "lib", "containers")
    assert first.HasField("used_bytes") and first.HasField("inodes_used")
    r = exec_sync(d, pb, cid, ["dd", "if=/dev/zero", "of=/big", "bs=1M", "count=8", "conv=fsync"])
    assert r.exit_code == 0, r.stderr
    blocks = os.stat(os.path.join(upper, "big")).st_blocks * 512
    assert blocks >= 8 << 20

    def grown():
        t0 = time.monotonic()
        s = cstats(d, pb, cid)
        assert time.monotonic() - t0 < 1, "a stats call waited"
        w = s.writable_layer
        return w if w.used_bytes.value >= first.used_bytes.value + blocks else None
    later = wait_until(grown, timeout=40, interval=0.5, what="the walk to see the new file")
    assert later.inodes_used.value >= first.inodes_used.value + 1
    assert later.timestamp > first.timestamp

    # ImageFsInfo's container filesystem: the writable layers together, where they are.
    fs = d.images().ImageFsInfo(pb.ImageFsInfoRequest(), timeout=10).container_filesystems
    assert len(fs) == 1 and fs[0].fs_id.mountpoint == os.path.join(d.dir, "lib", "containers")
    assert fs[0].used_bytes.value >= later.used_bytes.value
    remove(d, pb, cid)


def proc_net_dev(ns_path, ifname):
    """rx_bytes of ifname as the kernel counts it inside the namespace pinned at ns_path."""
    out = subprocess.run(["nsenter", f"--net={ns_path}", "cat", "/proc/net/dev"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == ifname:
            return int(rest.split()[0])
    raise AssertionError(f"no {ifname} in {out}")


def test_pod_stats_and_network(cd, pb):
    """A pod's slice (CPU, memory, its processes), its containers, and the counters of the
    interfaces of its own network namespace: rx bytes rise after a ping of the bridge's gateway
    (inside the harness's namespaces). A host-network pod reports no network (as containerd)."""
    d = cd
    pod = make_pod(d, pb, name="net", host_network=False)
    cid = run(d, pb, pod, ctr_config(pb, "pinger", d.ref(), command=SERVICE))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    ns = os.path.join(d.dir, "run", "pods", pod.id, "ns", "net")
    assert os.path.exists(ns)

    s = pstats(d, pb, pod.id)
    assert s.attributes.id == pod.id and s.attributes.metadata.name == "net"
    assert dict(s.attributes.labels) == {"app": "net"}
    assert s.linux.cpu.usage_core_nano_seconds.value > 0
    assert s.linux.memory.usage_bytes.value > 0
    assert s.linux.process.process_count.value >= 2  # the container's sh and sleep
    assert [c.attributes.id for c in s.linux.containers] == [cid]
    net = s.linux.network
    assert net.default_interface.name == "eth0"
    assert [i.name for i in net.interfaces] == ["eth0"]  # loopback left out
    rx0 = net.default_interface.rx_bytes.value
    assert rx0 <= proc_net_dev(ns, "eth0")

    r = exec_sync(d, pb, cid, ["ping", "-c", "3", "-W", "2", "-i", "0.2", f"{SUBNET}.1"])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    k0 = proc_net_dev(ns, "eth0")
    net = pstats(d, pb, pod.id).linux.network
    k1 = proc_net_dev(ns, "eth0")
    rx1 = net.default_interface.rx_bytes.value
    assert rx1 >= rx0 + 3 * 84, (rx0, rx1)  # three echo replies of 84 bytes at least
    assert k0 <= rx1 <= k1
    assert net.default_interface.tx_bytes.value > 0
    assert net.default_interface.HasField("rx_errors") and net.default_interface.HasField("tx_errors")

    host = make_pod(d, pb, name="hostnet", host_network=True)
    hs = pstats(d, pb, host.id)
    assert not hs.linux.HasField("network")
    # A slice with nothing in it yet still has its CPU counter (cgroup2's core cpu.stat).
    assert hs.linux.cpu.HasField("usage_core_nano_seconds") and list(hs.linux.containers) == []
    remove(d, pb, cid)


def test_filters_and_unknown_ids(cd, pb):
    d = cd
    p1 = make_pod(d, pb, name="one")
    p2 = make_pod(d, pb, name="two")
    c1 = run(d, pb, p1, ctr_config(pb, "a", d.ref(), command=SERVICE, labels={"tier": "web"}))
    c2 = run(d, pb, p2, ctr_config(pb, "b", d.ref(), command=SERVICE, labels={"tier": "db"}))
    c3 = run(d, pb, p2, ctr_config(pb, "c", d.ref(), command=["true"]))
    for c in (c1, c2):
        wait_state(d, pb, c, pb.CONTAINER_RUNNING)
    wait_state(d, pb, c3, pb.CONTAINER_EXITED)

    def ids(stats):
        return sorted(s.attributes.id for s in stats)
    # Running containers only, as containerd (those with a task).
    assert ids(list_cstats(d, pb)) == sorted([c1, c2])
    assert ids(list_cstats(d, pb, id=c1[:10])) == [c1]
    assert ids(list_cstats(d, pb, pod_sandbox_id=p2.id[:12])) == [c2]
    assert ids(list_cstats(d, pb, label_selector={"tier": "db"})) == [c2]
    assert ids(list_cstats(d, pb, label_selector={"tier": "db"}, pod_sandbox_id=p1.id)) == []
    assert ids(list_cstats(d, pb, id="f" * 64)) == []
    # An exited container asked for by id: its attributes, no CPU or memory.
    s3 = cstats(d, pb, c3)
    assert s3.attributes.id == c3 and not s3.HasField("cpu") and not s3.HasField("memory")

    assert ids(list_pstats(d, pb)) == sorted([p1.id, p2.id])
    assert ids(list_pstats(d, pb, id=p1.id[:8])) == [p1.id]
    assert ids(list_pstats(d, pb, label_selector={"app": "two"})) == [p2.id]
    assert ids(list_pstats(d, pb, label_selector={"app": "none"})) == []
    assert [c.attributes.id for c in list_pstats(d, pb, id=p2.id)[0].linux.containers] == [c2]

    for call, req in ((d.runtime().ContainerStats, pb.ContainerStatsRequest(container_id="f" * 64)),
                      (d.runtime().PodSandboxStats, pb.PodSandboxStatsRequest(pod_sandbox_id="f" * 64))):
        with pytest.raises(grpc.RpcError) as e:
            call(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value.details()
    for c in (c1, c2, c3):
        remove(d, pb, c)


def test_metrics(cd, pb):
    """ListMetricDescriptors names cAdvisor's metrics with their label keys; ListPodSandboxMetrics
    gives them per pod and per container, with as many label values as the descriptor has keys."""
    d = cd
    descs = {m.name: m for m in d.runtime().ListMetricDescriptors(pb.ListMetricDescriptorsRequest(), timeout=10).descriptors}
    for name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                 "container_memory_usage_bytes", "container_memory_rss", "container_network_receive_bytes_total",
                 "container_network_transmit_bytes_total", "container_network_receive_errors_total",
                 "container_network_transmit_errors_total"):
        assert name in descs, name
        assert descs[name].help
    assert list(descs["container_cpu_usage_seconds_total"].label_keys) == ["id", "name"]
    assert list(descs["container_network_receive_bytes_total"].label_keys) == ["id", "name", "interface"]

    pod = make_pod(d, pb, name="metrics", host_network=False)
    cid = run(d, pb, pod, ctr_config(pb, "m", d.ref(), command=SERVICE))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    unit = unit_of(cid)
    pm = d.runtime().ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest(), timeout=10).pod_metrics
    assert [p.pod_sandbox_id for p in pm] == [pod.id]
    for m in pm[0].metrics:
        assert len(m.label_values) == len(descs[m.name].label_keys), m
    rx = [m for m in pm[0].metrics if m.name == "container_network_receive_bytes_total"]
    assert [list(m.label_values) for m in rx] == [[pod.id, "metrics", "eth0"]]
    assert rx[0].metric_type == pb.COUNTER
    [cm] = pm[0].container_metrics
    assert cm.container_id == cid
    by_name = {m.name: m for m in cm.metrics}
    for m in cm.metrics:
        assert len(m.label_values) == len(descs[m.name].label_keys), m
    assert list(by_name["container_memory_working_set_bytes"].label_values) == [cid, "m"]
    assert by_name["container_memory_working_set_bytes"].metric_type == pb.GAUGE
    k = kernel_memory(unit)
    assert 0 < by_name["container_memory_usage_bytes"].value.value <= 2 * k + (1 << 20)
    remove(d, pb, cid)


def test_stream_stats_are_their_lists_in_chunks(cd, make_daemon, pb):
    """StreamContainerStats, StreamPodSandboxStats and StreamPodSandboxMetrics send what their List
    twins answer (same items, same filters) in messages of at most [CRI] StreamChunkItems= items."""
    from test_events import daemon_with
    d = daemon_with(make_daemon, cd, pb, "streamstats", "StreamChunkItems=2")
    rt = d.runtime()
    try:
        pods = [make_pod(d, pb, name=f"ss{i}") for i in range(3)]
        cids = [run(d, pb, pods[i % 3], ctr_config(pb, f"s{i}", d.ref(), command=["sleep", "600"])) for i in range(5)]
        for cid in cids:
            wait_state(d, pb, cid, pb.CONTAINER_RUNNING)

        msgs = list(rt.StreamContainerStats(pb.StreamContainerStatsRequest(), timeout=30))
        assert len(msgs) == 3 and all(len(m.container_stats) <= 2 for m in msgs), msgs
        streamed = sorted(s.attributes.id for m in msgs for s in m.container_stats)
        assert streamed == sorted(s.attributes.id for s in list_cstats(d, pb)) == sorted(cids)
        assert all(s.cpu.usage_core_nano_seconds.value > 0 for m in msgs for s in m.container_stats)
        f = pb.ContainerStatsFilter(pod_sandbox_id=pods[0].id)
        msgs = list(rt.StreamContainerStats(pb.StreamContainerStatsRequest(filter=f), timeout=30))
        assert sorted(s.attributes.id for m in msgs for s in m.container_stats) == sorted([cids[0], cids[3]])

        msgs = list(rt.StreamPodSandboxStats(pb.StreamPodSandboxStatsRequest(), timeout=30))
        assert len(msgs) == 2 and all(len(m.pod_sandbox_stats) <= 2 for m in msgs), msgs
        assert sorted(s.attributes.id for m in msgs for s in m.pod_sandbox_stats) == \
            sorted(s.attributes.id for s in list_pstats(d, pb)) == sorted(p.id for p in pods)
        f = pb.PodSandboxStatsFilter(id=pods[1].id)
        msgs = list(rt.StreamPodSandboxStats(pb.StreamPodSandboxStatsRequest(filter=f), timeout=30))
        assert [s.attributes.id for m in msgs for s in m.pod_sandbox_stats] == [pods[1].id]

        listed = rt.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest(), timeout=30).pod_metrics
        msgs = list(rt.StreamPodSandboxMetrics(pb.StreamPodSandboxMetricsRequest(), timeout=30))
        assert len(msgs) == 2 and all(len(m.pod_sandbox_metrics) <= 2 for m in msgs), msgs
        streamed = {p.pod_sandbox_id: sorted(c.container_id for c in p.container_metrics)
                    for m in msgs for p in m.pod_sandbox_metrics}
        assert streamed == {p.pod_sandbox_id: sorted(c.container_id for c in p.container_metrics) for p in listed}
        assert sorted(streamed) == sorted(p.id for p in pods)
    finally:
        cleanup(d, pb)
