"""A node reboot: rktlet's state directory (--state-dir, on /run: a tmpfs) is gone, its root
directory (--root, /var/lib/rktlet) is not; systemd's transient units (the pods' slices, the
containers' services, the pods' init services), the pods' namespaces, every mount and every process
are gone too. The CNI host-local IPAM store survives (/var/lib/cni/networks by default; here the
test's dataDir, on disk as well).

What kubelet needs afterwards, as containerd answers it: the old pods are listed NOTREADY (kubelet
then stops them and runs new sandboxes), their containers that were running are EXITED with the
unknown exit code 255 and reason "Unknown" (EXITED rather than UNKNOWN: kubelet treats UNKNOWN as
possibly running and keeps trying to kill it), a container that never started stays CREATED (it
cannot start: its pod is not ready), one that had exited keeps its exit. StopPodSandbox,
RemoveContainer and RemovePodSandbox of all of them succeed, the pod's address goes back to IPAM
(CNI DEL without a namespace), and nothing of them is left in the root directory. Images survive:
a new sandbox and container start from them without a pull.

The reboot is simulated with the real parts inside the harness (private mount, network and PID
namespaces with their own user manager): rktlet is SIGKILLed, every rktlet unit of the user manager
is killed, stopped and reset (systemd forgets transient units at a reboot), whatever rktlet mounted
under the state directory is unmounted (so the pods' namespaces go with their last process), and
the state directory is deleted and made again, empty (or, for a state directory on a disk, left
with its files). A new daemon then starts with the same --root and --state-dir.
"""

import os
import shutil
import subprocess
import time

import grpc
import pytest

from rktlet_test import wait_until
# The fixtures (cd, ctr_registry, cni) and the autouse checks that no pod slice and no container unit
# is left after a test (no_leftovers, no_container_leftovers), and the module's skip conditions.
from test_containers import (SERVICE, T, cd, cleanup, create, cstatus, ctr_config, ctr_registry, list_ids,  # noqa: F401
                             listdir, log_file, make_pod, no_container_leftovers, pytestmark, records,
                             remove, run, start, text, wait_log, wait_state)
from test_images import image_status
from test_pods import cni, ipam_ips, mounts_under, no_leftovers, ping, status, systemctl_show, units  # noqa: F401

UNIT_PREFIXES = ("rktlet-pod", "rktlet-ctr-", "rktlet-init-")


def rktlet_units():
    return sorted(u for p in UNIT_PREFIXES for u in units(p))


def systemctl(*args):
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True, timeout=30)


