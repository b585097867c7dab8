"""Version, Status, RuntimeConfig and the methods that are not there yet, through grpcio."""

import json
import os
import shutil
import subprocess

import grpc
import pytest

from rktlet_test import project_version, stubs


def test_version(daemon, pb):
    r = daemon.runtime().Version(pb.VersionRequest(version="v1"), timeout=5)
    # "Version of the kubelet runtime API": 0.1.0 for every CRI runtime, whatever its own version.
    assert r.version == "0.1.0"
    assert r.runtime_name == "rktlet"
    assert r.runtime_api_version == "v1"
    # The runtime's own version is the project's.
    assert r.runtime_version == project_version() != r.version


def test_status_ready_when_systemd_answers(daemon, pb):
    r = daemon.runtime().Status(pb.StatusRequest(), timeout=10)
    conditions = {c.type: c for c in r.status.conditions}
    assert conditions["RuntimeReady"].status is True, conditions["RuntimeReady"]
    net = conditions["NetworkReady"]
    assert net.status is False
    assert net.reason == "NetworkPluginNotReady"
    assert net.message
    assert dict(r.info) == {}


def test_status_verbose_reports_config_and_systemd(make_daemon, pb):
    d = make_daemon(config="[GRPC]\nMaxMessageSize=8M\n", args=["--shutdown-timeout", "7s"])
    r = d.runtime().Status(pb.StatusRequest(verbose=True), timeout=10)
    config = json.loads(r.info["config"])
    assert config["listen"] == d.socket
    assert config["bus"] == "user"
    assert config["logLevel"] == "debug"
    assert config["maxMessageSize"] == 8 * 1024 * 1024  # from the file
    assert config["shutdownTimeoutUSec"] == 7_000_000  # from the command line
    assert config["stateDirectory"] == os.path.join(d.dir, "run")
    systemd = json.loads(r.info["systemd"])
    assert systemd["bus"] == "user"
    assert systemd["version"][:3].isdigit(), systemd


# What rktlet must find without Runtime=: runc, else crun, in $PATH (the daemons get the tests' $PATH).
OCI_RUNTIME = shutil.which("runc") or shutil.which("crun")
needs_oci_runtime = pytest.mark.skipif(OCI_RUNTIME is None, reason="neither runc nor crun is installed")


def oci_runtime_info(d, pb):
    """The default handler's runtime, without the list of every handler (test_handlers.py's)."""
    r = d.runtime().Status(pb.StatusRequest(verbose=True), timeout=10)
    oci = json.loads(r.info["ociRuntime"])
    handlers = oci.pop("handlers")
    # The default is one of the handlers, listed with the same path.
    if oci["defaultHandler"]:
        default = next(h for h in handlers if h["name"] == oci["defaultHandler"])
        assert default["path"] == oci["path"] or not default["usable"], (default, oci)
    return oci, json.loads(r.info["config"])


@needs_oci_runtime
def test_status_verbose_names_the_oci_runtime_found(daemon, pb):
    oci, config = oci_runtime_info(daemon, pb)
    assert oci == {"name": os.path.basename(OCI_RUNTIME), "path": OCI_RUNTIME,
                   "resolvedPath": os.path.realpath(OCI_RUNTIME), "configured": "",
                   "defaultHandler": os.path.basename(OCI_RUNTIME)}
    assert config["ociRuntime"] == ""  # the configuration: nothing asked for, so detected


@needs_oci_runtime
def test_status_verbose_names_a_configured_runtime_and_resolves_it(make_daemon, tmp_path, pb):
    link = tmp_path / "bin" / "my-oci-runtime"
    link.parent.mkdir()
    os.symlink(OCI_RUNTIME, link)
    d = make_daemon(config=f"[Containers]\nRuntime={link}\n")
    oci, config = oci_runtime_info(d, pb)
    assert oci == {"name": "my-oci-runtime", "path": str(link), "resolvedPath": os.path.realpath(OCI_RUNTIME),
                   "configured": str(link), "defaultHandler": "my-oci-runtime"}
    assert config["ociRuntime"] == str(link)


@pytest.mark.parametrize("configured", ["no-such-oci-runtime", "/nonexistent/runc"])
def test_status_verbose_says_when_the_configured_runtime_is_missing(make_daemon, pb, configured):
    d = make_daemon(config=f"[Containers]\nRuntime={configured}\n")
    oci, _ = oci_runtime_info(d, pb)
    assert oci["name"] == oci["path"] == oci["resolvedPath"] == ""
    assert oci["configured"] == configured
    assert oci["error"].startswith(f"{configured}: no such executable"), oci


def test_status_when_systemd_is_unreachable(make_daemon, tmp_path, pb):
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus-here")
    d = make_daemon(env=env)
    v = d.runtime().Version(pb.VersionRequest(), timeout=5)
    assert v.runtime_name == "rktlet"
    r = d.runtime().Status(pb.StatusRequest(), timeout=10)
    ready = {c.type: c for c in r.status.conditions}["RuntimeReady"]
    assert ready.status is False
    assert ready.reason
    assert "systemd" in ready.message.lower()


def test_runtime_config_uses_systemd_cgroup_driver(daemon, pb):
    r = daemon.runtime().RuntimeConfig(pb.RuntimeConfigRequest(), timeout=5)
    assert r.linux.cgroup_driver == pb.SYSTEMD


def test_checkpoint_without_criu_is_unimplemented_with_the_reason(daemon, pb):
    """Where criu does not work (it is missing, or `criu check` fails: this kernel), CheckpointContainer
    answers UNIMPLEMENTED before it judges the request, naming the method and what is missing."""
    criu = shutil.which("criu")
    if criu and subprocess.run([criu, "check"], capture_output=True, timeout=60).returncode == 0:
        pytest.skip("criu works here: test_update.py checkpoints a container")
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime().CheckpointContainer(pb.CheckpointContainerRequest(), timeout=30)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "CheckpointContainer" in e.value.details()
    assert ("criu not found" if criu is None else "criu check failed: ") in e.value.details(), e.value.details()


def test_unknown_method_is_unimplemented(daemon):
    ch = daemon.channel()
    for path in ("/runtime.v1.RuntimeService/NoSuchMethod", "/runtime.v1alpha2.RuntimeService/Version",
                 "/nonsense"):
        call = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, path
    # still serving
    assert daemon.runtime().Version(stubs()[0].VersionRequest(), timeout=5).runtime_name == "rktlet"


def test_undecodable_request_is_invalid_argument(daemon, pb):
    call = daemon.channel().unary_unary("/runtime.v1.RuntimeService/Version",
                                        request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as e:
        call(b"\xff\xff\xff\xff\x0f", timeout=5)  # a truncated varint field tag
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details()
    assert daemon.runtime().Version(pb.VersionRequest(), timeout=5).runtime_name == "rktlet"
