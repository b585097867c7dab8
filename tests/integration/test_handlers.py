"""RuntimeClass handlers: runc and crun out of the box where they run, [Runtime.<name>] sections with
their own binary, root and options, DefaultRuntime=, what Status, PodSandboxStatus, ContainerStatus
and crictl say of them, and the errors for handlers that are unknown or cannot run.

A configured handler here is a wrapper script that logs its arguments and execs runc: what the log
shows is what rktlet (and systemd, for create and start) really ran. Whether crun runs on this host
is found by running it on a bundle of its own, not from what rktlet thinks."""

import json
import os
import shutil
import subprocess

import grpc
import pytest

from rktlet_test import wait_until
from test_containers import (RUNC, T, cleanup, create, ctr_config, ctr_dirs, ctr_registry, cstatus,  # noqa: F401
                             nothing_left_of, remove, settled_log, show, start, text, unit_of, wait_state)
from test_crictl import CRICTL, Crictl
from test_images import pull, registries_config
from test_pods import CNI_BIN, cni, pod_config, units  # noqa: F401
from test_update import kernel_has_mount_setattr, runc_has_rro

CRUN = shutil.which("crun")
BUSYBOX = "/bin/busybox"

needs_runc = pytest.mark.skipif(RUNC is None or not os.access(BUSYBOX, os.X_OK),
                                reason="runc or busybox-static (/bin/busybox) is not installed")


def wrapper(tmp_path, name="logged"):
    """A runtime that logs each call's arguments (one line, space-separated) and then is runc."""
    log = tmp_path / f"{name}-argv.log"
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {RUNC} "$@"\n')
    path.chmod(0o755)
    return path, log


def calls(log, cid=None):
    """The wrapper's calls (argument lists), those naming cid when given."""
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line.split() for line in lines if cid is None or cid in line.split()]


def verb(argv):
    return next(a for a in argv if a in ("create", "start", "delete", "kill", "state", "exec", "update", "features"))


def crun_runs_here(tmp_path):
    """Whether crun runs a container on this host: `crun run` of a bundle with busybox in it (a real
    attempt, in the harness's namespaces), and what it said."""
    if CRUN is None:
        return False, "crun is not installed"
    bundle = tmp_path / "crun-probe"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, bundle / "rootfs" / "bin" / "busybox")
    subprocess.run([CRUN, "spec"], cwd=bundle, check=True, capture_output=True, timeout=30)
    with open(bundle / "config.json") as f:
        spec = json.load(f)
    spec["process"]["args"] = ["/bin/busybox", "true"]
    spec["process"]["terminal"] = False
    spec["root"]["readonly"] = True
    with open(bundle / "config.json", "w") as f:
        json.dump(spec, f)
    r = subprocess.run([CRUN, "--root", str(tmp_path / "crun-root"), "run", "--bundle", str(bundle), "crun-probe"],
                       capture_output=True, text=True, timeout=60)
    subprocess.run([CRUN, "--root", str(tmp_path / "crun-root"), "delete", "--force", "crun-probe"],
                   capture_output=True, timeout=60)
    return r.returncode == 0, (r.stderr or r.stdout).strip()


@pytest.fixture
def hd(make_daemon, ctr_registry, cni, tmp_path, pb):  # noqa: F811
    """make(config_text): a daemon knowing the module's registry, with the busybox image pulled."""
    r, images = ctr_registry
    made = []

    def make(extra="", **kw):
        d = make_daemon(f"rktlet{len(made)}", config=registries_config([r.url]) + extra,
                        args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN], **kw)
        ref, image = images["busybox"]
        assert pull(d, pb, ref) == image.id
        d.busybox = ref
        made.append(d)
        return d
    yield make
    for d in made:
        if d.alive():
            cleanup(d, pb)


class Pod:
    def __init__(self, id, config):
        self.id, self.config = id, config