def bridge_links():
    """The veths on the test network's bridge: one per pod with a network namespace of its own."""
    out = subprocess.run(["ip", "-o", "link", "show", "master", "rkt0"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def reboot(d, wipe=True):
    """What a reboot does to everything rktlet made, but for its root directory. wipe=False: the
    state directory is not on a tmpfs (or someone unmounted what rktlet mounted there): the files
    stay, the pins of the namespaces among them, now empty files."""
    state = os.path.join(d.dir, "run")
    pids = [int(systemctl_show(u, "MainPID") or 0) for u in rktlet_units() if u.endswith(".service")]
    pids = [p for p in pids if p]
    assert pids, "the test runs containers"
    d.kill()  # SIGKILL: rktlet cleans nothing up
    # Power is gone: every process at once, without a stop signal. Then systemd forgets the units.
    for u in rktlet_units():
        if u.endswith(".service"):
            systemctl("kill", "--signal=SIGKILL", u)
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 20, what="the containers' processes to die")
    for u in rktlet_units():
        systemctl("stop", u)
        systemctl("reset-failed", u)
    wait_until(lambda: rktlet_units() == [], 20, what="systemd to forget rktlet's units")
    # The mounts rktlet made under the state directory (the pinned namespaces, the pods' /dev/shm,
    # the containers' overlays), deepest first; with the last process and the last pin, the pods'
    # network namespaces go, and their veths with them.
    def unmounted():
        for m in sorted(mounts_under(state), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", m], capture_output=True, timeout=30)
        return mounts_under(state) == []
    wait_until(unmounted, 20, what=f"every mount under {state} to go")
    wait_until(lambda: bridge_links() == [], 20, what="the pods' network namespaces to go")
    if wipe:
        # /run is a new tmpfs: the state directory is empty.
        shutil.rmtree(state)
        os.mkdir(state, 0o755)


def old_pod_gone(d, pod_ids, cids):
    """Nothing of these pods and containers is left: units, mounts, files in either directory."""
    left = [u for u in rktlet_units() if any(i in u for i in (*pod_ids, *cids))]
    assert left == []
    for sub, ids in (("pods", pod_ids), ("containers", cids)):
        for base in ("lib", "run"):
            assert not set(ids) & set(listdir(os.path.join(d.dir, base, sub))), (base, sub)
    assert not [m for m in mounts_under(os.path.join(d.dir, "run")) if any(i in m for i in (*pod_ids, *cids))]


def test_kubelet_cleans_up_after_a_reboot_and_starts_again(cd, make_daemon, pb):
    d = cd
    web = make_pod(d, pb, name="web", host_network=False)  # its own namespaces and a CNI address
    agent_pod = make_pod(d, pb, name="agent", share_pid=True)  # the node's network, a PID 1 of its own
    ip = status(d, pb, web.id).status.network.ip
    assert ipam_ips(d.cni) == [ip] and len(bridge_links()) == 1
    svc_cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE)
    svc = run(d, pb, web, svc_cfg)
    done = run(d, pb, web, ctr_config(pb, "done", d.ref(), command=["sh", "-c", "exit 3"]))
    fresh = create(d, pb, web, ctr_config(pb, "fresh", d.ref(), command=["sleep", "1000"]))
    agent = run(d, pb, agent_pod, ctr_config(pb, "agent", d.ref(), command=["sleep", "1000"]))
    wait_log(web, svc_cfg, "ready")
    wait_state(d, pb, done, pb.CONTAINER_EXITED)
    wait_state(d, pb, agent, pb.CONTAINER_RUNNING)
    assert systemctl_show(f"rktlet-init-{agent_pod.id}.service", "ActiveState") == "active"
    old_pods, old_ctrs = sorted([web.id, agent_pod.id]), sorted([svc, done, fresh, agent])
    before = {c: cstatus(d, pb, c).status for c in old_ctrs}
    pod_before = {p: status(d, pb, p).status for p in old_pods}
    image_id = d.image().id

    began = time.time_ns()
    reboot(d)

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        rt = d2.runtime()
        # The old pods, NOTREADY, as they were otherwise; no address (the namespace is gone).
        items = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
        assert sorted(i.id for i in items) == old_pods
        assert {i.state for i in items} == {pb.SANDBOX_NOTREADY}
        for p in old_pods:
            st = status(d2, pb, p).status
            assert st.state == pb.SANDBOX_NOTREADY
            assert st.network.ip == ""
            assert st.metadata == pod_before[p].metadata and st.created_at == pod_before[p].created_at
        # Not ready means no container can be made in them (the host-network pod too: its files and
        # its IPC and PID namespaces are gone).
        with pytest.raises(grpc.RpcError) as e:
            create(d2, pb, agent_pod, ctr_config(pb, "late", d.ref(), command=["true"]))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # The containers: the running ones exited of an unknown cause (255, "Unknown"), after they
        # started and once the reboot began; the exited one as it was; the created one still created.
        assert list_ids(d2, pb) == old_ctrs
        for c in (svc, agent):
            st = wait_state(d2, pb, c, pb.CONTAINER_EXITED)
            assert st.exit_code == 255 and st.reason == "Unknown", st
            assert "unknown" in st.message, st.message
            assert st.started_at == before[c].started_at and st.created_at == before[c].created_at
            assert began <= st.finished_at <= time.time_ns()
            assert st.log_path == before[c].log_path
        st = cstatus(d2, pb, done).status
        assert st.state == pb.CONTAINER_EXITED and st.exit_code == 3 and st.reason == "Error"
        assert st.finished_at == before[done].finished_at
        assert cstatus(d2, pb, fresh).status.state == pb.CONTAINER_CREATED
        with pytest.raises(grpc.RpcError) as e:
            start(d2, pb, fresh)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert cstatus(d2, pb, fresh).status.state == pb.CONTAINER_CREATED
        # What the old containers wrote is still there, for kubectl logs --previous.
        assert "ready" in text(records(log_file(web, svc_cfg)))

        # kubelet kills the old pods: each StopPodSandbox succeeds (slices, init service, mounts and
        # namespace all gone already), and CNI DEL gives the address back although the namespace is gone.
        for p in old_pods:
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p), timeout=T)
            assert status(d2, pb, p).status.state == pb.SANDBOX_NOTREADY
        assert ipam_ips(d.cni) == []

        # ... and runs a new sandbox (the next attempt) with its containers, from the images that
        # survived: present without a pull.
        assert image_status(d2, pb, d.ref()).image.id == image_id
        web2 = make_pod(d2, pb, name="web", host_network=False, attempt=1)
        ip2 = status(d2, pb, web2.id).status.network.ip
        assert status(d2, pb, web2.id).status.state == pb.SANDBOX_READY
        assert ipam_ips(d.cni) == [ip2] and ping(ip2)
        svc2_cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE, attempt=1)
        svc2 = run(d2, pb, web2, svc2_cfg)
        wait_log(web2, svc2_cfg, "ready")
        assert cstatus(d2, pb, svc2).status.state == pb.CONTAINER_RUNNING

        # Its garbage collection removes the old containers, then the old sandboxes.
        for c in old_ctrs:
            remove(d2, pb, c)
        for p in old_pods:
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=T)
        assert list_ids(d2, pb) == [svc2]
        assert [i.id for i in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items] == [web2.id]
        old_pod_gone(d2, old_pods, old_ctrs)
        assert listdir(os.path.join(d.dir, "lib", "pods")) == [web2.id]
        assert listdir(os.path.join(d.dir, "lib", "containers")) == [svc2]
        assert cstatus(d2, pb, svc2).status.state == pb.CONTAINER_RUNNING  # untouched
    finally:
        cleanup(d2, pb)
    assert listdir(os.path.join(d.dir, "lib", "pods")) == [] and listdir(os.path.join(d.dir, "lib", "containers")) == []
    assert ipam_ips(d.cni) == []
    assert mounts_under(os.path.join(d.dir, "run")) == []


