"""rktlet SIGKILLed at any instant of a RunPodSandbox (issue 15, item 3). After the restart the pod
is either listed READY, and works, or not listed at all; and then nothing of it is left: no
directory under the state or the root directory, no slice, no mount (the namespace pins, the pod's
/dev/shm), no veth on the bridge, no address in host-local's store, no CNI plugin still running.

The kill points are instants of one RunPodSandbox of a pod on the CNI bridge network. Each is
reached before the SIGKILL, most of them provably (what exists at the kill is checked):
- STOP_AT, a shim preloaded into the daemon, stops the process (SIGSTOP) on one call: right after
  the mkdir of the pod's directory in the state directory, then in the root directory (both before
  the first save of the record), before and after the rename that saves the record (the first
  save, and the one that makes the pod ready), before the rename of the pod's hostname file, and,
  in the child that makes the namespaces, right after the network namespace is pinned;
- systemd frozen (SIGSTOP of the harness's user manager): the slice asked for and not answered;
- wrappers of the bridge and portmap plugins that wait while a gate file exists: ADD is running
  in the plugin (which outlives the daemon, as plugins do);
- host-local's address file appearing: the bridge plugin is half way through ADD (portmap's gate
  closed, so that the run goes no further);
- and plain delays after the request was sent, spread from 0 to the duration of an undisturbed
  run: the deliberate kill delays of this file, for the instants the points above do not pin.
"""

import json
import os
import signal
import subprocess
import time

import grpc
import pytest

import rktlet_test
from rktlet_test import wait_until
from test_pods import (CNI_BIN, cni, hanging_daemon, hanging_network, hung_plugin, ipam_ips,  # noqa: F401
                       kill_leftovers, listdir, mounts_under, needs_cni, no_leftovers, ns_path, ping, pod_config,
                       pod_records, run_pod, units)

# The shim: STOP_AT="call:when:who:nth:prefix:suffix:length" stops the process (SIGSTOP) on the
# nth call of mkdir, rename (the new path) or mount (the target) whose path starts with prefix,
# ends with suffix and has length characters between them (-1: any), before or after the call,
# in the daemon ("main") or in a process forked from it ("child"); STOP_AT_PIDFILE gets that
# process's pid first. What the daemon executes runs without the shim.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char spec[8192], *call = "", *when = "", *who = "", *prefix = "", *suffix = "";
static const char *pidfile;
static long nth = 1, length = -1;
static pid_t main_pid;
static int armed, seen, fired;

__attribute__((constructor)) static void init(void) {
        const char *s = getenv("STOP_AT");
        char *p = spec;

        main_pid = getpid();
        unsetenv("LD_PRELOAD");
        pidfile = getenv("STOP_AT_PIDFILE");
        if (!s || !pidfile || strlen(s) >= sizeof spec)
                return;
        strcpy(spec, s);
        call = strsep(&p, ":");
        when = strsep(&p, ":");
        who = strsep(&p, ":");
        nth = atol(strsep(&p, ":") ?: "1");
        prefix = strsep(&p, ":") ?: "";
        suffix = strsep(&p, ":") ?: "";
        length = atol(p ?: "-1");
        armed = 1;
}

static int match(const char *c, const char *path) {
        size_t np = strlen(prefix), ns = strlen(suffix), n;
        int child = getpid() != main_pid;

        if (!armed || fired || !path || strcmp(c, call) != 0 || child != (strcmp(who, "child") == 0))
                return 0;
        n = strlen(path);
        if (n < np + ns || strncmp(path, prefix, np) != 0 || strcmp(path + n - ns, suffix) != 0)
                return 0;
        if (length >= 0 && (long) (n - np - ns) != length)
                return 0;
        return ++seen == nth;
}

static void stop(void) {
        char tmp[8300];
        int saved = errno, fd;

        fired = 1;
        snprintf(tmp, sizeof tmp, "%s.%d", pidfile, (int) getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
                dprintf(fd, "%d\n", (int) getpid());
                close(fd);
                renameat(AT_FDCWD, tmp, AT_FDCWD, pidfile);
        }
        raise(SIGSTOP);
        errno = saved;
}