def run_pod(d, pb, name, handler=""):
    cfg = pod_config(pb, name=name, host_network=True)
    cfg.log_directory = os.path.join(d.dir, "logs", f"default_{name}_{cfg.metadata.uid}")
    os.makedirs(cfg.log_directory, exist_ok=True)
    pod_id = d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler=handler),
                                       timeout=T).pod_sandbox_id
    return Pod(pod_id, cfg)


def run_echo(d, pb, pod, name, words):
    cfg = ctr_config(pb, name, d.busybox, command=["sh", "-c", f"echo {words}"])
    cid = create(d, pb, pod, cfg)
    start(d, pb, cid)
    st = wait_state(d, pb, cid, pb.CONTAINER_EXITED)
    assert st.exit_code == 0, st
    assert text(settled_log(pod, cfg)) == f"{words}\n"
    return cid


def userns_pod_config(d, pb):
    """A PodSandboxConfig with a user namespace of its own, as kubelet sends hostUsers: false."""
    cfg = pod_config(pb, name="userns", host_network=False, userns=dict(
        mode=pb.POD, uids=[dict(host_id=100000, container_id=0, length=65536)],
        gids=[dict(host_id=100000, container_id=0, length=65536)]))
    cfg.log_directory = os.path.join(d.dir, "logs", "userns")
    os.makedirs(cfg.log_directory, exist_ok=True)
    return cfg


def status_handlers(d, pb):
    r = d.runtime().Status(pb.StatusRequest(verbose=True), timeout=10)
    return r, json.loads(r.info["ociRuntime"])


@needs_runc
def test_status_lists_the_default_and_every_handler_that_runs(hd, pb, tmp_path):
    """Out of the box: "" (the default, runc here) and runc by name; crun too where it really runs,
    and where it does not, it is listed in verbose Status with the reason but not offered."""
    d = hd()
    crun_ok, crun_said = crun_runs_here(tmp_path)
    r, oci = status_handlers(d, pb)
    expected = ["", "runc"] + (["crun"] if crun_ok else [])
    assert [h.name for h in r.runtime_handlers] == expected, (crun_said, oci)
    assert oci["defaultHandler"] == "runc"
    assert oci["path"] == RUNC
    by_name = {h["name"]: h for h in oci["handlers"]}
    assert by_name["runc"]["usable"] is True and by_name["runc"]["builtin"] is True
    assert by_name["runc"]["root"] == os.path.join(d.dir, "run", "runc")
    if CRUN is None:
        assert by_name["crun"]["usable"] is False and "no such executable" in by_name["crun"]["error"]
    elif crun_ok:
        assert by_name["crun"]["usable"] is True
    else:
        assert by_name["crun"]["usable"] is False and by_name["crun"]["error"], by_name["crun"]
    # Each one's recursive read-only mounts: the kernel's mount_setattr and runc's own "rro".
    rro = kernel_has_mount_setattr() and runc_has_rro()
    for h in r.runtime_handlers[:2]:
        wait_until(lambda: d.runtime().Status(pb.StatusRequest(), timeout=10).runtime_handlers[
            [x.name for x in r.runtime_handlers].index(h.name)].features.recursive_read_only_mounts == rro, 10,
            what=f"handler {h.name!r}'s features to be known")


