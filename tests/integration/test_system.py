"""The Debian package under systemd as PID 1, on the system bus: the production path.

A Debian 12 tree (debootstrap, cached; tests/integration/system-prepare makes it and the packages)
is copied and boots with `systemd-nspawn -b`, in the harness's
namespaces: its network namespace is the harness's, so the booted system reaches the test registry
on loopback and the pods' bridge is made there, never on the host. In it: `apt install` of the
package, the socket-activated daemon running a pod and a container through the project's Go client
(grpc-go, dialing as kubelet does) and crictl where it exists, `systemctl status` and `journalctl -u
rktlet`, an upgrade that restarts the daemon while the container runs and its log goes on, and a
purge that leaves no unit, mount, address or state.

Runs only when asked (RKTLET_SYSTEM=1, as `scripts/test` and `scripts/test --system` do after
system-prepare printed RKTLET_SYSTEM_TREE, RKTLET_SYSTEM_DEB and RKTLET_SYSTEM_UPGRADE_DEB)."""
import json
import os
import shutil
import subprocess
import time

import pytest

import gocri
import registry as reg
import rktlet_test
from rktlet_test import machine_skip, wait_until
from test_images import registries_config

SOCKET = "/run/rktlet/rktlet.sock"
CRICTL = os.path.join(rktlet_test.SOURCE_DIR, "..", "shared", "bin", "crictl")
SUBNET = "10.89.7"
LOG_DIR = "/var/log/pods/default_counter_uid-counter"


