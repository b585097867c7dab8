"""The chaos suite: a seeded, bounded CRI workload against rktlet run as operators run it, SIGKILLed
at random instants and restarted each time, checked after every restart against systemd's and the
kernel's own view.

rktlet runs as the packaged rktlet.socket and rktlet.service (as test_packaged_units.py loads them
into the harness's user manager), with one drop-in: RestartSec=100ms and no start limit, so that
Restart=always brings it back at once after each SIGKILL. Its containers' log pipes live in
systemd's fd store, so logs must go on across every restart; calls made while it is down wait in
the socket's queue.

Five workers (threads, each with its own gRPC channel) each own the pods and containers they make
and the image they pull and remove, and interleave RunPodSandbox (CNI bridge network), Create,
Start, Stop and RemoveContainer, Stop and RemovePodSandbox, PullImage (several images from a local
docker-registry, some through a throttled proxy so that a kill finds a pull in flight), RemoveImage
and ReopenContainerLog (after renaming the log, as kubelet rotates it). ExecSync is not part of the
workload yet (test_exec.py kills a daemon during one). Every call's outcome is recorded: ok
(with the id it reported), died (UNAVAILABLE or CANCELLED across a kill: the daemon went away under
it; what it did is then uncertain and the next check finds out), or an error, which is a finding.

The kill instants come from the seed (the op count at which each kill is due, and a delay after
it), as do every worker's choices; what a kill interrupts depends on timing. After each kill the
workers pause once their call returns, systemd restarts rktlet, and the check runs:

- listed: every pod, container and image a call reported created (and not removed) is listed, in
  a state its history allows, and nothing else is;
- true state: a container is RUNNING exactly when its unit's main process runs (MainPID and
  /proc), keeps the PID it had, reports the exit code systemd recorded, and has its rootfs mounted
  while CREATED or RUNNING; a READY pod has its slice active, its namespaces pinned (and, sharing
  its PID namespace, its init running), one host-local address (the one it reports) and its veth
  on the bridge; a pod whose stop succeeded has none of these;
- nothing unowned: no rktlet-* unit, mount, veth on the bridge, host-local allocation, runc state
  entry, directory under run/ or lib/ pods|containers, blob or layer (nor a partial one), entry of
  rktlet.service's fd store exists that no listed object owns, and no OCI runtime or CNI plugin
  process lingers;
- logs: every running counter container's log goes on, with no line lost or doubled, across every
  restart and every rotation.

At the end everything is removed, rktlet is stopped (exit 0: with ASan, no leak report; and no
sanitizer report in its journal) and the machine is as it was before: no unit, mount, link, veth,
address, directory, blob, layer or fd-store entry.

    chaos.run(directory, ops=200, kills=10, seed=None)   (test_chaos.py::test_chaos_short)
    python3 tests/integration/chaos.py --ops N --kills K [--seed S]   (inside the harness: scripts/chaos)

RKTLET_CHAOS_SEED replays a seed (the choices and the kill instants; what a kill interrupts depends
on timing). A failure says the seed and the step, and quotes the calls and the journal lines that
name the objects it names; RKTLET_CHAOS_TRACE=FILE keeps every call and kill of a run and
RKTLET_CHAOS_JOURNAL=FILE the journal of a failed one. RKTLET_CHAOS_TOLERATE=NAME,... explores past a
known daemon bug (named in Chaos.tolerate()'s callers) by noting each occurrence in the summary
instead of failing: for long runs while it is being fixed, never in CI.
"""

import argparse
import collections
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import registry as reg  # noqa: E402
import rktlet_test  # noqa: E402
from rktlet_test import Daemon, wait_until  # noqa: E402

CNI_BIN = "/usr/lib/cni"
BRIDGE = "rktchaos0"
SUBNET = "10.88.9"
WORKERS = 5
MAX_PODS = 2  # per worker
MAX_CTRS = 3  # per pod
T = 60  # every call's deadline
SETTLE = 30  # how long a restarted daemon may take to agree with systemd and clean up

UNIT_DIR = os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/run/user/0"), "systemd", "user")
SERVICE, SOCKET = "rktlet.service", "rktlet.socket"

# Containers: a counter (numbered lines every 100 ms, exits 0 on SIGTERM), one that exits 3 on its
# own after a second, and one that ignores SIGTERM (its stop ends in SIGKILL).
COMMANDS = {
    "counter": ["sh", "-c", "trap 'exit 0' TERM; i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.1; done"],
    "quitter": ["sh", "-c", "echo started; sleep 1; exit 3"],
    "stubborn": ["sh", "-c", "trap '' TERM; echo started; while :; do sleep 1; done"],
}
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")

OPS = ("RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "CreateContainer", "StartContainer",
       "StopContainer", "RemoveContainer", "ReopenContainerLog", "PullImage", "RemoveImage")


class ChaosFailure(AssertionError):
    pass


def pb():
    return rktlet_test.stubs()[0]


def seed_from_env():
    s = os.environ.get("RKTLET_CHAOS_SEED")
    return int(s) if s else random.SystemRandom().randrange(1, 2**31)


# --- what systemd and the kernel say ----------------------------------------------------------------

def systemctl(*args, check=True, timeout=60):
    return subprocess.run(["systemctl", "--user", *args], check=check, capture_output=True, text=True,
                          timeout=timeout)


def list_units(pattern="rktlet-*"):
    out = systemctl("list-units", "--all", "--plain", "--no-legend", pattern).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


UNIT_PROPS = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "ExecMainCode", "ExecMainStatus", "Slice")


def unit_props(units):
    """{unit: {property: value}} from one `systemctl show` of them all."""
    units = list(units)
    if not units:
        return {}
    out = systemctl("show", "-p", ",".join(UNIT_PROPS), "--", *units).stdout
    blocks, cur = [], {}
    for line in out.splitlines() + [""]:
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = {}
            continue
        k, _, v = line.partition("=")
        cur[k] = v
    found = {b.get("Id"): b for b in blocks}
    return {u: found.get(u, {"LoadState": "not-found", "MainPID": "0"}) for u in units}


def show(unit, prop):
    return systemctl("show", "-P", prop, unit).stdout.strip()