#define AROUND(name, path, real_call)                                            \
        int m = match(name, path), r;                                            \
        if (m && strcmp(when, "before") == 0)                                    \
                stop();                                                          \
        r = real_call;                                                           \
        if (m && strcmp(when, "after") == 0)                                     \
                stop();                                                          \
        return r;

int mkdir(const char *path, mode_t mode) {
        static int (*real)(const char *, mode_t);
        if (!real)
                real = (int (*)(const char *, mode_t)) dlsym(RTLD_NEXT, "mkdir");
        AROUND("mkdir", path, real(path, mode))
}

int rename(const char *old, const char *new) {
        static int (*real)(const char *, const char *);
        if (!real)
                real = (int (*)(const char *, const char *)) dlsym(RTLD_NEXT, "rename");
        AROUND("rename", new, real(old, new))
}

int mount(const char *source, const char *target, const char *type, unsigned long flags, const void *data) {
        static int (*real)(const char *, const char *, const char *, unsigned long, const void *);
        if (!real)
                real = (int (*)(const char *, const char *, const char *, unsigned long, const void *))
                        dlsym(RTLD_NEXT, "mount");
        AROUND("mount", target, real(source, target, type, flags, data))
}
"""

# In front of the real plugin of the same name: logs each command's beginning and end (in
# cni.log, next to it), and on ADD waits while <itself>.gate exists, having written <itself>.waiting.
WRAPPER = f"""#!/bin/sh
name=$(basename "$0")
log="$(dirname "$0")/cni.log"
echo "$name $CNI_COMMAND begin" >> "$log"
if [ "$CNI_COMMAND" = ADD ] && [ -e "$0.gate" ]; then
        : > "$0.waiting"
        while [ -e "$0.gate" ]; do sleep 0.01; done
fi
{CNI_BIN}/$name "$@"
rc=$?
echo "$name $CNI_COMMAND end $rc" >> "$log"
exit $rc
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    d = tmp_path_factory.mktemp("stop-at")
    (d / "stop-at.c").write_text(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(d / "stop-at.so"), str(d / "stop-at.c"), "-ldl"],
                   check=True, capture_output=True)
    return str(d / "stop-at.so")


class Crash:
    """One daemon directory, CNI network and plugin wrappers for a series of kills and restarts."""

    def __init__(self, make_daemon, pb, cni, tmp_path, shim):
        self.make_daemon, self.pb, self.cni, self.shim = make_daemon, pb, cni, shim
        self.bin = tmp_path / "cni-wrap"
        self.bin.mkdir()
        for name in ("bridge", "portmap"):
            (self.bin / name).write_text(WRAPPER)
            (self.bin / name).chmod(0o755)
        self.log = self.bin / "cni.log"
        self.args = ["--cni-conf-dir", cni["conf"], "--cni-bin-dir", f"{self.bin}:{CNI_BIN}"]
        self.daemon = None
        self.daemon_dir = str(tmp_path / "rktlet")
        self.n = 0

    @property
    def dir(self):
        return str(self.daemon_dir)

    def start(self, stop_at=None):
        env = None
        if stop_at:
            self.pidfile = os.path.join(str(self.bin), f"stopped.{self.n}")
            env = dict(os.environ, LD_PRELOAD=self.shim, STOP_AT=stop_at, STOP_AT_PIDFILE=self.pidfile,
                       ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":"))
        self.n += 1
        d = self.make_daemon("rktlet", start=False, args=self.args, env=env)
        self.daemon_dir = d.dir
        d.start()
        self.daemon = d
        return d

    def state(self):
        return os.path.join(self.dir, "run")

    def root(self):
        return os.path.join(self.dir, "lib")

    def stopped_pid(self):
        """The pid STOP_AT stopped, once it is stopped."""
        def stopped():
            try:
                pid = int(open(self.pidfile).read())
                with open(f"/proc/{pid}/stat") as f:
                    return pid if f.read().rsplit(")", 1)[1].split()[0] == "T" else None
            except (FileNotFoundError, ValueError):
                return None
        return wait_until(stopped, timeout=30, interval=0.005, what="the shim to stop the process")

    def kill(self, d):
        d.stopped = True
        d.proc.kill()  # SIGKILL, the client's channels left open: they see the daemon go
        d.proc.wait()

    def log_lines(self):
        try:
            return self.log.read_text().splitlines()
        except FileNotFoundError:
            return []


