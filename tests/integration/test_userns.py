"""User namespaces (kubelet's hostUsers: false): userns_options mode POD in RunPodSandbox.

The pod gets a user namespace of its own with kubelet's mappings, pinned at
<dir>/run/pods/<id>/ns/user beside its network, UTS and IPC namespaces, which it owns; every
container joins it. The rootfs is an overlay of idmapped layers: the image's files, root's on disk,
are the pod's root's inside; what a container writes is stored in its upper directory under the
pod's root's host IDs. Status says user_namespaces only where a probe at start found that this
works (the runtime, an overlay of idmapped layers of the root directory's file system, a state
directory every user can reach).
"""

import errno
import fcntl
import json
import os
import re
import subprocess
import sys

import grpc
import pytest

import registry as reg
from rktlet_test import wait_until
from test_containers import (RUNC, SERVICE, T, cleanup, create, ctr_config, ctr_dirs, ctr_registry,  # noqa: F401
                             make_pod, nothing_left_of, proc_status, remove, run, show, unit_of, wait_state)
from test_exec import exec_sync
from test_images import pull, registries_config
from test_pods import CNI_BIN, cni, mounts_under, needs_cni, no_leftovers, ns_path, units  # noqa: F401

pytestmark = [
    pytest.mark.skipif(RUNC is None, reason="runc (Debian package runc) is not installed"),
    pytest.mark.skipif(not os.access(reg.DOCKER_REGISTRY, os.X_OK),
                       reason="docker-registry (Debian package docker-registry) is not installed"),
    pytest.mark.skipif(not os.access(reg.BUSYBOX, os.X_OK),
                       reason="/bin/busybox (Debian package busybox-static) is not installed"),
    needs_cni,
]

HOST = 100000  # the pod's root on the host
LENGTH = 65536
NS_GET_USERNS = 0xB701  # ioctl(2_NS): the user namespace owning a namespace


def searchable_up_to_tmpdir(path):
    """pytest's directories are 0700; a node's /run is not. The pods' users must reach the state
    directory: let them pass (search only) every directory from TMPDIR down to path."""
    top = os.path.realpath(os.environ.get("TMPDIR", "/tmp"))
    p = os.path.realpath(path)
    while p.startswith(top + "/"):
        os.chmod(p, os.stat(p).st_mode | 0o711)
        p = os.path.dirname(p)


def handler_features(d, pb):
    """The default handler's features, which are runc's (runc by name comes next)."""
    st = d.runtime().Status(pb.StatusRequest(), timeout=10)
    assert [h.name for h in st.runtime_handlers][:2] == ["", "runc"]
    assert st.runtime_handlers[0].features.user_namespaces == st.runtime_handlers[1].features.user_namespaces
    return st.runtime_handlers[0].features


def refused(d, pb, needle):
    """RunPodSandbox with a user namespace, refused with FAILED_PRECONDITION once the probe has
    answered (before, UNAVAILABLE: it is still probing), the reason holding needle."""
    def attempt():
        with pytest.raises(grpc.RpcError) as e:
            userns_pod(d, pb)
        if e.value.code() == grpc.StatusCode.UNAVAILABLE:
            assert "still being probed; retry" in e.value.details(), e.value.details()
            return None
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
        return e.value.details()
    details = wait_until(attempt, 20, interval=0.05, what="the probe's answer")
    assert needle in details, details
    return details


def machine_reason():
    """Why this machine cannot have user namespaces for the harness's directories (tmpfs), or None."""
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if release < (6, 3):
        return f"Linux {os.uname().release} cannot idmap tmpfs, where the harness keeps the layers (6.3 can)"
    features = subprocess.run([RUNC, "features"], capture_output=True, text=True)
    try:
        if "user" not in json.loads(features.stdout).get("linux", {}).get("namespaces", []):
            return "runc does not offer user namespaces"
    except ValueError:
        return "runc has no features command"
    return None


