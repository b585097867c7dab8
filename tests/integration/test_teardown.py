"""`rktlet --teardown`: with the serving daemon stopped, every pod and container its state describes
is stopped and removed (units, network, mounts, records) and it exits 0; it refuses to run while a
daemon serves on the same socket. The Debian package's prerm runs it on removal."""
import os
import subprocess

import time

from rktlet_test import RKTLET, journal, wait_until
from test_containers import cd, ctr_config, make_pod, run, T  # noqa: F401
from test_images import registries_config  # noqa: F401
from test_containers import ctr_registry  # noqa: F401
from test_pods import cni, ipam_ips, mounts_under, units  # noqa: F401


def teardown_cmd(d):
    """The daemon's own command line (bus, socket, directories, config), with --teardown."""
    return [a for a in d.args if a != "--log-level" and a != "debug"] + ["--teardown"]


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def test_teardown_removes_every_pod_and_container_and_refuses_a_serving_daemon(cd, pb):  # noqa: F811
    d = cd
    ref = d.ref()
    netpod = make_pod(d, pb, name="net", host_network=False)
    hostpod = make_pod(d, pb, name="host")
    cids = [run(d, pb, netpod, ctr_config(pb, "a", ref, command=["sleep", "3600"])),
            run(d, pb, hostpod, ctr_config(pb, "b", ref, command=["sleep", "3600"]))]
    created = d.runtime().CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=hostpod.id, config=ctr_config(pb, "c", ref, command=["true"]),
        sandbox_config=hostpod.config), timeout=T).container_id
    assert len(units()) == 2 and len(units("rktlet-ctr-")) == 2  # a created container has no unit yet
    assert len(listdir(os.path.join(d.dir, "lib", "containers"))) == 3
    assert ipam_ips(d.cni) != [] and mounts_under(d.dir) != []
    # The units say which Kubernetes object they run.
    desc = subprocess.run(["systemctl", "--user", "show", "-P", "Description", f"rktlet-ctr-{cids[0]}.service"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert desc == f"rktlet container default/net/a ({cids[0][:12]})"
    desc = subprocess.run(["systemctl", "--user", "show", "-P", "Description", f"rktlet-pod{netpod.id}.slice"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert desc == f"rktlet pod default/net ({netpod.id[:12]})"
    # The journal entries about one pod or container carry its ID as a field of their own.
    pod_entries = journal("SYSLOG_IDENTIFIER=rktlet", f"POD_SANDBOX_ID={netpod.id}")
    assert pod_entries and all(e["MESSAGE"].startswith(f"pod {netpod.id}: ") for e in pod_entries)
    ctr_entries = journal("SYSLOG_IDENTIFIER=rktlet", f"CONTAINER_ID={cids[0]}")
    assert ctr_entries and all(e["MESSAGE"].startswith(f"container {cids[0]}: ") for e in ctr_entries)

    # While the daemon serves, nothing is touched.
    busy = subprocess.run(teardown_cmd(d), capture_output=True, text=True, timeout=60)
    assert busy.returncode != 0
    assert f"Something listens on '{d.socket}'" in busy.stderr and "stop it first" in busy.stderr
    assert len(units("rktlet-ctr-")) == 2
    status = d.runtime().ContainerStatus(pb.ContainerStatusRequest(container_id=cids[0]), timeout=T).status
    assert status.state == pb.CONTAINER_RUNNING

    assert d.stop() == 0
    assert len(units("rktlet-ctr-")) == 2  # a stopped daemon leaves its pods running
    done = subprocess.run(teardown_cmd(d), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Teardown: 2 pod(s) and container(s) removed." in done.stderr
    assert units() == [] and units("rktlet-ctr-") == [] and units("rktlet-init-") == []
    assert ipam_ips(d.cni) == []
    assert mounts_under(d.dir) == []
    for top in ("run", "lib"):
        assert listdir(os.path.join(d.dir, top, "pods")) == []
        assert listdir(os.path.join(d.dir, top, "containers")) == []
    assert not os.path.exists(d.socket)

    # Nothing left: a second teardown has nothing to do, and a daemon started again lists nothing.
    again = subprocess.run(teardown_cmd(d), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "Teardown: 0 pod(s) and container(s) removed." in again.stderr
    d.start()
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items) == 0
    assert [c.id for c in d.runtime().ListContainers(pb.ListContainersRequest(), timeout=T).containers] == []
    assert created not in listdir(os.path.join(d.dir, "lib", "containers"))


def test_teardown_does_not_start_a_socket_activated_daemon(tmp_path):
    """A socket that systemd (here systemd-socket-activate) holds for the daemon is seen as busy
    without connecting to it: a connection would start the very daemon the teardown keeps off."""
    sock = str(tmp_path / "activated.sock")
    marker = tmp_path / "started"
    act = subprocess.Popen(["systemd-socket-activate", "-l", sock, "sh", "-c", f"touch {marker}; sleep 30"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(sock), 10, what="the activation socket")
        r = subprocess.run([RKTLET, "--user", "--listen", sock, "--state-dir", str(tmp_path / "run"),
                            "--root", str(tmp_path / "lib"), "--config", str(tmp_path / "none.conf"), "--teardown"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and f"Something listens on '{sock}'" in r.stderr, r
        time.sleep(0.5)
        assert not marker.exists(), "the teardown's check started the socket-activated service"
    finally:
        act.kill()
        act.wait()
