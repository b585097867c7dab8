"""Containers: CreateContainer, StartContainer, StopContainer, RemoveContainer, ContainerStatus,
ListContainers and ReopenContainerLog.

Every container is a transient service rktlet-ctr-<id>.service of the user manager, in its pod's
slice, whose main process is the container's init (the OCI runtime, runc, ran it detached and left).
The images come from a docker-registry on loopback (registry.py): one layer with /bin/busybox and a
symlink for every applet, so the containers' commands are busybox applets.

Layout the tests read: <dir>/lib/containers/<id>/ (state.json, overlay upper/ and work/),
<dir>/run/containers/<id>/ (the OCI bundle: config.json and the rootfs/ mount point) and the
runtime's state in <dir>/run/runc/. What a container prints is read from its CRI log file,
<pod log_directory>/<log_path>.
"""

import collections
import datetime
import json
import os
import re
import signal
import socket
import shutil
import subprocess
import threading
import time

import grpc
import pytest

import registry as reg
from registry import Registry
from rktlet_test import machine_skip, wait_journal, wait_until
from test_images import pull, registries_config
# cni and no_leftovers (autouse: no pod slice left after a test) are fixtures used here too.
from test_pods import CNI_BIN, cni, mounts_under, needs_cni, no_leftovers, ns_path, pod_config, units  # noqa: F401
from test_crash import shim  # noqa: F401

RUNC = shutil.which("runc")

pytestmark = [
    pytest.mark.skipif(RUNC is None, reason="runc (Debian package runc) is not installed"),
    pytest.mark.skipif(not os.access(reg.DOCKER_REGISTRY, os.X_OK),
                       reason="docker-registry (Debian package docker-registry) is not installed"),
    pytest.mark.skipif(not os.access(reg.BUSYBOX, os.X_OK),
                       reason="/bin/busybox (Debian package busybox-static) is not installed"),
]

T = 60  # timeout of every gRPC call that may wait on systemd or the runtime
EXIT_WAIT = 20  # how long a container may take to be seen EXITED

# Docker's default capability set, as /proc/<pid>/status shows it.
DEFAULT_CAPS = 0x00000000a80425fb
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21

# A process that exits 0 on SIGTERM at once (a pid 1 without a handler would ignore SIGTERM).
SERVICE = ["sh", "-c", "trap 'echo got-TERM; exit 0' TERM; echo ready; sleep 1000 & wait"]


# --- images ----------------------------------------------------------------------------------------

IMAGES = {
    # name: (repository:tag, image config)
    "busybox": ("ctr/busybox:v1", dict(env=["PATH=/bin", "FROM_IMAGE=image", "BOTH=image"], workdir="/home/app")),
    "entrypoint": ("ctr/entrypoint:v1", dict(entrypoint=["/bin/echo", "entry"], cmd=["from-cmd"])),
    "usr1": ("ctr/usr1:v1", dict(stop_signal="SIGUSR1")),
    "app-user": ("ctr/app-user:v1", dict(user="app")),
}


@pytest.fixture(scope="module")
def ctr_registry(tmp_path_factory):
    """One registry for the module, holding the IMAGES; yields (registry, {name: (ref, Image)})."""
    r = Registry(tmp_path_factory.mktemp("ctr-registry"))
    images = {}
    try:
        for name, (repo_tag, config) in IMAGES.items():
            image = reg.full_busybox_image(**config)
            repo, tag = repo_tag.split(":")
            image.push(r, repo, tag)
            images[name] = (f"{r.url}/{repo_tag}", image)
        yield r, images
    finally:
        r.stop()


@pytest.fixture
def cd(make_daemon, ctr_registry, cni, pb):  # noqa: F811
    """A daemon that knows the module's registry (plain HTTP) and has the test CNI bridge network
    configured, with the busybox image pulled. d.ref(name) pulls another of the IMAGES and gives its
    reference; d.image(name) the registry.Image."""
    r, images = ctr_registry
    kwargs = dict(config=registries_config([r.url]), args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d = make_daemon(**kwargs)
    d.cni = cni
    d.kwargs = kwargs
    pulled = set()

    def ref(name="busybox"):
        if name not in pulled:
            assert pull(d, pb, images[name][0]) == images[name][1].id
            pulled.add(name)
        return images[name][0]

    d.ref = ref
    d.image = lambda name="busybox": images[name][1]
    ref()
    yield d
    if d.alive():
        cleanup(d, pb)


@pytest.fixture(autouse=True)
def no_container_leftovers():
    """Every test removes its containers: no rktlet-ctr-* unit is left in the user manager."""
    yield
    left = units("rktlet-ctr-")
    for u in left:
        subprocess.run(["systemctl", "--user", "stop", u], capture_output=True)
        subprocess.run(["systemctl", "--user", "reset-failed", u], capture_output=True)
    assert left == [], "container units left behind"


def cleanup(d, pb):
    """Removes every container, then every pod, of a daemon (errors ignored for the containers)."""
    rt = d.runtime()
    try:
        for c in rt.ListContainers(pb.ListContainersRequest(), timeout=10).containers:
            try:
                rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id), timeout=T)
            except grpc.RpcError:
                pass
    except grpc.RpcError:
        pass
    for p in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=T)


# --- pods, containers, logs ------------------------------------------------------------------------

Pod = collections.namedtuple("Pod", "id config")


def make_pod(d, pb, name="pod", host_network=True, **kw):
    """A running pod (host network unless told otherwise) with a log directory of its own."""
    cfg = pod_config(pb, name=name, host_network=host_network, **kw)
    cfg.log_directory = os.path.join(d.dir, "logs", f"default_{name}_{cfg.metadata.uid}")
    os.makedirs(cfg.log_directory, exist_ok=True)  # kubelet makes it before RunPodSandbox
    pod_id = d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id
    return Pod(pod_id, cfg)


def ctr_config(pb, name, image, command=None, args=None, attempt=0, envs=None, mounts=(), linux=None, **kw):
    """A ContainerConfig; its log goes to <name>_<attempt>.log in the pod's log directory."""
    c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name, attempt=attempt), image=pb.ImageSpec(image=image),
                           log_path=kw.pop("log_path", f"{name}_{attempt}.log"), **kw)
    c.command.extend(command or [])
    c.args.extend(args or [])
    for k, v in (envs or {}).items():
        c.envs.add(key=k, value=v.encode())  # KeyValue.value is bytes in this proto
    for m in mounts:
        c.mounts.add(**m)
    if linux is not None:
        c.linux.CopyFrom(linux)
    return c


def create(d, pb, pod, cfg):
    return d.runtime().CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg,
                                                                 sandbox_config=pod.config), timeout=T).container_id


def start(d, pb, cid):
    d.runtime().StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)


def stop(d, pb, cid, timeout=10):
    d.runtime().StopContainer(pb.StopContainerRequest(container_id=cid, timeout=timeout), timeout=timeout + T)


def remove(d, pb, cid):
    d.runtime().RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)


def cstatus(d, pb, cid, verbose=False):
    return d.runtime().ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=verbose), timeout=30)


def list_ids(d, pb, **f):
    req = pb.ListContainersRequest(filter=pb.ContainerFilter(**f)) if f else pb.ListContainersRequest()
    return sorted(c.id for c in d.runtime().ListContainers(req, timeout=10).containers)


def wait_state(d, pb, cid, state, timeout=EXIT_WAIT):
    name = pb.ContainerState.Name(state)

    def reached():
        st = cstatus(d, pb, cid).status
        return st if st.state == state else None
    return wait_until(reached, timeout, interval=0.05, what=f"container {cid[:12]} to be {name}")


def run(d, pb, pod, cfg):
    cid = create(d, pb, pod, cfg)
    start(d, pb, cid)
    return cid


def log_file(pod, cfg):
    return os.path.join(pod.config.log_directory, cfg.log_path)


RFC3339NANO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def parse_time(s):
    m = RFC3339NANO.match(s)
    assert m, f"not an RFC 3339 time: {s!r}"
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    tz = datetime.timezone.utc if m.group(3) == "Z" else datetime.datetime.strptime(m.group(3), "%z").tzinfo
    return t.replace(tzinfo=tz).timestamp() + float(m.group(2) or 0)


def records(path):
    """The CRI log file as (time, stream, tag, text) records; checks the format of every line."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split("\n")[:-1]:  # every record ends with a newline
        parts = line.split(" ", 3)
        assert len(parts) >= 3, f"bad log line {line!r}"
        ts, stream, tag = parts[:3]
        assert stream in ("stdout", "stderr"), line
        assert tag in ("P", "F"), line
        out.append((parse_time(ts), stream, tag, parts[3] if len(parts) == 4 else ""))
    return out


def text(recs, stream="stdout"):
    """The stream's bytes as the container wrote them: P records joined, F records end a line."""
    return "".join(r[3] + ("\n" if r[2] == "F" else "") for r in recs if r[1] == stream)


def wait_log(pod, cfg, needle, stream="stdout", timeout=EXIT_WAIT):
    try:
        return wait_until(lambda: needle in text(records(log_file(pod, cfg)), stream), timeout, interval=0.05,
                          what=f"{needle!r} in {log_file(pod, cfg)}")
    except TimeoutError as e:
        try:
            with open(log_file(pod, cfg), errors="replace") as f:
                raise TimeoutError(f"{e}; the log holds:\n{f.read()[-2000:]}") from None
        except FileNotFoundError:
            raise TimeoutError(f"{e}; there is no log file") from None


def settled_log(pod, cfg):
    """The records once the file stopped growing (output may land just after the exit is seen)."""
    path = log_file(pod, cfg)
    last = [-1]

    def stable():
        size = os.path.getsize(path) if os.path.exists(path) else -1
        same = size == last[0] and size >= 0
        last[0] = size
        return same
    wait_until(stable, 5, interval=0.1, what=f"{path} to stop growing")
    return records(path)


def run_to_exit(d, pb, pod, name, command=None, image="busybox", **kw):
    """Runs a container to its end; returns (status, stdout, stderr, container id)."""
    cfg = ctr_config(pb, name, d.ref(image), command=command, **kw)
    cid = run(d, pb, pod, cfg)
    st = wait_state(d, pb, cid, pb.CONTAINER_EXITED)
    recs = settled_log(pod, cfg)
    return st, text(recs, "stdout"), text(recs, "stderr"), cid


# --- systemd, /proc, cgroups -----------------------------------------------------------------------

def unit_of(cid):
    return f"rktlet-ctr-{cid}.service"


def show(unit, prop):
    return subprocess.run(["systemctl", "--user", "show", "-P", prop, unit], capture_output=True, text=True,
                          timeout=10).stdout.strip()


def unit_usec(unit, prop):
    """A service's timestamp property (CLOCK_REALTIME, microseconds) as systemd has it on the bus."""
    path = "/org/freedesktop/systemd1/unit/" + "".join(
        c if c.isalnum() else f"_{ord(c):02x}" for c in unit)
    out = subprocess.run(["busctl", "--user", "get-property", "org.freedesktop.systemd1", path,
                          "org.freedesktop.systemd1.Service", prop], check=True, capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert out[0] == "t", out
    return int(out[1])


def main_pid(cid):
    return int(show(unit_of(cid), "MainPID") or 0)


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def children(pid):
    """The pids of a process's children, as the kernel lists them."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []  # gone


def writable_fds(pid, target):
    """A process's fds open for writing on that file ("pipe:[inode]" and the like)."""
    found = []
    for fd in listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(line.split()[1] for line in f if line.startswith("flags:")), 8)
        except OSError:
            continue
        if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
            found.append(int(fd))
    return found


