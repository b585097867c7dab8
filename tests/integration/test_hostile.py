"""Hostile input: what an attacker (or a buggy client) sends, and what must come of it: a clear
INVALID_ARGUMENT naming the field, nothing acted on, nothing half-made.

protobuf strings may hold NUL bytes; every C string ends at the first one, so "<id>\\0garbage" would
otherwise stop the pod <id>, and a pod named "a\\0b" would be named "a"."""

import json
import os
import re
import subprocess

import grpc
import pytest

from test_containers import (RUNC, T, cleanup, create, ctr_config, cstatus, make_pod,  # noqa: F401
                             no_container_leftovers)
from test_containers import cd, ctr_registry  # noqa: F401
from test_pods import CNI_BIN, cni, no_leftovers, pod_config  # noqa: F401


def empty_or_absent(path):
    return not os.path.exists(path) or os.listdir(path) == []


def refused(call, *args, field, what="a NUL byte"):
    with pytest.raises(grpc.RpcError) as e:
        call(*args, timeout=T)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert f"{field} holds {what}" in e.value.details(), e.value.details()
    return e.value.details()


def test_nul_in_ids_acts_on_nothing(daemon, pb):
    rt = daemon.runtime()
    cfg = pod_config(pb, name="target", host_network=True)
    pod_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id
    refused(rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=pod_id + "\0garbage"), field="pod_sandbox_id")
    refused(rt.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id + "\0"), field="pod_sandbox_id")
    refused(rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id[:3] + "\0xyz"),
            field="pod_sandbox_id")
    refused(rt.ListPodSandbox, pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=pod_id[:3] + "\0")),
            field="filter.id")
    # The pod is untouched.
    assert rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=T).status.state == \
        pb.SANDBOX_READY
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)


@pytest.mark.parametrize("field,edit,what", [
    ("config.metadata.name", lambda c: setattr(c.metadata, "name", "a\0b"), "a NUL byte"),
    ("config.metadata.name", lambda c: setattr(c.metadata, "name", "a\nb"), "a control character"),
    ("config.metadata.namespace", lambda c: setattr(c.metadata, "namespace", "ns\x1b[31m"), "a control character"),
    ("config.metadata.uid", lambda c: setattr(c.metadata, "uid", "u\0"), "a NUL byte"),
    ("config.hostname", lambda c: setattr(c, "hostname", "h\0x"), "a NUL byte"),
    ("config.log_directory", lambda c: setattr(c, "log_directory", "/var/log/pods/x\ty"), "a control character"),
    ("config.labels.key", lambda c: c.labels.update({"k\0": "v"}), "a NUL byte"),
    ("config.annotations.value", lambda c: c.annotations.update({"k": "v\0w"}), "a NUL byte"),
])
def test_nul_or_control_characters_in_a_pod_config(daemon, pb, field, edit, what):
    cfg = pod_config(pb, name="p", host_network=True)
    edit(cfg)
    refused(daemon.runtime().RunPodSandbox, pb.RunPodSandboxRequest(config=cfg), field=field, what=what)
    assert list(daemon.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items) == []
    assert empty_or_absent(os.path.join(daemon.dir, "run", "pods"))


def test_free_text_may_hold_newlines(daemon, pb):
    """Annotations, like commands and env values, are text: a newline or a tab there is no attack."""
    cfg = pod_config(pb, name="text", host_network=True)
    cfg.annotations["note"] = "line one\nline\ttwo"
    rt = daemon.runtime()
    pod_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id
    st = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=T).status
    assert st.annotations["note"] == "line one\nline\ttwo"
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)


def test_nul_in_an_image_reference(daemon, pb):
    img = daemon.images()
    refused(img.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image="a\0b")), field="image.image")
    refused(img.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image="busybox\0")), field="image.image")
    refused(img.RemoveImage, pb.RemoveImageRequest(image=pb.ImageSpec(image="x\ny")), field="image.image",
            what="a control character")


def test_nul_in_container_names_and_paths(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="hostile")
    rt = d.runtime()
    cases = {
        "config.metadata.name": dict(name="c\0x"),
        "config.log_path": dict(name="c", log_path="c.log\0../../x"),
        "config.mounts.container_path": dict(name="c", mounts=[dict(container_path="/mnt\0x", host_path="/tmp")]),
        "config.envs.value": dict(name="c", envs={"A": "x\0y"}),
        "config.working_dir": dict(name="c", working_dir="/tmp\n"),
    }
    for field, kw in cases.items():
        name = kw.pop("name")
        cfg = ctr_config(pb, name, d.ref(), command=["true"], **kw)
        what = "a control character" if field == "config.working_dir" else "a NUL byte"
        refused(rt.CreateContainer, pb.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg,
                                                              sandbox_config=pod.config), field=field, what=what)
    assert list(rt.ListContainers(pb.ListContainersRequest(), timeout=T).containers) == []
    assert empty_or_absent(os.path.join(d.dir, "run", "containers"))