class Machine:
    """A booted tree: run(...) runs a command in all of its namespaces (nsenter)."""

    def __init__(self, tree, binds, log):
        self.log = log
        # On a cgroup v1 (hybrid) host nspawn gives the booted system its v1 controllers read-only;
        # the OCI runtime in it needs them writable. Each gets a cgroup of its own below the
        # harness's place in that hierarchy; nspawn starts in it (so that its cgroup namespace is
        # rooted there) and it is bound writable over the system's view of the controller.
        self.cgroups = []
        for ctrl in sorted(os.listdir("/sys/fs/cgroup")):
            top = os.path.join("/sys/fs/cgroup", ctrl)
            if ctrl in ("unified", "systemd") or os.path.islink(top) or not os.path.exists(os.path.join(top, "tasks")):
                continue
            with open("/proc/self/cgroup") as f:
                mine = next((line.rstrip("\n").split(":", 2)[2] for line in f
                             if ctrl in line.split(":", 2)[1].split(",")), "/")
            path = os.path.join(top + mine, f"rktlet-system.{os.getpid()}")
            os.makedirs(path, exist_ok=True)
            if ctrl == "cpuset":
                for k in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(os.path.dirname(path), k)) as src, open(os.path.join(path, k), "w") as dst:
                        dst.write(src.read())
            self.cgroups.append((path, top))
            binds = [*binds, (path, "/mnt/rktlet-cgroup/" + ctrl, "rw")]
        args = ["systemd-nspawn", "-q", "-D", tree, "-b", "--register=no", "--keep-unit",
                "--console=pipe", "--capability=all", "--machine=rktlet-system",
                # runc joins a session keyring, which nspawn's own filter refuses.
                "--system-call-filter=@keyring"]
        for src, dst, *mode in binds:
            args.append(f"--bind={src}:{dst}" if mode == ["rw"] else f"--bind-ro={src}:{dst}")
        args.append("systemd.firstboot=off")
        # /proc/sys writable (the bridge plugin enables forwarding): the network namespace it writes
        # is the harness's own.
        env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
        def join_cgroups():
            for path, _ in self.cgroups:
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=join_cgroups)
        self.leader = None

        def booted():
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self.proc.returncode}")
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-x", "systemd"], capture_output=True, text=True)
            if not out.stdout.strip():
                return False
            self.leader = int(out.stdout.split()[0])
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            return state in ("running", "degraded")
        wait_until(booted, 120, interval=0.5, what="the tree to boot with systemd as PID 1")
        for _, top in self.cgroups:  # nspawn mounts its cgroups after the binds: over them, then
            self.run("mount", "--bind", "/mnt/rktlet-cgroup/" + os.path.basename(top), top)

    def run(self, *cmd, check=True, input=None, timeout=180):
        r = subprocess.run(["nsenter", "-t", str(self.leader), "-a", *cmd], input=input, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed with {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def write(self, path, text):
        self.run("sh", "-c", f"mkdir -p \"$(dirname '{path}')\" && cat > '{path}'", input=text)

    def cri(self, method, request=None):
        r = self.run("/usr/local/bin/cri-go", "-socket", SOCKET, "call", method, json.dumps(request or {}))
        return json.loads(r.stdout or "{}")

    def show(self, unit, prop):
        return self.run("systemctl", "show", "-P", prop, unit).stdout.strip()

    def units(self, pattern):
        out = self.run("systemctl", "list-units", "--all", "--plain", "--no-legend", pattern).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def mounts_under(self, *dirs):
        with open(f"/proc/{self.leader}/mountinfo") as f:
            return [line.split()[4] for line in f
                    if any(line.split()[4] == d or line.split()[4].startswith(d + "/") for d in dirs)]

    def poweroff(self):
        if self.proc.poll() is None:
            self.run("systemctl", "poweroff", check=False)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Our cgroups, deepest first: empty once the system's last processes are gone, which may be a
        # moment after nspawn itself; any left would be a leak on the host.
        def remove_cgroups():
            for top, _ in self.cgroups:
                for d, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
            return not any(os.path.exists(top) for top, _ in self.cgroups)
        wait_until(remove_cgroups, 20, interval=0.2, what="the booted system's cgroups to be removed")


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tree, deb, upgrade = (os.environ.get(k) for k in
                          ("RKTLET_SYSTEM_TREE", "RKTLET_SYSTEM_DEB", "RKTLET_SYSTEM_UPGRADE_DEB"))
    if not (tree and deb and upgrade):
        pytest.skip("tests/integration/system-prepare did not run (scripts/test runs it; see its output)")
    if not shutil.which("systemd-nspawn"):
        pytest.fail("systemd-nspawn is missing (systemd-container; scripts/deps installs it)")
    client, _ = gocri.build()
    debs = os.path.dirname(deb)
    binds = [(debs, "/debs"), (client, "/usr/local/bin/cri-go")]
    if os.access(CRICTL, os.X_OK):
        binds.append((os.path.realpath(CRICTL), "/usr/local/bin/crictl"))
    work = tmp_path_factory.mktemp("nspawn")
    log = open(work / "console.log", "wb")
    # A copy of the cached tree, on a real file system: not nspawn's --volatile=overlay, since the
    # containers' overlay mounts cannot have their upper directories on an overlay.
    root = str(work / "root")
    subprocess.run(["cp", "-a", "--reflink=auto", tree, root], check=True)
    try:
        m = Machine(root, binds, log)
    except (RuntimeError, TimeoutError) as e:
        log.flush()
        with open(log.name, errors="replace") as f:
            console = f.read()[-3000:]
        if "Failed to" in console and m_cannot_boot(console):
            machine_skip(f"systemd-nspawn cannot boot a tree here: {console.strip().splitlines()[-1]}")
        raise AssertionError(f"{e}\n{console}") from None
    m.deb, m.upgrade = "/debs/" + os.path.basename(deb), "/debs/" + os.path.basename(upgrade)
    try:
        yield m
    finally:
        m.poweroff()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def m_cannot_boot(console):
    return any(s in console for s in ("Operation not permitted", "not supported", "Permission denied"))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    r = reg.Registry(tmp_path_factory.mktemp("system-registry"))
    img = reg.full_busybox_image()
    img.push(r, "system/busybox", "v1")
    yield r, f"{r.url}/system/busybox:v1", img
    r.stop()


def pod_request(host_network=False):
    return {"config": {
        "metadata": {"name": "counter", "namespace": "default", "uid": "uid-counter"},
        "hostname": "counter", "log_directory": LOG_DIR,
        "linux": {"security_context": {"namespace_options": {"network": "NODE" if host_network else "POD"}}},
    }}


def counter_config(ref):
    return {"metadata": {"name": "counter"}, "image": {"image": ref}, "log_path": "counter_0.log",
            "command": ["sh", "-c", "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.05; done"]}


def log_lines(m):
    out = m.run("cat", f"{LOG_DIR}/counter_0.log", check=False).stdout
    return [line.split(" ", 3)[3] for line in out.splitlines() if line.count(" ") >= 3]


def wait_lines(m, n, what):
    wait_until(lambda: len(log_lines(m)) >= n, 30, interval=0.1, what=what)


def test_the_package_on_systemd_as_pid_1(system, image):
    try:
        package_on_systemd_as_pid_1(system, image)
    except Exception as e:
        journal = system.run("journalctl", "--no-pager", "-n", "60", "-o", "short-monotonic", check=False).stdout
        units = system.run("journalctl", "--no-pager", "-n", "30", "-o", "short-monotonic", "-u", "rktlet-ctr-*",
                           check=False).stdout
        ps = system.run("ps", "-eo", "pid,ppid,stat,wchan:20,args", check=False).stdout
        raise AssertionError(f"{e}\n--- the booted system's journal, last lines:\n{journal}\n--- the containers' "
                             f"units:\n{units}\n--- its processes:\n{ps}") from None


def package_on_systemd_as_pid_1(system, image):
    m = system
    r, ref, img = image

    # --- install: the socket is enabled and listening, the daemon starts on the first call
    m.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends",
          m.deb, timeout=300)
    assert m.run("systemctl", "is-enabled", "rktlet.socket").stdout.strip() == "enabled"
    assert m.show("rktlet.socket", "ActiveState") == "active"
    assert m.run("test", "-S", SOCKET, check=False).returncode == 0
    assert m.show("rktlet.service", "ActiveState") == "inactive"
    conffiles = m.run("dpkg-query", "-W", "-f=${Conffiles}", "rktlet").stdout
    assert "/etc/rktlet/rktlet.conf" in conffiles
    assert m.run("test", "-d", "/etc/rktlet/certs.d", check=False).returncode == 0  # [Registries] CertsDir=
    assert m.run("test", "-x", "/usr/libexec/rktlet/rktlet-pod-init", check=False).returncode == 0
    assert "rktlet" in m.run("man", "-w", "rktlet", check=False).stdout or \
        m.run("test", "-f", "/usr/share/man/man8/rktlet.8.gz", check=False).returncode == 0

    # The operator's configuration: a drop-in (the conffile stays as shipped), a CNI network.
    m.write("/etc/rktlet/rktlet.conf.d/50-test.conf", registries_config([r.url]) + "[Daemon]\nLogLevel=debug\n")
    m.write("/etc/cni/net.d/10-test.conflist", json.dumps({
        "cniVersion": "1.0.0", "name": "system-test",
        "plugins": [{"type": "bridge", "bridge": "rktsys0", "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": f"{SUBNET}.0/24"}]]}}]}))

    version = m.cri("Version")
    assert version["runtime_name"] == "rktlet"
    wait_until(lambda: m.show("rktlet.service", "ActiveState") == "active", 20, what="rktlet.service active")
    status = m.cri("Status")
    conditions = {c["type"]: c.get("status", False) for c in status["status"]["conditions"]}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}, status

    # --- a pod and a container, as kubelet would run them
    assert m.cri("PullImage", {"image": {"image": ref}})["image_ref"] == img.id
    m.run("mkdir", "-p", LOG_DIR)
    pod_id = m.cri("RunPodSandbox", pod_request())["pod_sandbox_id"]
    cid = m.cri("CreateContainer", {"pod_sandbox_id": pod_id, "config": counter_config(ref),
                                    "sandbox_config": pod_request()["config"]})["container_id"]
    m.cri("StartContainer", {"container_id": cid})
    slice_, service = f"rktlet-pod{pod_id}.slice", f"rktlet-ctr-{cid}.service"
    assert m.show(slice_, "ActiveState") == "active"
    assert m.show(service, "ActiveState") == "active"
    assert m.show(service, "Description") == f"rktlet container default/counter/counter ({cid[:12]})"
    tree = m.run("systemctl", "status", "--no-pager", "--lines=0", slice_).stdout
    assert service in tree, tree
    ip = m.cri("PodSandboxStatus", {"pod_sandbox_id": pod_id})["status"]["network"]["ip"]
    assert ip.startswith(SUBNET + ".")
    if os.access(CRICTL, os.X_OK):
        ps = m.run("crictl", "--runtime-endpoint", f"unix://{SOCKET}", "ps", "-q").stdout.split()
        assert cid in ps
    wait_lines(m, 10, "10 lines in the container's log")

    # The call log: every call in the daemon's journal (LogLevel=debug), the lifecycle at info.
    journal = m.run("journalctl", "-u", "rktlet", "--no-pager", "-o", "cat").stdout
    assert "/runtime.v1.RuntimeService/RunPodSandbox" in journal
    assert f"pod {pod_id}: running default/counter in {slice_}" in journal
    by_id = m.run("journalctl", "-t", "rktlet", f"POD_SANDBOX_ID={pod_id}", "--no-pager", "-o", "cat").stdout
    assert f"pod {pod_id}: running" in by_id and "Talking to systemd" not in by_id

    # --- upgrade: the daemon restarts with the new binary, the container keeps running and its
    # log goes on without a line lost or doubled.
    old_pid, ctr_pid = m.show("rktlet.service", "MainPID"), m.show(service, "MainPID")
    m.run("dpkg", "-i", m.upgrade, timeout=300)
    assert "+upgrade1" in m.run("dpkg-query", "-W", "-f=${Version}", "rktlet").stdout
    wait_until(lambda: m.show("rktlet.service", "MainPID") not in ("0", old_pid), 30, what="rktlet restarted")
    assert m.show(service, "MainPID") == ctr_pid
    seen = len(log_lines(m))
    wait_lines(m, seen + 20, "the log to go on after the upgrade")
    lines = log_lines(m)
    n = len(lines) - 1  # the last may be cut
    assert lines[:n] == [f"line-{i}" for i in range(n)], "a line was lost or doubled across the upgrade"
    assert m.cri("ContainerStatus", {"container_id": cid})["status"]["state"] == "CONTAINER_RUNNING"

    # --- purge: the pods go with the runtime; nothing is left
    m.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "rktlet", timeout=300)
    assert m.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "rktlet", check=False).stdout.strip() in ("", "un")
    assert m.units("rktlet*") == []
    assert m.mounts_under("/run/rktlet", "/var/lib/rktlet") == []
    for path in ("/run/rktlet", "/var/lib/rktlet", "/etc/rktlet", "/lib/systemd/system/rktlet.service",
                 "/etc/systemd/system/sockets.target.wants/rktlet.socket"):
        assert m.run("test", "-e", path, check=False).returncode != 0, f"{path} is left"
    ipam = m.run("sh", "-c", f"ls /var/lib/cni/networks/system-test 2>/dev/null | grep '^{SUBNET}' || true").stdout
    assert ipam.strip() == "", f"addresses left: {ipam}"
    # The pod's veth is gone from the bridge (the network namespace is the harness's).
    ports = subprocess.run(["ip", "-o", "link", "show", "master", "rktsys0"], capture_output=True, text=True).stdout
    assert ports.strip() == "", ports
