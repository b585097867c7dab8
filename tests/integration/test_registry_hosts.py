"""Per-registry settings of pulls ([Registries] in rktlet.conf(5)): a host's directory under
CertsDir= (CA certificates and a client certificate, read at each pull), the credentials of
AuthFile= (containers-auth.json, used when kubelet passes none) and Blocked= hosts.

Registries are Debian's docker-registry on loopback (registry.py): over TLS with a CA and server
certificate made here with openssl, requiring client certificates (http.tls.clientcas), behind
htpasswd auth, or plain HTTP behind the counting proxy.
"""

import base64
import json
import os
import shutil
import signal
import subprocess

import grpc
import pytest

import registry as reg
import rktlet_test
from registry import Proxy, Registry, CertAuthority
from rktlet_test import MACHINE, wait_until
from test_images import pull, pull_error

pytestmark = [
    pytest.mark.skipif(not os.access(reg.DOCKER_REGISTRY, os.X_OK),
                       reason="docker-registry (Debian package docker-registry) is not installed"),
    pytest.mark.skipif(not os.access(reg.BUSYBOX, os.X_OK),
                       reason="/bin/busybox (Debian package busybox-static) is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl (Debian package openssl) is not installed"),
]

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def hosts_config(certs_dir="", auth_file="", insecure=(), blocked=(), mirrors=None):
    lines = ["[Registries]", "Insecure=" + ",".join(insecure), "Blocked=" + ",".join(blocked),
             "CertsDir=" + str(certs_dir), "AuthFile=" + str(auth_file)]
    if mirrors:
        lines.append("Mirrors=" + ",".join(f"{r}={'|'.join(m)}" for r, m in mirrors.items()))
    return "\n".join(lines) + "\n"


def host_dir(certs_dir, r):
    d = os.path.join(str(certs_dir), r.url)
    os.makedirs(d, exist_ok=True)
    return d


def config_info(d, pb):
    return json.loads(d.runtime().Status(pb.StatusRequest(verbose=True), timeout=10).info["config"])


@pytest.fixture
def ca(tmp_path):
    return CertAuthority(tmp_path / "ca")


@pytest.fixture
def tls_registry(tmp_path, ca):
    r = Registry(tmp_path / "tls-registry", tls=ca)
    yield r
    r.stop()


def test_test_daemons_do_not_read_the_hosts_files(make_daemon, pb):
    """The daemons of the tests do not read the host's /etc/rktlet/certs.d or auth.json (the
    defaults): turned off unless the test's config sets them, whose values stay."""
    cfg = config_info(make_daemon(), pb)
    assert (cfg["registryCertsDir"], cfg["registryAuthFile"]) == ("", ""), cfg
    cfg = config_info(make_daemon("other", config="[Registries]\nCertsDir=/nowhere/certs.d\n"), pb)
    assert (cfg["registryCertsDir"], cfg["registryAuthFile"]) == ("/nowhere/certs.d", ""), cfg


# --- certs.d: CAs --------------------------------------------------------------------------------

def test_ca_from_certs_d_at_the_next_pull(make_daemon, pb, tmp_path, ca, tls_registry):
    """Without its CA the pull fails and says which certificate problem; the CA dropped into
    CertsDir/127.0.0.1:PORT/ is used by the next pull, without a restart or a reload. It is trusted
    for that host only: another registry with a certificate of the same CA still fails."""
    image = reg.single_layer_image()
    image.push(tls_registry, "tls/app", "v1")
    certs = tmp_path / "certs.d"
    d = make_daemon(config=hosts_config(certs_dir=certs))
    ref = f"{tls_registry.url}/tls/app:v1"

    e = pull_error(d, pb, ref, grpc.StatusCode.UNAVAILABLE)
    assert "SSL certificate problem" in e.details(), e.details()
    # An empty directory for the host is no CA either.
    host = host_dir(certs, tls_registry)
    e = pull_error(d, pb, ref, grpc.StatusCode.UNAVAILABLE)
    assert "SSL certificate problem" in e.details(), e.details()

    shutil.copy(ca.cert, os.path.join(host, "ca.crt"))
    assert pull(d, pb, ref) == image.id
    # Taken away, it is trusted no more: not even through a connection the last pull left open.
    os.unlink(os.path.join(host, "ca.crt"))
    e = pull_error(d, pb, ref, grpc.StatusCode.UNAVAILABLE)
    assert "SSL certificate problem" in e.details(), e.details()
    shutil.copy(ca.cert, os.path.join(host, "ca.crt"))
    assert pull(d, pb, ref) == image.id

    other = Registry(tmp_path / "other", tls=ca)
    try:
        image.push(other, "tls/app", "v1")
        e = pull_error(d, pb, f"{other.url}/tls/app:v1", grpc.StatusCode.UNAVAILABLE)
        assert "SSL certificate problem" in e.details(), e.details()
    finally:
        other.stop()

    # A .crt that holds no certificate: the operator hears which file.
    with open(os.path.join(host, "broken.crt"), "w") as f:
        f.write("not a certificate\n")
    e = pull_error(d, pb, ref, grpc.StatusCode.FAILED_PRECONDITION)
    assert "broken.crt" in e.details(), e.details()
    assert d.alive()