def alive(pid):
    """Whether pid runs (exists and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def mountpoints():
    """Every mount point of our mount namespace, with how many mounts sit on it."""
    with open("/proc/self/mountinfo") as f:
        return collections.Counter(
            line.split()[4].encode().decode("unicode_escape") for line in f if line.strip())


def bridge_ports():
    """{ifindex: name} of the links enslaved to the test bridge."""
    out = subprocess.run(["ip", "-j", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    return {link["ifindex"]: link["ifname"] for link in json.loads(out or "[]")}


def links():
    out = subprocess.run(["ip", "-j", "link", "show"], check=True, capture_output=True, text=True).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def peer_ifindex(netns_pin):
    """The host-side ifindex of the pod's eth0 (its veth peer), or None."""
    out = subprocess.run(["nsenter", f"--net={netns_pin}", "ip", "-j", "link", "show", "eth0"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return None
    link = json.loads(out.stdout)
    return link[0].get("link_index") if link else None


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def processes(names):
    """(pid, comm) of the processes whose command name is one of names (or starts with runc)."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in names or comm.startswith("runc"):
            found.append((int(p), comm))
    return found


def journal_tail(since, n=60):
    out = subprocess.run(["journalctl", "--no-pager", "-q", "-o", "short-monotonic", "-t", "rktlet",
                          f"--since=@{since:.0f}", "-n", str(n)], capture_output=True, text=True)
    return out.stdout


def sanitizer_reports(since):
    """Lines of ASan/UBSan/LSan reports rktlet wrote to the journal (its stderr under the service)."""
    out = subprocess.run(["journalctl", "--no-pager", "-q", "-o", "cat", "-t", "rktlet", f"--since=@{since:.0f}"],
                         capture_output=True, text=True).stdout
    needles = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: ")
    return [line for line in out.splitlines() if any(n in line for n in needles)]


# --- CRI logs -----------------------------------------------------------------------------------------

def log_lines(paths):
    """The whole stdout lines a container wrote, from its CRI log files in order (rotated ones
    first), each with the time of the record that ended it."""
    text, lines = "", []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        for line in data.split("\n")[:-1]:
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("stdout", "stderr") or parts[2] not in ("P", "F"):
                raise ValueError(f"{path}: bad CRI log line {line!r}")
            if parts[1] != "stdout":
                continue
            text += parts[3] if len(parts) == 4 else ""
            if parts[2] == "F":
                lines.append((text, parts[0]))
                text = ""
    return lines


def counted_lines(paths):
    """The counter's whole lines, and the first one out of sequence with its neighbours and their
    times (None if none)."""
    lines = log_lines(paths)
    for i, (line, _) in enumerate(lines):
        if line != f"line-{i}":
            return lines, (i, line, lines[max(0, i - 2):i + 3])
    return lines, None


# --- rktlet as a service --------------------------------------------------------------------------

_substitute = rktlet_test.unit_substitute
_has_cap = rktlet_test.has_cap


class Service:
    """The packaged rktlet.socket and rktlet.service in the user manager, running the built binary
    with a Daemon's arguments; .d is that Daemon (socket, directories, channels)."""

    def __init__(self, directory, config, args, log_level="info"):
        self.d = Daemon(directory, config=config, listen=False, args=args, log_level=log_level)
        self.written = []

    def install(self):
        packaged = os.path.join(rktlet_test.BUILD_DIR, "packaging")
        with open(os.path.join(packaged, SERVICE)) as f:
            service = _substitute(f.read(), "ExecStart", shlex.join(self.d.args))
        with open(os.path.join(packaged, SOCKET)) as f:
            socket_unit = _substitute(f.read(), "ListenStream", self.d.socket)
        os.makedirs(UNIT_DIR, exist_ok=True)
        for name in (SERVICE, SOCKET):
            if os.path.exists(os.path.join(UNIT_DIR, name)):
                raise RuntimeError(f"{UNIT_DIR}/{name} exists: another test's units are loaded")
        dropins = os.path.join(UNIT_DIR, SERVICE + ".d")
        os.makedirs(dropins, exist_ok=True)
        files = {os.path.join(UNIT_DIR, SERVICE): service, os.path.join(UNIT_DIR, SOCKET): socket_unit,
                 # Back at once after each SIGKILL, however many there are.
                 os.path.join(dropins, "chaos.conf"): "[Unit]\nStartLimitIntervalSec=0\n\n"
                                                     "[Service]\nRestartSec=100ms\n"}
        if not _has_cap(24):  # CAP_SYS_RESOURCE: as test_packaged_units.py clamps them
            import resource
            with open("/proc/self/oom_score_adj") as f:
                oom = int(f.read())
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            files[os.path.join(dropins, "no-cap-sys-resource.conf")] = (
                f"[Service]\nOOMScoreAdjust={max(oom, -999)}\nLimitNOFILE={min(hard, 1048576)}\n")
        for path, text in files.items():
            with open(path, "w") as f:
                f.write(text)
            self.written.append(path)
        systemctl("daemon-reload")

    def start(self):
        systemctl("start", SOCKET, SERVICE, timeout=120)
        wait_until(lambda: show(SERVICE, "ActiveState") == "active", 60, what="rktlet.service to be active")
        return self.pid()

    def pid(self):
        return int(show(SERVICE, "MainPID") or 0)

    def kill(self):
        pid = self.pid()
        assert pid, "rktlet.service has no main process to kill"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, old, timeout=60):
        def up():
            pid = self.pid()
            return pid not in (0, old) and show(SERVICE, "ActiveState") == "active" and pid
        return wait_until(up, timeout, interval=0.05, what="systemd to restart rktlet")

    def stop(self):
        """Stops both (the socket first: the service Requires= it); returns the service's Result."""
        self.d.close_channels()
        systemctl("stop", SOCKET, SERVICE, check=False, timeout=120)
        wait_until(lambda: show(SERVICE, "ActiveState") in ("inactive", "failed"), 60, what="rktlet to stop")
        return show(SERVICE, "Result")

    def uninstall(self):
        systemctl("stop", SOCKET, SERVICE, check=False, timeout=120)
        systemctl("reset-failed", SOCKET, SERVICE, check=False)
        for path in reversed(self.written):
            if os.path.exists(path):
                os.unlink(path)
        dropins = os.path.join(UNIT_DIR, SERVICE + ".d")
        if os.path.isdir(dropins) and not os.listdir(dropins):
            os.rmdir(dropins)
        self.written = []
        systemctl("daemon-reload")


# --- the model: what the calls said ----------------------------------------------------------------

class Pod:
    def __init__(self, worker, n, cfg, share_pid):
        self.worker, self.n, self.cfg, self.share_pid = worker, n, cfg, share_pid
        self.uid = cfg.metadata.uid
        self.id = None
        self.maybe = {"gone", "ready"}  # the states its history allows ("gone": not listed)
        self.ctrs = []
        self.broken = False  # a tolerated bug left it so: only removed from now on
        self.stopped_ok = False  # a StopPodSandbox of it succeeded

    def __repr__(self):
        return f"pod {self.cfg.metadata.name} {(self.id or '?')[:12]} maybe {sorted(self.maybe)}"


class Ctr:
    def __init__(self, pod, n, kind, cfg):
        self.pod, self.n, self.kind, self.cfg = pod, n, kind, cfg
        self.name = cfg.metadata.name
        self.id = None
        self.maybe = {"gone", "created"}
        self.pid = None  # the main process it had when it was last seen running
        self.stopped = False  # a stop (of it or its pod) was asked for
        self.pod_stopped = False  # a stop of its pod was asked for: its unit may be gone with the slice
        self.started = False  # a start was asked for
        self.start_died = False  # the last start died with rktlet (until the next check)
        self.broken = False  # a tolerated bug left it so: only removed from now on
        self.rotations = []  # its log's rotated files, oldest first
        self.path = os.path.join(pod.cfg.log_directory, cfg.log_path)

    def logs(self):
        return self.rotations + [self.path]

    def __repr__(self):
        return (f"container {self.pod.cfg.metadata.name}/{self.name} {(self.id or '?')[:12]} "
                f"(pod {(self.pod.id or '?')[:12]}) maybe {sorted(self.maybe)}")


CTR_STATE = {"created": 0, "running": 1, "exited": 2, "unknown": 3}
CTR_NAMES = {v: k for k, v in CTR_STATE.items()}


# --- the run -----------------------------------------------------------------------------------------

class Chaos:
    def __init__(self, directory, ops, kills, seed, workers=WORKERS, log=print, log_level="info"):
        self.dir = str(directory)
        self.ops, self.kills, self.seed, self.nworkers = ops, kills, seed, workers
        self.say = log
        self.log_level = log_level
        self.rng = random.Random(f"chaos-{seed}")
        self.cond = threading.Condition()
        self.dispatched = 0  # ops handed out
        self.busy = 0  # ops in progress
        self.paused = False
        self.abort = False
        self.epoch = 0  # odd while a kill is being recovered from
        self.outcomes = collections.Counter()  # (op kind, outcome) -> count
        self.errors = []  # unexpected call failures, as strings
        self.checks = collections.Counter()  # check name -> objects it verified
        self.killed = 0
        self.restarts = []  # seconds from SIGKILL to the new daemon active
        self.kill_times = []
        self.kill_wall = []
        self.tolerated = set(filter(None, os.environ.get("RKTLET_CHAOS_TOLERATE", "").split(",")))
        self.noted = []
        self.step = "setup"
        self.workers = []
        self.service = None
        self.registry = self.proxy = None
        self.since = time.time()
        self.trace = []  # (start, end, op, worker, kind, what, outcome) of every call, for failures
        self.t0 = time.monotonic()

    # --- setup and teardown ---

    def dump_trace(self):
        keep = os.environ.get("RKTLET_CHAOS_TRACE")
        if keep:  # every call and kill, for reading a run at leisure
            events = [(a, f"{a - self.t0:8.3f}-{b - self.t0:8.3f} op {op} worker {w}: {kind} {what}: {res[:200]}")
                      for a, b, op, w, kind, what, res in list(self.trace)]
            events += [(t, f"{t - self.t0:8.3f} KILL") for t in self.kill_times]
            with open(keep, "w") as f:
                f.write("\n".join(e for _, e in sorted(events)) + "\n")

    def raw_logs(self, c, n=8):
        """The first lines of each of a container's log files, as they are on disk."""
        out = []
        for path in c.logs():
            try:
                with open(path, errors="replace") as f:
                    head = f.read().split("\n")[:n]
                out.append(f"{path} ({os.path.getsize(path)} bytes): " + " | ".join(head))
            except OSError as e:
                out.append(f"{path}: {e}")
        return "\n" + "\n".join(out)

    def kill_clock(self):
        """The kills' wall-clock times, as the CRI log's timestamps say them."""
        return ", ".join(time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
                         for t in self.kill_wall)

    def tolerate(self, name, what, note=True):
        """Exploring past a known bug (RKTLET_CHAOS_TOLERATE=name,...): noted, not a failure."""
        if name not in self.tolerated:
            return False
        if note:
            self.noted.append(f"{self.step}: {what}")
        return True

    def fail(self, what):
        raise ChaosFailure(f"chaos seed {self.seed}, {self.step}: {what}\n"
                           f"(replay: RKTLET_CHAOS_SEED={self.seed})" + self.journal_of(what))

    def journal_of(self, what, n=60):
        """The journal lines (rktlet's and systemd's) that name the objects a failure names."""
        import re
        ids = sorted(set(re.findall(r"\b[0-9a-f]{12}\b", what)))[:6]
        if not ids:
            return ""
        out = subprocess.run(["journalctl", "--no-pager", "-q", "-o", "short-monotonic", f"--since=@{self.since:.0f}"],
                             capture_output=True, text=True).stdout
        lines = [line for line in out.splitlines() if any(i in line for i in ids)]
        calls = [f"  {a - self.t0:8.3f}-{b - self.t0:8.3f} op {op} worker {w}: {kind} {what}: {res[:160]}"
                 for a, b, op, w, kind, what, res in list(self.trace) if any(i in what or i in res for i in ids)]
        kills = ", ".join(f"{t - self.t0:.3f}" for t in self.kill_times)
        return (f"\ncalls naming {', '.join(ids)} (seconds since the start; kills at {kills}):\n" +
                "\n".join(calls[-n:]) +
                f"\njournal of {', '.join(ids)}:\n" + "\n".join(lines[-n:]))

    def setup(self):
        self.since = time.time() - 1
        os.makedirs(self.dir, exist_ok=True)
        self.registry = reg.Registry(os.path.join(self.dir, "registry"))
        self.proxy = reg.Proxy(self.registry.url)
        self.proxy.rate = 8 * 1024 * 1024  # blob bodies: a 1.5 MB layer takes ~0.2 s
        self.proxy.httpd.handle_error = lambda *a: None  # a killed rktlet resets its connections: not news
        # The containers' images (two configs, one layer), pulled before the workload and again
        # (no-ops but for the manifest) during it; never removed while containers exist.
        self.ctr_images = []
        for i, env in enumerate((["PATH=/bin"], ["PATH=/bin", "VARIANT=2"])):
            image = reg.full_busybox_image(env=env)
            image.push(self.registry, "chaos/busybox", f"v{i + 1}")
            self.ctr_images.append((f"{self.registry.url}/chaos/busybox:v{i + 1}", image))
        # Each worker's own image, pulled and removed by it alone, through the slow proxy.
        self.own_images = []
        for w in range(self.nworkers):
            image = reg.Image([reg.base_layer(), reg.random_layer(1536 * 1024, name=f"w{w}")])
            image.push(self.registry, f"chaos/pull{w}", "v1")
            self.own_images.append((f"{self.proxy.url}/chaos/pull{w}:v1", image))

        self.ipam = os.path.join(self.dir, "ipam")
        conf = os.path.join(self.dir, "net.d")
        os.makedirs(conf, exist_ok=True)
        network = {"cniVersion": "1.0.0", "name": "rktlet-chaos", "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": f"{SUBNET}.0/24"}]], "dataDir": self.ipam}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        with open(os.path.join(conf, "10-chaos.conflist"), "w") as f:
            json.dump(network, f)
        self.ipam = os.path.join(self.ipam, "rktlet-chaos")
        # The bridge exists before the baseline: the bridge plugin makes it at the first ADD and
        # no DEL removes it (CNI's way, not a leak).
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
            subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
            subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)

        config = ("[Registries]\nInsecure=" + ",".join([self.registry.url, self.proxy.url]) + "\n")
        self.service = Service(os.path.join(self.dir, "svc"), config,
                               ["--cni-conf-dir", conf, "--cni-bin-dir", CNI_BIN], log_level=self.log_level)
        d = self.service.d
        self.state = os.path.join(d.dir, "run")
        self.root = os.path.join(d.dir, "lib")
        self.baseline = self.snapshot()
        self.service.install()
        self.service.start()
        rt = d.images()
        for ref, image in self.ctr_images:
            got = rt.PullImage(pb().PullImageRequest(image=pb().ImageSpec(image=ref)), timeout=120).image_ref
            assert got == image.id, (ref, got, image.id)

    def snapshot(self):
        """What the machine has that rktlet could leave behind."""
        return {"units": list_units(), "mounts": mountpoints(), "links": links(),
                "bridge ports": sorted(bridge_ports().values()), "host-local": self.ipam_allocations(),
                "dirs": {p: listdir(os.path.join(base, p)) for base in (self.state, self.root)
                         for p in ("pods", "containers", "runc")},
                "images": self.store_files(),
                "processes": processes(CNI_PLUGINS)}

    def teardown(self):
        if self.service is not None:
            self.service.uninstall()
        if self.proxy is not None:
            self.proxy.stop()
        if self.registry is not None:
            self.registry.stop()

    # --- the workers' side ---

    def take(self):
        with self.cond:
            while self.paused and not self.abort:
                self.cond.wait()
            if self.abort or self.dispatched >= self.ops:
                return None
            self.dispatched += 1
            self.busy += 1
            self.cond.notify_all()
            return self.dispatched

    def done(self):
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def record(self, kind, outcome):
        with self.cond:
            self.outcomes[kind, outcome] += 1

    def call(self, worker, n, kind, what, fn, request, timeout=T):
        """The call's result, or "died" (the daemon was killed under it) or "error" (recorded)."""
        epoch = self.epoch
        t0 = time.monotonic()
        try:
            r = fn(request, timeout=timeout)
            self.record(kind, "ok")
            said = "ok " + str(r).strip().replace("\n", " ")
            self.trace.append((t0, time.monotonic(), n, worker.w, kind, what, said))
            return r
        except grpc.RpcError as e:
            code = e.code()
            self.trace.append((t0, time.monotonic(), n, worker.w, kind, what, f"{code.name}: {e.details()}"))
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and (epoch % 2 or epoch != self.epoch):
                self.record(kind, "died")
                return "died"
            self.record(kind, f"error {code.name}")
            with self.cond:
                self.errors.append(f"op {n} (worker {worker.w}, {self.step}): {kind} {what}: "
                                   f"{code.name}: {e.details()}")
            return "error"

    # --- the controller's side ---

    def pause(self):
        with self.cond:
            self.paused = True
            deadline = time.monotonic() + 3 * T
            while self.busy:
                if time.monotonic() > deadline:
                    self.fail(f"{self.busy} calls still busy {3 * T}s after the kill")
                self.cond.wait(1)

    def resume(self):
        with self.cond:
            self.paused = False
            self.cond.notify_all()

    def run(self):
        start = time.monotonic()
        self.setup()
        plan = sorted(self.rng.sample(range(1, self.ops), min(self.kills, self.ops - 1)))
        delays = [self.rng.uniform(0, 0.4) for _ in plan]
        self.say(f"chaos: seed {self.seed}, {self.ops} operations, {len(plan)} kills at operations {plan}, "
                 f"{self.nworkers} workers")
        self.workers = [Worker(self, w) for w in range(self.nworkers)]
        threads = [threading.Thread(target=w.loop, name=f"chaos-worker-{w.w}", daemon=True) for w in self.workers]
        try:
            for t in threads:
                t.start()
            for i, (at, delay) in enumerate(zip(plan, delays)):
                with self.cond:
                    while self.dispatched < at and not self.abort and any(t.is_alive() for t in threads):
                        self.cond.wait(1)
                time.sleep(delay)
                self.step = f"kill {i + 1}/{len(plan)} (due at op {at}, came at op {self.dispatched})"
                with self.cond:
                    self.epoch += 1
                t0 = time.monotonic()
                self.kill_times.append(t0)
                self.kill_wall.append(time.time())
                old = self.service.kill()
                self.killed += 1
                self.pause()
                self.service.wait_restarted(old)
                self.restarts.append(time.monotonic() - t0)
                self.check()
                with self.cond:
                    self.epoch += 1
                self.resume()
            for t in threads:
                t.join(600)
                if t.is_alive():
                    self.fail(f"{t.name} did not finish")
            for w in self.workers:
                if w.exc:
                    raise w.exc
            self.step = "after the last operation"
            self.check()
            self.step = "the end"
            self.remove_everything()
        except BaseException:
            with self.cond:
                self.abort = True
                self.cond.notify_all()
            for t in threads:
                t.join(120)
            self.dump_trace()
            keep = os.environ.get("RKTLET_CHAOS_JOURNAL")
            if keep:  # the whole journal of the run, for a failure to be read at leisure
                with open(keep, "w") as f:
                    subprocess.run(["journalctl", "--no-pager", "-q", "-o", "short-monotonic",
                                    f"--since=@{self.since:.0f}"], stdout=f, text=True)
                self.say(f"chaos: the journal of the run is in {keep}")
            try:
                self.best_effort_cleanup()
            finally:
                self.teardown()
            raise
        self.teardown()
        self.elapsed = time.monotonic() - start
        self.dump_trace()
        if self.errors:
            self.fail(f"{len(self.errors)} calls failed for another reason than a kill:\n  " +
                      "\n  ".join(self.errors[:30]))
        return self

    # --- the checks ---

    def model_pods(self):
        return [p for w in self.workers for p in w.pods]

    def check(self):
        """After a restart (or at the end): every check, against systemd and the kernel."""
        d = self.service.d
        ch = d.channel()
        rt = d.runtime(ch)
        try:
            self.check_listed(rt)
            self.check_true_state(rt)
            self.check_nothing_unowned(rt)
            self.check_logs()
            self.check_images(d.images(ch))
        finally:
            ch.close()
        self.checks["checks"] += 1

    def listed(self, rt):
        P = pb()
        pods = {p.id: p for p in rt.ListPodSandbox(P.ListPodSandboxRequest(), timeout=T).items}
        ctrs = {c.id: c for c in rt.ListContainers(P.ListContainersRequest(), timeout=T).containers}
        return pods, ctrs

    def check_listed(self, rt):
        """The listing is what the calls said. A restarted rktlet undoes half-made pods and
        containers in the background (listed NOTREADY until then), so give it time to settle."""
        last = []

        def settled():
            last[:] = self.resolve(rt, apply=False)
            return not last
        try:
            wait_until(settled, SETTLE, interval=0.2, what="the listing to be what the calls said")
        except TimeoutError:
            self.fail("listed:\n  " + "\n  ".join(last))
        problems = self.resolve(rt, apply=True)
        if problems:
            self.fail("listed:\n  " + "\n  ".join(problems))

    def resolve(self, rt, apply):
        """What in the listing contradicts the model; with apply, the model takes the listing's word
        where the calls left it uncertain (a run that died: was it made?)."""
        P = pb()
        pods, ctrs = self.listed(rt)
        by_uid = {p.metadata.uid: p for p in pods.values()}
        names = {(c.pod_sandbox_id, c.metadata.name): c for c in ctrs.values()}
        owned_pods, owned_ctrs = set(), set()
        problems = []
        for w in self.workers:
            for pod in list(w.pods):
                pod_id = pod.id or (by_uid[pod.uid].id if pod.uid in by_uid else None)
                listed = pods.get(pod_id) if pod_id else None
                if listed is None:
                    if "gone" not in pod.maybe:
                        problems.append(f"{pod} was reported created and is not listed")
                    elif apply:
                        w.forget(pod)
                    continue
                owned_pods.add(pod_id)
                state = "ready" if listed.state == P.SANDBOX_READY else "notready"
                if state not in pod.maybe:
                    problems.append(f"{pod} is listed {P.PodSandboxState.Name(listed.state)}")
                    continue
                if apply:
                    pod.id, pod.maybe = pod_id, {state}
                    self.checks["pods listed"] += 1
                for c in list(pod.ctrs):
                    cid = c.id or (names[pod_id, c.name].id if (pod_id, c.name) in names else None)
                    lc = ctrs.get(cid) if cid else None
                    if lc is None:
                        if "gone" not in c.maybe:
                            problems.append(f"{c} was reported created and is not listed")
                        elif apply:
                            pod.ctrs.remove(c)
                        continue
                    owned_ctrs.add(cid)
                    if lc.pod_sandbox_id != pod_id:
                        problems.append(f"{c} is listed in pod {lc.pod_sandbox_id}")
                    if apply:
                        c.id = cid
                        self.checks["containers listed"] += 1
        for pod_id, p in pods.items():
            if pod_id not in owned_pods:
                problems.append(f"pod {pod_id[:12]} ({p.metadata.name}, "
                                f"{P.PodSandboxState.Name(p.state)}) is listed but no call made it, or one removed it")
        for cid, c in ctrs.items():
            if cid not in owned_ctrs:
                problems.append(f"container {cid[:12]} ({c.metadata.name}, {P.ContainerState.Name(c.state)}) "
                                f"is listed but no call made it, or one removed it")
        return problems

    def check_true_state(self, rt):
        P = pb()
        pods = [p for p in self.model_pods()]
        ctrs = [c for p in pods for c in p.ctrs]

        # Pods: what the state means, on systemd's and the kernel's side.
        mounts = mountpoints()
        ipam = self.ipam_allocations()
        ports = bridge_ports()
        slices = unit_props([f"rktlet-pod{p.id}.slice" for p in pods])
        inits = unit_props([f"rktlet-init-{p.id}.service" for p in pods if p.share_pid])
        for pod in pods:
            st = rt.PodSandboxStatus(P.PodSandboxStatusRequest(pod_sandbox_id=pod.id), timeout=T).status
            slice_ = slices[f"rktlet-pod{pod.id}.slice"]
            mine = sorted(ip for ip, owner in ipam.items() if owner == pod.id)
            if "ready" in pod.maybe:
                if st.state != P.SANDBOX_READY:
                    self.fail(f"{pod}: listed READY, status says {P.PodSandboxState.Name(st.state)}")
                if slice_.get("ActiveState") != "active":
                    if pod.broken or self.tolerate("ready-half-torn-down",
                                                   f"{pod} is READY but its slice is {slice_.get('ActiveState')}"):
                        pod.broken = True
                        continue
                    self.fail(f"{pod} is READY but its slice is {slice_.get('ActiveState')}")
                if pod.share_pid:
                    init = inits[f"rktlet-init-{pod.id}.service"]
                    pid = int(init.get("MainPID") or 0)
                    if not (pid and alive(pid)):
                        if pod.broken or self.tolerate("ready-half-torn-down",
                                                       f"{pod} is READY but its PID 1 ({init.get('Id')}) is "
                                                       f"{init.get('ActiveState')}"):
                            pod.broken = True
                            continue
                        self.fail(f"{pod} is READY but the PID 1 of its PID namespace ({init.get('Id')}) is "
                                  f"{init.get('LoadState')} {init.get('ActiveState')}, MainPID {pid}")
                for ns in ("net", "ipc", "uts") + (("pid",) if pod.share_pid else ()):
                    if not mounts.get(self.ns_pin(pod, ns)):
                        self.fail(f"{pod} is READY but its {ns} namespace is not pinned")
                if mine != [st.network.ip]:
                    self.fail(f"{pod} is READY with ip {st.network.ip!r}, host-local gave it {mine}")
                peer = peer_ifindex(self.ns_pin(pod, "net"))
                if peer not in ports:
                    self.fail(f"{pod} is READY but its veth (ifindex {peer}) is not on {BRIDGE} {ports}")
                self.checks["ready pods: slice, pins, address, veth"] += 1
            else:
                if st.state != P.SANDBOX_NOTREADY:
                    self.fail(f"{pod}: listed NOTREADY, status says {P.PodSandboxState.Name(st.state)}")
                if pod.stopped_ok:
                    # Stopped for sure (a StopPodSandbox answered): its slice, namespaces and
                    # address are gone. (A stop cut short by a kill may leave them to the next.)
                    held = [ns for ns in ("net", "ipc", "uts", "pid") if mounts.get(self.ns_pin(pod, ns))]
                    if slice_.get("ActiveState") == "active" or held or mine:
                        self.fail(f"{pod} was stopped, yet its slice is {slice_.get('ActiveState')}, it has "
                                  f"namespaces pinned {held} and addresses {mine}")
                    self.checks["stopped pods: no slice, pins, address"] += 1
                else:
                    self.checks["notready pods (a stop cut short)"] += 1

        # Containers: RUNNING exactly when the unit's main process runs. rktlet hears of exits from
        # systemd's signals, so give it time to agree (an exit may come while we look).
        last = []

        wrong = set()

        def agree():
            last.clear()
            wrong.clear()
            units = [f"rktlet-ctr-{c.id}.service" for c in ctrs]
            before = unit_props(units)
            running_before = {u: int(p.get("MainPID") or 0) > 0 and alive(int(p["MainPID"])) for u, p in before.items()}
            statuses = [rt.ContainerStatus(P.ContainerStatusRequest(container_id=c.id), timeout=T).status for c in ctrs]
            after = unit_props(units)
            for c, unit, st in zip(ctrs, units, statuses):
                if c.broken:
                    continue  # a tolerated bug made it so: only its removal counts
                u = after[unit]
                pid = int(u.get("MainPID") or 0)
                running = pid > 0 and alive(pid)
                if running != running_before[unit]:
                    last.append(f"{c}: its unit changed while looked at")
                    continue
                state = CTR_NAMES.get(st.state, "?")
                if c.start_died and state == "exited" and st.exit_code == 128 and (running or st.exit_code != int(
                        u.get("ExecMainStatus") or 0)) and self.tolerate(
                        "start-error-while-running", f"{c}: EXITED 128 {st.message!r} while systemd ran it",
                        note=False):
                    wrong.add(c)
                    continue
                if running and state != "running":
                    last.append(f"{c}: main process {pid} runs ({u.get('ActiveState')}/{u.get('SubState')}), "
                                f"rktlet says {state}")
                elif not running and state == "running":
                    last.append(f"{c}: rktlet says RUNNING, the unit is {u.get('LoadState')} "
                                f"{u.get('ActiveState')}/{u.get('SubState')} MainPID {pid}")
                elif state not in ("running", "exited", "created"):
                    last.append(f"{c}: rktlet says {state}")
                elif state not in c.maybe:
                    last.append(f"{c}: {state} is not what its history allows")
                elif state == "running" and c.pid and pid != c.pid:
                    last.append(f"{c}: ran as pid {c.pid}, now {pid}")
                elif state == "running" and u.get("Slice") != f"rktlet-pod{c.pod.id}.slice":
                    last.append(f"{c}: its unit is in {u.get('Slice')}")
                elif state == "created" and u.get("LoadState") != "not-found":
                    last.append(f"{c}: CREATED, but systemd has its unit ({u.get('ActiveState')}/{u.get('SubState')})")
                elif state == "exited" and u.get("LoadState") == "loaded" and u.get("ExecMainCode") in ("1", "2", "3"):
                    code, status = int(u["ExecMainCode"]), int(u["ExecMainStatus"])
                    want = status if code == 1 else 128 + status
                    if st.exit_code != want:
                        last.append(f"{c}: exit code {st.exit_code}, systemd recorded {want} ({u})")
                    elif c.kind == "quitter" and not c.stopped and st.exit_code != 3:
                        last.append(f"{c}: a quitter that nobody stopped exited {st.exit_code}")
                elif state == "exited" and st.exit_code == 255 and st.reason == "Unknown" and not c.pod_stopped:
                    last.append(f"{c}: exited 'Unknown' although nothing stopped its unit behind rktlet's back")
            return not last

        try:
            wait_until(agree, SETTLE, interval=0.2, what="rktlet to agree with systemd")
        except TimeoutError:
            self.fail("containers' states are not what systemd says:\n  " + "\n  ".join(last))
        props = unit_props([f"rktlet-ctr-{c.id}.service" for c in ctrs])
        mounts = mountpoints()
        for c in wrong:
            self.noted.append(f"{self.step}: {c}: EXITED 128 (StartError) while systemd ran it")
            c.broken = True
        for c in ctrs:
            st = rt.ContainerStatus(P.ContainerStatusRequest(container_id=c.id), timeout=T).status
            state = CTR_NAMES[st.state]
            c.maybe = {state}
            c.start_died = False
            if c.broken:
                c.maybe = {"created", "running", "exited"}
                continue
            if state == "running" and c.kind == "quitter":
                c.maybe = {"running", "exited"}  # it ends on its own
            rootfs = os.path.join(self.state, "containers", c.id, "rootfs")
            if state in ("created", "running") and not mounts.get(rootfs):
                # What it runs (or will run) in: its overlay rootfs.
                if self.tolerate("rootfs-gone", f"{c} is {state.upper()} without its rootfs mounted"):
                    c.broken = True
                    continue
                self.fail(f"{c} is {state.upper()}, but its rootfs is not mounted")
            self.checks["created and running containers: rootfs mounted"] += state in ("created", "running")
            if state == "running":
                c.pid = int(props[f"rktlet-ctr-{c.id}.service"]["MainPID"])
                self.checks["running containers: main process, same pid"] += 1
            else:
                self.checks[f"{state} containers: no main process"] += 1

    def ns_pin(self, pod, ns):
        return os.path.join(self.state, "pods", pod.id, "ns", ns)

    def ipam_allocations(self):
        """{address: the pod id host-local gave it to}."""
        out = {}
        for f in listdir(self.ipam):
            if not f.startswith(SUBNET + "."):
                continue
            try:
                with open(os.path.join(self.ipam, f)) as fh:
                    out[f] = fh.read().split()[0]
            except (OSError, IndexError):
                out[f] = "?"
        return out

    def leftovers(self):
        """What exists on the machine that no listed object owns (the model is what is listed)."""
        pods = self.model_pods()
        pod_ids = {p.id for p in pods}
        ctr_ids = {c.id for p in pods for c in p.ctrs}
        found = []
        owned_units = ({f"rktlet-pod{i}.slice" for i in pod_ids} | {f"rktlet-init-{i}.service" for i in pod_ids} |
                       {f"rktlet-ctr-{i}.service" for i in ctr_ids})
        found += [f"unit {u}" for u in list_units() if u not in owned_units and u not in self.baseline["units"]]
        prefixes = ([os.path.join(self.state, "pods", i) + "/" for i in pod_ids] +
                    [os.path.join(self.state, "containers", i) + "/" for i in ctr_ids])
        now = mountpoints()
        for m, n in now.items():
            extra = n - self.baseline["mounts"].get(m, 0)
            if extra > 0 and not any(m.startswith(p) for p in prefixes):
                found.append(f"mount {m}" + (f" ({extra} more than before)" if n > 1 else ""))
        for ip, owner in self.ipam_allocations().items():
            if owner not in pod_ids:
                found.append(f"host-local address {ip} of {owner[:12]}")
        # A pod owns the veth whose peer is its eth0 while its network namespace is pinned (a
        # NOTREADY pod whose stop was cut short still holds it, until it is stopped again).
        peers = {peer_ifindex(self.ns_pin(p, "net")): p for p in pods if now.get(self.ns_pin(p, "net"))}
        for ifindex, name in bridge_ports().items():
            if ifindex not in peers:
                found.append(f"veth {name} (ifindex {ifindex}) on {BRIDGE}; the listed pods: " +
                             ", ".join(f"{p.id[:12]} {sorted(p.maybe)}" for p in pods))
        for base in (self.state, self.root):
            for kind, ids in (("pods", pod_ids), ("containers", ctr_ids)):
                for e in listdir(os.path.join(base, kind)):
                    if e not in ids:
                        found.append(f"directory {base}/{kind}/{e}")
        for e in listdir(os.path.join(self.state, "runc")):
            if e not in ctr_ids:
                found.append(f"runc state {self.state}/runc/{e}")
        # Removed containers' trees go to the trash, which a child empties (at the latest at the
        # next start, for what a kill cut short).
        found += [f"trash {self.root}/trash/{e}" for e in listdir(os.path.join(self.root, "trash"))]
        found += [f"process {pid} {comm}" for pid, comm in processes(CNI_PLUGINS)
                  if (pid, comm) not in self.baseline["processes"]]
        # The log pipes in systemd's fd store: two per container that was started (systemd drops
        # a pipe once its writers are gone), none once the container is removed.
        started = [c for p in pods for c in p.ctrs if c.maybe != {"created"}]
        stored = int(show(SERVICE, "NFileDescriptorStore") or 0)
        if stored > 2 * len(started):
            found.append(f"{stored} fds in rktlet.service's fd store, for {len(started)} started containers")
        return found

    def check_nothing_unowned(self, rt):
        last = []

        def clean():
            last[:] = self.leftovers()
            return not last
        try:
            wait_until(clean, SETTLE, interval=0.2, what="nothing unowned")
        except TimeoutError:
            self.fail("left behind, owned by no listed object:\n  " + "\n  ".join(last))
        self.checks["leak checks (units, mounts, veths, addresses, runc, dirs, processes, fd store)"] += 1

    def check_logs(self):
        """Every running counter's log goes on from where it was, no line lost or doubled."""
        counters = [c for p in self.model_pods() for c in p.ctrs if c.kind == "counter" and c.maybe == {"running"}]
        if not counters:
            return
        before = {}
        for c in counters:
            lines, bad = counted_lines(c.logs())
            if bad:
                self.fail(f"{c}: its log has {bad[1]!r} where line-{bad[0]} belongs (around: {bad[2]}; "
                          f"kills at {self.kill_clock()})" + self.raw_logs(c))
            before[c] = len(lines)
        last = []

        def grew():
            last.clear()
            for c in counters:
                lines, bad = counted_lines(c.logs())
                if bad:
                    self.fail(f"{c}: its log has {bad[1]!r} where line-{bad[0]} belongs (around: {bad[2]}; "
                              f"kills at {self.kill_clock()})" + self.raw_logs(c))
                if len(lines) < before[c] + 3:
                    last.append(f"{c}: {len(lines)} lines, {before[c]} before the check")
            return not last
        try:
            wait_until(grew, 15, interval=0.1, what="the counters' logs to go on")
        except TimeoutError:
            self.fail("logs stopped after the restart:\n  " + "\n  ".join(last))
        self.checks["running counters: logs go on, no line lost"] += len(counters)

    def store_files(self):
        images = os.path.join(self.root, "images")
        return {k: listdir(os.path.join(images, k))
                for k in ("blobs/sha256", "blobs/tmp", "layers", "records", "trash")}

    def check_images(self, irt):
        P = pb()
        listed = {i.id: i for i in irt.ListImages(P.ListImagesRequest(), timeout=T).images}
        for ref, image in self.ctr_images:
            if image.id not in listed:
                self.fail(f"image {ref} ({image.id}) was pulled and is not listed")
        for w in self.workers:
            ref, image = self.own_images[w.w]
            present = image.id in listed
            if present and "present" not in w.image_maybe or not present and "absent" not in w.image_maybe:
                self.fail(f"image {ref} is {'listed' if present else 'not listed'}; its calls allow {w.image_maybe}")
            w.image_maybe = {"present" if present else "absent"}
        images = os.path.join(self.root, "images")
        last = []

        def consistent():
            last.clear()
            files = self.store_files()
            records = {}
            for r in files["records"]:
                try:
                    with open(os.path.join(images, "records", r)) as f:
                        records[r] = json.load(f)
                except (OSError, ValueError) as e:
                    last.append(f"record {r}: {e}")
            required, allowed, layers = set(), set(), set()
            for rec in records.values():
                required.add(rec["id"].split(":", 1)[1])
                allowed |= {d.split("@", 1)[1].split(":", 1)[1] for d in rec.get("repoDigests") or []}
                for layer in rec.get("layers") or []:
                    required.add(layer["digest"].split(":", 1)[1])
                    layers.add(layer["chainId"].split(":", 1)[1])
            ids = {rec["id"] for rec in records.values()}
            if ids != set(listed):
                last.append(f"records {sorted(ids)} but listed {sorted(listed)}")
            for b in files["blobs/sha256"]:
                if b not in required | allowed:
                    last.append(f"blob {b[:12]} that no record uses")
            for b in required - set(files["blobs/sha256"]):
                last.append(f"blob {b[:12]} missing")
            for e in files["layers"]:
                name = e[:-5] if e.endswith(".json") else e
                if name not in layers:
                    last.append(f"layer entry {e} that no record uses")
            for layer in layers:
                if not os.path.isdir(os.path.join(images, "layers", layer)):
                    last.append(f"layer {layer[:12]} missing")
            if files["blobs/tmp"]:
                last.append(f"partial downloads {files['blobs/tmp']}")
            if files["trash"]:
                last.append(f"trash {files['trash']}")
            return not last
        try:
            wait_until(consistent, SETTLE, interval=0.2, what="the image store to be consistent")
        except TimeoutError:
            self.fail("the image store:\n  " + "\n  ".join(last))
        self.checks["image store: records = listed, no unused or partial blob or layer"] += 1

    # --- the end ---

    def describe(self, rt, pod_id):
        """A pod's and its containers' records, units and statuses, for a failure message."""
        P = pb()
        out = []
        ctrs = rt.ListContainers(P.ListContainersRequest(filter=P.ContainerFilter(pod_sandbox_id=pod_id)),
                                 timeout=10).containers
        for kind, i in [("pods", pod_id)] + [("containers", c.id) for c in ctrs]:
            try:
                with open(os.path.join(self.root, kind, i, "state.json")) as f:
                    rec = json.load(f)
                rec = {k: v for k, v in rec.items() if isinstance(v, (bool, int)) or k == "state"}
            except (OSError, ValueError) as e:
                rec = str(e)
            unit = f"rktlet-pod{i}.slice" if kind == "pods" else f"rktlet-ctr-{i}.service"
            u = unit_props([unit])[unit]
            line = (f"{kind[:-1]} {i[:12]}: record {rec}; {unit}: {u.get('LoadState')} {u.get('ActiveState')}/"
                    f"{u.get('SubState')} MainPID {u.get('MainPID')}")
            if kind == "containers":
                st = rt.ContainerStatus(P.ContainerStatusRequest(container_id=i), timeout=10).status
                line += f"; rktlet says {P.ContainerState.Name(st.state)} {st.exit_code} {st.reason!r}"
            out.append(line)
        return "\n" + "\n".join(out)

    def remove_everything(self):
        P = pb()
        d = self.service.d
        rt, irt = d.runtime(), d.images()
        for p in rt.ListPodSandbox(P.ListPodSandboxRequest(), timeout=T).items:
            try:
                rt.RemovePodSandbox(P.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=T)
            except grpc.RpcError as e:
                self.fail(f"RemovePodSandbox of pod {p.id[:12]} ({p.metadata.name}): {e.code().name}: {e.details()}"
                          + self.describe(rt, p.id))
        for i in irt.ListImages(P.ListImagesRequest(), timeout=T).images:
            try:
                irt.RemoveImage(P.RemoveImageRequest(image=P.ImageSpec(image=i.id)), timeout=T)
            except grpc.RpcError as e:
                self.fail(f"RemoveImage {i.id} {list(i.repo_tags)}: {e.code().name}: {e.details()}")
        for w in self.workers:
            w.pods = []
        if rt.ListContainers(P.ListContainersRequest(), timeout=T).containers:
            self.fail("containers are listed after every pod was removed")
        want = dict(self.baseline, images=None)
        last = {}

        def as_before():
            now = dict(self.snapshot(), images=None)
            last.clear()
            last.update({k: (want[k], now[k]) for k in want if now[k] != want[k]})
            files = self.store_files()
            if any(files.values()):
                last["images"] = ({}, {k: v for k, v in files.items() if v})
            return not last
        try:
            wait_until(as_before, SETTLE, interval=0.2, what="the machine to be as it was")
        except TimeoutError:
            self.fail("after removing everything, the machine is not as it was:\n  " +
                      "\n  ".join(f"{k}: before {b}, now {a}" for k, (b, a) in last.items()))
        self.checks["the end: the machine as before"] += 1
        stored = int(show(SERVICE, "NFileDescriptorStore") or 0)
        if stored:
            self.fail(f"{stored} fds left in rktlet.service's fd store with no container left")
        result = self.service.stop()
        if result != "success":
            self.fail(f"rktlet.service stopped with Result={result}:\n{journal_tail(self.since)}")
        reports = sanitizer_reports(self.since)
        if reports:
            self.fail("sanitizer reports in rktlet's journal:\n  " + "\n  ".join(reports[:20]))

    def best_effort_cleanup(self):
        """After a failure: leave the harness clean for the next test (errors ignored)."""
        P = pb()
        try:
            if self.service and show(SERVICE, "ActiveState") != "active":
                self.service.start()
            d = self.service.d
            rt, irt = d.runtime(), d.images()
            for p in rt.ListPodSandbox(P.ListPodSandboxRequest(), timeout=T).items:
                try:
                    rt.RemovePodSandbox(P.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=T)
                except grpc.RpcError:
                    pass
            for i in irt.ListImages(P.ListImagesRequest(), timeout=T).images:
                try:
                    irt.RemoveImage(P.RemoveImageRequest(image=P.ImageSpec(image=i.id)), timeout=T)
                except grpc.RpcError:
                    pass
        except Exception as e:  # noqa: BLE001 - cleaning up after a failure already reported
            self.say(f"chaos: clean-up after the failure: {e!r}")
        for u in list_units():
            # SIGKILL first: a stop would wait out TimeoutStopSec= for a process ignoring SIGTERM.
            systemctl("kill", "--signal=SIGKILL", u, check=False)
            systemctl("stop", u, check=False)
            systemctl("reset-failed", u, check=False)

    # --- the summary ---

    def table(self):
        kinds = [k for k in OPS if any(kk == k for kk, _ in self.outcomes)]
        cols = ["ok", "died"] + sorted({o for _, o in self.outcomes if o not in ("ok", "died")})
        lines = [f"chaos seed {self.seed}: {sum(self.outcomes.values())} operations, {self.killed} kills "
                 f"(restarted in {min(self.restarts, default=0):.2f}-{max(self.restarts, default=0):.2f} s), "
                 f"{self.nworkers} workers, {getattr(self, 'elapsed', 0):.1f} s",
                 f"{'operation':<20}" + "".join(f"{c:>8}" for c in cols) + f"{'total':>8}"]
        for k in kinds:
            row = [self.outcomes[k, c] for c in cols]
            lines.append(f"{k:<20}" + "".join(f"{n:>8}" for n in row) + f"{sum(row):>8}")
        tot = [sum(self.outcomes[k, c] for k in kinds) for c in cols]
        lines.append(f"{'all':<20}" + "".join(f"{n:>8}" for n in tot) + f"{sum(tot):>8}")
        lines.append(f"checks passed: {self.checks['checks']} rounds (after each restart and at the end)")
        for n in self.noted:
            lines.append(f"  tolerated: {n}")
        for k, n in self.checks.items():
            if k != "checks":
                lines.append(f"  {n:>6}  {k}")
        return "\n".join(lines)