@pytest.mark.parametrize("state_dir", ["tmpfs", "disk"])
def test_remove_pod_sandbox_after_a_reboot_and_a_second_restart(cd, make_daemon, pb, state_dir):
    # kubelet may remove a sandbox without stopping it first (its pod was deleted while the node was
    # down), and rktlet may restart again before kubelet gets to it. With the state directory on a
    # disk, the namespaces' pins are left as plain files, which no CNI plugin can enter.
    d = cd
    pod = make_pod(d, pb, name="gone", host_network=False)
    svc = run(d, pb, pod, ctr_config(pb, "svc", d.ref(), command=SERVICE))
    wait_state(d, pb, svc, pb.CONTAINER_RUNNING)
    assert len(ipam_ips(d.cni)) == 1

    reboot(d, wipe=state_dir == "tmpfs")
    if state_dir == "disk":
        assert os.path.isfile(os.path.join(d.dir, "run", "pods", pod.id, "ns", "net"))
    # A directory of the root that no record describes (a crash between its mkdir and the first save
    # of its record): nothing would ever remove it, so the next start does.
    orphans = [os.path.join(d.dir, "lib", sub, "ab" * 32) for sub in ("pods", "containers")]
    for o in orphans:
        os.makedirs(os.path.join(o, "upper"))

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    st = wait_state(d2, pb, svc, pb.CONTAINER_EXITED)
    assert st.exit_code == 255 and st.reason == "Unknown"
    assert status(d2, pb, pod.id).status.state == pb.SANDBOX_NOTREADY
    assert not any(os.path.exists(o) for o in orphans)
    d2.stop()

    # Once told, rktlet remembers: the next daemon reports the same without asking anyone.
    d3 = make_daemon("rktlet", start=False, **d.kwargs)
    d3.start()
    st2 = cstatus(d3, pb, svc).status
    assert st2.state == pb.CONTAINER_EXITED and st2.exit_code == 255 and st2.finished_at == st.finished_at
    assert status(d3, pb, pod.id).status.state == pb.SANDBOX_NOTREADY
    d3.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    assert list_ids(d3, pb) == []
    assert len(d3.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    assert ipam_ips(d.cni) == []
    old_pod_gone(d3, [pod.id], [svc])
    assert listdir(os.path.join(d.dir, "lib", "pods")) == [] and listdir(os.path.join(d.dir, "lib", "containers")) == []