@pytest.fixture
def system_ca(tmp_path):
    """A CA added to the system's bundle for the test: the bundle with it bind-mounted over
    /etc/ssl/certs/ca-certificates.crt in the harness's mount namespace, unmounted afterwards."""
    if os.environ.get("RKTLET_HARNESS") != "1" or os.geteuid() != 0:
        pytest.skip("the system bundle is replaced only inside the harness's mount namespace")
    if not os.path.isfile(SYSTEM_BUNDLE):
        pytest.skip(MACHINE + f"add a CA to the system store: no {SYSTEM_BUNDLE} (Debian package ca-certificates)")
    ca = CertAuthority(tmp_path / "system-ca", name="rktlet system test CA")
    bundle = tmp_path / "bundle.crt"
    with open(SYSTEM_BUNDLE) as f, open(ca.cert) as c, open(bundle, "w") as out:
        out.write(f.read() + "\n" + c.read())
    r = subprocess.run(["mount", "--bind", str(bundle), SYSTEM_BUNDLE], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(MACHINE + f"bind-mount a bundle over {SYSTEM_BUNDLE}: {r.stderr.strip()}")
    try:
        yield ca
    finally:
        subprocess.run(["umount", SYSTEM_BUNDLE], check=True)


def test_system_store_stays(make_daemon, pb, tmp_path, system_ca):
    """A host without a certs.d directory verifies against the system's store, as before; a host
    whose directory has a CA of its own still trusts the system's CAs beside it."""
    image = reg.single_layer_image()
    certs = tmp_path / "certs.d"
    r = Registry(tmp_path / "sys-registry", tls=system_ca)
    try:
        image.push(r, "sys/app", "v1")
        d = make_daemon(config=hosts_config(certs_dir=certs))
        ref = f"{r.url}/sys/app:v1"
        assert pull(d, pb, ref) == image.id

        unrelated = CertAuthority(tmp_path / "unrelated", name="rktlet unrelated CA")
        shutil.copy(unrelated.cert, os.path.join(host_dir(certs, r), "ca.crt"))
        assert pull(d, pb, ref) == image.id
    finally:
        r.stop()


# --- certs.d: client certificates ----------------------------------------------------------------

def test_client_certificate(make_daemon, pb, tmp_path, ca):
    """A registry that requires a client certificate refuses a pull without one and serves one with
    client.cert + client.key; a client.cert without its key is a clear error naming both files."""
    client_ca = CertAuthority(tmp_path / "client-ca", name="rktlet client CA")
    r = Registry(tmp_path / "mtls-registry", tls=ca, client_ca=client_ca)
    try:
        image = reg.single_layer_image()
        image.push(r, "mtls/app", "v1")
        certs = tmp_path / "certs.d"
        host = host_dir(certs, r)
        shutil.copy(ca.cert, os.path.join(host, "ca.crt"))
        d = make_daemon(config=hosts_config(certs_dir=certs))
        ref = f"{r.url}/mtls/app:v1"

        e = pull_error(d, pb, ref, grpc.StatusCode.UNAVAILABLE)
        assert "requires a client certificate, none is in " + host in e.details(), e.details()

        cert, key = client_ca.issue("rktlet-node", client=True)
        shutil.copy(cert, os.path.join(host, "client.cert"))
        e = pull_error(d, pb, ref, grpc.StatusCode.FAILED_PRECONDITION)
        assert os.path.join(host, "client.cert") in e.details(), e.details()
        assert "client.key" in e.details(), e.details()

        shutil.copy(key, os.path.join(host, "client.key"))
        assert pull(d, pb, ref) == image.id

        # A key that is not the certificate's (another one made by openssl): FAILED_PRECONDITION
        # naming the key when the pull reads the directory, not a handshake failure.
        other_key = tmp_path / "other.key"
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-out", str(other_key)], check=True, capture_output=True)
        shutil.copy(other_key, os.path.join(host, "client.key"))
        e = pull_error(d, pb, ref, grpc.StatusCode.FAILED_PRECONDITION)
        assert os.path.join(host, "client.key") in e.details() and "does not belong" in e.details(), e.details()
        shutil.copy(key, os.path.join(host, "client.key"))
        assert pull(d, pb, ref) == image.id

        # Both taken away: refused again, even by way of a connection the last pull left open.
        os.unlink(os.path.join(host, "client.cert"))
        os.unlink(os.path.join(host, "client.key"))
        pull_error(d, pb, ref, grpc.StatusCode.UNAVAILABLE)
        shutil.copy(cert, os.path.join(host, "client.cert"))
        shutil.copy(key, os.path.join(host, "client.key"))
        assert pull(d, pb, ref) == image.id

        # The key alone (its certificate gone) is the same kind of mistake.
        os.unlink(os.path.join(host, "client.cert"))
        e = pull_error(d, pb, ref, grpc.StatusCode.FAILED_PRECONDITION)
        assert "client.key" in e.details() and "client.cert" in e.details(), e.details()
        assert d.alive()
    finally:
        r.stop()


# --- the auth file -------------------------------------------------------------------------------

PASSWORD = "s3cret-of-the-file"


def b64(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def write_auth(path, auths):
    with open(path, "w") as f:
        json.dump({"auths": {k: {"auth": v} for k, v in auths.items()}}, f)


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="htpasswd (Debian package apache2-utils) is not installed")
def test_auth_file(make_daemon, pb, tmp_path):
    """AuthFile= gives the credentials when kubelet passes none, read at each pull: the most
    specific key wins (a wrong host-level entry beside a right one for the repository); kubelet's
    credentials come first; a malformed file fails the pull that reads it, naming the file."""
    r = Registry(tmp_path / "auth-registry", auth="htpasswd", users={"rktlet": PASSWORD})
    try:
        image = reg.single_layer_image()
        image.push(r, "team/app", "v1")
        auth_file = tmp_path / "auth.json"
        d = make_daemon(config=hosts_config(auth_file=auth_file, insecure=[r.url]))
        ref = f"{r.url}/team/app:v1"

        pull_error(d, pb, ref, grpc.StatusCode.UNAUTHENTICATED)  # no file: no credentials

        write_auth(auth_file, {r.url: b64("rktlet", "wrong")})
        pull_error(d, pb, ref, grpc.StatusCode.UNAUTHENTICATED)

        write_auth(auth_file, {r.url: b64("rktlet", "wrong"), f"{r.url}/team/app": b64("rktlet", PASSWORD),
                               f"{r.url}/team/other": b64("rktlet", "wrong too")})
        assert pull(d, pb, ref) == image.id
        # A key for a namespace counts too, and the repository's own is still more specific.
        write_auth(auth_file, {r.url: b64("rktlet", "wrong"), f"{r.url}/team": b64("rktlet", PASSWORD)})
        assert pull(d, pb, ref) == image.id
        write_auth(auth_file, {f"{r.url}/team": b64("rktlet", PASSWORD), f"{r.url}/team/app": b64("x", "wrong")})
        pull_error(d, pb, ref, grpc.StatusCode.UNAUTHENTICATED)

        # kubelet's credentials come first, right or wrong.
        write_auth(auth_file, {r.url: b64("rktlet", PASSWORD)})
        pull_error(d, pb, ref, grpc.StatusCode.UNAUTHENTICATED, auth=pb.AuthConfig(username="rktlet", password="bad"))
        write_auth(auth_file, {r.url: b64("rktlet", "wrong")})
        assert pull(d, pb, ref, auth=pb.AuthConfig(username="rktlet", password=PASSWORD)) == image.id

        # A malformed file: the pull that reads it fails and says which file; nothing of it is used.
        with open(auth_file, "w") as f:
            f.write('{"auths": {"%s": {"auth": "%s"}, "other": {"auth": 7}}}' % (r.url, b64("rktlet", PASSWORD)))
        e = pull_error(d, pb, ref, grpc.StatusCode.FAILED_PRECONDITION)
        assert str(auth_file) in e.details() and "malformed" in e.details(), e.details()
        # Logged, once.
        assert d.log().count(f"the auth file {auth_file} is malformed") == 1, d.log()
        with open(auth_file, "w") as f:
            f.write("{not json")
        e = pull_error(d, pb, ref, grpc.StatusCode.FAILED_PRECONDITION)
        assert str(auth_file) in e.details(), e.details()
        # kubelet's credentials do not need the file.
        assert pull(d, pb, ref, auth=pb.AuthConfig(username="rktlet", password=PASSWORD)) == image.id
        assert d.alive()
    finally:
        r.stop()


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="htpasswd (Debian package apache2-utils) is not installed")
def test_auth_file_per_host_mirror(make_daemon, pb, tmp_path):
    """The auth file is looked up by the host spoken to: a mirror (here a proxy in front of the
    registry, which would accept the registry's password) gets no Authorization from the registry's
    entry, fails, and the registry serves the pull with its own; an entry for the mirror is what
    the mirror gets."""
    r = Registry(tmp_path / "auth-registry", auth="htpasswd", users={"rktlet": PASSWORD})
    mirror = Proxy(r.url)
    try:
        image = reg.single_layer_image()
        image.push(r, "team/app", "v1")
        auth_file = tmp_path / "auth.json"
        write_auth(auth_file, {r.url: b64("rktlet", PASSWORD)})
        d = make_daemon(config=hosts_config(auth_file=auth_file, insecure=[r.url, mirror.url],
                                            mirrors={r.url: [mirror.url]}))
        ref = f"{r.url}/team/app:v1"
        assert pull(d, pb, ref) == image.id
        assert mirror.requests, "the mirror was not tried"
        assert all(status == 401 for _, _, status in mirror.requests), mirror.requests
        assert mirror.authorizations == [], mirror.authorizations

        # The mirror's own entry goes to the mirror, which serves the pull.
        d.images().RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=30)
        mirror.requests.clear()
        mirror_basic = "Basic " + b64("rktlet", PASSWORD)
        write_auth(auth_file, {mirror.url: b64("rktlet", PASSWORD)})
        assert pull(d, pb, ref) == image.id
        assert mirror_basic in mirror.authorizations, mirror.authorizations
        assert any(p.startswith("/v2/team/app/manifests/") and status == 200 for _, p, status in mirror.requests), \
            mirror.requests
        assert d.alive()
    finally:
        mirror.stop()
        r.stop()