@needs_runc
def test_configured_handler_runs_its_pods_containers_with_its_root_and_options(hd, pb, tmp_path):
    """[Runtime.logged]: its binary, its options before --root, its root; create, start, exec and
    delete all go through it. A pod with "" still gets runc, not the wrapper."""
    path, log = wrapper(tmp_path)
    root = tmp_path / "logged-root"
    d = hd(f"[Runtime.logged]\nPath={path}\nRoot={root}\nOptions=--debug\n")
    r, oci = status_handlers(d, pb)
    names = [h.name for h in r.runtime_handlers]
    assert names[:2] == ["", "runc"] and names[-1] == "logged", names
    assert oci["defaultHandler"] == "runc"

    pod = run_pod(d, pb, "wrapped", handler="logged")
    st = d.runtime().PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod.id), timeout=10).status
    assert st.runtime_handler == "logged"
    cfg = ctr_config(pb, "sleeper", d.busybox, command=["sleep", "300"])
    cid = create(d, pb, pod, cfg)
    start(d, pb, cid)
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    info = json.loads(cstatus(d, pb, cid, verbose=True).info["info"])
    assert info["runtimeHandler"] == "logged"
    assert info["runtime"] == str(path)
    assert info["runtimeRoot"] == str(root)
    assert show(unit_of(cid), "ExecStart").startswith(f"{{ path={path} ;")
    out = d.runtime().ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["echo", "in"], timeout=30), timeout=T)
    assert out.exit_code == 0 and out.stdout == b"in\n"
    assert os.path.isdir(root / cid)  # its state is under the handler's root
    d.runtime().StopContainer(pb.StopContainerRequest(container_id=cid, timeout=5), timeout=T)
    remove(d, pb, cid)

    seen = calls(log, cid)
    verbs = [verb(a) for a in seen]
    assert verbs[:2] == ["create", "start"] and "exec" in verbs and verbs[-1] == "delete", seen
    for argv in seen:
        # the handler's option, then its root, then the command
        assert argv[0] == "--debug" and argv[1:3] == ["--root", str(root)], argv
    nothing_left_of(d, cid)
    assert not os.path.exists(root / cid)

    # The default handler is runc itself: nothing of this container goes through the wrapper.
    plain = run_pod(d, pb, "plain")
    cid2 = run_echo(d, pb, plain, "direct", "not wrapped")
    assert calls(log, cid2) == []
    info = json.loads(cstatus(d, pb, cid2, verbose=True).info["info"])
    assert info["runtimeHandler"] == "runc" and info["runtime"] == RUNC
    remove(d, pb, cid2)


@needs_runc
def test_default_runtime_names_the_handler_that_empty_means(hd, pb, tmp_path):
    path, log = wrapper(tmp_path)
    d = hd(f"[Containers]\nDefaultRuntime=logged\n[Runtime.logged]\nPath={path}\n")
    _, oci = status_handlers(d, pb)
    assert oci["defaultHandler"] == "logged" and oci["path"] == str(path)
    pod = run_pod(d, pb, "defaulted")
    cid = run_echo(d, pb, pod, "c", "through the default")
    remove(d, pb, cid)
    seen = calls(log, cid)
    assert [verb(a) for a in seen] == ["create", "start", "delete"], seen
    # No Root=: <state>/runtimes/<name>
    assert seen[0][:2] == ["--root", os.path.join(d.dir, "run", "runtimes", "logged")], seen[0]


@needs_runc
def test_unknown_handler_is_invalid_argument_naming_the_configured_ones(hd, pb, tmp_path):
    path, _ = wrapper(tmp_path)
    d = hd(f"[Runtime.logged]\nPath={path}\n")
    before = units("rktlet-pod-")
    with pytest.raises(grpc.RpcError) as e:
        run_pod(d, pb, "kata", handler="kata")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'kata'" in e.value.details() and "runc" in e.value.details() and "logged" in e.value.details()
    # nothing was made
    assert units("rktlet-pod-") == before
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    pods_dir = os.path.join(d.dir, "lib", "pods")
    assert not os.path.isdir(pods_dir) or os.listdir(pods_dir) == []


@needs_runc
def test_handler_whose_binary_is_missing_is_failed_precondition(hd, pb):
    d = hd("[Runtime.gone]\nPath=/nonexistent/gone-runtime\n")
    r, oci = status_handlers(d, pb)
    assert "gone" not in [h.name for h in r.runtime_handlers]
    gone = next(h for h in oci["handlers"] if h["name"] == "gone")
    assert gone["usable"] is False and gone["error"].startswith("/nonexistent/gone-runtime: no such executable")
    assert "cannot run containers" in d.log() and "gone" in d.log()
    with pytest.raises(grpc.RpcError) as e:
        run_pod(d, pb, "gone", handler="gone")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no such executable" in e.value.details()
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0


