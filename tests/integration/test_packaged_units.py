"""rktlet.socket and rktlet.service as packaged (packaging/systemd/*.in, as the build configured
them), loaded into the harness's systemd user manager. Only what must differ on this stage is
changed, each named below: the paths (ExecStart= runs the built binary on the user bus with the
test's directories, ListenStream= is the test's socket), and, where this machine's bounding set
lacks CAP_SYS_RESOURCE, OOMScoreAdjust= and LimitNOFILE= clamped to what the harness has.

The system-bus install under systemd as PID 1 is tested apart (systemd-nspawn, issue 13); this is
the part a user manager can run: socket activation, Type=notify, the fd store across a SIGKILL,
Restart=, KillMode=mixed, the socket outliving rktlet and RemoveOnStop=."""

import os
import shlex
import signal
import subprocess

import pytest

import rktlet_test
from rktlet_test import BUILD_DIR, Daemon, can_connect, wait_until
from test_containers import (RUNC, T, cleanup, ctr_config, cstatus, log_file, main_pid, make_pod,  # noqa: F401
                             no_container_leftovers, records, remove, run, show, text, wait_log)
from test_containers import ctr_registry  # noqa: F401
from test_images import pull, registries_config
from test_pods import CNI_BIN, cni, needs_cni, no_leftovers  # noqa: F401

UNIT_DIR = os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/run/user/0"), "systemd", "user")
PACKAGED = os.path.join(BUILD_DIR, "packaging")
CAP_SYS_RESOURCE = 24

pytestmark = [pytest.mark.skipif(RUNC is None, reason="runc (Debian package runc) is not installed"), needs_cni]


def systemctl(*args, check=True):
    return subprocess.run(["systemctl", "--user", *args], check=check, capture_output=True, text=True, timeout=60)


def unit_text(name):
    with open(os.path.join(PACKAGED, name)) as f:
        return f.read()


substitute = rktlet_test.unit_substitute
has_cap = rktlet_test.has_cap


@pytest.fixture
def packaged(tmp_path, ctr_registry, cni):  # noqa: F811
    """The packaged units, installed in the user manager's runtime unit directory, and a Daemon
    describing what they run (its socket, directories, log). Everything is stopped, reset and
    removed afterwards."""
    r, images = ctr_registry
    d = Daemon(tmp_path / "svc", config=registries_config([r.url]), listen=False,
               args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    service = unit_text("rktlet.service")
    socket_unit = unit_text("rktlet.socket")
    service = substitute(service, "ExecStart", shlex.join(d.args))
    socket_unit = substitute(socket_unit, "ListenStream", d.socket)
    os.makedirs(UNIT_DIR, exist_ok=True)
    written = [os.path.join(UNIT_DIR, "rktlet.service"), os.path.join(UNIT_DIR, "rktlet.socket")]
    with open(written[0], "w") as f:
        f.write(service)
    with open(written[1], "w") as f:
        f.write(socket_unit)
    if not has_cap(CAP_SYS_RESOURCE):
        # Lowering oom_score_adj and raising the hard RLIMIT_NOFILE both need CAP_SYS_RESOURCE,
        # which this machine's bounding set lacks: clamp both to what the harness itself has.
        with open("/proc/self/oom_score_adj") as f:
            oom = int(f.read())
        import resource
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        os.makedirs(written[0] + ".d", exist_ok=True)
        written.append(os.path.join(written[0] + ".d", "no-cap-sys-resource.conf"))
        with open(written[-1], "w") as f:
            f.write(f"[Service]\nOOMScoreAdjust={max(oom, -999)}\nLimitNOFILE={min(hard, 1048576)}\n")
    systemctl("daemon-reload")
    d.test_images = images
    yield d
    d.close_channels()
    systemctl("stop", "rktlet.socket", "rktlet.service", check=False)
    systemctl("reset-failed", "rktlet.socket", "rktlet.service", check=False)
    for p in written:
        os.unlink(p)
    if os.path.isdir(written[0] + ".d"):
        os.rmdir(written[0] + ".d")
    systemctl("daemon-reload")


def test_the_packaged_units_as_loaded(packaged):
    """What an operator gets: the properties the packaged files set, as systemd read them."""
    for prop, want in {"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed", "Restart": "always",
                       "RestartUSec": "5s", "FileDescriptorStoreMax": "4096", "TimeoutStopUSec": "30s",
                       "Delegate": "yes"}.items():
        assert show("rktlet.service", prop) == want, prop
    assert show("rktlet.socket", "Listen") == f"{packaged.socket} (Stream)"
    assert show("rktlet.socket", "SocketMode") == "0660"
    assert show("rktlet.socket", "RemoveOnStop") == "yes"


def test_socket_activation_fd_store_restart_and_stop(packaged, pb):
    """The socket starts rktlet on the first call. SIGKILLed while a container writes a numbered line
    every 20 ms, rktlet is restarted by Restart=always after RestartSec=5s; a call made meanwhile
    waits in the socket's queue and is answered; the restarted daemon gets the log pipes back from
    the fd store and no line is lost. Stopping the socket stops both and removes the socket file."""
    d = packaged
    systemctl("start", "rktlet.socket")
    assert show("rktlet.service", "ActiveState") == "inactive"  # nothing runs before a client comes
    assert os.path.exists(d.socket)
    ref, image = d.test_images["busybox"]
    assert pull(d, pb, ref) == image.id
    wait_until(lambda: show("rktlet.service", "ActiveState") == "active", 20, what="rktlet.service active")
    old = int(show("rktlet.service", "MainPID"))
    assert os.readlink(f"/proc/{old}/exe") == os.path.join(BUILD_DIR, "src", "rktlet")
    pod = make_pod(d, pb, name="fdstore")
    cfg = ctr_config(pb, "counter", ref,
                     command=["sh", "-c", "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.02; done"])
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "line-20")
    ctr_pid = main_pid(cid)
    d.close_channels()

    os.kill(old, signal.SIGKILL)
    wait_until(lambda: show("rktlet.service", "MainPID") in ("0", ""), 20, what="rktlet to be gone")
    # A call made while rktlet is down: the socket stays and queues it until the restart answers.
    assert can_connect(d.socket)
    pending = d.runtime().ContainerStatus.future(pb.ContainerStatusRequest(container_id=cid), timeout=60)
    status = pending.result().status
    new = int(show("rktlet.service", "MainPID"))
    assert new not in (0, old)
    assert int(show("rktlet.service", "NRestarts")) == 1
    assert status.state == pb.CONTAINER_RUNNING
    assert main_pid(cid) == ctr_pid

    seen = len(text(records(log_file(pod, cfg))).splitlines())
    wait_log(pod, cfg, f"line-{seen + 50}\n")
    lines = text(records(log_file(pod, cfg))).splitlines()
    n = len(lines) - 1
    assert lines[:n] == [f"line-{i}" for i in range(n)], "a line was lost or doubled across the restart"
    remove(d, pb, cid)
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    d.close_channels()

    # KillMode=mixed: SIGTERM to rktlet alone, which ends on its own terms (exit 0, not failed).
    systemctl("stop", "rktlet.socket")
    wait_until(lambda: show("rktlet.service", "ActiveState") == "inactive", 40, what="rktlet.service to stop")
    assert show("rktlet.service", "Result") == "success"
    assert show("rktlet.socket", "ActiveState") == "inactive"
    assert not os.path.exists(d.socket)  # RemoveOnStop=yes