class Worker:
    """One client: a gRPC channel of its own, the pods and containers it made, its own image."""

    def __init__(self, chaos, w):
        self.c, self.w = chaos, w
        self.rng = random.Random(f"chaos-{chaos.seed}-worker-{w}")
        self.ch = chaos.service.d.channel()
        self.rt = chaos.service.d.runtime(self.ch)
        self.irt = chaos.service.d.images(self.ch)
        self.pods = []
        self.n = 0
        self.image_maybe = {"absent"}
        self.exc = None

    def forget(self, pod):
        self.pods.remove(pod)

    def choices(self):
        out = []
        if len(self.pods) < MAX_PODS:
            out += [("RunPodSandbox", None)] * 3
        for p in self.pods:
            if p.id is None:
                continue  # its run died: the next check finds out whether it exists
            if p.broken:
                out.append(("RemovePodSandbox", p))
                continue
            if p.maybe == {"ready"} and len(p.ctrs) < MAX_CTRS:
                out += [("CreateContainer", p)] * 3
            if p.maybe == {"ready"}:
                out.append(("StopPodSandbox", p))
            out.append(("RemovePodSandbox", p))
            for c in p.ctrs:
                if c.id is None:
                    continue
                if c.broken:
                    out.append(("RemoveContainer", c))
                    continue
                if c.maybe == {"created"} and p.maybe == {"ready"}:
                    out += [("StartContainer", c)] * 5
                if c.maybe == {"running"}:
                    out.append(("StopContainer", c))
                    if c.kind == "counter":
                        out += [("ReopenContainerLog", c)] * 2
                out.append(("RemoveContainer", c))
        # Pulls of the containers' images are no-ops but for the manifest (and join each other);
        # the worker's own image is pulled whole after each removal, slowly, through the proxy.
        out += [("PullImage", "ctr"), ("PullImage", "own"), ("RemoveImage", "own")]
        return out

    def loop(self):
        try:
            while True:
                n = self.c.take()
                if n is None:
                    return
                try:
                    kind, obj = self.rng.choice(self.choices())
                    getattr(self, kind)(n, obj)
                finally:
                    self.c.done()
        except BaseException as e:  # noqa: BLE001 - handed to the controller
            self.exc = e
            with self.c.cond:
                self.c.abort = True
                self.c.cond.notify_all()

    def call(self, n, kind, what, fn, request, timeout=T):
        return self.c.call(self, n, kind, what, fn, request, timeout)

    # --- the operations (each leaves the model saying what the outcome allows) ---

    def RunPodSandbox(self, n, _):
        P = pb()
        self.n += 1
        name = f"w{self.w}-p{self.n}"
        uid = f"chaos-{self.c.seed}-{self.w}-{self.n}"
        share_pid = self.rng.random() < 0.25
        cfg = P.PodSandboxConfig(metadata=P.PodSandboxMetadata(name=name, namespace="chaos", uid=uid),
                                 hostname=name, labels={"worker": str(self.w)})
        ns = cfg.linux.security_context.namespace_options
        ns.network, ns.ipc = P.POD, P.POD
        ns.pid = P.POD if share_pid else P.CONTAINER
        cfg.log_directory = os.path.join(self.c.dir, "logs", f"chaos_{name}_{uid}")
        os.makedirs(cfg.log_directory, exist_ok=True)
        pod = Pod(self, self.n, cfg, share_pid)
        self.pods.append(pod)
        r = self.call(n, "RunPodSandbox", name, self.rt.RunPodSandbox, P.RunPodSandboxRequest(config=cfg))
        if not isinstance(r, str):
            pod.id, pod.maybe = r.pod_sandbox_id, {"ready"}

    def StopPodSandbox(self, n, pod):
        r = self.call(n, "StopPodSandbox", repr(pod), self.rt.StopPodSandbox,
                      pb().StopPodSandboxRequest(pod_sandbox_id=pod.id))
        for c in pod.ctrs:
            c.stopped = c.pod_stopped = True
            if "running" in c.maybe:
                c.maybe = c.maybe | {"exited"} if isinstance(r, str) else (c.maybe - {"running"}) | {"exited"}
            elif "created" in c.maybe:
                c.maybe = c.maybe | {"exited"}
        pod.maybe = {"ready", "notready"} if isinstance(r, str) else {"notready"}
        pod.stopped_ok = pod.stopped_ok or not isinstance(r, str)

    def RemovePodSandbox(self, n, pod):
        if pod.id is None:
            return
        r = self.call(n, "RemovePodSandbox", repr(pod), self.rt.RemovePodSandbox,
                      pb().RemovePodSandboxRequest(pod_sandbox_id=pod.id))
        if isinstance(r, str):
            pod.maybe = pod.maybe | {"notready", "gone"}
            for c in pod.ctrs:
                c.stopped = c.pod_stopped = True
                c.maybe = c.maybe | {"exited", "gone"}
        else:
            self.pods.remove(pod)

    def CreateContainer(self, n, pod):
        P = pb()
        kind = self.rng.choice(["counter", "counter", "quitter", "stubborn"])
        ref = self.rng.choice(self.c.ctr_images)[0]
        pod.n_ctrs = getattr(pod, "n_ctrs", 0) + 1
        name = f"{kind}{pod.n_ctrs}"
        cfg = P.ContainerConfig(metadata=P.ContainerMetadata(name=name), image=P.ImageSpec(image=ref),
                                log_path=f"{name}.log")
        cfg.command.extend(COMMANDS[kind])
        c = Ctr(pod, pod.n_ctrs, kind, cfg)
        pod.ctrs.append(c)
        r = self.call(n, "CreateContainer", f"{c} in {pod}", self.rt.CreateContainer,
                      P.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg, sandbox_config=pod.cfg))
        if not isinstance(r, str):
            c.id, c.maybe = r.container_id, {"created"}

    def StartContainer(self, n, c):
        c.started = True
        r = self.call(n, "StartContainer", repr(c), self.rt.StartContainer,
                      pb().StartContainerRequest(container_id=c.id))
        if isinstance(r, str):
            c.maybe = {"created", "running", "exited"}
            c.start_died = True
            return
        c.maybe = {"running", "exited"} if c.kind == "quitter" else {"running"}
        pid = int(show(f"rktlet-ctr-{c.id}.service", "MainPID") or 0)
        if c.kind != "quitter":
            if not pid or not alive(pid):
                with self.c.cond:
                    self.c.errors.append(f"op {n}: {c} started, but its unit has no main process ({pid})")
            c.pid = pid

    def StopContainer(self, n, c):
        c.stopped = True
        r = self.call(n, "StopContainer", repr(c), self.rt.StopContainer,
                      pb().StopContainerRequest(container_id=c.id, timeout=self.rng.choice([0, 1])), timeout=T + 1)
        c.maybe = {"running", "exited"} if isinstance(r, str) else {"exited"}

    def RemoveContainer(self, n, c):
        if c.id is None:
            return
        r = self.call(n, "RemoveContainer", repr(c), self.rt.RemoveContainer,
                      pb().RemoveContainerRequest(container_id=c.id))
        if isinstance(r, str):
            c.stopped = True
            c.maybe = c.maybe | {"exited", "gone"}
        else:
            c.pod.ctrs.remove(c)

    def ReopenContainerLog(self, n, c):
        new = f"{c.path}.{len(c.rotations) + 1}"
        try:
            os.rename(c.path, new)  # as kubelet rotates: rename, then ask for a new file
        except FileNotFoundError:
            return
        c.rotations.append(new)
        self.call(n, "ReopenContainerLog", repr(c), self.rt.ReopenContainerLog,
                  pb().ReopenContainerLogRequest(container_id=c.id))

    def PullImage(self, n, which):
        P = pb()
        ref, image = self.c.own_images[self.w] if which == "own" else self.rng.choice(self.c.ctr_images)
        r = self.call(n, "PullImage", ref, self.irt.PullImage, P.PullImageRequest(image=P.ImageSpec(image=ref)),
                      timeout=120)
        if not isinstance(r, str) and r.image_ref != image.id:
            with self.c.cond:
                self.c.errors.append(f"op {n}: PullImage {ref} gave {r.image_ref}, the image is {image.id}")
        if which == "own":
            self.image_maybe = self.image_maybe | {"present"} if isinstance(r, str) else {"present"}

    def RemoveImage(self, n, _):
        P = pb()
        ref, image = self.c.own_images[self.w]
        r = self.call(n, "RemoveImage", ref, self.irt.RemoveImage, P.RemoveImageRequest(image=P.ImageSpec(image=ref)))
        self.image_maybe = self.image_maybe | {"absent"} if isinstance(r, str) else {"absent"}


def run(directory, ops=200, kills=10, seed=None, log=print, log_level="info"):
    """The workload, its kills and checks; returns the Chaos (its .table()) or raises ChaosFailure."""
    seed = seed_from_env() if seed is None else seed
    return Chaos(directory, ops, kills, seed, log=log, log_level=log_level).run()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a new one in $TMPDIR)")
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args()
    if os.environ.get("RKTLET_HARNESS") != "1":
        sys.exit("chaos.py runs inside the harness: scripts/chaos, "
                 "or tests/integration/run-harness --run BUILD_DIR /usr/bin/python3 tests/integration/chaos.py")
    import tempfile
    directory = a.dir or tempfile.mkdtemp(prefix="rktlet-chaos-")
    seed = a.seed if a.seed is not None else seed_from_env()
    rktlet_test.stubs()
    c = Chaos(directory, a.ops, a.kills, seed, log_level=a.log_level)
    try:
        c.run()
    except ChaosFailure as e:
        print(c.table())
        print(f"FAILED: {e}")
        return 1
    print(c.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