@needs_runc
def test_crun_runs_containers_where_it_can_else_says_why(hd, pb, tmp_path):
    """crun, built in: a container runs with it where crun really runs here; where it does not, a
    pod asking for it gets FAILED_PRECONDITION with the reason; where it is not installed, the name
    is unknown."""
    d = hd()
    crun_ok, crun_said = crun_runs_here(tmp_path)
    if crun_ok:
        pod = run_pod(d, pb, "crun", handler="crun")
        cid = run_echo(d, pb, pod, "c", "crun ran it")
        info = json.loads(cstatus(d, pb, cid, verbose=True).info["info"])
        assert info["runtimeHandler"] == "crun" and info["runtime"] == CRUN
        remove(d, pb, cid)
        nothing_left_of(d, cid)
        return
    # crun is not installed, or said, for instance, "cgroups in hybrid mode not supported": the
    # containers' runs through crun cannot be tested here, only the refusal.
    print(f"crun does not run here ({crun_said}): only the refusal is tested")
    with pytest.raises(grpc.RpcError) as e:
        run_pod(d, pb, "crun", handler="crun")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.value.details(), crun_said)
    assert "'crun' cannot run containers here" in e.value.details()
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0


@needs_runc
def test_containers_keep_their_runtime_across_a_restart_with_another_config(hd, make_daemon, pb, tmp_path):
    """A container made with a handler that the next configuration no longer has is still stopped
    and deleted through the runtime and root it was made with."""
    path, log = wrapper(tmp_path)
    root = tmp_path / "kept-root"
    d = hd(f"[Runtime.logged]\nPath={path}\nRoot={root}\n")
    pod = run_pod(d, pb, "kept", handler="logged")
    cfg = ctr_config(pb, "sleeper", d.busybox, command=["sleep", "300"])
    cid = create(d, pb, pod, cfg)
    start(d, pb, cid)
    wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
    d.stop()
    with open(d.config, "w") as f:
        f.write(registries_config([]))  # no [Runtime.logged] any more
    d.start()
    wait_until(lambda: cstatus(d, pb, cid).status.state == pb.CONTAINER_RUNNING, 20,
               what="the container to be running again")
    d.runtime().StopContainer(pb.StopContainerRequest(container_id=cid, timeout=5), timeout=T)
    remove(d, pb, cid)
    seen = calls(log, cid)
    assert verb(seen[-1]) == "delete" and seen[-1][:2] == ["--root", str(root)], seen
    nothing_left_of(d, cid)
    assert not os.path.exists(root / cid)
    # A new pod cannot ask for it.
    with pytest.raises(grpc.RpcError) as e:
        run_pod(d, pb, "again", handler="logged")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("config,expected", [
    ("[Containers]\nDefaultRuntime=nosuch\n", "DefaultRuntime=nosuch names no runtime handler"),
    ("[Containers]\nDefaultRuntime=Bad_Name\n", "invalid value 'Bad_Name' for DefaultRuntime"),
    ("[Runtime.Bad_Name]\nPath=runc\n", "[Runtime.Bad_Name] does not name a RuntimeClass handler"),
    ("[Runtime.rel]\nPath=bin/runc\n", "invalid value 'bin/runc' for Path"),
    ("[Runtime.rel]\nRoot=relative\n", "invalid value 'relative' for Root"),
])
def test_bad_handler_configuration_stops_start_up(make_daemon, config, expected):
    d = make_daemon(start=False, config=config)
    d.expect_exit = True
    d.start(wait=False)
    assert d.wait() != 0
    assert expected in d.log(), d.log()
    assert not os.path.exists(d.socket)