# read(2)'s number, which /proc/<pid>/syscall shows first while a process blocks in it.
READ_SYSCALL = {"x86_64": 0, "aarch64": 63, "riscv64": 63, "ppc64le": 3, "s390x": 3, "i686": 3, "armv7l": 3}


def blocked_reading(pid, fd):
    """Whether the process sleeps in read(fd, ...)."""
    import platform
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields[:2] == [str(READ_SYSCALL[platform.machine()]), hex(fd)]


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return None


def cgroup_pids(unit):
    """Processes in a unit's cgroup and below it (cgroup v2, or the name=systemd hierarchy)."""
    cg = show(unit, "ControlGroup")
    assert cg, f"{unit} has no control group"
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"):
        path = root + cg
        if os.path.isdir(path):
            pids = set()
            for dirpath, _, files in os.walk(path):
                if "cgroup.procs" in files:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids |= {int(p) for p in f.read().split()}
            return pids
    raise AssertionError(f"control group {cg} of {unit} found in no hierarchy")


def runtime_processes():
    """Processes of the OCI runtime (runc, its init, crun), by command name."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("runc") or comm == "crun" or comm.endswith("-shim"):
            found.append((int(p), comm))
    return found


def ctr_dirs(d, cid):
    return os.path.join(d.dir, "lib", "containers", cid), os.path.join(d.dir, "run", "containers", cid)


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def state_of(d, cid):
    """A container's record on disk (<root>/containers/<id>/state.json), or {} when there is none."""
    try:
        with open(os.path.join(d.dir, "lib", "containers", cid, "state.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def kill_with_call_pending(d, pending):
    """SIGKILL of the daemon with the client's channel still open: the pending call fails UNAVAILABLE."""
    d.stopped = True
    d.proc.kill()
    d.proc.wait()
    with pytest.raises(grpc.RpcError) as e:
        pending.result()
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
    d.close_channels()


def trashed(d, cid):
    """What of the container is still in the trash (its root directory, deleted by a child)."""
    return [e for e in listdir(os.path.join(d.dir, "lib", "trash")) if e.startswith(f"container-{cid}.")]


def nothing_left_of(d, cid):
    """No unit, record, bundle, runtime state or mount is left of the container, and its writable
    layer, moved to the trash, is deleted soon after."""
    assert unit_of(cid) not in units("rktlet-ctr-")
    assert cid not in listdir(os.path.join(d.dir, "lib", "containers"))
    assert cid not in listdir(os.path.join(d.dir, "run", "containers"))
    assert cid not in listdir(os.path.join(d.dir, "run", "runc"))
    assert mounts_under(os.path.join(d.dir, "run", "containers")) == []
    wait_until(lambda: not trashed(d, cid), 60, interval=0.05, what=f"container {cid[:12]}'s trash to be deleted")


def cap_bits(value):
    return int(value, 16)


def caps_of(stdout):
    """{CapInh: int, CapPrm: ..., CapEff: ..., CapBnd: ..., CapAmb: ...} from `grep Cap /proc/self/status`."""
    out = {}
    for line in stdout.splitlines():
        k, _, v = line.partition(":")
        if k.startswith("Cap"):
            out[k] = cap_bits(v.strip())
    return out


def security(pb, **kw):
    """A LinuxContainerConfig with these security_context fields."""
    linux = pb.LinuxContainerConfig()
    sc = linux.security_context
    if "run_as_user" in kw:
        sc.run_as_user.value = kw.pop("run_as_user")
    if "drop" in kw:
        sc.capabilities.drop_capabilities.extend(kw.pop("drop"))
    if "add" in kw:
        sc.capabilities.add_capabilities.extend(kw.pop("add"))
    if "seccomp" in kw:
        sc.seccomp.profile_type = kw.pop("seccomp")
    for k, v in kw.items():
        setattr(sc, k, v)
    return linux


# --- the harness can run containers at all ---------------------------------------------------------

def test_runc_works_in_the_harness(tmp_path):
    out = subprocess.run([RUNC, "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("runc version"), out
    # A container of our own, without rktlet: busybox in a bundle, runc run in the foreground.
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(reg.BUSYBOX, rootfs / "bin" / "busybox")
    for a in ("sh", "echo", "cat"):
        os.symlink("busybox", rootfs / "bin" / a)
    subprocess.run([RUNC, "spec", "--bundle", str(bundle)], check=True, timeout=10)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/sh", "-c", "echo hello from runc; echo pid $$"]
    spec["root"]["readonly"] = False
    spec["linux"]["cgroupsPath"] = f"/rktlet-test-runc-{os.getpid()}"
    (bundle / "config.json").write_text(json.dumps(spec))
    r = subprocess.run([RUNC, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), "sanity"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from runc\npid 1\n", r.stdout


# --- the life of a container -----------------------------------------------------------------------

def test_create_start_stop_remove(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="life")
    cfg = ctr_config(pb, "sleeper", d.ref(), command=["sleep", "1000"], labels={"app": "life", "k": "v"},
                     annotations={"note": "ctr"})
    before = time.time()
    cid = create(d, pb, pod, cfg)
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    lib, run_dir = ctr_dirs(d, cid)
    assert os.path.isfile(os.path.join(lib, "state.json"))
    st = cstatus(d, pb, cid).status
    assert st.id == cid and st.state == pb.CONTAINER_CREATED
    assert st.metadata.name == "sleeper" and st.metadata.attempt == 0
    assert before - 5 <= st.created_at / 1e9 <= time.time() + 5
    assert st.started_at == 0 and st.finished_at == 0

    start(d, pb, cid)
    st = cstatus(d, pb, cid).status
    assert st.state == pb.CONTAINER_RUNNING
    assert st.created_at <= st.started_at <= time.time_ns() + 5e9
    assert st.finished_at == 0

    # The unit is in the pod's slice; its main process is the container's command.
    unit = unit_of(cid)
    assert unit in units("rktlet-ctr-")
    assert show(unit, "Slice") == f"rktlet-pod{pod.id}.slice"
    assert show(unit, "ActiveState") == "active"
    pid = main_pid(cid)
    assert pid > 0 and cmdline(pid) == ["sleep", "1000"]
    # It runs on the image's root filesystem, mounted at the bundle's rootfs.
    with open(f"/proc/{pid}/root/etc/passwd") as f:
        assert f.read() == reg.PASSWD
    assert os.path.isfile(os.path.join(run_dir, "config.json"))
    assert os.path.ismount(os.path.join(run_dir, "rootfs"))
    assert os.path.isdir(os.path.join(lib, "upper")) and os.path.isdir(os.path.join(lib, "work"))
    # PID 1 of a PID namespace of its own.
    assert proc_status(pid, "NSpid").split()[-1] == "1"
    # runc is gone: no runtime process, and the unit's cgroup holds the container only.
    wait_until(lambda: runtime_processes() == [], 5, what="no runc process left")
    assert cgroup_pids(unit) == {pid}, (show(unit, "ControlGroup"), open(f"/proc/{pid}/cgroup").read())
    assert listdir(os.path.join(d.dir, "run", "runc")) != []  # the runtime's state of the container

    # Stop: sleep is PID 1 without a handler, so SIGTERM does nothing and SIGKILL ends it, once the
    # 1 s grace period is over.
    began = time.time_ns()
    stop(d, pb, cid, timeout=1)
    st = cstatus(d, pb, cid).status
    assert st.state == pb.CONTAINER_EXITED
    assert st.exit_code == 137 and st.reason == "Error"  # 128 + SIGKILL, as kubelet reads it
    assert st.started_at <= st.finished_at <= time.time_ns() + 5e9
    assert st.finished_at >= began + 1_000_000_000
    assert not os.path.exists(f"/proc/{pid}")
    # The unit of an exited container stays until RemoveContainer.
    assert unit in units("rktlet-ctr-")
    stop(d, pb, cid, timeout=1)  # idempotent
    assert cstatus(d, pb, cid).status.state == pb.CONTAINER_EXITED

    remove(d, pb, cid)
    assert unit not in units("rktlet-ctr-")
    assert not os.path.exists(lib) and not os.path.exists(run_dir)
    assert mounts_under(os.path.join(d.dir, "run", "containers")) == []
    assert listdir(os.path.join(d.dir, "run", "runc")) == []
    assert list_ids(d, pb) == []
    with pytest.raises(grpc.RpcError) as e:
        cstatus(d, pb, cid)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    remove(d, pb, cid)  # again: fine
    # The pod is untouched.
    assert d.runtime().PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod.id),
                                        timeout=30).status.state == pb.SANDBOX_READY


def test_start_twice_is_refused_and_changes_nothing(cd, pb, user_manager_pid):
    """A container starts once (the CRI: StartContainer starts a *created* container). A second
    StartContainer, on a running or an exited container, is refused with FAILED_PRECONDITION (the
    state is wrong, not the request) naming the container and its state, and changes nothing: the
    same process, the same times, no second run of the command. A StartContainer while the first is
    still in flight is ABORTED (a conflict with an operation in progress: try again)."""
    d = cd
    pod = make_pod(d, pb, name="twice")
    cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE)
    cid = create(d, pb, pod, cfg)
    unit = unit_of(cid)

    # In flight: systemd is frozen, so the first start waits on its StartTransientUnit job.
    os.kill(user_manager_pid, signal.SIGSTOP)
    try:
        first = d.runtime().StartContainer.future(pb.StartContainerRequest(container_id=cid), timeout=T)
        wait_journal(f"_PID={d.pid}", "RKTLET_CALL_STARTED=/runtime.v1.RuntimeService/StartContainer")
        with pytest.raises(grpc.RpcError) as e:
            start(d, pb, cid)
        assert e.value.code() == grpc.StatusCode.ABORTED, e.value.details()
        assert cid in e.value.details(), e.value.details()
        assert not first.done()
    finally:
        os.kill(user_manager_pid, signal.SIGCONT)
    first.result()
    wait_log(pod, cfg, "ready")
    running = cstatus(d, pb, cid).status
    assert running.state == pb.CONTAINER_RUNNING
    pid = main_pid(cid)
    began = show(unit, "ExecMainStartTimestampMonotonic")
    assert pid > 0 and began not in ("", "0")

    def refused(state_name):
        with pytest.raises(grpc.RpcError) as e:
            start(d, pb, cid)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
        assert cid in e.value.details() and state_name in e.value.details(), e.value.details()

    refused("running")
    assert cstatus(d, pb, cid).status == running
    assert main_pid(cid) == pid and os.path.exists(f"/proc/{pid}")
    assert show(unit, "ExecMainStartTimestampMonotonic") == began
    assert show(unit, "ActiveState") == "active"

    stop(d, pb, cid, timeout=10)
    exited = cstatus(d, pb, cid).status
    assert exited.state == pb.CONTAINER_EXITED and exited.exit_code == 0
    refused("exited")
    assert cstatus(d, pb, cid).status == exited
    assert show(unit, "ExecMainPID") == str(pid) and show(unit, "ExecMainStartTimestampMonotonic") == began
    assert main_pid(cid) == 0
    # The command ran once: one "ready", one "got-TERM".
    assert text(settled_log(pod, cfg)) == "ready\ngot-TERM\n"
    remove(d, pb, cid)


def test_a_start_that_fails_is_a_start_error(cd, pb):
    """A command that is not in the image: the OCI runtime cannot start it. StartContainer fails
    naming why, and the container is EXITED with reason StartError and exit code 128, never started
    (started_at 0), as containerd records it (errorStartReason, errorStartExitCode) and kubelet
    reads it. Nothing of it runs; it cannot be started again; it is removed cleanly."""
    d = cd
    pod = make_pod(d, pb, name="starterr")
    cid = create(d, pb, pod, ctr_config(pb, "nobin", d.ref(), command=["/no/such/binary"]))
    began = time.time_ns()
    with pytest.raises(grpc.RpcError) as e:
        start(d, pb, cid)
    assert e.value.code() == grpc.StatusCode.UNKNOWN, e.value.details()
    assert cid in e.value.details() and "/no/such/binary" in e.value.details(), e.value.details()
    st = cstatus(d, pb, cid).status
    assert st.state == pb.CONTAINER_EXITED
    assert st.reason == "StartError" and st.exit_code == 128
    assert "/no/such/binary" in st.message, st.message
    assert st.started_at == 0
    assert began <= st.finished_at <= time.time_ns()
    assert main_pid(cid) == 0
    wait_until(lambda: runtime_processes() == [], 5, what="no runc process left")
    with pytest.raises(grpc.RpcError) as e:
        start(d, pb, cid)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
    assert cstatus(d, pb, cid).status == st
    remove(d, pb, cid)
    nothing_left_of(d, cid)


@pytest.fixture
def stop_kubepods():
    """kubepods.slice, which systemd makes as a parent of the pods' slices, is stopped afterwards."""
    yield
    subprocess.run(["systemctl", "--user", "stop", "kubepods.slice"], capture_output=True)


def test_cgroup_parent_puts_the_unit_in_that_slice(stop_kubepods, cd, pb):
    d = cd
    pod = make_pod(d, pb, name="qos", cgroup_parent="kubepods-besteffort-podctr1.slice")
    cid = run(d, pb, pod, ctr_config(pb, "c", d.ref(), command=SERVICE))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    assert show(unit_of(cid), "Slice") == "kubepods-besteffort-podctr1.slice"
    remove(d, pb, cid)
    assert unit_of(cid) not in units("rktlet-ctr-")


def test_exit_codes_reasons_and_status_fields(cd, pb, tmp_path):
    d = cd
    pod = make_pod(d, pb, name="exits")
    host = tmp_path / "data"
    host.mkdir()
    mounts = [{"container_path": "/data", "host_path": str(host), "readonly": True}]
    st, _, _, cid3 = run_to_exit(d, pb, pod, "three", ["sh", "-c", "exit 3"], labels={"l": "1"},
                                 annotations={"a": "2"}, mounts=mounts)
    assert st.state == pb.CONTAINER_EXITED
    assert st.exit_code == 3 and st.reason == "Error"
    assert 0 < st.created_at <= st.started_at <= st.finished_at <= time.time_ns() + 5e9
    # As containerd: image_ref is the digest the image was pulled by, image_id its config digest.
    assert st.image.image == d.ref() and st.image_id == d.image().id
    assert st.image_ref.endswith("/ctr/busybox@" + d.image().digest), st.image_ref
    assert dict(st.labels) == {"l": "1"} and dict(st.annotations) == {"a": "2"}
    # kubelet reads ContainerStatus.log_path as the file's full path (containerd joins it so too).
    assert st.log_path == os.path.join(pod.config.log_directory, "three_0.log")
    assert [(m.container_path, m.host_path, m.readonly) for m in st.mounts] == [("/data", str(host), True)]

    st, out, _, cid0 = run_to_exit(d, pb, pod, "zero", ["sh", "-c", "echo done; exit 0"])
    assert st.exit_code == 0 and st.reason == "Completed"
    assert out == "done\n"

    info = json.loads(cstatus(d, pb, cid0, verbose=True).info["info"])
    assert info["unit"] == unit_of(cid0)
    assert info["bundle"] == ctr_dirs(d, cid0)[1]
    assert isinstance(info["pid"], int)
    assert os.path.basename(info["runtime"]) in ("runc", "crun")

    # Exited units stay, one per container.
    assert {unit_of(cid3), unit_of(cid0)} <= set(units("rktlet-ctr-"))
    items = {c.id: c for c in d.runtime().ListContainers(pb.ListContainersRequest(), timeout=10).containers}
    assert set(items) == {cid3, cid0}
    c = items[cid3]
    assert c.pod_sandbox_id == pod.id and c.metadata.name == "three" and c.state == pb.CONTAINER_EXITED
    assert c.image.image == d.ref() and c.image_id == d.image().id
    assert c.image_ref == st.image_ref
    assert dict(c.labels) == {"l": "1"} and dict(c.annotations) == {"a": "2"} and c.created_at > 0


def cgroup_file(cid, v1, v2):
    """A file of the container's own cgroup: <controller>/<name> in its v1 hierarchy, or <name> on a
    unified (v2) hierarchy; the cgroup is the unit's, where the OCI runtime puts the container."""
    cg = show(unit_of(cid), "ControlGroup")
    assert cg, f"{unit_of(cid)} has no control group"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return f"/sys/fs/cgroup{cg}/{v2}"
    controller, name = v1.split("/")
    return f"/sys/fs/cgroup/{controller}{cg}/{name}"


def read_cgroup(cid, v1, v2):
    with open(cgroup_file(cid, v1, v2)) as f:
        return f.read().strip()


def memory_limit_file(cid):
    """The container's memory limit file: memory.limit_in_bytes in the v1 memory hierarchy, or
    memory.max on a unified (v2) hierarchy."""
    return cgroup_file(cid, "memory/memory.limit_in_bytes", "memory.max")


def test_oom_killed(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="oom")
    linux = pb.LinuxContainerConfig()
    linux.resources.memory_limit_in_bytes = 32 << 20
    linux.resources.memory_swap_limit_in_bytes = 32 << 20
    # The limit is where the kernel enforces it, in the container's own cgroup.
    cid = create(d, pb, pod, ctr_config(pb, "limited", d.ref(), command=["sleep", "3600"], linux=linux))
    start(d, pb, cid)
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    with open(memory_limit_file(cid)) as f:
        assert int(f.read()) == 32 << 20
    remove(d, pb, cid)
    # dd fills a 256 MiB buffer: the kernel kills it, and the status says so as kubelet reads it.
    st, _, _, _ = run_to_exit(d, pb, pod, "hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
                              linux=linux)
    assert st.reason == "OOMKilled", (st.exit_code, st.reason, st.message)
    assert st.exit_code == 137


def test_resources_land_in_the_cgroup_files(cd, pb):
    """LinuxContainerResources as the kernel enforces them, read from the container's own cgroup
    while it runs: cpu_shares is cpu.shares as given (v1; on v2 cpu.weight, converted as runc and
    the kernel's own scale do: 1 + (shares - 2) * 9999 / 262142), cpu_quota and cpu_period are
    cpu.cfs_quota_us and cpu.cfs_period_us as given (v2: cpu.max "quota period"), memory_limit_in_bytes
    is memory.limit_in_bytes (v2: memory.max), cpuset_cpus is cpuset.cpus. (The CRI has no pids
    field: kubelet limits a pod's pids on the pod's cgroup itself.)"""
    d = cd
    pod = make_pod(d, pb, name="limits")
    linux = pb.LinuxContainerConfig()
    res = linux.resources
    res.cpu_shares = 512
    res.cpu_period = 50000
    res.cpu_quota = 25000
    res.memory_limit_in_bytes = 96 << 20
    res.cpuset_cpus = "0"
    cid = run(d, pb, pod, ctr_config(pb, "limited", d.ref(), command=["sleep", "3600"], linux=linux))
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    pid = main_pid(cid)
    # The container's process is in the cgroup read: its own, not a parent.
    with open(f"/proc/{pid}/cgroup") as f:
        assert show(unit_of(cid), "ControlGroup") in f.read()
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert read_cgroup(cid, "cpu/cpu.shares", "cpu.weight") == str(1 + (512 - 2) * 9999 // 262142)
        assert read_cgroup(cid, "cpu/cpu.cfs_quota_us", "cpu.max") == "25000 50000"
    else:
        assert read_cgroup(cid, "cpu/cpu.shares", "cpu.weight") == "512"
        assert read_cgroup(cid, "cpu/cpu.cfs_quota_us", "cpu.max") == "25000"
        assert read_cgroup(cid, "cpu/cpu.cfs_period_us", "cpu.max") == "50000"
    assert read_cgroup(cid, "memory/memory.limit_in_bytes", "memory.max") == str(96 << 20)
    assert read_cgroup(cid, "cpuset/cpuset.cpus", "cpuset.cpus") == "0"
    # And the process is held to them: it may run on CPU 0 only.
    assert proc_status(pid, "Cpus_allowed_list") == "0"
    remove(d, pb, cid)


def test_configured_runtime_runs_the_containers(make_daemon, ctr_registry, cni, pb, tmp_path):  # noqa: F811
    """[Containers] Runtime= names the OCI runtime every container goes through: a wrapper that
    logs its arguments, then execs runc, is what systemd runs for the container's create and start
    and what rktlet runs to delete it, and the container works through it."""
    r, images = ctr_registry
    argv_log = tmp_path / "runtime-argv.log"
    wrapper = tmp_path / "bin" / "logging-runc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec {RUNC} "$@"\n')
    wrapper.chmod(0o755)
    d = make_daemon(config=registries_config([r.url]) + f"[Containers]\nRuntime={wrapper}\n",
                    args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    try:
        ref, image = images["busybox"]
        assert pull(d, pb, ref) == image.id
        pod = make_pod(d, pb, name="wrapped")
        cfg = ctr_config(pb, "via", ref, command=["sh", "-c", "echo through the wrapper"])
        cid = run(d, pb, pod, cfg)
        st = wait_state(d, pb, cid, pb.CONTAINER_EXITED)
        assert st.exit_code == 0 and st.reason == "Completed"
        assert text(settled_log(pod, cfg)) == "through the wrapper\n"
        info = json.loads(cstatus(d, pb, cid, verbose=True).info["info"])
        assert info["runtime"] == str(wrapper)
        assert show(unit_of(cid), "ExecStart").startswith(f"{{ path={wrapper} ;"), show(unit_of(cid), "ExecStart")
        remove(d, pb, cid)
        # Every runtime command of the container went through the wrapper, in its order.
        bundle = ctr_dirs(d, cid)[1]
        calls = [line.split() for line in argv_log.read_text().splitlines() if cid in line.split()]
        verbs = [next(a for a in argv if a in ("create", "start", "delete", "kill", "state")) for argv in calls]
        assert verbs == ["create", "start", "delete"], calls
        create_argv = calls[0]
        assert create_argv[create_argv.index("--bundle") + 1] == bundle, create_argv
        assert create_argv[-1] == cid
        nothing_left_of(d, cid)
    finally:
        cleanup(d, pb)


# --- what runs: command, args, env, working directory, logs ----------------------------------------

def test_command_and_args_follow_the_kubernetes_rules(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="cmds")
    ep = d.ref("entrypoint")  # Entrypoint ["/bin/echo", "entry"], Cmd ["from-cmd"]
    cases = {
        "neither": (dict(), "entry from-cmd\n"),
        "args-only": (dict(args=["a1", "a2"]), "entry a1 a2\n"),
        "command-only": (dict(command=["/bin/echo", "cmd"]), "cmd\n"),
        "both": (dict(command=["/bin/echo", "cmd"], args=["x"]), "cmd x\n"),
    }
    cfgs = {n: ctr_config(pb, n, ep, **kw) for n, (kw, _) in cases.items()}
    ids = {n: run(d, pb, pod, c) for n, c in cfgs.items()}
    for n, (_, want) in cases.items():
        st = wait_state(d, pb, ids[n], pb.CONTAINER_EXITED)
        assert st.exit_code == 0, n
        assert text(settled_log(pod, cfgs[n])) == want, n
    # An image with Cmd only, no Entrypoint: the Cmd.
    st, out, _, _ = run_to_exit(d, pb, pod, "image-cmd")
    assert out == "image-cmd\n"


def test_env_hostname_and_working_dir(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="envpod")
    script = 'echo "A=$FROM_IMAGE B=$BOTH C=$FROM_CRI P=$PATH"; echo "H=$HOSTNAME"; hostname; pwd'
    _, out, _, _ = run_to_exit(d, pb, pod, "env", ["sh", "-c", script], envs={"BOTH": "cri", "FROM_CRI": "x y"})
    lines = out.splitlines()
    assert lines[0] == "A=image B=cri C=x y P=/bin"
    # HOSTNAME is the pod's hostname as kubelet gave it (containerd does the same); a host-network
    # pod has no UTS namespace of its own, so the kernel's host name is the node's.
    assert lines[1] == "H=envpod"
    assert lines[2] == socket.gethostname()
    assert lines[3] == "/home/app"  # the image's WorkingDir
    _, out, _, _ = run_to_exit(d, pb, pod, "wd", ["pwd"], working_dir="/tmp")
    assert out == "/tmp\n"


def test_a_pod_without_hostname_gives_its_containers_the_nodes(cd, pb):
    """kubelet sends no hostname for some pods; their names may be longer than a host name can be
    (64 bytes). Such a pod, as with containerd, gets the node's host name: in its UTS namespace, in
    /etc/hostname and in $HOSTNAME."""
    d = cd
    name = "deployment-with-a-long-name-7d9f8b6c5d-" + "x" * 29
    assert len(name) == 68
    pod = make_pod(d, pb, name=name, host_network=False, hostname="")
    script = 'echo "H=$HOSTNAME"; hostname; cat /etc/hostname'
    _, out, _, _ = run_to_exit(d, pb, pod, "host", ["sh", "-c", script])
    node = socket.gethostname()
    assert out.splitlines() == ["H=" + node, node, node]


def test_log_format_streams_and_long_lines(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="logs")
    t0 = time.time()
    script = ("echo out1; echo err1 >&2; echo; echo 'spaces  inside '; "
              "head -c 100000 /dev/zero | tr '\\0' a; echo; echo out2; echo err2 >&2")
    st, out, err, _ = run_to_exit(d, pb, pod, "talker", ["sh", "-c", script])
    assert st.exit_code == 0
    recs = records(os.path.join(pod.config.log_directory, "talker_0.log"))
    for ts, _, _, _ in recs:
        assert t0 - 5 <= ts <= time.time() + 5
    assert err == "err1\nerr2\n"
    assert out == "out1\n\nspaces  inside \n" + "a" * 100000 + "\nout2\n"
    # The 100 KB line: P records of at most 16 KiB, then the F record that ends it. Its newline
    # comes from another command (echo, after tr), so that F may be an empty one.
    stdout = [r for r in recs if r[1] == "stdout"]
    first = next(i for i, r in enumerate(stdout) if set(r[3]) == {"a"})
    last = next(i for i in range(first, len(stdout)) if stdout[i][2] == "F")
    long_ = stdout[first:last + 1]
    assert len(long_) >= 7
    assert [r[2] for r in long_] == ["P"] * (len(long_) - 1) + ["F"]
    assert all(len(r[3]) <= 16384 for r in long_)
    assert "".join(r[3] for r in long_) == "a" * 100000
    # Short lines are single F records; times never go backwards within a stream.
    assert [r for r in stdout if r[3] == "out1"][0][2] == "F"
    for stream in ("stdout", "stderr"):
        times = [r[0] for r in recs if r[1] == stream]
        assert times == sorted(times)


def test_reopen_container_log(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="rotate")
    cfg = ctr_config(pb, "ticker", d.ref(), command=["sh", "-c", "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done"])
    cid = run(d, pb, pod, cfg)
    path = log_file(pod, cfg)
    wait_log(pod, cfg, "line3\n")
    os.rename(path, path + ".1")
    d.runtime().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=30)
    wait_until(lambda: os.path.exists(path) and len(text(records(path)).splitlines()) >= 3, 10,
               what="lines in the reopened log")
    stop(d, pb, cid, timeout=0)
    old = [int(l[4:]) for l in text(records(path + ".1")).splitlines()]
    new = [int(l[4:]) for l in text(settled_log(pod, cfg)).splitlines()]
    assert old and new
    assert max(old) < min(new)
    assert old + new == list(range(len(old) + len(new))), "lines lost or repeated across the reopen"
    remove(d, pb, cid)


TICKER = ["sh", "-c", "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done"]


def test_nested_log_path_and_a_log_directory_behind_a_symlink(cd, pb, tmp_path):
    """kubelet's log_path is "<container>/<attempt>.log": the directory is made when missing (0755,
    the file 0640), and used when kubelet made it. The pod's log_directory itself may lie behind a
    symlink (an operator's /var/log elsewhere): it is opened as any path is."""
    d = cd
    pod = make_pod(d, pb, name="nested")
    logs = pod.config.log_directory
    os.makedirs(os.path.join(logs, "made-by-kubelet"))
    for log_path in ("c/0.log", "made-by-kubelet/1.log", "a/b/c/2.log"):
        name = log_path.split("/")[0]
        st, out, _, cid = run_to_exit(d, pb, pod, name, ["echo", f"to {log_path}"], log_path=log_path)
        assert st.exit_code == 0 and out == f"to {log_path}\n"
        assert st.log_path == os.path.join(logs, log_path)
        assert os.stat(os.path.join(logs, log_path)).st_mode & 0o777 == 0o640
        assert os.stat(os.path.dirname(os.path.join(logs, log_path))).st_mode & 0o777 == 0o755
        remove(d, pb, cid)

    real = tmp_path / "real-logs"
    real.mkdir()
    cfg = pod_config(pb, name="linkeddir", host_network=True)
    cfg.log_directory = os.path.join(d.dir, "logs-link")
    os.symlink(real, cfg.log_directory)
    linked = Pod(d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id, cfg)
    st, out, _, cid = run_to_exit(d, pb, linked, "c", ["echo", "through the operator's link"], log_path="c/0.log")
    assert st.exit_code == 0 and out == "through the operator's link\n"
    assert text(records(str(real / "c" / "0.log"))) == "through the operator's link\n"
    remove(d, pb, cid)


def outside_dir(tmp_path):
    """A directory outside every pod's log directory, holding one file that must stay as it is."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "existing.log").write_text("keep\n")
    return outside


def nothing_written_in(outside):
    assert listdir(outside) == ["existing.log"], listdir(outside)
    assert (outside / "existing.log").read_text() == "keep\n"


def test_log_path_through_a_symlink_is_refused(cd, pb, tmp_path):
    """The log is opened beneath the pod's log directory following no symlink, so that whoever can
    write in that directory (a container with it mounted) cannot make rktlet create or fill files
    elsewhere. A symlink anywhere in log_path, a directory or the file itself, dangling or not:
    StartContainer, where the log is opened, is FAILED_PRECONDITION naming log_path; the container
    stays CREATED with no unit, and nothing is written, nor made, where the symlink points."""
    d = cd
    pod = make_pod(d, pb, name="loglinks")
    logs = pod.config.log_directory
    outside = outside_dir(tmp_path)
    os.symlink(outside, os.path.join(logs, "dirlink"))
    os.symlink(outside / "existing.log", os.path.join(logs, "file.log"))
    os.symlink(outside / "new.log", os.path.join(logs, "dangling.log"))
    os.makedirs(os.path.join(logs, "c"))
    os.symlink("../dirlink", os.path.join(logs, "c", "up"))  # relative, and through another symlink
    for i, log_path in enumerate(("dirlink/x.log", "dirlink/new/x.log", "file.log", "dangling.log", "c/up/0.log")):
        cfg = ctr_config(pb, f"link{i}", d.ref(), command=["echo", "leaked"], log_path=log_path)
        cid = create(d, pb, pod, cfg)
        with pytest.raises(grpc.RpcError) as e:
            start(d, pb, cid)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (log_path, e.value.code(), e.value.details())
        for word in ("log_path", f"'{log_path}'", "symlink", logs):
            assert word in e.value.details(), (word, e.value.details())
        assert cstatus(d, pb, cid).status.state == pb.CONTAINER_CREATED
        assert unit_of(cid) not in units("rktlet-ctr-")
        nothing_written_in(outside)
        remove(d, pb, cid)
    nothing_written_in(outside)
    assert not os.path.exists(outside / "new")


def test_reopen_container_log_through_a_symlink_is_refused(cd, pb, tmp_path):
    """ReopenContainerLog after the log file was renamed and a symlink put in its place: refused,
    nothing written where it points, the output still going to the old file; once the symlink is
    gone, a reopen succeeds and no line is lost or repeated across the three files."""
    d = cd
    pod = make_pod(d, pb, name="rotlink")
    outside = outside_dir(tmp_path)
    cfg = ctr_config(pb, "ticker", d.ref(), command=TICKER, log_path="ticker/0.log")
    cid = run(d, pb, pod, cfg)
    path = log_file(pod, cfg)
    wait_log(pod, cfg, "line3\n")
    os.rename(path, path + ".1")
    os.symlink(outside / "stolen.log", path)
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=30)
    # Not the daemon's fault: the caller's file is not one rktlet will write through.
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.value.code(), e.value.details())
    assert path in e.value.details() and "goes through a symlink" in e.value.details(), e.value.details()
    seen = len(text(records(path + ".1")).splitlines())
    wait_until(lambda: len(text(records(path + ".1")).splitlines()) >= seen + 3, 10,
               what="lines going on into the old file after the refused reopen")
    nothing_written_in(outside)
    assert os.path.islink(path)

    os.unlink(path)
    d.runtime().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=30)
    wait_until(lambda: len(text(records(path)).splitlines()) >= 3, 10, what="lines in the reopened log")
    stop(d, pb, cid, timeout=0)
    old = [int(l[4:]) for l in text(records(path + ".1")).splitlines()]
    new = [int(l[4:]) for l in text(settled_log(pod, cfg)).splitlines()]
    assert old and new and max(old) < min(new)
    assert old + new == list(range(len(old) + len(new))), "lines lost or repeated across the reopens"
    nothing_written_in(outside)
    remove(d, pb, cid)


def test_a_record_without_its_log_directory_still_opens_beneath_the_pods(cd, make_daemon, pb, tmp_path):
    """Records written before rktlet kept the log directory apart hold the absolute log path only.
    Read back, the log is opened beneath the pod's log directory all the same: a symlink in the
    log_path kubelet gave is refused, not followed as part of a directory taken for the base."""
    d = cd
    pod = make_pod(d, pb, name="oldrec")
    logs = pod.config.log_directory
    outside = outside_dir(tmp_path)
    linked = create(d, pb, pod, ctr_config(pb, "linked", d.ref(), command=["echo", "leaked"], log_path="dirlink/x.log"))
    fine = create(d, pb, pod, ctr_config(pb, "fine", d.ref(), command=["echo", "old record"], log_path="fine/0.log"))
    assert d.stop() == 0
    for cid in (linked, fine):
        record = os.path.join(d.dir, "lib", "containers", cid, "state.json")
        with open(record) as f:
            state = json.load(f)
        assert state.pop("logDirectory") == logs
        with open(record, "w") as f:
            json.dump(state, f)
    os.symlink(outside, os.path.join(logs, "dirlink"))

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        with pytest.raises(grpc.RpcError) as e:
            start(d2, pb, linked)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.value.code(), e.value.details())
        assert "'dirlink/x.log'" in e.value.details(), e.value.details()
        nothing_written_in(outside)
        start(d2, pb, fine)
        assert wait_state(d2, pb, fine, pb.CONTAINER_EXITED).exit_code == 0
        wait_until(lambda: text(records(os.path.join(logs, "fine", "0.log"))) == "old record\n", 10,
                   what="the old record's container's output")
        for cid in (linked, fine):
            remove(d2, pb, cid)
    finally:
        cleanup(d2, pb)


# --- stopping and removing -------------------------------------------------------------------------

def test_stop_sends_the_image_stop_signal(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="signals")
    script = ("trap 'echo got-USR1; exit 0' USR1; trap 'echo got-TERM; exit 0' TERM; "
              "trap 'echo got-USR2; exit 0' USR2; echo ready; sleep 1000 & wait")
    cfgs = {"usr1": ctr_config(pb, "usr1", d.ref("usr1"), command=["sh", "-c", script]),
            "term": ctr_config(pb, "term", d.ref(), command=["sh", "-c", script]),
            # kubelet's stop signal (the pod's lifecycle.stopSignal) wins over the image's.
            "usr2": ctr_config(pb, "usr2", d.ref("usr1"), command=["sh", "-c", script], stop_signal=pb.SIGUSR2)}
    ids = {n: run(d, pb, pod, c) for n, c in cfgs.items()}
    for n, c in cfgs.items():
        wait_log(pod, c, "ready")
        began = time.time_ns()
        stop(d, pb, ids[n], timeout=10)
        # It exited of the signal it handled (a SIGKILL at the end of the grace period would say 137).
        st = cstatus(d, pb, ids[n]).status
        assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0 and st.reason == "Completed"
        assert st.finished_at >= began
    assert text(settled_log(pod, cfgs["usr1"])) == "ready\ngot-USR1\n"
    assert text(settled_log(pod, cfgs["term"])) == "ready\ngot-TERM\n"
    assert text(settled_log(pod, cfgs["usr2"])) == "ready\ngot-USR2\n"
    assert [cstatus(d, pb, ids[n]).status.stop_signal for n in ("usr1", "term", "usr2")] == \
        [pb.SIGUSR1, pb.SIGTERM, pb.SIGUSR2]


def test_stop_kills_after_the_timeout(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="stubborn")
    # It notes SIGTERM, says it goes on, and goes on: only SIGKILL ends it.
    cfg = ctr_config(pb, "stubborn", d.ref(), command=[
        "sh", "-c", "trap 'echo got-TERM; t=1' TERM; echo ready; "
                    "while :; do sleep 0.1; if [ \"$t\" = 1 ]; then echo still-running; t=2; fi; done"])
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    pid = main_pid(cid)
    began = time.time_ns()
    stop(d, pb, cid, timeout=2)
    st = cstatus(d, pb, cid).status
    assert st.state == pb.CONTAINER_EXITED
    assert st.exit_code == 137 and st.reason == "Error"  # 128 + SIGKILL
    assert not os.path.exists(f"/proc/{pid}")
    # The stop signal came first and the container ran on after it; SIGKILL came once the 2 s grace
    # period was over (and it does come: within 5 times that).
    assert text(settled_log(pod, cfg)) == "ready\ngot-TERM\nstill-running\n"
    assert began + 2_000_000_000 <= st.finished_at <= began + 10_000_000_000
    # Idempotent, and without waiting for a grace period: one of an hour still answers within the
    # call's deadline, and changes nothing.
    d.runtime().StopContainer(pb.StopContainerRequest(container_id=cid, timeout=3600), timeout=T)
    assert cstatus(d, pb, cid).status == st
    remove(d, pb, cid)


def test_remove_a_running_container_stops_it(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="rm")
    cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE)
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    pid = main_pid(cid)
    remove(d, pb, cid)
    assert not os.path.exists(f"/proc/{pid}")
    assert unit_of(cid) not in units("rktlet-ctr-")
    assert list_ids(d, pb) == []
    assert listdir(os.path.join(d.dir, "lib", "containers")) == []
    assert mounts_under(os.path.join(d.dir, "run", "containers")) == []


def version_latencies(d, pb, n):
    out = []
    rt = d.runtime()
    for _ in range(n):
        t = time.perf_counter()
        rt.Version(pb.VersionRequest(), timeout=10)
        out.append(time.perf_counter() - t)
    return out


def test_removing_a_big_writable_layer_does_not_stall_the_daemon(cd, pb):
    """A container that wrote 200 MB in 20,000 files (its upper directory) is removed while a client
    calls Version in a loop: the tree is deleted by a child, off the loop, so no Version waits for it.
    The latencies are printed against an idle run's; only a generous bound is asserted (a deletion
    on the loop stalled every call for the whole of it: 650 ms here, with gcc)."""
    d = cd
    pod = make_pod(d, pb, name="bigupper")
    cid = run(d, pb, pod, ctr_config(pb, "writer", d.ref(), command=SERVICE))
    upper = os.path.join(d.dir, "lib", "containers", cid, "upper")
    chunk = b"\0" * 10240
    for i in range(200):
        sub = os.path.join(upper, f"d{i}")
        os.makedirs(sub)
        for j in range(100):
            with open(os.path.join(sub, f"f{j}"), "wb") as f:
                f.write(chunk)
    subprocess.run(["sync"], check=True)
    idle = version_latencies(d, pb, 200)
    stop(d, pb, cid, timeout=10)
    during, done = [], threading.Event()

    def caller():
        while not done.is_set():
            during.extend(version_latencies(d, pb, 1))
    t = threading.Thread(target=caller)
    t.start()
    try:
        began = time.monotonic()
        remove(d, pb, cid)
        removed = time.monotonic() - began
        wait_until(lambda: not trashed(d, cid), 120, interval=0.01, what="the trash to be deleted")
        deleted = time.monotonic() - began
    finally:
        done.set()
        t.join()
    idle.sort()
    during.sort()
    med = idle[len(idle) // 2]
    print(f"\nVersion while 200 MB in 20,000 files are deleted: {len(during)} calls, median "
          f"{during[len(during) // 2] * 1e3:.2f} ms, max {during[-1] * 1e3:.2f} ms; idle: median {med * 1e3:.2f} ms, "
          f"max {idle[-1] * 1e3:.2f} ms; RemoveContainer {removed * 1e3:.0f} ms, the tree gone after "
          f"{deleted * 1e3:.0f} ms; max/idle median {during[-1] / med:.1f}")
    assert len(during) >= 5, "the deletion ended before the client could call"
    assert during[-1] < max(0.25, 50 * med), f"a Version call waited {during[-1] * 1e3:.0f} ms"
    nothing_left_of(d, cid)


def test_unknown_ids(cd, pb):
    d = cd
    unknown = "0" * 64
    stop(d, pb, unknown, timeout=1)  # the CRI: nothing to stop is not an error
    remove(d, pb, unknown)
    for call, req in (("ContainerStatus", pb.ContainerStatusRequest(container_id=unknown)),
                      ("StartContainer", pb.StartContainerRequest(container_id=unknown))):
        with pytest.raises(grpc.RpcError) as e:
            getattr(d.runtime(), call)(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, call


def test_create_errors_create_nothing(cd, pb, tmp_path):
    d = cd
    pod = make_pod(d, pb, name="errs")

    def fails(code, cfg, pod_=pod):
        with pytest.raises(grpc.RpcError) as e:
            create(d, pb, pod_, cfg)
        assert e.value.code() == code, e.value.details()
        assert e.value.details()
        return e.value.details()

    fails(grpc.StatusCode.NOT_FOUND, ctr_config(pb, "noimage", d.ref().rsplit(":", 1)[0] + ":not-pulled"))
    fails(grpc.StatusCode.NOT_FOUND, ctr_config(pb, "nopod", d.ref()), Pod("f" * 64, pod.config))
    fails(grpc.StatusCode.INVALID_ARGUMENT, ctr_config(pb, "relctr", d.ref(),
                                                       mounts=[{"container_path": "rel/x", "host_path": str(tmp_path)}]))
    fails(grpc.StatusCode.INVALID_ARGUMENT, ctr_config(pb, "relhost", d.ref(),
                                                       mounts=[{"container_path": "/x", "host_path": "rel/x"}]))
    nometa = ctr_config(pb, "nometa", d.ref())
    nometa.ClearField("metadata")
    fails(grpc.StatusCode.INVALID_ARGUMENT, nometa)

    first = create(d, pb, pod, ctr_config(pb, "dup", d.ref()))
    details = fails(grpc.StatusCode.ALREADY_EXISTS, ctr_config(pb, "dup", d.ref()))
    # It names what exists, as kubelet's log shows it: the container that has the name, the name
    # and attempt, and the pod.
    assert first in details and "'dup'" in details and "attempt 0" in details and pod.id in details, details
    # Another attempt is another container; by image id works too.
    second = create(d, pb, pod, ctr_config(pb, "dup", d.image().id, attempt=1))
    assert cstatus(d, pb, second).status.image_id == d.image().id
    assert list_ids(d, pb) == sorted([first, second])
    assert listdir(os.path.join(d.dir, "lib", "containers")) == sorted([first, second])
    assert listdir(os.path.join(d.dir, "run", "containers")) == sorted([first, second])


def test_create_rejects_bad_fields_and_leaves_nothing(cd, pb, tmp_path):
    """Each bad field of a ContainerConfig is refused, with INVALID_ARGUMENT (NOT_FOUND for a host
    device that does not exist) and a message naming the field and the value, and nothing is left
    of the attempt: no record, no bundle, no mount, no unit."""
    d = cd
    pod = make_pod(d, pb, name="badfields")
    lib, run_dir = os.path.join(d.dir, "lib", "containers"), os.path.join(d.dir, "run", "containers")
    not_a_device = tmp_path / "regular-file"
    not_a_device.write_text("")

    def device(host, container="/dev/x", permissions="rwm"):
        return pb.Device(host_path=host, container_path=container, permissions=permissions)

    def fails(code, cfg, *words):
        with pytest.raises(grpc.RpcError) as e:
            create(d, pb, pod, cfg)
        assert e.value.code() == code, (e.value.code(), e.value.details())
        for w in words:
            assert w in e.value.details(), (w, e.value.details())
        assert listdir(lib) == [] and listdir(run_dir) == []
        assert mounts_under(run_dir) == []
        assert units("rktlet-ctr-") == []

    bad = grpc.StatusCode.INVALID_ARGUMENT
    fails(bad, ctr_config(pb, "up", d.ref(), log_path="../up.log"), "log_path", "'../up.log'")
    fails(bad, ctr_config(pb, "mid", d.ref(), log_path="a/../../mid.log"), "log_path", "'a/../../mid.log'")
    fails(bad, ctr_config(pb, "abs", d.ref(), log_path="/var/log/abs.log"), "log_path", "'/var/log/abs.log'")
    fails(bad, ctr_config(pb, "wd", d.ref(), working_dir="rel/dir"), "working_dir", "'rel/dir'")
    fails(bad, ctr_config(pb, "envempty", d.ref(), envs={"": "x"}), "environment variable", "''")
    fails(bad, ctr_config(pb, "enveq", d.ref(), envs={"A=B": "x"}), "environment variable", "'A=B'")
    fails(grpc.StatusCode.NOT_FOUND, ctr_config(pb, "nodev", d.ref(), devices=[device("/dev/no-such-device")]),
          "device", "/dev/no-such-device")
    fails(bad, ctr_config(pb, "notdev", d.ref(), devices=[device(str(not_a_device))]), "device", str(not_a_device))
    fails(bad, ctr_config(pb, "reldev", d.ref(), devices=[device("dev/null")]), "device", "dev/null")
    fails(bad, ctr_config(pb, "perm", d.ref(), devices=[device("/dev/null", permissions="rwx")]),
          "device", "/dev/null", "permissions", "'rwx'")
    fails(bad, ctr_config(pb, "perm2", d.ref(), devices=[device("/dev/null", permissions="rrw")]),
          "permissions", "'rrw'")
    fails(bad, ctr_config(pb, "sig", d.ref(), stop_signal=999), "stop_signal", "999")

    # What is well-formed passes: '..' inside a file name is no '..' component; a device with the
    # permissions kubelet gives, or none (rwm).
    st, out, err, cid = run_to_exit(d, pb, pod, "fine", ["sh", "-c", "ls -l /dev/x /dev/y"], log_path="fine..0.log",
                                    devices=[device("/dev/null", "/dev/x", "rw"), device("/dev/zero", "/dev/y", "")])
    assert st.exit_code == 0, err
    assert st.log_path == os.path.join(pod.config.log_directory, "fine..0.log")
    lines = out.splitlines()
    assert re.fullmatch(r"crw-rw-rw- .* 1, +3 .* /dev/x", lines[0]), out  # /dev/null's major and minor
    assert re.fullmatch(r"crw-rw-rw- .* 1, +5 .* /dev/y", lines[1]), out  # /dev/zero's
    remove(d, pb, cid)


def test_ambiguous_id_prefixes(cd, pb):
    """An id prefix that more than one pod or container has is INVALID_ARGUMENT naming the prefix,
    in every call that takes an id (not NOT_FOUND, and not a silent success for Stop and Remove);
    nothing is created, stopped or removed. A unique prefix names its object."""
    d = cd

    def two_sharing_a_first_digit(make):
        # Ids are random: among 17, two start alike (16 hex digits).
        seen = {}
        for i in range(17):
            obj_id = make(i)
            if obj_id[0] in seen:
                return seen[obj_id[0]], obj_id
            seen[obj_id[0]] = obj_id
        raise AssertionError("17 ids with 17 different first hex digits")

    def unique_prefix(obj_id, ids):
        n = 1
        while any(o != obj_id and o.startswith(obj_id[:n]) for o in ids):
            n += 1
        return obj_id[:n]

    pods = {}

    def new_pod(i):
        p = make_pod(d, pb, name=f"amb{i}")
        pods[p.id] = p
        return p.id

    p1, p2 = two_sharing_a_first_digit(new_pod)
    prefix = os.path.commonprefix([p1, p2])
    with pytest.raises(grpc.RpcError) as e:
        create(d, pb, pods[p1]._replace(id=prefix), ctr_config(pb, "c", d.ref()))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert f"'{prefix}'" in e.value.details() and "ambiguous" in e.value.details(), e.value.details()
    assert list_ids(d, pb) == [] and listdir(os.path.join(d.dir, "lib", "containers")) == []
    # A prefix that only one of them has names that one.
    cid = create(d, pb, pods[p1]._replace(id=unique_prefix(p1, pods)), ctr_config(pb, "c", d.ref()))
    assert d.runtime().ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=10).status.id == cid
    assert list_ids(d, pb, pod_sandbox_id=p1) == [cid]

    pod = pods[p1]
    c1, c2 = two_sharing_a_first_digit(
        lambda i: run(d, pb, pod, ctr_config(pb, f"c{i}", d.ref(), command=["sleep", "1000"])))
    prefix = os.path.commonprefix([c1, c2])
    before = {c: cstatus(d, pb, c).status for c in (c1, c2)}
    calls = {"ContainerStatus": pb.ContainerStatusRequest(container_id=prefix),
             "StartContainer": pb.StartContainerRequest(container_id=prefix),
             "StopContainer": pb.StopContainerRequest(container_id=prefix, timeout=0),
             "RemoveContainer": pb.RemoveContainerRequest(container_id=prefix),
             "ReopenContainerLog": pb.ReopenContainerLogRequest(container_id=prefix)}
    for name, req in calls.items():
        with pytest.raises(grpc.RpcError) as e:
            getattr(d.runtime(), name)(req, timeout=T)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, e.value.details())
        assert f"'{prefix}'" in e.value.details() and "ambiguous" in e.value.details(), (name, e.value.details())
    assert {c: cstatus(d, pb, c).status for c in (c1, c2)} == before
    assert all(before[c].state == pb.CONTAINER_RUNNING for c in (c1, c2))
    assert cstatus(d, pb, unique_prefix(c1, list_ids(d, pb))).status.id == c1


def test_list_filters(cd, pb):
    d = cd
    p1 = make_pod(d, pb, name="l1")
    p2 = make_pod(d, pb, name="l2")
    running = run(d, pb, p1, ctr_config(pb, "running", d.ref(), command=SERVICE, labels={"app": "x", "tier": "1"}))
    created = create(d, pb, p1, ctr_config(pb, "created", d.ref(), labels={"app": "x", "tier": "2"}))
    exited = run(d, pb, p2, ctr_config(pb, "exited", d.ref(), command=["true"], labels={"app": "y"}))
    wait_state(d, pb, running, pb.CONTAINER_RUNNING)
    wait_state(d, pb, exited, pb.CONTAINER_EXITED)
    state = lambda s: pb.ContainerStateValue(state=s)  # noqa: E731
    assert list_ids(d, pb) == sorted([running, created, exited])
    assert list_ids(d, pb, id=running) == [running]
    assert list_ids(d, pb, id=created[:12]) == [created]
    assert list_ids(d, pb, id="f" * 64) == []
    assert list_ids(d, pb, pod_sandbox_id=p1.id) == sorted([running, created])
    assert list_ids(d, pb, pod_sandbox_id=p2.id) == [exited]
    assert list_ids(d, pb, state=state(pb.CONTAINER_RUNNING)) == [running]
    assert list_ids(d, pb, state=state(pb.CONTAINER_CREATED)) == [created]
    assert list_ids(d, pb, state=state(pb.CONTAINER_EXITED)) == [exited]
    assert list_ids(d, pb, label_selector={"app": "x"}) == sorted([running, created])
    assert list_ids(d, pb, label_selector={"app": "x", "tier": "2"}) == [created]
    assert list_ids(d, pb, label_selector={"app": "z"}) == []
    assert list_ids(d, pb, pod_sandbox_id=p1.id, state=state(pb.CONTAINER_RUNNING)) == [running]
    # A unique prefix works where an id is expected.
    assert cstatus(d, pb, running[:10]).status.id == running


def test_removing_the_pod_removes_its_containers(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="owner")
    cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE)
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    pid = main_pid(cid)
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    assert cstatus(d, pb, cid).status.state == pb.CONTAINER_EXITED
    assert not os.path.exists(f"/proc/{pid}")
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    assert list_ids(d, pb) == []
    assert units("rktlet-ctr-") == []
    assert listdir(os.path.join(d.dir, "lib", "containers")) == []
    assert mounts_under(os.path.join(d.dir, "run")) == []


# --- security --------------------------------------------------------------------------------------

def test_default_capabilities_drop_add_and_privileged(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="caps")
    grep = ["grep", "^Cap", "/proc/self/status"]
    runs = {
        "default": dict(),
        "drop": dict(linux=security(pb, drop=["NET_RAW"])),
        "add": dict(linux=security(pb, add=["SYS_ADMIN"])),
        "privileged": dict(linux=security(pb, privileged=True)),
    }
    cfgs = {n: ctr_config(pb, n, d.ref(), command=grep, **kw) for n, kw in runs.items()}
    ids = {n: run(d, pb, pod, c) for n, c in cfgs.items()}
    caps = {}
    for n in runs:
        assert wait_state(d, pb, ids[n], pb.CONTAINER_EXITED).exit_code == 0, n
        caps[n] = caps_of(text(settled_log(pod, cfgs[n])))
    assert caps["default"]["CapEff"] == DEFAULT_CAPS, hex(caps["default"]["CapEff"])
    assert caps["default"]["CapBnd"] == DEFAULT_CAPS, hex(caps["default"]["CapBnd"])
    assert caps["drop"]["CapEff"] == DEFAULT_CAPS & ~(1 << CAP_NET_RAW), hex(caps["drop"]["CapEff"])
    assert caps["add"]["CapEff"] == DEFAULT_CAPS | (1 << CAP_SYS_ADMIN), hex(caps["add"]["CapEff"])
    # Privileged: every capability of the bounding set, which is the host's (as far as runc knows
    # capabilities: up to CAP_CHECKPOINT_RESTORE, 40).
    host_bnd = cap_bits(proc_status(os.getpid(), "CapBnd")) & ((1 << 41) - 1)
    bnd = caps["privileged"]["CapBnd"]
    assert host_bnd & ~bnd == 0, hex(bnd)
    assert caps["privileged"]["CapEff"] == bnd, hex(caps["privileged"]["CapEff"])


def test_run_as_user_and_image_user(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="users")
    _, out, _, _ = run_to_exit(d, pb, pod, "uid1000", ["id", "-u"], linux=security(pb, run_as_user=1000))
    assert out == "1000\n"
    _, out, _, _ = run_to_exit(d, pb, pod, "root", ["id", "-u"])
    assert out == "0\n"
    _, out, _, _ = run_to_exit(d, pb, pod, "image-user", ["id", "-u"], image="app-user")  # User "app" from /etc/passwd
    assert out == "1000\n"


def test_readonly_rootfs(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="ro")
    st, _, err, _ = run_to_exit(d, pb, pod, "ro", ["touch", "/x"], linux=security(pb, readonly_rootfs=True))
    assert st.exit_code != 0 and "Read-only file system" in err
    st, _, _, cid = run_to_exit(d, pb, pod, "rw", ["sh", "-c", "echo written > /x"])
    assert st.exit_code == 0
    # A writable root keeps its changes in the container's overlay upper directory.
    with open(os.path.join(ctr_dirs(d, cid)[0], "upper", "x")) as f:
        assert f.read() == "written\n"


def visible_mounts(mountinfo):
    """{mount point: (options, fstype)} of what a path shows: of mounts stacked on one point, the top."""
    entries = []
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        entries.append((fields[0], fields[1], fields[4], fields[5], fields[sep + 1]))
    covered = {(parent, point) for _, parent, point, _, _ in entries}
    return {point: (opts.split(","), fstype) for mid, _, point, opts, fstype in entries if (mid, point) not in covered}


def test_sys_and_cgroupfs_are_read_only_unless_privileged(cd, pb, tmp_path):
    """As Docker and containerd have it: /sys and /sys/fs/cgroup are read-only in a container that
    is not privileged (mkdir fails with EROFS at /sys/fs/cgroup itself, which on cgroup v1 is a
    tmpfs of the runtime's, and in a hierarchy), read-write in a privileged one, where a child
    cgroup of the container's own can be made (and is removed again at once). A mount the request
    puts at /sys/fs/cgroup is the request's, writable."""
    d = cd
    pod = make_pod(d, pb, name="cgroupfs")
    v1 = os.path.isdir("/sys/fs/cgroup/memory")  # a hybrid host: one mount per hierarchy below a tmpfs
    tries = ["/sys/fs/cgroup/x", "/sys/x"] + (["/sys/fs/cgroup/memory/x"] if v1 else [])
    # Pure cgroup v2 without a cgroup namespace shows the whole tree: a child only of the container's own.
    priv_tries = ["/sys/fs/cgroup/x", "/sys/fs/cgroup/memory/x"] if v1 else ["/sys/fs/cgroup$own/x"]
    script = ('own=$(sed -n "s/^0:://p" /proc/self/cgroup); cat /proc/self/mountinfo; echo ---; '
              'for p in {}; do if mkdir "$p"; then echo "made $p"; rmdir "$p" && echo "removed $p"; fi; done')
    checked = ["/sys", "/sys/fs/cgroup"] + (["/sys/fs/cgroup/memory"] if v1 else [])

    st, out, err, _ = run_to_exit(d, pb, pod, "plain", ["sh", "-c", script.format(" ".join(tries))])
    mountinfo, _, made = out.partition("---\n")
    mounts = visible_mounts(mountinfo)
    for point in checked:
        assert mounts[point][0][0] == "ro", (point, mounts[point])
    assert made == "", made
    for p in tries:
        assert f"can't create directory '{p}': Read-only file system" in err, (p, err)

    st, out, err, _ = run_to_exit(d, pb, pod, "privileged", ["sh", "-c", script.format(" ".join(priv_tries))],
                                  linux=security(pb, privileged=True))
    mountinfo, _, made = out.partition("---\n")
    mounts = visible_mounts(mountinfo)
    for point in checked:
        assert mounts[point][0][0] == "rw", (point, mounts[point])
    want = [re.escape(f"{w} {p}").replace(re.escape("$own"), "/.*") for p in priv_tries for w in ("made", "removed")]
    lines = made.splitlines()
    assert len(lines) == len(want) and all(re.fullmatch(w, line) for w, line in zip(want, lines)), (made, err)

    host = tmp_path / "cgroup-mount"
    host.mkdir()
    st, out, err, _ = run_to_exit(d, pb, pod, "mounted", ["sh", "-c", "echo mine > /sys/fs/cgroup/f"],
                                  mounts=[{"container_path": "/sys/fs/cgroup", "host_path": str(host)}])
    assert st.exit_code == 0, err
    assert (host / "f").read_text() == "mine\n"


def test_seccomp_runtime_default_and_unconfined(cd, pb):
    if "unshare" not in reg.busybox_applets():
        pytest.skip("this busybox has no unshare applet")
    host = subprocess.run(["unshare", "-U", "true"], capture_output=True, text=True, timeout=10)
    if host.returncode != 0:
        machine_skip(f"create user namespaces: {host.stderr.strip()}")
    d = cd
    pod = make_pod(d, pb, name="seccomp")
    cmd = ["unshare", "-U", "true"]
    st, _, _, _ = run_to_exit(d, pb, pod, "default", cmd, linux=security(pb, seccomp=pb.SecurityProfile.RuntimeDefault))
    assert st.exit_code != 0, "unshare(CLONE_NEWUSER) passed the RuntimeDefault seccomp profile"
    st, _, err, _ = run_to_exit(d, pb, pod, "unconfined", cmd, linux=security(pb, seccomp=pb.SecurityProfile.Unconfined))
    assert st.exit_code == 0, err


def test_mounts(cd, pb, tmp_path):
    d = cd
    pod = make_pod(d, pb, name="mounts")
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (rw / "in.txt").write_text("from the host\n")
    (ro / "keep").write_text("keep\n")
    script = ("cat /mnt/rw/in.txt; echo from-ctr > /mnt/rw/out.txt; "
              "if echo x > /mnt/ro/keep; then echo ro-writable; else echo ro-refused; fi")
    st, out, _, _ = run_to_exit(d, pb, pod, "m", ["sh", "-c", script], mounts=[
        {"container_path": "/mnt/rw", "host_path": str(rw)},
        {"container_path": "/mnt/ro", "host_path": str(ro), "readonly": True}])
    assert out == "from the host\nro-refused\n"
    assert (rw / "out.txt").read_text() == "from-ctr\n"
    assert (ro / "keep").read_text() == "keep\n"


# --- namespaces ------------------------------------------------------------------------------------

@needs_cni
def test_containers_of_a_pod_share_its_network(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="net", host_network=False, hostname="net-host")
    server = ctr_config(pb, "server", d.ref(), command=[
        "sh", "-c", "trap 'exit 0' TERM; nc -l -p 8080; echo server-done; sleep 1000 & wait"])
    sid = run(d, pb, pod, server)
    client = ctr_config(pb, "client", d.ref(), command=[
        "sh", "-c", "hostname; i=0; while [ $i -lt 100 ]; do echo hello-over-lo | nc 127.0.0.1 8080 && exit 0; "
                    "i=$((i+1)); sleep 0.1; done; exit 1"])
    cid = run(d, pb, pod, client)
    # Both are in the pod's network namespace, not the test's.
    st = wait_state(d, pb, cid, pb.CONTAINER_EXITED)
    assert st.exit_code == 0, text(settled_log(pod, client), "stderr")
    assert text(settled_log(pod, client)) == "net-host\n"
    wait_log(pod, server, "hello-over-lo\nserver-done\n")
    # The server is in the pod's network namespace, not the test's.
    pid = main_pid(sid)
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(ns_path(d, pod.id, "net")).st_ino
    assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    remove(d, pb, sid)


def test_shared_pid_namespace(cd, pb):
    d = cd
    shared = make_pod(d, pb, name="shared", share_pid=True)
    sleeper = run(d, pb, shared, ctr_config(pb, "sleeper", d.ref(), command=["sleep", "4242"]))
    wait_state(d, pb, sleeper, pb.CONTAINER_RUNNING)
    _, out, _, _ = run_to_exit(d, pb, shared, "ps", ["ps"])
    assert "sleep 4242" in out
    assert os.stat(f"/proc/{main_pid(sleeper)}/ns/pid").st_ino == os.stat(ns_path(d, shared.id, "pid")).st_ino

    private = make_pod(d, pb, name="private")
    other = run(d, pb, private, ctr_config(pb, "sleeper", d.ref(), command=["sleep", "4343"]))
    wait_state(d, pb, other, pb.CONTAINER_RUNNING)
    _, out, _, _ = run_to_exit(d, pb, private, "ps", ["ps"])
    assert "sleep 4343" not in out and "ps" in out
    stop(d, pb, sleeper, timeout=0)
    stop(d, pb, other, timeout=0)


# --- restart and scale -----------------------------------------------------------------------------

def test_sigkill_and_restart_keep_containers(cd, make_daemon, pb):
    d = cd
    pod = make_pod(d, pb, name="restart")
    svc_cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE)
    svc = run(d, pb, pod, svc_cfg)
    quitter = run(d, pb, pod, ctr_config(pb, "quitter", d.ref(), command=["sh", "-c", "sleep 2; exit 7"]))
    wait_log(pod, svc_cfg, "ready")
    wait_state(d, pb, quitter, pb.CONTAINER_RUNNING)
    svc_pid, quitter_pid = main_pid(svc), main_pid(quitter)
    assert svc_pid and quitter_pid
    d.kill()
    # The quitter ends while no daemon is there to see it.
    wait_until(lambda: not os.path.exists(f"/proc/{quitter_pid}"), 10, what="the quitter to exit")

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        assert list_ids(d2, pb) == sorted([svc, quitter])
        st = cstatus(d2, pb, svc).status
        assert st.state == pb.CONTAINER_RUNNING
        assert main_pid(svc) == svc_pid and os.path.exists(f"/proc/{svc_pid}")
        st = wait_state(d2, pb, quitter, pb.CONTAINER_EXITED)
        assert st.exit_code == 7 and st.reason == "Error"
        # The new daemon controls what the old one started: SIGTERM ends it (exit 0, where the
        # SIGKILL after the grace period would say 137), and the exit is the one of this stop.
        began = time.time_ns()
        stop(d2, pb, svc, timeout=10)
        st = cstatus(d2, pb, svc).status
        assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0 and st.reason == "Completed"
        assert st.finished_at >= began
        assert not os.path.exists(f"/proc/{svc_pid}")
        for c in (svc, quitter):
            remove(d2, pb, c)
        assert units("rktlet-ctr-") == []
        assert listdir(os.path.join(d.dir, "lib", "containers")) == []
    finally:
        cleanup(d2, pb)


def test_a_unit_gone_while_rktlet_was_down(cd, make_daemon, pb):
    """What rktlet cannot know: a running container's unit stopped and garbage-collected behind its
    back while the daemon was down, so that systemd has no exit status to give. As containerd does
    for a running container whose task is gone at restart, ContainerStatus says EXITED with the
    unknown exit code 255 and reason Unknown, finished when rktlet found out; the container is then
    removed cleanly."""
    d = cd
    pod = make_pod(d, pb, name="vanish")
    cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE)
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    pid = main_pid(cid)
    unit = unit_of(cid)
    assert d.stop() == 0
    subprocess.run(["systemctl", "--user", "stop", unit], check=True, capture_output=True, timeout=30)
    subprocess.run(["systemctl", "--user", "reset-failed", unit], capture_output=True, timeout=30)
    wait_until(lambda: unit not in units("rktlet-ctr-"), what=f"{unit} to be unloaded")
    assert not os.path.exists(f"/proc/{pid}")

    restarted = time.time_ns()
    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        st = wait_state(d2, pb, cid, pb.CONTAINER_EXITED)
        assert st.exit_code == 255 and st.reason == "Unknown", st
        assert st.message, st
        assert restarted <= st.finished_at <= time.time_ns()
        remove(d2, pb, cid)
        assert list_ids(d2, pb) == []
        nothing_left_of(d2, cid)
    finally:
        cleanup(d2, pb)


def test_status_while_systemd_cannot_say(cd, make_daemon, pb, user_manager_pid):
    """CONTAINER_UNKNOWN is the CRI's answer when the runtime cannot tell (containerd gives it to a
    container whose status it could not load at restart). A restarted rktlet knows a running
    container only from its record until systemd says what became of the unit: with systemd frozen
    and the unit gone behind rktlet's back, ContainerStatus and ListContainers must not claim
    RUNNING, they answer UNKNOWN (within the call's deadline: rktlet may first wait a while for
    systemd). Not sooner: kubelet kills and restarts an UNKNOWN container, so a restart with
    systemd answering must show RUNNING at once (test_sigkill_and_restart_keep_containers). Once
    systemd answers, the container is EXITED (unknown exit code 255) and is removed cleanly."""
    d = cd
    pod = make_pod(d, pb, name="unknown")
    cfg = ctr_config(pb, "svc", d.ref(), command=SERVICE)
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    unit = unit_of(cid)
    assert d.stop() == 0
    subprocess.run(["systemctl", "--user", "stop", unit], check=True, capture_output=True, timeout=30)
    wait_until(lambda: unit not in units("rktlet-ctr-"), what=f"{unit} to be unloaded")
    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    try:
        os.kill(user_manager_pid, signal.SIGSTOP)
        try:
            d2.start()
            st = cstatus(d2, pb, cid).status
            assert st.state == pb.CONTAINER_UNKNOWN, pb.ContainerState.Name(st.state)
            listed = d2.runtime().ListContainers(pb.ListContainersRequest(), timeout=30).containers
            assert [(c.id, c.state) for c in listed] == [(cid, pb.CONTAINER_UNKNOWN)]
        finally:
            os.kill(user_manager_pid, signal.SIGCONT)
        st = wait_state(d2, pb, cid, pb.CONTAINER_EXITED)
        assert st.exit_code == 255, st
        remove(d2, pb, cid)
        nothing_left_of(d2, cid)
    finally:
        cleanup(d2, pb)


def test_sigkill_during_create_leaves_nothing_half_made(cd, make_daemon, pb, shim):
    """The daemon dies in the middle of CreateContainer: its record says 'creating' and the overlay
    rootfs is mounted, but there is no config.json yet. The call fails UNAVAILABLE; the restarted
    daemon unmounts and deletes the half-made container, which no List ever showed, and the same
    name and attempt can be created again."""
    d = cd
    pod = make_pod(d, pb, name="createcrash")
    lib = os.path.join(d.dir, "lib", "containers")
    # The same daemon again (its directories, its pod, its image), with test_crash.py's shim
    # preloaded: it stops the daemon (SIGSTOP) just before the rename that would save the
    # container's config.json, after the mount child mounted the rootfs. Stopped, it cannot change
    # anything: what is on disk is what it had when it died.
    d.stop()
    pidfile = os.path.join(d.dir, "stopped.pid")
    run = os.path.join(d.dir, "run", "containers") + "/"
    env = dict(os.environ, LD_PRELOAD=shim, STOP_AT=f"rename:before:main:1:{run}:/config.json:64",
               STOP_AT_PIDFILE=pidfile,
               ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":"))
    ds = make_daemon("rktlet", start=False, env=env, **d.kwargs)
    ds.kwargs, ds.ref = d.kwargs, d.ref
    ds.start()
    cfg = ctr_config(pb, "half", d.ref(), command=["sleep", "1000"])
    pending = ds.runtime().CreateContainer.future(
        pb.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg, sandbox_config=pod.config), timeout=T)
    wait_until(lambda: os.path.exists(pidfile) and proc_status(ds.pid, "State") == "T (stopped)",
               what="the shim to stop the daemon before it saves config.json")
    cid = next(c for c in listdir(lib) if os.path.exists(os.path.join(lib, c, "state.json")))
    d = ds
    assert state_of(d, cid)["creating"] and os.path.ismount(os.path.join(d.dir, "run", "containers", cid, "rootfs"))
    try:
        assert state_of(d, cid)["state"] == "created" and state_of(d, cid)["rootfsMounted"] is True
        assert not os.path.exists(os.path.join(d.dir, "run", "containers", cid, "config.json"))
        assert not pending.done()
    finally:
        kill_with_call_pending(d, pending)

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    d2.ref = d.ref  # the image is in the store the daemons share
    try:
        wait_until(lambda: cid not in listdir(lib), what="the half-made container to be deleted")
        nothing_left_of(d2, cid)
        assert list_ids(d2, pb) == []
        # Nothing holds its name: the same name and attempt are created and run.
        st, out, _, again = run_to_exit(d2, pb, pod, "half", ["echo", "again"])
        assert again != cid and st.exit_code == 0 and out == "again\n"
        remove(d2, pb, again)
        nothing_left_of(d2, again)
    finally:
        cleanup(d2, pb)