def cni_processes():
    """pids of the processes running for a pod's CNI chain (CNI_CONTAINERID in their environment)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/environ", "rb") as f:
                    if any(e.startswith(b"CNI_CONTAINERID=") for e in f.read().split(b"\0")):
                        out.append(int(p))
            except OSError:
                continue
    return out


def bridge_ports():
    out = subprocess.run(["ip", "-o", "link", "show", "master", "rkt0"], capture_output=True, text=True).stdout
    return out.splitlines()


def leftovers(c):
    """Everything of a pod that exists, by kind; {} when nothing does."""
    found = {
        "state dir": listdir(os.path.join(c.state(), "pods")),
        "root dir": listdir(os.path.join(c.root(), "pods")),
        "slices": units(),
        "mounts": mounts_under(c.dir),
        "veths": bridge_ports(),
        "host-local addresses": ipam_ips(c.cni),
        "CNI processes": cni_processes(),
    }
    return {k: v for k, v in found.items() if v}


def snapshot(c):
    """What exists at the kill: the pod's directories, its record's state, temporary files."""
    run, lib = listdir(os.path.join(c.state(), "pods")), listdir(os.path.join(c.root(), "pods"))
    snap = {"run": run, "lib": lib, "record": None, "files": {}, "ips": ipam_ips(c.cni),
            "units": None if c.systemd_stopped else units(),  # systemctl would wait on a frozen systemd
            "mounts": [os.path.basename(m) for m in mounts_under(c.dir)]}
    for pod_id in set(run) | set(lib):
        snap["files"][pod_id] = listdir(os.path.join(c.root(), "pods", pod_id)) + \
            listdir(os.path.join(c.state(), "pods", pod_id))
        try:
            with open(os.path.join(c.root(), "pods", pod_id, "state.json")) as f:
                snap["record"] = json.load(f)["state"]
        except FileNotFoundError:
            pass
    snap["id"] = (run or lib or [None])[0]
    return snap


def settle(c, d, pb, reported):
    """After the restart: waits until the pod is listed READY, or listed no more with nothing of it
    left; returns ("ready", id) or ("gone", None)."""
    last = {}

    def settled():
        items = d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
        if len(items) == 1 and items[0].state == pb.SANDBOX_READY:
            return ("ready", items[0].id)
        last.clear()
        last.update(listed=[(i.id, i.state) for i in items], **leftovers(c))
        return ("gone", None) if last == {"listed": []} else None

    try:
        outcome = wait_until(settled, timeout=40, interval=0.05, what="the pod to be ready or gone")
    except TimeoutError:
        raise AssertionError(f"after the restart the pod is neither ready nor gone: {last}") from None
    if reported:
        assert outcome == ("ready", reported), "a pod whose RunPodSandbox succeeded must survive the crash"
    return outcome


def works(c, d, pb, pod_id):
    """A READY pod after the crash works: its address answers, its namespaces are pinned; then its
    removal leaves nothing."""
    st = d.runtime().PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10).status
    assert st.network.ip in ipam_ips(c.cni)
    assert ping(st.network.ip)
    assert os.path.join(c.state(), "pods", pod_id, "ns", "net") in mounts_under(c.dir)
    assert units() == [f"rktlet-pod{pod_id}.slice"]
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert leftovers(c) == {}


def no_del_while_an_add_runs(lines):
    """In the plugins' log, no DEL begins while an ADD that began has not ended."""
    running = set()
    for line in lines:
        name, command, what = line.split()[:3]
        if command == "ADD":
            (running.add if what == "begin" else running.discard)(name)
        elif command == "DEL" and what == "begin":
            assert not running, f"DEL of {name} began while ADD of {running} ran: {lines}"