def test_mirror_with_a_path(make_daemon, pb, tmp_path, ca):
    """A mirror written with a path (host:port/prefix) is spoken to, its certs.d directory being its
    host's: before, the '/' made its directory name invalid and the mirror was skipped unasked. (The
    mirror, a proxy in front of the registry, has no /prefix/v2/: the registry serves the pull.)"""
    r = Registry(tmp_path / "registry")
    mirror = Proxy(r.url)
    try:
        image = reg.single_layer_image()
        image.push(r, "path/app", "v1")
        certs = tmp_path / "certs.d"
        host_dir(certs, mirror)  # an empty directory of the mirror's host: read, nothing in it
        d = make_daemon(config=hosts_config(certs_dir=certs, insecure=[r.url, mirror.url + "/prefix"],
                                            mirrors={r.url: [mirror.url + "/prefix"]}))
        assert pull(d, pb, f"{r.url}/path/app:v1") == image.id
        assert any(p.startswith("/prefix/v2/path/app/manifests/") for _, p, _ in mirror.requests), mirror.requests
    finally:
        mirror.stop()
        r.stop()


# --- blocked registries --------------------------------------------------------------------------

def test_blocked_registry(make_daemon, pb, tmp_path):
    """A pull that names a blocked host fails at once with PERMISSION_DENIED and sends it nothing;
    a blocked host is no mirror either; Blocked= reloads on SIGHUP and shows in --dump-config."""
    r = Registry(tmp_path / "registry")
    proxy = Proxy(r.url)
    try:
        image = reg.single_layer_image()
        image.push(r, "blocked/app", "v1")
        d = make_daemon(config=hosts_config(insecure=[r.url, proxy.url], blocked=[proxy.url],
                                            mirrors={r.url: [proxy.url]}))
        e = pull_error(d, pb, f"{proxy.url}/blocked/app:v1", grpc.StatusCode.PERMISSION_DENIED)
        assert proxy.url in e.details() and "Blocked=" in e.details(), e.details()
        assert proxy.requests == []

        # The mirror is blocked: the registry itself serves the pull.
        assert pull(d, pb, f"{r.url}/blocked/app:v1") == image.id
        assert proxy.requests == []

        dumped = subprocess.run([rktlet_test.RKTLET, "--config", d.config, "--dump-config"], check=True,
                                capture_output=True, text=True).stdout
        assert f"\nBlocked={proxy.url}\n" in dumped, dumped
        assert "\nCertsDir=\n" in dumped and "\nAuthFile=\n" in dumped, dumped

        with open(d.config, "w") as f:
            f.write(hosts_config(insecure=[r.url, proxy.url], mirrors={r.url: [proxy.url]}))
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: config_info(d, pb)["registryBlocked"] == "", 10, what="the reload")
        assert pull(d, pb, f"{proxy.url}/blocked/app:v1") == image.id
        assert proxy.requests
    finally:
        proxy.stop()
        r.stop()