def test_sigkill_during_start_before_systemd_has_the_unit(cd, make_daemon, pb, user_manager_pid):
    """The daemon dies in StartContainer after its record says the unit is being started
    (unitStarted) but before systemd made it: the record says started, systemd has no such unit.
    The call fails UNAVAILABLE; the restarted daemon finds the start never happened: a StartError
    (EXITED, exit code 128, never started), which is removed cleanly."""
    d = cd
    pod = make_pod(d, pb, name="startcrash")
    cid = create(d, pb, pod, ctr_config(pb, "sleeper", d.ref(), command=["sleep", "1000"]))
    unit = unit_of(cid)
    os.kill(user_manager_pid, signal.SIGSTOP)
    try:
        pending = d.runtime().StartContainer.future(pb.StartContainerRequest(container_id=cid), timeout=T)
        wait_until(lambda: state_of(d, cid).get("unitStarted"), what="the record to say unitStarted")
        assert not pending.done()
        kill_with_call_pending(d, pending)
    finally:
        os.kill(user_manager_pid, signal.SIGCONT)
    # Whatever systemd makes of the request of a client that is gone, the unit is not there: the
    # record says started, systemd has no such unit.
    subprocess.run(["systemctl", "--user", "stop", unit], capture_output=True, timeout=30)
    subprocess.run(["systemctl", "--user", "reset-failed", unit], capture_output=True, timeout=30)
    wait_until(lambda: show(unit, "LoadState") == "not-found", what=f"{unit} to be gone")

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        st = wait_state(d2, pb, cid, pb.CONTAINER_EXITED)
        assert st.reason == "StartError" and st.exit_code == 128, st
        assert st.started_at == 0 and st.message == "rktlet stopped while starting it, and systemd never ran it", st
        assert list_ids(d2, pb) == [cid]
        remove(d2, pb, cid)
        nothing_left_of(d2, cid)
    finally:
        cleanup(d2, pb)