def crash_once(c, pb, name, stop_at=None, arm=None, wait=None, at_kill=None, after_kill=None, after_restart=None):
    """One RunPodSandbox cut short: arm() prepares once the daemon runs, wait() returns at the kill point, at_kill(c,
    snapshot) checks where it is, after_kill()/after_restart() run around the restart. Returns the
    snapshot at the kill and the outcome."""
    assert leftovers(c) == {}, f"{name}: not clean before the kill"
    d = c.start(stop_at(c) if stop_at else None)
    if arm:
        arm(c)
    start = time.monotonic()
    future = d.runtime().RunPodSandbox.future(pb.RunPodSandboxRequest(config=pod_config(pb, name=f"crash{c.n}")),
                                              timeout=60)
    wait(c, d, start)
    snap = snapshot(c)
    c.kill(d)
    reported = None
    try:
        reported = future.result().pod_sandbox_id
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAVAILABLE, (name, e.details())
    d.close_channels()
    if at_kill:
        at_kill(c, snap)
    if after_kill:
        after_kill(c)
    d2 = c.start()
    if after_restart:
        after_restart(c, d2)
    outcome = settle(c, d2, pb, reported)
    if outcome[0] == "ready":
        works(c, d2, pb, outcome[1])
    no_del_while_an_add_runs(c.log_lines())
    assert d2.stop() == 0
    c.log.unlink(missing_ok=True)
    return snap, outcome


def pod_prefix(c, sub):
    return os.path.join(c.state() if sub == "run" else c.root(), "pods") + "/"


# --- the kill points ---------------------------------------------------------------------------------

def shim_point(call, when, who, nth, sub, suffix):
    def stop_at(c):
        return f"{call}:{when}:{who}:{nth}:{pod_prefix(c, sub)}:{suffix}:64"
    return stop_at


def wait_stopped(c, d, start):
    c.stopped_pid()


def expect(record, **kw):
    def check(c, snap):
        assert snap["record"] == record, snap
        pod_id = snap["id"]
        files = snap["files"].get(pod_id, [])
        for f, present in kw.get("files", {}).items():
            assert any(x.startswith(f) for x in files) == present, (f, snap)
        if "run" in kw:
            assert (snap["run"] != []) == kw["run"] and (snap["lib"] != []) == kw["lib"], snap
        if "units" in kw:
            assert snap["units"] == kw["units"](pod_id), snap
        if "ips" in kw:
            assert (snap["ips"] != []) == kw["ips"], snap
        if "mounts" in kw:
            assert snap["mounts"] == kw["mounts"], snap
    return check


def gate(plugin):
    def arm(c):
        (c.bin / f"{plugin}.gate").write_text("")
        (c.bin / f"{plugin}.waiting").unlink(missing_ok=True)

    def wait(c, d, start):
        wait_until((c.bin / f"{plugin}.waiting").exists, timeout=30, interval=0.005, what=f"{plugin} ADD to wait")

    def after_restart(c, d2):
        # Opened once the restarted daemon either waits for the dead one's plugin (a child of its
        # own is running) or has begun DEL without waiting (which no_del_while_an_add_runs reports).
        def recovery_reached():
            if any(" DEL begin" in line for line in c.log_lines()):
                return True
            try:
                return open(f"/proc/{d2.pid}/task/{d2.pid}/children").read().split() != []
            except FileNotFoundError:
                return False
        wait_until(recovery_reached, timeout=30, interval=0.005, what="the restarted daemon's recovery")
        (c.bin / f"{plugin}.gate").unlink()

    return arm, wait, after_restart


def wait_for_an_address(c, d, start):
    # The bridge plugin goes on; the gate in front of portmap keeps the daemon from going past ADD.
    wait_until(lambda: ipam_ips(c.cni), timeout=30, interval=0.001, what="host-local to allocate the address")


def freeze_systemd(c):
    c.systemd_stopped = True
    os.kill(c.user_manager, signal.SIGSTOP)


def wait_for_the_record(c, d, start):
    wait_until(lambda: [r["state"] for r in pod_records(c.daemon).values()] == ["creating"], timeout=30,
               interval=0.005, what="the record")


def thaw_systemd(c):
    os.kill(c.user_manager, signal.SIGCONT)
    c.systemd_stopped = False


def ns_child_dies_with_the_daemon(c, snap):
    pid = int(open(c.pidfile).read())

    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
    try:
        wait_until(gone, timeout=5, interval=0.005, what="the namespace child to die with the daemon")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)  # still there: it goes on as a child that outlived its daemon would
        except ProcessLookupError:
            pass


def ready_units(pod_id):
    return [f"rktlet-pod{pod_id}.slice"]