def bad_pod(daemon, pb, edit, words):
    cfg = pod_config(pb, name="bad", host_network=True)
    edit(cfg)
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    for w in words:
        assert w in e.value.details(), e.value.details()
    assert list(daemon.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items) == []
    assert empty_or_absent(os.path.join(daemon.dir, "run", "pods"))
    assert empty_or_absent(os.path.join(daemon.dir, "lib", "pods"))


@pytest.mark.parametrize("case", ["protocol 99", "host_ip command", "host_ip name", "dns server name",
                                  "relative log_directory", "escaping log_directory"])
def test_pod_validation_gaps(daemon, pb, case):
    """Each was accepted before: now INVALID_ARGUMENT naming the field, and nothing made."""
    edits = {
        "protocol 99": (lambda c: c.port_mappings.add(protocol=99, container_port=80, host_port=8080),
                        ["port_mappings[0].protocol"]),
        "host_ip command": (lambda c: c.port_mappings.add(container_port=80, host_port=8080, host_ip="1.2.3.4; rm -rf /"),
                            ["port_mappings[0].host_ip", "not an IP address"]),
        "host_ip name": (lambda c: c.port_mappings.add(container_port=80, host_port=8080, host_ip="localhost"),
                         ["port_mappings[0].host_ip"]),
        "dns server name": (lambda c: c.dns_config.servers.append("dns.example"), ["dns_config.servers"]),
        "relative log_directory": (lambda c: setattr(c, "log_directory", "logs/pod"), ["log_directory", "absolute"]),
        "escaping log_directory": (lambda c: setattr(c, "log_directory", "/var/log/pods/../../etc"),
                                   ["log_directory", "'..'"]),
    }
    edit, words = edits[case]
    bad_pod(daemon, pb, edit, words)


def test_valid_port_and_dns_forms_still_pass(daemon, pb):
    cfg = pod_config(pb, name="okpod", host_network=True)
    cfg.port_mappings.add(protocol=pb.UDP, container_port=53, host_port=5353, host_ip="127.0.0.1")
    cfg.port_mappings.add(protocol=pb.SCTP, container_port=80, host_port=0, host_ip="::1")
    cfg.dns_config.servers.extend(["10.96.0.10", "fd00::10"])
    cfg.log_directory = "/var/log/pods/..data/x"  # '..' only as a component is refused
    rt = daemon.runtime()
    pod_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "::/129", "10.0.0.0", "10.0.0.0/", "10.0.0.0/-1",
                                  "300.0.0.0/8", "10.0.0.0/24,", ",", "10.0.0.0/24,fd00::/200"])
def test_update_runtime_config_refuses_bad_cidrs(daemon, pb, cidr):
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr))), timeout=T)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pod_cidr" in e.value.details() and "is not a CIDR" in e.value.details()


def test_update_runtime_config_takes_dual_stack_cidrs(daemon, pb):
    daemon.runtime().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.244.1.0/24,fd00:10::/64"))),
        timeout=T)


# --- cgroup_parent: only a slice rktlet may own and stop (issue 15, item 2) ------------------------

def unit_props(unit):
    """(LoadState, ActiveState, Description) of a unit of the harness's user manager."""
    return tuple(subprocess.run(["systemctl", "--user", "show", "-P", p, "--", unit], capture_output=True,
                                text=True).stdout.strip() for p in ("LoadState", "ActiveState", "Description"))