def wait_probed(d, pb, expect):
    """The probe runs in a child at start: wait for Status to say what it found."""
    if expect and machine_reason():
        pytest.skip(machine_reason())
    wait_until(lambda: handler_features(d, pb).user_namespaces == expect, 20, interval=0.05,
               what=f"Status to say user_namespaces={expect}")


def make_ud(make_daemon, ctr_registry, cni, pb, searchable=True, name="rktlet"):  # noqa: F811
    r, images = ctr_registry
    d = make_daemon(name=name, start=False, config=registries_config([r.url]),
                    args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    if searchable:
        searchable_up_to_tmpdir(d.dir)
    d.start()
    ref, image = images["busybox"]
    assert pull(d, pb, ref) == image.id
    d.ref = lambda name="busybox": images[name][0]
    return d


@pytest.fixture
def ud(make_daemon, ctr_registry, cni, pb):  # noqa: F811
    """A daemon whose directories the pods' users can reach, with the busybox image pulled."""
    d = make_ud(make_daemon, ctr_registry, cni, pb)
    yield d
    if d.alive():
        cleanup(d, pb)


def userns_pod(d, pb, name="userns", host=HOST, length=LENGTH, uids=None, gids=None, mode=None, **kw):
    """RunPodSandbox with userns_options as kubelet sends them (one uid and one gid range from 0)."""
    return make_pod(d, pb, name=name, host_network=False, userns=dict(
        mode=pb.POD if mode is None else mode,
        uids=[dict(host_id=host, container_id=0, length=length)] if uids is None else uids,
        gids=[dict(host_id=host, container_id=0, length=length)] if gids is None else gids), **kw)


def with_userns(pb, cfg, userns):
    if userns is not None:
        cfg.linux.security_context.namespace_options.userns_options.CopyFrom(pb.UserNamespace(**userns))
    return cfg


def main_pid(cid):
    pid = int(show(unit_of(cid), "MainPID") or 0)
    assert pid > 0, f"{unit_of(cid)} has no main PID"
    return pid


def read(path):
    with open(path) as f:
        return f.read()


def map_lines(path):
    return [line.split() for line in read(path).splitlines()]


def sh(d, pb, cid, script):
    r = exec_sync(d, pb, cid, ["sh", "-c", script])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r.stdout.decode()


def owning_userns_inode(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


def layer_file(d, rel):
    layers = os.path.join(d.dir, "lib", "images", "layers")
    found = [os.path.join(layers, x, rel) for x in os.listdir(layers) if os.path.exists(os.path.join(layers, x, rel))]
    assert found, f"no layer in {layers} holds {rel}"
    return found[0]


# --- the probe -------------------------------------------------------------------------------------

def test_status_says_user_namespaces_where_they_work(ud, pb):
    """kubelet refuses hostUsers: false unless the handler says user_namespaces: this host can."""
    wait_probed(ud, pb, True)


def test_unreachable_state_directory_fails_the_precondition(make_daemon, ctr_registry, cni, pb):  # noqa: F811
    """pytest's 0700 directories above the state directory keep the pods' users out: the probe says
    no, and a pod asking for a user namespace gets FAILED_PRECONDITION with the reason and leaves
    nothing; a pod without one still runs."""
    if machine_reason():
        pytest.skip(machine_reason())
    d = make_ud(make_daemon, ctr_registry, cni, pb, searchable=False)
    try:
        refused(d, pb, "not searchable by others")
        assert handler_features(d, pb).user_namespaces is False
        assert list(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == []
        assert units("rktlet-pod") == []
        assert mounts_under(d.dir) == []
        pods_run = os.path.join(d.dir, "run", "pods")
        assert not os.path.isdir(pods_run) or os.listdir(pods_run) == []
        plain = make_pod(d, pb, name="plain", host_network=False)
        assert plain.id
    finally:
        cleanup(d, pb)


def test_root_directory_without_idmapped_mounts_fails_the_precondition(make_daemon, ctr_registry, cni, pb,  # noqa: F811
                                                                       tmp_path):
    """overlayfs cannot be idmapped: with the root directory (the layers) on one, the probe says no
    and why."""
    lower, upper, work, lib = (tmp_path / "ov" / x for x in ("lower", "upper", "work", "lib"))
    for p in (lower, upper, work):
        p.mkdir(parents=True)
    r, images = ctr_registry
    d = make_daemon(name="ov", start=False, config=registries_config([r.url]),
                    args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN, "--root", str(lib)])
    lib.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
                    str(lib)], check=True)
    try:
        searchable_up_to_tmpdir(d.dir)
        d.start()
        if machine_reason():
            pytest.skip(machine_reason())
        refused(d, pb, "idmap")
        assert handler_features(d, pb).user_namespaces is False
        assert list(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == []
        d.stop()
    finally:
        if d.alive():
            d.stop()
        subprocess.run(["umount", str(lib)], check=True)


# --- bad requests ----------------------------------------------------------------------------------

BAD = {
    "two uid ranges": dict(uids=[dict(host_id=HOST, container_id=0, length=LENGTH),
                                 dict(host_id=HOST + LENGTH, container_id=LENGTH, length=LENGTH)]),
    "no gid range": dict(gids=[]),
    "not from container ID 0": dict(uids=[dict(host_id=HOST, container_id=1, length=LENGTH)]),
    "length not a multiple of 65536": dict(gids=[dict(host_id=HOST, container_id=0, length=1000)]),
    "host root": dict(uids=[dict(host_id=0, container_id=0, length=LENGTH)]),
    "the node's own IDs": dict(gids=[dict(host_id=1000, container_id=0, length=LENGTH)]),
    "just below 65536": dict(uids=[dict(host_id=65535, container_id=0, length=LENGTH)]),
    "past the last ID": dict(uids=[dict(host_id=4294967295 - 1000, container_id=0, length=LENGTH)]),
    "mode CONTAINER": dict(mode=1),
}


def test_malformed_mappings_are_invalid_and_leave_nothing(ud, pb):
    wait_probed(ud, pb, True)
    for what, kw in BAD.items():
        with pytest.raises(grpc.RpcError) as e:
            userns_pod(ud, pb, name="bad", **kw)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, e.value.details())
        assert "userns_options" in e.value.details(), (what, e.value.details())
    # Mode NODE takes no mappings; a user namespace needs a network namespace of the pod's own.
    with pytest.raises(grpc.RpcError) as e:
        userns_pod(ud, pb, name="bad", mode=pb.NODE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        make_pod(ud, pb, name="bad", host_network=True, userns=dict(
            mode=pb.POD, uids=[dict(host_id=HOST, length=LENGTH)], gids=[dict(host_id=HOST, length=LENGTH)]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "network namespace of its own" in e.value.details(), e.value.details()
    assert list(ud.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == []
    assert units("rktlet-pod") == []
    assert mounts_under(ud.dir) == []


# --- a pod with a user namespace of its own --------------------------------------------------------

def test_pod_user_namespace_idmapped_rootfs_and_cleanup(ud, pb):
    d = ud
    wait_probed(d, pb, True)
    pod = userns_pod(d, pb, sysctls={"net.ipv4.ip_unprivileged_port_start": "80"})
    user_pin = ns_path(d, pod.id, "user")
    assert os.path.exists(user_pin)
    userns_ino = os.stat(user_pin).st_ino
    # The pod's network, UTS and IPC namespaces are its user namespace's.
    for ns in ("net", "uts", "ipc"):
        assert owning_userns_inode(ns_path(d, pod.id, ns)) == userns_ino, ns
    userns = dict(mode=pb.POD, uids=[dict(host_id=HOST, container_id=0, length=LENGTH)],
                  gids=[dict(host_id=HOST, container_id=0, length=LENGTH)])
    a_cfg = with_userns(pb, ctr_config(pb, "a", d.ref(), command=SERVICE), userns)
    b_cfg = with_userns(pb, ctr_config(pb, "b", d.ref(), command=SERVICE), None)  # none: the pod's
    a = run(d, pb, pod, a_cfg)
    b = run(d, pb, pod, b_cfg)
    wait_state(d, pb, a, pb.CONTAINER_RUNNING)
    wait_state(d, pb, b, pb.CONTAINER_RUNNING)
    pa, pb_ = main_pid(a), main_pid(b)

    # The mappings are kubelet's, the process is the pod's root inside and HOST on the node.
    assert map_lines(f"/proc/{pa}/uid_map") == [["0", str(HOST), str(LENGTH)]]
    assert map_lines(f"/proc/{pa}/gid_map") == [["0", str(HOST), str(LENGTH)]]
    assert proc_status(pa, "Uid").split()[0] == str(HOST)
    assert proc_status(pa, "Gid").split()[0] == str(HOST)
    assert sh(d, pb, a, "id -u; id -g").split() == ["0", "0"]
    # The pod's sysctls went into its network namespace (written by the node's root, who may).
    assert sh(d, pb, a, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").strip() == "80"
    # Both containers and the pin are one user namespace.
    assert os.stat(f"/proc/{pa}/ns/user").st_ino == userns_ino
    assert os.stat(f"/proc/{pb_}/ns/user").st_ino == userns_ino
    assert os.stat(f"/proc/{pa}/ns/net").st_ino == os.stat(ns_path(d, pod.id, "net")).st_ino

    # The image's files are root's inside and on disk; the node sees them as HOST's.
    assert sh(d, pb, a, "stat -c '%u %g' /bin/busybox /bin /").split() == ["0", "0"] * 3
    assert os.stat(layer_file(d, "bin/busybox")).st_uid == 0
    assert os.stat(f"/proc/{pa}/root/bin/busybox").st_uid == HOST
    # The pod's files are its root's too.
    assert sh(d, pb, a, "stat -c %u /etc/hosts /etc/resolv.conf /etc/hostname").split() == ["0"] * 3

    # What the container writes is its root's inside, HOST's in the upper directory.
    assert sh(d, pb, a, "echo hello > /created; mkdir /made; echo more >> /bin/sh.txt; "
              "stat -c %u /created /made /bin/sh.txt").split() == ["0"] * 3
    # A file of the image's that it changes is copied up: its copy is HOST's too (not the node's
    # root's, as the layer's is), and keeps what the layer had.
    assert os.stat(layer_file(d, "etc/passwd")).st_uid == 0
    assert sh(d, pb, a, "echo 'extra:x:4242:4242::/:/bin/sh' >> /etc/passwd; stat -c '%u %g' /etc/passwd").split() == \
        ["0", "0"]
    upper = os.path.join(ctr_dirs(d, a)[0], "upper")
    for rel in ("created", "made", "bin/sh.txt", "etc/passwd"):
        st = os.stat(os.path.join(upper, rel))
        assert (st.st_uid, st.st_gid) == (HOST, HOST), rel
    copied = read(os.path.join(upper, "etc", "passwd"))
    assert copied.startswith(read(layer_file(d, "etc/passwd"))) and copied.endswith("extra:x:4242:4242::/:/bin/sh\n")
    assert os.stat(layer_file(d, "bin/busybox")).st_uid == 0  # the layer is untouched
    # The other container does not see it (a rootfs of its own), and writes as well.
    assert sh(d, pb, b, "test ! -e /created && touch /b && stat -c %u /b").split() == ["0"]

    # One mount a container (the overlay), nothing else left by its making.
    bundle_mounts = mounts_under(os.path.join(d.dir, "run", "containers"))
    assert sorted(bundle_mounts) == sorted(os.path.join(ctr_dirs(d, c)[1], "rootfs") for c in (a, b)), bundle_mounts

    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    nothing_left_of(d, a)
    nothing_left_of(d, b)
    assert mounts_under(d.dir) == []
    assert not os.path.exists(user_pin)
    assert units("rktlet-pod") == []


def test_volumes_are_idmapped(ud, pb, tmp_path):
    """The CRI's mounts are idmapped too: the node's root's files are the pod's root's inside, and
    what it writes there is the node's root's; a mount whose file system cannot be idmapped (an
    overlay here) goes as it is. Removal unmounts them and leaves their contents alone."""
    d = ud
    wait_probed(d, pb, True)
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "kept").write_text("from the node\n")
    term = tmp_path / "termination-log"
    term.write_text("")
    ov = tmp_path / "ov"
    for x in ("lower", "upper", "work", "merged"):
        (ov / x).mkdir(parents=True)
    (ov / "lower" / "f").write_text("")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={ov}/lower,upperdir={ov}/upper,workdir={ov}/work", str(ov / "merged")], check=True)
    try:
        pod = userns_pod(d, pb, name="vols")
        cfg = ctr_config(pb, "v", d.ref(), command=SERVICE, mounts=[
            dict(container_path="/data", host_path=str(vol)),
            dict(container_path="/dev/termination-log", host_path=str(term)),
            dict(container_path="/ro", host_path=str(vol), readonly=True),
            dict(container_path="/ov", host_path=str(ov / "merged"))])
        volumes_checked(d, pb, pod, cfg, vol, term)
    finally:
        subprocess.run(["umount", str(ov / "merged")], check=True)


def volumes_checked(d, pb, pod, cfg, vol, term):
    cid = run(d, pb, pod, cfg)
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    assert sh(d, pb, cid, "stat -c %u /data /data/kept /dev/termination-log").split() == ["0"] * 3
    assert sh(d, pb, cid, "echo written > /data/new; echo done > /dev/termination-log; cat /data/kept") == \
        "from the node\n"
    assert os.stat(vol / "new").st_uid == 0 and (vol / "new").read_text() == "written\n"
    assert term.read_text() == "done\n"
    r = exec_sync(d, pb, cid, ["sh", "-c", "touch /ro/x"])
    assert r.exit_code != 0, "a read-only volume took a write"
    # The overlay cannot be idmapped: it is there as it is (the node's root's files are nobody's).
    assert sh(d, pb, cid, "stat -c %u /ov/f").split() == ["65534"]
    remove(d, pb, cid)
    nothing_left_of(d, cid)
    assert sorted(os.listdir(vol)) == ["kept", "new"]
    assert term.exists()
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    assert mounts_under(d.dir) == []


NOBODY_TRIES = """
import os, sys
for what, f in (("read", lambda p: open(p).read()), ("list", os.listdir)):
    for p in sys.argv[1:]:
        if not p.startswith(what + ":"):
            continue
        try:
            f(p[len(what) + 1:])
            print("reached", p)
        except PermissionError:
            print("refused", p)
"""


def as_nobody(*targets):
    """What an unprivileged user of the node gets trying targets ("read:<path>" or "list:<path>")."""
    r = subprocess.run([sys.executable, "-c", NOBODY_TRIES, *targets], user=65534, group=65534, extra_groups=[],
                       capture_output=True, text=True, check=True)
    return r.stdout.split("\n")[:-1]


def test_node_users_cannot_reach_the_volumes_or_the_rootfs(ud, pb, tmp_path):
    """The idmapped clones of the volumes and the rootfs are mounted in the bundle, whose mount
    points any user sees in /proc/self/mountinfo: only the pod's root and the node's may pass. A
    read-only volume's clone is read-only too (a secret, not to be written through it)."""
    d = ud
    wait_probed(d, pb, True)
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "secret").write_text("s3cret\n")
    os.chmod(vol / "secret", 0o644)
    searchable_up_to_tmpdir(vol)  # the volume itself any user could read: only its clone is at stake
    assert as_nobody(f"read:{vol}/secret") == [f"reached read:{vol}/secret"]
    pod = userns_pod(d, pb, name="private")
    cid = run(d, pb, pod, ctr_config(pb, "p", d.ref(), command=SERVICE, mounts=[
        dict(container_path="/rw", host_path=str(vol)),
        dict(container_path="/ro", host_path=str(vol), readonly=True)]))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    bundle = ctr_dirs(d, cid)[1]
    st = os.stat(bundle)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (HOST, HOST, 0o700)
    st = os.stat(os.path.join(bundle, "volumes"))  # the runtime opens the sources as the node's root
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o700)
    for i in ("0", "1"):
        assert os.path.join(bundle, "volumes", i) in mounts_under(d.dir)
    targets = [f"read:{bundle}/volumes/0/secret", f"read:{bundle}/volumes/1/secret", f"list:{bundle}/rootfs",
               f"list:{bundle}/volumes"]
    assert as_nobody(*targets) == [f"refused {t}" for t in targets]
    # The container still reads (and writes where it may) its volumes, as its root.
    assert sh(d, pb, cid, "cat /rw/secret /ro/secret; echo x > /rw/w; stat -c %u /rw/w") == "s3cret\ns3cret\n0\n"
    assert exec_sync(d, pb, cid, ["sh", "-c", "echo y > /ro/w"]).exit_code != 0
    # The read-only volume's clone refuses a write from the node's root too.
    with pytest.raises(OSError) as e:
        open(os.path.join(bundle, "volumes", "1", "w"), "w").close()
    assert e.value.errno == errno.EROFS, e.value
    with open(os.path.join(bundle, "volumes", "0", "w")) as f:
        assert f.read() == "x\n"
    remove(d, pb, cid)
    nothing_left_of(d, cid)
    assert sorted(os.listdir(vol)) == ["secret", "w"]
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    assert mounts_under(d.dir) == []


def test_container_options_must_be_the_pods(ud, pb):
    d = ud
    wait_probed(d, pb, True)
    pod = userns_pod(d, pb)
    for userns in (dict(mode=pb.NODE),
                   dict(mode=pb.POD, uids=[dict(host_id=HOST + LENGTH, container_id=0, length=LENGTH)],
                        gids=[dict(host_id=HOST + LENGTH, container_id=0, length=LENGTH)])):
        with pytest.raises(grpc.RpcError) as e:
            create(d, pb, pod, with_userns(pb, ctr_config(pb, "x", d.ref(), command=SERVICE), userns))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    # The node's PID namespace, asked by the container alone (the pod cannot), is refused too.
    cfg = ctr_config(pb, "x", d.ref(), command=SERVICE)
    cfg.linux.security_context.namespace_options.pid = pb.NODE
    with pytest.raises(grpc.RpcError) as e:
        create(d, pb, pod, cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "node's PID namespace" in e.value.details(), e.value.details()
    assert list(d.runtime().ListContainers(pb.ListContainersRequest(), timeout=10).containers) == []
    # A mount that propagates cannot be an idmapped copy: refused, naming it.
    for prop, name in ((pb.PROPAGATION_HOST_TO_CONTAINER, "HostToContainer"),
                       (pb.PROPAGATION_BIDIRECTIONAL, "Bidirectional")):
        cfg_m = ctr_config(pb, "m", d.ref(), command=SERVICE, mounts=[
            dict(container_path="/fine", host_path="/tmp"),
            dict(container_path="/shared", host_path="/tmp", propagation=prop)])
        with pytest.raises(grpc.RpcError) as e:
            create(d, pb, pod, cfg_m)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert "/shared" in e.value.details() and name in e.value.details(), e.value.details()
    assert list(d.runtime().ListContainers(pb.ListContainersRequest(), timeout=10).containers) == []
    # Without a user namespace, a container may still have the node's PID namespace.
    plain = make_pod(d, pb, name="plain", host_network=False)
    cid = create(d, pb, plain, cfg)
    remove(d, pb, cid)


def test_user_namespace_survives_a_daemon_restart(ud, pb):
    """The pod's record keeps its mappings: a container created after a restart joins the same
    user namespace."""
    d = ud
    wait_probed(d, pb, True)
    pod = userns_pod(d, pb)
    userns_ino = os.stat(ns_path(d, pod.id, "user")).st_ino
    d.stop()
    d.start()
    wait_probed(d, pb, True)
    cid = run(d, pb, pod, ctr_config(pb, "late", d.ref(), command=SERVICE))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    pid = main_pid(cid)
    assert os.stat(f"/proc/{pid}/ns/user").st_ino == userns_ino
    assert map_lines(f"/proc/{pid}/uid_map") == [["0", str(HOST), str(LENGTH)]]
    remove(d, pb, cid)


def test_mode_node_is_the_nodes_user_namespace(ud, pb):
    d = ud
    pod = make_pod(d, pb, name="node", host_network=False, userns=dict(mode=pb.NODE))
    assert not os.path.exists(ns_path(d, pod.id, "user"))
    cid = run(d, pb, pod, ctr_config(pb, "c", d.ref(), command=SERVICE))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    pid = main_pid(cid)
    assert os.stat(f"/proc/{pid}/ns/user").st_ino == os.stat("/proc/self/ns/user").st_ino
    assert proc_status(pid, "Uid").split()[0] == "0"
    assert sh(d, pb, cid, "stat -c %u /bin/busybox").split() == ["0"]
    remove(d, pb, cid)


def test_shared_pid_namespace_is_the_pods_user_namespaces(ud, pb):
    """With share_pid, rktlet-pod-init's PID namespace is the user namespace's too (the runtime
    joins that first), and its PID 1 runs as the pod's root, not the node's."""
    d = ud
    wait_probed(d, pb, True)
    pod = userns_pod(d, pb, name="shared", share_pid=True)
    userns_ino = os.stat(ns_path(d, pod.id, "user")).st_ino
    pid_pin = ns_path(d, pod.id, "pid")
    assert owning_userns_inode(pid_pin) == userns_ino
    a = run(d, pb, pod, ctr_config(pb, "a", d.ref(), command=SERVICE))
    b = run(d, pb, pod, ctr_config(pb, "b", d.ref(), command=SERVICE))
    for cid in (a, b):
        wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
        pid = main_pid(cid)
        assert os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat(pid_pin).st_ino
        assert os.stat(f"/proc/{pid}/ns/user").st_ino == userns_ino
    # PID 1 is the pod's init, the pod's root: it sees both containers' processes.
    assert sh(d, pb, a, "cat /proc/1/comm; stat -c %u /proc/1").split() == ["rktlet-pod-init", "0"]
    init_pid = int(show(f"rktlet-init-{pod.id}.service", "MainPID"))
    assert proc_status(init_pid, "Uid").split()[0] == str(HOST)
    # Its root directory and working directory are an empty one, not the node's "/"; and it is
    # not dumpable: the pod's root cannot look through /proc/1 (only the node's root owns it).
    empty = os.path.join(d.dir, "run", "pods", pod.id, "init-root")
    assert os.readlink(f"/proc/{init_pid}/root") == empty
    assert os.readlink(f"/proc/{init_pid}/cwd") == empty
    assert os.listdir(empty) == []
    assert os.lstat(f"/proc/{init_pid}/fd").st_uid == 0  # a dumpable one's is its euid's, HOST
    r = exec_sync(d, pb, a, ["sh", "-c", "ls /proc/1/root/ || exit 3"])
    assert r.exit_code == 3 and b"ermission denied" in r.stderr, (r.stdout, r.stderr)
    ps = sh(d, pb, a, "ls /proc | grep -c '^[0-9]'")
    assert int(ps) >= 3, ps
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    assert mounts_under(d.dir) == []
    assert units("rktlet-") == []


def test_killed_daemon_leaves_volumes_to_unmount(ud, pb, tmp_path):
    """A daemon killed with a container's idmapped volume mounted: the next one removes the
    container, unmounting the volume first; the volume's files stay."""
    d = ud
    wait_probed(d, pb, True)
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "kept").write_text("x")
    pod = userns_pod(d, pb, name="crash")
    cid = create(d, pb, pod, ctr_config(pb, "v", d.ref(), command=SERVICE,
                                        mounts=[dict(container_path="/data", host_path=str(vol))]))
    assert os.path.join(ctr_dirs(d, cid)[1], "volumes", "0") in mounts_under(d.dir)
    d.kill()
    d.start()
    remove(d, pb, cid)
    nothing_left_of(d, cid)
    assert os.listdir(vol) == ["kept"]
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    assert mounts_under(d.dir) == []