POINTS = {
    # Before the first save completes: the directories are made first, the record last.
    "state dir made": dict(stop_at=shim_point("mkdir", "after", "main", 1, "run", ""), wait=wait_stopped,
                           at_kill=expect(None, run=True, lib=False)),
    "root dir made": dict(stop_at=shim_point("mkdir", "after", "main", 1, "lib", ""), wait=wait_stopped,
                          at_kill=expect(None, run=True, lib=True, files={"state.json": False})),
    "record written, not renamed": dict(stop_at=shim_point("rename", "before", "main", 1, "lib", "/state.json"),
                                        wait=wait_stopped,
                                        at_kill=expect(None, files={"state.json.tmp.": True})),
    # The record says "creating": the slice not asked for yet, then asked for and unanswered.
    "record saved": dict(stop_at=shim_point("rename", "after", "main", 1, "lib", "/state.json"), wait=wait_stopped,
                         at_kill=expect("creating", units=lambda i: [])),
    "slice job unanswered": dict(arm=freeze_systemd, wait=wait_for_the_record, after_kill=thaw_systemd,
                                 at_kill=expect("creating")),
    # The namespace child has pinned the network namespace and goes on.
    "network namespace pinned": dict(stop_at=shim_point("mount", "after", "child", 1, "run", "/ns/net"),
                                     wait=wait_stopped, at_kill=ns_child_dies_with_the_daemon),
    # CNI ADD: the bridge plugin about to run, half way, then portmap about to run.
    "bridge ADD running": dict(zip(("arm", "wait", "after_restart"), gate("bridge")),
                               at_kill=expect("creating", units=ready_units, ips=False)),
    "address allocated": dict(arm=gate("portmap")[0], wait=wait_for_an_address, after_restart=gate("portmap")[2],
                              at_kill=expect("creating", ips=True)),
    "portmap ADD running": dict(zip(("arm", "wait", "after_restart"), gate("portmap")),
                                at_kill=expect("creating", ips=True)),
    # The pod's files, then the save that makes it ready: before and after the rename.
    "hostname written, not renamed": dict(stop_at=shim_point("rename", "before", "main", 1, "run", "/hostname"),
                                          wait=wait_stopped,
                                          at_kill=expect("creating", files={"hostname.tmp.": True, "hosts": False})),
    "ready record written, not renamed": dict(stop_at=shim_point("rename", "before", "main", 2, "lib", "/state.json"),
                                              wait=wait_stopped,
                                              at_kill=expect("creating", files={"resolv.conf": True})),
    "ready record saved, no reply": dict(stop_at=shim_point("rename", "after", "main", 2, "lib", "/state.json"),
                                         wait=wait_stopped, at_kill=expect("ready")),
}


@pytest.fixture
def crash(make_daemon, pb, cni, tmp_path, shim, user_manager_pid):
    c = Crash(make_daemon, pb, cni, tmp_path, shim)
    c.user_manager = user_manager_pid
    c.systemd_stopped = False
    yield c
    if c.systemd_stopped:
        os.kill(user_manager_pid, signal.SIGCONT)
    for p in cni_processes():
        os.kill(p, signal.SIGKILL)
    for g in c.bin.glob("*.gate"):
        g.unlink()


@needs_cni
@pytest.mark.parametrize("point", list(POINTS))
def test_a_kill_during_run_leaves_the_pod_ready_or_gone(crash, pb, point):
    snap, outcome = crash_once(crash, pb, point, **POINTS[point])
    expected = {"ready record saved, no reply": "ready"}.get(point, "gone")
    assert outcome[0] == expected, (point, snap, outcome)


KILL_FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@needs_cni
def test_kills_spread_over_a_run_leave_the_pod_ready_or_gone(crash, pb):
    """SIGKILL after a delay, for delays from 0 to the duration of an undisturbed run (measured
    first): the deliberate kill delays of this file. Where each lands is seen after, not chosen."""
    d = crash.start()
    start = time.monotonic()
    pod_id = d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(pb, name="measure")),
                                       timeout=60).pod_sandbox_id
    duration = time.monotonic() - start
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert d.stop() == 0
    crash.log.unlink(missing_ok=True)

    landed = []
    for f in KILL_FRACTIONS:
        delay = f * duration

        def wait(c, d, start, delay=delay):
            time.sleep(max(0.0, delay - (time.monotonic() - start)))  # the kill point: a delay

        snap, outcome = crash_once(crash, pb, f"{delay * 1000:.0f} ms", wait=wait)
        landed.append((round(delay * 1000), snap["record"], sorted(snap["files"].get(snap["id"], [])), outcome[0]))
    print(f"undisturbed run: {duration * 1000:.0f} ms; kills (ms, record, files, outcome): {landed}")