@pytest.mark.parametrize("parent,words", [
    # The root slice: an rktlet that took it renamed it (Description) and could never stop it.
    ("-.slice", ["the root slice"]),
    # Not slices: a service, a scope, containerd's "slice:prefix:name" form for containers, names
    # systemd would not take as a slice.
    ("foo.service", ["not a systemd slice name"]),
    ("init.scope", ["not a systemd slice name"]),
    ("kubepods-besteffort-pod1.slice:cri-containerd:abc", ["not a systemd slice name"]),
    ("kubepods--pod1.slice", ["not a systemd slice name"]),
    ("-kubepods.slice", ["not a systemd slice name"]),
    (".slice", ["not a systemd slice name"]),
    # cgroupfs paths: what kubelet sends with its cgroupfs driver, and a path under the mount.
    ("/kubepods/besteffort/pod1234", ["cgroupfs path", "systemd cgroup driver", "cgroupDriver: systemd"]),
    ("/sys/fs/cgroup/kubepods.slice", ["cgroupfs path"]),
    # systemd's own slices and what is in them: the node's services, sessions, machines.
    ("system.slice", ["systemd's system.slice", "must not own or stop"]),
    ("system-getty.slice", ["within systemd's system.slice"]),
    ("user.slice", ["systemd's user.slice"]),
    ("user-1000.slice", ["within systemd's user.slice"]),
    ("machine.slice", ["systemd's machine.slice"]),
    ("app.slice", ["systemd's app.slice"]),
    ("background.slice", ["systemd's background.slice"]),
    ("session.slice", ["systemd's session.slice"]),
])
def test_cgroup_parent_rktlet_must_not_own_is_refused(daemon, pb, parent, words):
    before = unit_props(parent) if parent.endswith((".slice", ".service", ".scope")) else None
    bad_pod(daemon, pb, lambda c: setattr(c.linux, "cgroup_parent", parent),
            ["config.linux.cgroup_parent", f"'{parent}'", *words])
    # Nothing was asked of systemd: the unit is as it was (machine.slice not made, the root slice
    # not renamed after the pod).
    if before is not None:
        assert unit_props(parent) == before


@pytest.mark.parametrize("parent", [
    "kubepods-besteffort-pod12345678_1234_1234_1234_123456789abc.slice",  # kubelet, systemd driver, dashes escaped
    "kubepods-pod0a1b.slice",                                              # a Guaranteed pod
    "systemic.slice",                                                      # starts like system, is not in it
])
def test_cgroup_parent_slices_of_kubelets_kind_are_taken(daemon, pb, parent):
    rt = daemon.runtime()
    cfg = pod_config(pb, name="qos", host_network=True, cgroup_parent=parent)
    pod_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id
    try:
        assert unit_props(parent)[:2] == ("loaded", "active")
        info = json.loads(rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True),
                                              timeout=T).info["info"])
        assert info["unit"] == parent and info["unitOwned"] is True  # rktlet made it: it stops it
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)
        assert unit_props(parent)[1] == "inactive"
    finally:
        cleanup(daemon, pb)
        subprocess.run(["systemctl", "--user", "stop", "kubepods.slice"], capture_output=True)



# --- input echoed into errors: bounded and escaped (issue 15, item 8) -------------------------------

LONG = "x" * 10240                      # for a name, an id or a path (control characters are refused there)
LONG_TEXT = "\n\x1b[31m" + "x" * 10240  # for free text: control characters pass, and must come back escaped
SHORT_DETAILS = 600                     # ~200 bytes of the input, the field's name and the sentence around them
IMAGE_METHODS = {"PullImage", "ImageStatus", "RemoveImage"}


def sec(pb, **kw):
    linux = pb.LinuxContainerConfig()
    linux.security_context.MergeFrom(pb.LinuxContainerSecurityContext(**kw))
    return linux


def pod_req(pb, edit=None, **kw):
    cfg = pod_config(pb, name="long", host_network=True)
    if edit:
        edit(cfg)
    return pb.RunPodSandboxRequest(config=cfg, **kw)


def ctr_req(pb, pod, image, name="long", **kw):
    return pb.CreateContainerRequest(pod_sandbox_id=pod.id, sandbox_config=pod.config,
                                     config=ctr_config(pb, name, image, command=["true"], **kw))


def localhost(ref):
    return dict(seccomp=dict(profile_type=2, localhost_ref=ref))  # SecurityProfile.Localhost