def test_sigkill_during_start_after_systemd_started_it(cd, make_daemon, pb, user_manager_pid):
    """The daemon dies in StartContainer after systemd started the unit but before the daemon heard
    of it: the record still says created. The call fails UNAVAILABLE; the restarted daemon asks
    systemd and finds the container running (its main process, its start time), and can stop and
    remove it."""
    d = cd
    pod = make_pod(d, pb, name="startcrash2")
    cid = create(d, pb, pod, ctr_config(pb, "sleeper", d.ref(), command=["sleep", "1000"]))
    unit = unit_of(cid)
    os.kill(user_manager_pid, signal.SIGSTOP)
    frozen = True
    try:
        pending = d.runtime().StartContainer.future(pb.StartContainerRequest(container_id=cid), timeout=T)
        wait_until(lambda: state_of(d, cid).get("unitStarted"), what="the record to say unitStarted")
        # One more call answered: the start's handler has returned, its StartTransientUnit is sent.
        d.runtime().Version(pb.VersionRequest(), timeout=10)
        d.send_signal(signal.SIGSTOP)  # it does not hear what systemd does now
        os.kill(user_manager_pid, signal.SIGCONT)
        frozen = False
        wait_until(lambda: show(unit, "ActiveState") == "active", timeout=30, what=f"{unit} to be active")
        pid = main_pid(cid)
        assert cmdline(pid) == ["sleep", "1000"]
        assert state_of(d, cid)["state"] == "created" and not pending.done()
        kill_with_call_pending(d, pending)
    finally:
        if frozen:
            os.kill(user_manager_pid, signal.SIGCONT)
        if not d.stopped:
            d.kill()  # stopped (SIGSTOP), it would not answer SIGTERM

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        st = wait_state(d2, pb, cid, pb.CONTAINER_RUNNING)
        assert st.started_at == unit_usec(unit, "ExecMainStartTimestamp") * 1000
        assert main_pid(cid) == pid and os.path.exists(f"/proc/{pid}")
        stop(d2, pb, cid, timeout=0)
        st = cstatus(d2, pb, cid).status
        assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137, st
        assert not os.path.exists(f"/proc/{pid}")
        remove(d2, pb, cid)
        nothing_left_of(d2, cid)
    finally:
        cleanup(d2, pb)