@needs_runc
@pytest.mark.skipif(not os.access(CRICTL, os.X_OK), reason=f"crictl is not at {CRICTL}")
def test_crictl_runp_runtime_and_inspectp(hd, pb, tmp_path):
    """crictl runp --runtime <handler> (what a RuntimeClass becomes), and inspectp and info show it."""
    path, log = wrapper(tmp_path)
    d = hd(f"[Runtime.logged]\nPath={path}\n")
    c = Crictl(d, tmp_path / "crictl")
    pod = {"metadata": {"name": "runtimeclass", "namespace": "default", "uid": "rc-uid-1"},
           "log_directory": str(tmp_path / "logs"),
           "linux": {"security_context": {"namespace_options": {"network": 2}}}}
    os.makedirs(pod["log_directory"], exist_ok=True)
    with open(os.path.join(c.workdir, "pod.json"), "w") as f:
        json.dump(pod, f)
    pod_id = c("runp", "--runtime", "logged", "pod.json").stdout.strip()
    inspect = c.json("inspectp", pod_id)
    assert inspect["status"]["runtimeHandler"] == "logged"
    info = c.json("info")
    oci = json.loads(info["ociRuntime"]) if isinstance(info["ociRuntime"], str) else info["ociRuntime"]
    assert "logged" in [h["name"] for h in oci["handlers"]]
    bad = c("runp", "--runtime", "kata", "pod.json", check=False)
    assert bad.returncode != 0 and "unknown runtime_handler 'kata'" in bad.stderr, bad.stderr
    c("stopp", pod_id)
    c("rmp", pod_id)


@needs_runc
def test_user_namespaces_while_probing_are_unavailable(hd, pb, tmp_path):
    """Until a handler's runtime has answered its features, whether it can have user namespaces
    is not known: RunPodSandbox asking for one is UNAVAILABLE (retry), not FAILED_PRECONDITION,
    with nothing made."""
    path = tmp_path / "bin" / "slow"
    path.parent.mkdir(exist_ok=True)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    # `features` waits for the test to open the gate; every other command is runc's.
    path.write_text(f"""#!/bin/sh
for a in "$@"; do
  if [ "$a" = features ]; then
    read x < {gate}
    exec {RUNC} features
  fi
done
exec {RUNC} "$@"
""")
    path.chmod(0o755)
    d = hd(f"[Runtime.slow]\nPath={path}\n")
    cfg = userns_pod_config(d, pb)
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler="slow"), timeout=T)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
    assert "still being probed; retry" in e.value.details(), e.value.details()
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
    with open(gate, "w") as f:
        f.write("go\n")

    def answered():
        try:
            d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler="slow"), timeout=T)
            return "ran"
        except grpc.RpcError as e:
            return None if e.code() == grpc.StatusCode.UNAVAILABLE else e.code()
    # Answered: the pod runs where user namespaces work, else it is the precondition that fails.
    assert wait_until(answered, 20, what="the probe's answer") in ("ran", grpc.StatusCode.FAILED_PRECONDITION)


@needs_runc
def test_user_namespaces_are_a_feature_of_each_handler(hd, pb, tmp_path):
    """A handler whose runtime's features do not list the user namespace has user_namespaces false
    in Status (whatever runc's is), and a pod with a user namespace of its own asking for it gets
    FAILED_PRECONDITION saying so, with nothing made."""
    path = tmp_path / "bin" / "no-userns"
    path.parent.mkdir(exist_ok=True)
    # `features` answers runc's own list without "user"; every other command is runc's.
    path.write_text(f"""#!/bin/sh
for a in "$@"; do
  if [ "$a" = features ]; then
    {RUNC} features | /usr/bin/python3 -c 'import json, sys; f = json.load(sys.stdin); \\
f["linux"]["namespaces"] = [n for n in f["linux"]["namespaces"] if n != "user"]; print(json.dumps(f))'
    exit
  fi
done
exec {RUNC} "$@"
""")
    path.chmod(0o755)
    d = hd(f"[Runtime.no-userns]\nPath={path}\n")

    def features():
        r = d.runtime().Status(pb.StatusRequest(), timeout=10)
        by = {h.name: h.features for h in r.runtime_handlers}
        return by if "no-userns" in by and by["no-userns"].recursive_read_only_mounts == by["runc"].recursive_read_only_mounts else None
    by = wait_until(features, 20, what="the handlers' features to be known")
    assert by["no-userns"].user_namespaces is False
    cfg = userns_pod_config(d, pb)
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler="no-userns"), timeout=T)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not offer user namespaces" in e.value.details(), e.value.details()
    assert len(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == 0