def test_reload_certs_and_auth_paths(make_daemon, pb, tmp_path, ca, tls_registry):
    """CertsDir= and AuthFile= reload on SIGHUP: a pull after the reload reads the new directory."""
    image = reg.single_layer_image()
    image.push(tls_registry, "reload/app", "v1")
    old, new = tmp_path / "old-certs.d", tmp_path / "new-certs.d"
    shutil.copy(ca.cert, os.path.join(host_dir(new, tls_registry), "ca.crt"))
    d = make_daemon(config=hosts_config(certs_dir=old, auth_file=tmp_path / "a.json"))
    ref = f"{tls_registry.url}/reload/app:v1"
    pull_error(d, pb, ref, grpc.StatusCode.UNAVAILABLE)
    with open(d.config, "w") as f:
        f.write(hosts_config(certs_dir=new, auth_file=tmp_path / "b.json"))
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: config_info(d, pb)["registryCertsDir"] == str(new), 10, what="the reload")
    assert config_info(d, pb)["registryAuthFile"] == str(tmp_path / "b.json")
    assert pull(d, pb, ref) == image.id


# --- crictl --------------------------------------------------------------------------------------

def test_crictl_pull_over_tls(make_daemon, tmp_path, ca, tls_registry):
    """crictl pull, as an operator runs it, from a TLS registry whose CA is in certs.d."""
    from test_crictl import CRICTL, Crictl
    if not os.access(CRICTL, os.X_OK):
        pytest.skip(MACHINE + f"run crictl: not at {CRICTL} (set RKTLET_CRICTL to a cri-tools crictl)")
    image = reg.single_layer_image()
    image.push(tls_registry, "crictl/app", "v1")
    certs = tmp_path / "certs.d"
    d = make_daemon(config=hosts_config(certs_dir=certs))
    crictl = Crictl(d, tmp_path / "crictl")
    ref = f"{tls_registry.url}/crictl/app:v1"

    r = crictl.run("pull", ref, check=False)
    assert r.returncode != 0 and "SSL certificate problem" in r.stderr, (r.stdout, r.stderr)
    shutil.copy(ca.cert, os.path.join(host_dir(certs, tls_registry), "ca.crt"))
    r = crictl.run("pull", ref)
    assert image.id in r.stdout, r.stdout
    assert image.id in [i["id"] for i in crictl.json("images", "-o", "json")["images"]]