def test_30_containers_concurrently_leave_nothing_behind(cd, pb):
    d = cd
    pods = [make_pod(d, pb, name=f"scale{i}") for i in range(10)]
    errors = []

    def life(pod, i):
        try:
            stub = d.runtime()
            cfg = ctr_config(pb, f"c{i}", d.ref(), command=SERVICE)
            cid = stub.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg,
                                                                 sandbox_config=pod.config), timeout=T).container_id
            stub.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
            st = stub.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=30).status
            assert st.state == pb.CONTAINER_RUNNING, st
            wait_log(pod, cfg, "ready")
            stub.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=T)
            st = stub.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=30).status
            assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0, st
            stub.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"container {i}: {e!r}")

    threads = [threading.Thread(target=life, args=(pods[i % 10], i)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list_ids(d, pb) == []
    assert units("rktlet-ctr-") == []
    for p in pods:
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=T)
    assert mounts_under(os.path.join(d.dir, "run")) == []
    assert listdir(os.path.join(d.dir, "lib", "containers")) == []
    assert listdir(os.path.join(d.dir, "run", "containers")) == []
    assert listdir(os.path.join(d.dir, "run", "runc")) == []
    assert runtime_processes() == []


def test_tty_container_gets_a_terminal(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="tty")
    st, out, err, _ = run_to_exit(d, pb, pod, "tty", ["sh", "-c", "[ -t 1 ] && [ -t 2 ] && echo is-a-tty; echo to-err >&2"],
                                  tty=True)
    assert st.exit_code == 0, (out, err)
    # One terminal for both streams: everything is stdout in the log, with the terminal's CRLF.
    assert "is-a-tty" in out and "to-err" in out and err == ""
    st, out, _, _ = run_to_exit(d, pb, pod, "notty", ["sh", "-c", "[ -t 1 ] || echo no-tty"])
    assert out == "no-tty\n"


def test_stdin_stays_open_for_attach(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="stdin")
    # Without stdin, the container's stdin is /dev/null: cat ends at once.
    st, out, _, _ = run_to_exit(d, pb, pod, "nostdin", ["sh", "-c", "cat; echo eof"])
    assert out == "eof\n" and st.exit_code == 0
    # With stdin, rktlet holds the writable end: cat waits for input.
    cfg = ctr_config(pb, "stdin", d.ref(), command=["sh", "-c", "echo started; cat; echo eof"], stdin=True)
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "started")
    sh = main_pid(cid)
    cat = wait_until(lambda: next((p for p in children(sh) if cmdline(p) == ["cat"]), None),
                     what="the container's cat")
    pipe = os.readlink(f"/proc/{cat}/fd/0")
    assert pipe.startswith("pipe:"), pipe
    assert writable_fds(d.pid, pipe), f"rktlet holds no writable end of the container's stdin {pipe}"
    wait_until(lambda: blocked_reading(cat, 0), what="cat to wait for input on its stdin")
    assert cstatus(d, pb, cid).status.state == pb.CONTAINER_RUNNING
    assert "eof" not in text(records(log_file(pod, cfg)))
    stop(d, pb, cid, timeout=0)
