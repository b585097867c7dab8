"""Hostile input: what an attacker (or a buggy client) sends, and what must come of it: a clear
INVALID_ARGUMENT naming the field, nothing acted on, nothing half-made.

protobuf strings may hold NUL bytes; every C string ends at the first one, so "<id>\\0garbage" would
otherwise stop the pod <id>, and a pod named "a\\0b" would be named "a"."""

import os

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