# id: (what the call needs: a "daemon", a ready "pod", or a pod and a pulled "image"; the method;
# the request from (pb, pod, image reference); words of the message that name the field). Each value
# is ~10 KB, but for names that have a shorter limit of their own (then at that limit).
LONG_INPUT_CASES = {
    # pods
    "PodSandboxStatus.pod_sandbox_id": ("daemon", "PodSandboxStatus", lambda pb, pod, ref: pb.PodSandboxStatusRequest(
        pod_sandbox_id=LONG), ["pod_sandbox_id"]),
    # An unknown id is success for these two: a control character makes them fail.
    "StopPodSandbox.pod_sandbox_id": ("daemon", "StopPodSandbox", lambda pb, pod, ref: pb.StopPodSandboxRequest(
        pod_sandbox_id=LONG + "\n"), ["pod_sandbox_id"]),
    "RemovePodSandbox.pod_sandbox_id": ("daemon", "RemovePodSandbox", lambda pb, pod, ref: pb.RemovePodSandboxRequest(
        pod_sandbox_id=LONG + "\n"), ["pod_sandbox_id"]),
    "RunPodSandbox.metadata.name": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: setattr(c.metadata, "name", LONG)), ["metadata.name"]),
    "RunPodSandbox.metadata.name with a slash": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: setattr(c.metadata, "name", "a/" + "x" * 250)), ["metadata.name"]),
    "RunPodSandbox.metadata.namespace": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: setattr(c.metadata, "namespace", LONG)), ["metadata.namespace"]),
    "RunPodSandbox.metadata.uid": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: setattr(c.metadata, "uid", LONG)), ["metadata.uid"]),
    "RunPodSandbox.hostname": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: setattr(c, "hostname", LONG)), ["hostname"]),
    "RunPodSandbox.log_directory": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: setattr(c, "log_directory", LONG)), ["log_directory"]),
    "RunPodSandbox.linux.cgroup_parent": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: setattr(c.linux, "cgroup_parent", "/" + LONG)), ["cgroup_parent"]),
    "RunPodSandbox.runtime_handler": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, runtime_handler=LONG), ["runtime_handler"]),
    "RunPodSandbox.linux.sysctls name": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.linux.sysctls.update({LONG: "1"})), ["sysctl"]),
    "RunPodSandbox.linux.sysctls name with a control character": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.linux.sysctls.update({"net." + "x" * 240 + "\x1b": "1"})), ["sysctl"]),
    "RunPodSandbox.linux.sysctls value": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.linux.sysctls.update({"net.core.somaxconn": LONG})), ["sysctl"]),
    "RunPodSandbox.dns_config.servers": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.dns_config.servers.append(LONG_TEXT)), ["dns_config.servers"]),
    "RunPodSandbox.dns_config.searches": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.dns_config.searches.append(LONG_TEXT)), ["search"]),
    "RunPodSandbox.dns_config.options": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.dns_config.options.append(LONG_TEXT)), ["option"]),
    "RunPodSandbox.port_mappings.host_ip": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.port_mappings.add(container_port=80, host_port=8080, host_ip=LONG_TEXT)), ["host_ip"]),
    "RunPodSandbox.labels": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.labels.update({LONG: LONG + "\0"})), ["labels.value"]),
    "RunPodSandbox.annotations": ("daemon", "RunPodSandbox", lambda pb, pod, ref: pod_req(
        pb, lambda c: c.annotations.update({LONG + "\0": LONG})), ["annotations.key"]),
    # The second of two pods with the same metadata, each name at its limit of 253.
    "RunPodSandbox twice with the longest names": ("daemon", "RunPodSandbox twice", lambda pb, pod, ref: pb.RunPodSandboxRequest(
        config=pod_config(pb, name="n" * 253, namespace="s" * 253, uid="u" * 253, hostname="long",
                          host_network=True)), ["exists already"]),
    "UpdateRuntimeConfig.pod_cidr": ("daemon", "UpdateRuntimeConfig", lambda pb, pod, ref: pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=LONG_TEXT))), ["pod_cidr"]),
    # containers, refused before their image is looked at
    "CreateContainer.pod_sandbox_id": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod._replace(id=LONG), "busybox"), ["pod_sandbox_id"]),
    "CreateContainer.metadata.name": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", name=LONG, log_path="c.log"), ["metadata.name"]),
    "CreateContainer.image": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(pb, pod, LONG), ["image"]),
    "CreateContainer.log_path": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", log_path="/" + LONG), ["log_path"]),
    "CreateContainer.working_dir": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", working_dir=LONG), ["working_dir"]),
    "CreateContainer.envs.key": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", envs={LONG_TEXT + "=": "v"}), ["envs"]),
    "CreateContainer.mounts.container_path": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", mounts=[dict(container_path=LONG, host_path="/tmp")]), ["container_path"]),
    "CreateContainer.mounts.host_path": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", mounts=[dict(container_path="/mnt", host_path=LONG)]), ["host_path"]),
    "CreateContainer.devices.host_path": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", devices=[pb.Device(container_path="/dev/x", host_path=LONG)]), ["devices"]),
    "CreateContainer.devices.permissions": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", devices=[pb.Device(container_path="/dev/x", host_path="/dev/null",
                                               permissions=LONG_TEXT)]), ["permissions"]),
    "CreateContainer.seccomp.localhost_ref": ("pod", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, "busybox", linux=sec(pb, **localhost(LONG_TEXT))), ["seccomp profile"]),
    "ContainerStatus.container_id": ("daemon", "ContainerStatus", lambda pb, pod, ref: pb.ContainerStatusRequest(
        container_id=LONG), ["container_id"]),
    "StartContainer.container_id": ("daemon", "StartContainer", lambda pb, pod, ref: pb.StartContainerRequest(
        container_id=LONG), ["container_id"]),
    "StopContainer.container_id": ("daemon", "StopContainer", lambda pb, pod, ref: pb.StopContainerRequest(
        container_id=LONG + "\n"), ["container_id"]),
    "RemoveContainer.container_id": ("daemon", "RemoveContainer", lambda pb, pod, ref: pb.RemoveContainerRequest(
        container_id=LONG + "\n"), ["container_id"]),
    "ReopenContainerLog.container_id": ("daemon", "ReopenContainerLog", lambda pb, pod, ref: pb.ReopenContainerLogRequest(
        container_id=LONG), ["container_id"]),
    # containers, refused once their image is there
    "CreateContainer.capabilities.add_capabilities": ("image", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, ref, linux=sec(pb, capabilities=dict(add_capabilities=[LONG_TEXT]))), ["capability"]),
    "CreateContainer.run_as_username": ("image", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, ref, linux=sec(pb, run_as_username=LONG_TEXT)), ["user"]),
    "CreateContainer.seccomp.localhost_ref absolute": ("image", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, ref, linux=sec(pb, **localhost("/" + LONG_TEXT))), ["seccomp profile"]),
    "CreateContainer.namespace_options.target_id": ("image", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, ref, linux=sec(pb, namespace_options=dict(pid=pb.TARGET, target_id=LONG))), ["target"]),
    "CreateContainer.mounts.host_path absolute": ("image", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, ref, mounts=[dict(container_path="/mnt", host_path="/" + LONG)]), ["host_path"]),
    "CreateContainer.devices.host_path absolute": ("image", "CreateContainer", lambda pb, pod, ref: ctr_req(
        pb, pod, ref, devices=[pb.Device(container_path="/dev/x", host_path="/" + LONG)]), ["host_path"]),
    # images
    "PullImage.image": ("daemon", "PullImage", lambda pb, pod, ref: pb.PullImageRequest(
        image=pb.ImageSpec(image=LONG)), ["image.image"]),
    "PullImage.image with a long registry name": ("daemon", "PullImage", lambda pb, pod, ref: pb.PullImageRequest(
        image=pb.ImageSpec(image="x" * 3000 + ".invalid/x:1")), ["manifest"]),
    # An unknown image is success for these two: a control character makes them fail.
    "ImageStatus.image": ("daemon", "ImageStatus", lambda pb, pod, ref: pb.ImageStatusRequest(
        image=pb.ImageSpec(image=LONG + "\n")), ["image.image"]),
    "RemoveImage.image": ("daemon", "RemoveImage", lambda pb, pod, ref: pb.RemoveImageRequest(
        image=pb.ImageSpec(image=LONG + "\n")), ["image.image"]),
    # the method's own name (the :path)
    "an unknown method": ("daemon", "/runtime.v1.RuntimeService/" + LONG, None, ["method"]),
}