def test_a_kill_before_systemd_answers_never_stops_kubelets_slice(make_daemon, pb, user_manager_pid):
    # kubelet makes the pod's slice before RunPodSandbox names it as cgroup_parent; rktlet uses it
    # and leaves it to kubelet. Killed before systemd said the slice existed, rktlet must not stop
    # it when it undoes the half-made pod: it may be kubelet's (and hold the pod's other sandboxes).
    slice_ = "kubepods-besteffort-podcrash1.slice"
    subprocess.run(["busctl", "--user", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))", slice_, "fail",
                    "1", "Description", "s", f"libcontainer container {slice_}", "0"], check=True, capture_output=True)
    show = lambda: subprocess.run(["systemctl", "--user", "show", "-P", "ActiveState", slice_], capture_output=True,
                                  text=True).stdout.strip()
    try:
        wait_until(lambda: show() == "active", what="kubelet's slice")
        d = make_daemon()
        os.kill(user_manager_pid, signal.SIGSTOP)
        try:
            future = d.runtime().RunPodSandbox.future(pb.RunPodSandboxRequest(
                config=pod_config(pb, name="qos", host_network=True, cgroup_parent=slice_)), timeout=60)
            wait_until(lambda: [r["state"] for r in pod_records(d).values()] == ["creating"], what="the record")
            record = list(pod_records(d).values())[0]
            d.stopped = True
            d.proc.kill()
            d.proc.wait()
            with pytest.raises(grpc.RpcError):
                future.result()
            d.close_channels()
        finally:
            os.kill(user_manager_pid, signal.SIGCONT)
        assert (record["slice"], record["sliceStarted"], record["sliceOwned"]) == (slice_, True, False)
        d2 = make_daemon("rktlet", start=False)
        d2.start()
        wait_until(lambda: pod_records(d2) == {} and
                   list(d2.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == [],
                   timeout=30, what="the half-made pod to be undone")
        wait_until(lambda: rktlet_test.journal("POD_SANDBOX_ID=" + record["id"], "MESSAGE=pod " + record["id"] +
                                               ": remove done."), timeout=10, what="the removal's end")
        assert show() == "active"
    finally:
        subprocess.run(["systemctl", "--user", "stop", "kubepods.slice"], capture_output=True)


@needs_cni
def test_a_kill_during_stop_leaves_the_pod_notready_and_the_next_stop_finishes(make_daemon, pb, tmp_path, cni):
    # The kill point: StopPodSandbox has stopped the pod's slice and its CNI DEL hangs. The pod's
    # namespaces and files are still there; a record saying READY would have the restarted daemon
    # report a pod that no longer runs (nor could run a container) as ready.
    bindir, conf = hanging_network(tmp_path, cni)
    d = hanging_daemon(make_daemon, bindir, conf)
    pod_id = run_pod(d, pb, name="stopping")
    (bindir / "hang.hang").write_text("DEL\n")
    future = d.runtime().StopPodSandbox.future(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    procs = hung_plugin(bindir, "DEL")
    try:
        assert units() == []  # the slice went first
        d.stopped = True
        d.proc.kill()
        d.proc.wait()
        with pytest.raises(grpc.RpcError):
            future.result()
        d.close_channels()
    finally:
        kill_leftovers(procs)
    (bindir / "hang.hang").write_text("")
    d2 = hanging_daemon(make_daemon, bindir, conf)
    st = d2.runtime().PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10).status
    assert st.state == pb.SANDBOX_NOTREADY
    assert ns_path(d2, pod_id, "net") in mounts_under(os.path.join(d2.dir, "run"))  # not undone yet
    d2.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert mounts_under(os.path.join(d2.dir, "run")) == [] and ipam_ips(cni) == []
    d2.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert listdir(os.path.join(d2.dir, "lib", "pods")) == [] and listdir(os.path.join(d2.dir, "run", "pods")) == []