def echoes(details):
    """Whether details quotes one of the long values (a run of 50 of one character)."""
    return re.search(r"(.)\1{49}", details) is not None


@pytest.mark.parametrize("case", list(LONG_INPUT_CASES))
def test_long_input_comes_back_short_and_escaped(request, pb, case):
    """A long value in a field that makes the call fail: the error names the field and quotes at
    most ~200 bytes of the value, visibly cut ("…" and the whole length), no control character raw."""
    needs, method, make, words = LONG_INPUT_CASES[case]
    d = request.getfixturevalue("cd" if needs == "image" else "daemon")
    pod = make_pod(d, pb, name="quoting") if needs in ("pod", "image") else None
    ref = d.ref() if needs == "image" else None
    rt, im = d.runtime(), d.images()
    try:
        with pytest.raises(grpc.RpcError) as e:
            if method.startswith("/"):
                d.channel().unary_unary(method)(b"", timeout=T)
            elif method == "RunPodSandbox twice":
                rt.RunPodSandbox(make(pb, pod, ref), timeout=T)
                rt.RunPodSandbox(make(pb, pod, ref), timeout=T)
            else:
                getattr(im if method in IMAGE_METHODS else rt, method)(make(pb, pod, ref), timeout=T)
        code, details = e.value.code(), e.value.details() or ""
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (code, details[:1000])
        assert len(details) < SHORT_DETAILS, f"{len(details)} bytes: {details[:1000]!r}"
        for w in words:
            assert w in details, (w, details)
        assert not re.search(r"[\x00-\x1f\x7f]", details), f"a raw control character: {details!r}"
        if echoes(details):
            assert "…" in details and re.search(r"\(\d+ bytes\)", details), details
    finally:
        cleanup(d, pb)
