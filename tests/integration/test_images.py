"""Images: pulls from a local docker-registry (plain HTTP on loopback), the store under
<root>/images, and the CRI ImageService (PullImage, ListImages, ImageStatus, RemoveImage,
ImageFsInfo).

The registry, the token server, the proxy and the test images come from registry.py. The daemon is
told the registries are plain HTTP in rktlet.conf:

    [Registries]
    Insecure=127.0.0.1:5000,127.0.0.1:5001
    Mirrors=docker.io=127.0.0.1:5001|127.0.0.1:5002,registry.example=127.0.0.1:5003

The store, as the tests read it: <root>/images/blobs/sha256/<hex> (verified blobs),
<root>/images/blobs/tmp/ (downloads in progress), <root>/images/layers/<chain id hex>/ (each layer's
files directly inside, whiteouts in overlayfs form), <root>/images/records/<image id hex>.json and
<root>/images/trash/ (what is being deleted).
"""

import base64
import errno
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import threading
import time

import grpc
import pytest

import registry as reg
import rktlet_test
from registry import Proxy, Registry, TokenServer, hex_of, sha256
from rktlet_test import machine_skip, wait_journal, wait_until

PULL_TIMEOUT = 120

needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd (Debian package zstd) is not installed")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="openssl (Debian package openssl) is not installed")
needs_htpasswd = pytest.mark.skipif(shutil.which("htpasswd") is None,
                                    reason="htpasswd (Debian package apache2-utils) is not installed")
pytestmark = [
    pytest.mark.skipif(not os.access(reg.DOCKER_REGISTRY, os.X_OK),
                       reason="docker-registry (Debian package docker-registry) is not installed"),
    pytest.mark.skipif(not os.access(reg.BUSYBOX, os.X_OK),
                       reason="/bin/busybox (Debian package busybox-static) is not installed"),
]


# --- fixtures and helpers --------------------------------------------------------------------------

def registries_config(insecure=(), mirrors=None, images=None):
    """rktlet.conf declaring plain-HTTP registries and mirrors ({registry: [mirror, ...]}), and
    [Images] keys ({"MaxLayerSize": "8M", ...})."""
    lines = ["[Registries]", "Insecure=" + ",".join(insecure)]
    if mirrors:
        lines.append("Mirrors=" + ",".join(f"{r}={'|'.join(m)}" for r, m in mirrors.items()))
    if images:
        lines += ["[Images]", *(f"{k}={v}" for k, v in images.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture
def registry(tmp_path):
    r = Registry(tmp_path / "registry")
    yield r
    r.stop()


@pytest.fixture
def proxy(registry):
    p = Proxy(registry.url)
    yield p
    p.stop()


@pytest.fixture
def idaemon(make_daemon, registry, proxy):
    """A daemon for which the registry and its proxy are plain-HTTP registries."""
    return make_daemon(config=registries_config([registry.url, proxy.url]))


def store(d, *parts):
    return os.path.join(d.dir, "lib", "images", *parts)


def blob_file(d, digest):
    return store(d, "blobs", "sha256", hex_of(digest))


def layer_dir(d, chain_id):
    return store(d, "layers", hex_of(chain_id))


def record_file(d, image_id):
    return store(d, "records", hex_of(image_id) + ".json")


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def layer_dirs(d):
    """The unpacked layers (chain id hex), whatever else the layers directory keeps beside them."""
    return [n for n in listdir(store(d, "layers")) if os.path.isdir(store(d, "layers", n))]


def pull(d, pb, ref, auth=None, timeout=PULL_TIMEOUT):
    req = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    return d.images().PullImage(req, timeout=timeout).image_ref


# The gRPC codes of failed pulls, by what the registry answered (the codes' meanings in gRPC's
# status codes; kubelet shows them in ErrImagePull). NOT_FOUND: the registry has no such repository,
# tag or digest (HTTP 404, MANIFEST_UNKNOWN / NAME_UNKNOWN / BLOB_UNKNOWN). UNAUTHENTICATED: no or
# wrong credentials (HTTP 401, from the registry or from its token server). PERMISSION_DENIED: known
# but refused (HTTP 403). UNAVAILABLE: the registry cannot be reached. DATA_LOSS: what it sent does
# not match its digest.
def pull_error(d, pb, ref, code, auth=None, timeout=PULL_TIMEOUT):
    """The pull of ref fails with this gRPC code and a message saying why."""
    with pytest.raises(grpc.RpcError) as e:
        pull(d, pb, ref, auth, timeout)
    assert e.value.code() == code, (ref, e.value.code(), e.value.details())
    assert e.value.details(), "a failed pull says why"
    return e.value


def image_status(d, pb, ref, verbose=False):
    return d.images().ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=verbose), timeout=30)


def list_images(d, pb, ref=None):
    req = pb.ListImagesRequest()
    if ref is not None:
        req.filter.image.image = ref
    return list(d.images().ListImages(req, timeout=30).images)


def remove_image(d, pb, ref):
    d.images().RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=60)


def fs_info(d, pb):
    return d.images().ImageFsInfo(pb.ImageFsInfoRequest(), timeout=30)


def assert_stored(d, image):
    """Blobs, unpacked layers and the record of image are in the store, blobs verified."""
    for digest in [image.config_digest] + [l.digest for l in image.layers]:
        with open(blob_file(d, digest), "rb") as f:
            assert sha256(f.read()) == digest
    for c in image.chain_ids:
        assert os.path.isdir(layer_dir(d, c)), c
    with open(record_file(d, image.id)) as f:
        json.load(f)


def assert_size(image, size):
    """The CRI size: config and layer blobs (the manifest may be counted too)."""
    assert image.size <= size <= image.size + len(image.manifest_bytes) + 4096, (size, image.size)


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def journal_text():
    """Everything the harness's journal holds, every field."""
    return subprocess.run(["journalctl", "--no-pager", "-o", "json", "--all"], capture_output=True, text=True).stdout


def assert_never_logged(d, *secrets):
    text = journal_text() + d.log()
    for s in secrets:
        assert s not in text, "a credential appears in the logs"


# --- the infrastructure itself (no daemon) -------------------------------------------------------

def _decompress(layer):
    if layer.compression == "gzip":
        return gzip.decompress(layer.blob)
    if layer.compression == "zstd":
        return subprocess.run(["zstd", "-d", "-q", "-c"], input=layer.blob, capture_output=True, check=True).stdout
    return layer.blob


def _check_pushed(client, repo, tag, image):
    """GETs the manifest (by tag and by digest) and every blob back and compares them."""
    for ref in (tag, image.digest):
        _, h, body = client.get_manifest(repo, ref)
        assert body == image.manifest_bytes
        assert h["content-type"] == image.media_type
        assert h["docker-content-digest"] == image.digest
    manifest = json.loads(image.manifest_bytes)
    assert manifest["config"]["digest"] == image.config_digest
    assert [l["digest"] for l in manifest["layers"]] == [l.digest for l in image.layers]
    for digest, data in image.blobs.items():
        got = client.get_blob(repo, digest)
        assert got == data and sha256(got) == digest
    config = json.loads(client.get_blob(repo, image.config_digest))
    assert config["rootfs"]["diff_ids"] == image.diff_ids
    for l in image.layers:
        tar = _decompress(l)
        assert sha256(tar) == l.diff_id
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            assert tf.getnames()


@needs_zstd
def test_registry_selfcheck_images(tmp_path):
    r = Registry(tmp_path / "registry")
    try:
        client = r.client()
        status, _, _ = client.request("GET", "/v2/")
        assert status == 200
        images = {
            "single-gzip": reg.single_layer_image("gzip"),
            "single-zstd": reg.single_layer_image("zstd"),
            "single-none": reg.single_layer_image("none"),
            "multi": reg.multi_layer_image(),
            "sibling": reg.sibling_image(),
            "docker": reg.docker_image(),
        }
        assert images["single-zstd"].layers[0].media_type == reg.OCI_LAYER_ZSTD
        assert images["single-none"].layers[0].media_type == reg.OCI_LAYER
        assert images["single-gzip"].layers[0].diff_id == images["single-zstd"].layers[0].diff_id
        assert images["multi"].chain_ids[0] == images["sibling"].chain_ids[0]
        assert images["multi"].chain_ids[1] != images["sibling"].chain_ids[1]
        assert images["docker"].media_type == reg.DOCKER_MANIFEST
        assert json.loads(images["docker"].manifest_bytes)["layers"][0]["mediaType"] == reg.DOCKER_LAYER_GZIP
        outside = str(tmp_path / "outside")
        reg.prepare_outside(outside)
        for name, make in reg.EVIL_IMAGES.items():
            images["evil-" + name] = make(outside)[0]
        for name, image in images.items():
            digest = image.push(r, f"test/{name}", "v1")
            assert digest == image.digest
            _check_pushed(client, f"test/{name}", "v1", image)

        # The whiteouts and the opaque marker are in the multi-layer image's second layer.
        with tarfile.open(fileobj=io.BytesIO(images["multi"].layers[1].tar)) as tf:
            assert {"data/.wh.gone", "data/.wh.gone-dir", "opq/.wh..wh..opq"} <= set(tf.getnames())
        # The single-layer image has the entries the unpacking tests look for.
        with tarfile.open(fileobj=io.BytesIO(images["single-gzip"].layers[0].tar)) as tf:
            m = {t.name: t for t in tf.getmembers()}
            assert m["bin/busybox"].size == os.path.getsize(reg.BUSYBOX)
            assert m["bin/sh"].issym() and m["bin/sh"].linkname == "busybox"
            assert m["etc/motd.hard"].islnk() and m["etc/motd.hard"].linkname == "etc/motd"
            assert m["etc/motd"].uid == 1000 and m["etc/motd"].mode == 0o640 and m["etc/motd"].mtime == reg.MOTD_MTIME
            assert m["dev/null"].ischr() and (m["dev/null"].devmajor, m["dev/null"].devminor) == (1, 3)
            assert m["bin/ping"].pax_headers["SCHILY.xattr.trusted.rktlet.test"] == "kept"
        # A layer from a directory keeps hardlinks and symlinks.
        src = tmp_path / "tree"
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "a").write_text("a\n")
        os.link(src / "sub" / "a", src / "b")
        os.symlink("sub/a", src / "c")
        with tarfile.open(fileobj=io.BytesIO(reg.tar_from_dir(src))) as tf:
            m = {t.name: t for t in tf.getmembers()}
            assert sorted(m) == ["b", "c", "sub", "sub/a"]
            assert m["sub/a"].islnk() and m["sub/a"].linkname == "b" and m["c"].linkname == "sub/a"
        # The malicious entries are written as given.
        with tarfile.open(fileobj=io.BytesIO(images["evil-dotdot"].layers[0].tar)) as tf:
            assert "../escape-dotdot" in tf.getnames()
        with tarfile.open(fileobj=io.BytesIO(images["evil-hardlink-absolute"].layers[0].tar)) as tf:
            assert [t.linkname for t in tf.getmembers() if t.islnk()] == [f"{outside}/secret"]

        for docker in (False, True):
            index = reg.multi_arch_index(docker)
            repo = "test/multiarch-docker" if docker else "test/multiarch"
            assert index.push(r, repo, "v1") == index.digest
            _, h, body = client.get_manifest(repo, "v1")
            assert body == index.manifest_bytes
            assert h["content-type"] == (reg.DOCKER_MANIFEST_LIST if docker else reg.OCI_INDEX)
            entries = json.loads(body)["manifests"]
            assert [e["platform"]["architecture"] for e in entries] == [reg.FOREIGN_ARCH, reg.HOST_ARCH]
            for image in index.images:
                _check_pushed(client, repo, image.digest, image)
            assert index.image_for(reg.HOST_ARCH).config["architecture"] == reg.HOST_ARCH

        # A missing tag is a 404 with the distribution error code.
        status, _, body = client.request("GET", "/v2/test/multi/manifests/nope", headers={"Accept": reg.ACCEPT_ALL},
                                         ok=None)
        assert status == 404 and b"MANIFEST_UNKNOWN" in body
        # Deleting is enabled.
        status, _, _ = client.request("DELETE", f"/v2/test/sibling/manifests/{images['sibling'].digest}",
                                      ok=(202,))
    finally:
        r.stop()


@needs_htpasswd
def test_registry_selfcheck_htpasswd(tmp_path):
    r = Registry(tmp_path / "registry", auth="htpasswd", users={"pusher": "push-Pa55"})
    try:
        status, h, _ = reg.Client(r.url).request("GET", "/v2/", ok=None)
        assert status == 401 and h["www-authenticate"].startswith("Basic ")
        image = reg.single_layer_image()
        image.push(r, "auth/busybox", "v1")
        _check_pushed(r.client(), "auth/busybox", "v1", image)
        status, _, _ = reg.Client(r.url, ("pusher", "wrong")).request(
            "GET", "/v2/auth/busybox/manifests/v1", headers={"Accept": reg.ACCEPT_ALL}, ok=None)
        assert status == 401
    finally:
        r.stop()


@needs_openssl
def test_registry_selfcheck_token(tmp_path):
    ts = TokenServer(tmp_path / "token", users={"pusher": "push-Pa55"}, anonymous_actions=["pull"])
    r = Registry(tmp_path / "registry", auth="token", token_server=ts)
    try:
        status, h, _ = reg.Client(r.url)._raw("GET", "/v2/")
        assert status == 401
        assert h["www-authenticate"].startswith("Bearer ") and ts.realm in h["www-authenticate"]
        image = reg.single_layer_image()
        assert image.push(r, "tok/busybox", "v1") == image.digest  # the bearer flow with credentials
        assert any(acct == "pusher" and "push" in a["actions"] for acct, _, access in ts.requests if access
                   for a in access)
        anonymous = reg.Client(r.url)
        _check_pushed(anonymous, "tok/busybox", "v1", image)  # anonymous pull tokens
        assert anonymous.tokens >= 1
        assert any(acct is None for acct, _, _ in ts.requests)
        # Anonymous pushes get a token without push: the registry refuses them.
        with pytest.raises((RuntimeError, PermissionError)):
            reg.single_layer_image("none").push(reg.Client(r.url), "tok/anon", "v1")
        # Wrong credentials: the token server says no.
        with pytest.raises(PermissionError):
            reg.Client(r.url, ("pusher", "wrong")).get_manifest("tok/busybox", "v1")
    finally:
        r.stop()
        ts.stop()

    # A token server that gives anonymous users nothing.
    ts = TokenServer(tmp_path / "token2", users={"u": "p"}, anonymous_actions=[])
    r = Registry(tmp_path / "registry2", auth="token", token_server=ts)
    try:
        reg.single_layer_image().push(r, "tok/busybox", "v1")
        status, _, _ = reg.Client(r.url).request("GET", "/v2/tok/busybox/manifests/v1",
                                                 headers={"Accept": reg.ACCEPT_ALL}, ok=None)
        assert status == 401
        status, _, _ = reg.Client(r.url, ("u", "p")).get_manifest("tok/busybox", "v1")
        assert status == 200
    finally:
        r.stop()
        ts.stop()


def test_registry_selfcheck_proxy(registry, proxy):
    image = reg.single_layer_image()
    # Pushing through the proxy works: the registry's upload locations name the proxy.
    image.push(proxy.url, "px/busybox", "v1")
    assert proxy.count("POST", "/v2/px/busybox/blobs/uploads/") == 2
    client = reg.Client(proxy.url)
    _check_pushed(client, "px/busybox", "v1", image)
    layer = image.layers[0]
    assert proxy.blob_gets("px/busybox", layer.digest) == 1
    assert proxy.sent[f"/v2/px/busybox/blobs/{layer.digest}"] == layer.size
    status, h, body = client.request("HEAD", f"/v2/px/busybox/blobs/{layer.digest}")
    assert int(h["content-length"]) == layer.size and body == b""

    # Corruption: exactly one byte differs, same length.
    proxy.corrupt.add(layer.digest)
    bad = client.get_blob("px/busybox", layer.digest)
    assert len(bad) == layer.size and sha256(bad) != layer.digest
    assert sum(a != b for a, b in zip(bad, layer.blob)) == 1
    _, _, manifest = client.get_manifest("px/busybox", image.digest)
    assert manifest == image.manifest_bytes  # not corrupted unless asked
    proxy.corrupt.add(image.digest)
    _, _, manifest = client.get_manifest("px/busybox", image.digest)
    assert len(manifest) == len(image.manifest_bytes) and manifest != image.manifest_bytes
    _, _, manifest = client.get_manifest("px/busybox", "v1")  # by tag: left alone
    assert manifest == image.manifest_bytes
    proxy.corrupt.clear()
    assert client.get_blob("px/busybox", layer.digest) == layer.blob

    # Throttling: the blob is seen partly sent (about a second at this rate), then arrives whole.
    proxy.rate = layer.size
    path = f"/v2/px/busybox/blobs/{layer.digest}"
    before = proxy.sent[path]
    got = []
    t = threading.Thread(target=lambda: got.append(client.get_blob("px/busybox", layer.digest)))
    t.start()
    wait_until(lambda: 0 < proxy.sent[path] - before < layer.size or not t.is_alive(), timeout=60, interval=0.005,
               what="the blob to be on its way")
    assert 0 < proxy.sent[path] - before < layer.size, "the blob went out at once"
    t.join(60)
    assert got == [layer.blob]
    proxy.rate = None

    # Failures on demand.
    proxy.fail["/manifests/"] = 503
    status, _, _ = client.request("GET", "/v2/px/busybox/manifests/v1", ok=None)
    assert status == 503
    proxy.fail.clear()
    assert proxy.count("GET", "/v2/px/busybox/manifests/v1") >= 2


# --- pull, list, status --------------------------------------------------------------------------

def test_pull_by_tag_then_list_and_status(idaemon, registry, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "library/busybox", "1.36")
    ref = f"{registry.url}/library/busybox:1.36"
    assert pull(d, pb, ref) == image.id

    images = list_images(d, pb)
    assert len(images) == 1
    i = images[0]
    assert i.id == image.id
    assert list(i.repo_tags) == [ref]
    assert list(i.repo_digests) == [f"{registry.url}/library/busybox@{image.digest}"]
    assert_size(image, i.size)
    assert i.HasField("uid") and i.uid.value == 1000 and i.username == ""
    assert not i.pinned
    assert_stored(d, image)

    for r in (ref, image.id, f"{registry.url}/library/busybox@{image.digest}"):
        st = image_status(d, pb, r)
        assert st.HasField("image"), r
        assert st.image.id == image.id and list(st.image.repo_tags) == [ref]
        assert dict(st.info) == {}

    # Pulling again: the same image, nothing added.
    assert pull(d, pb, ref) == image.id
    assert [x.id for x in list_images(d, pb)] == [image.id]
    assert listdir(store(d, "records")) == [hex_of(image.id) + ".json"]


def test_a_pull_logs_its_bytes_and_duration(idaemon, registry, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "logged/image", "v1")
    assert pull(d, pb, f"{registry.url}/logged/image:v1") == image.id
    entries = rktlet_test.wait_journal("SYSLOG_IDENTIFIER=rktlet", f"_PID={d.pid}")
    done = [e["MESSAGE"] for e in entries if ": done, image " in e["MESSAGE"]]
    assert len(done) == 1, done
    m = re.fullmatch(rf"pull {re.escape(registry.url)}/logged/image:v1: done, image {image.id}: "
                     r"(\d+) bytes downloaded in (\d+\.\d{3}) s\.", done[0])
    assert m, done[0]
    # The manifest, the config and the layer blob, each once (no retry here).
    assert int(m.group(1)) == len(image.manifest_bytes) + image.size
    assert 0 < float(m.group(2)) < 60


def test_pull_by_digest(idaemon, registry, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "app/busybox", "v1")
    ref = f"{registry.url}/app/busybox@{image.digest}"
    assert pull(d, pb, ref) == image.id
    i = image_status(d, pb, ref).image
    assert i.id == image.id
    assert list(i.repo_digests) == [ref]
    assert list(i.repo_tags) == []
    assert_stored(d, image)
    # Then by tag: the same image gains the tag.
    assert pull(d, pb, f"{registry.url}/app/busybox:v1") == image.id
    i = image_status(d, pb, image.id).image
    assert list(i.repo_tags) == [f"{registry.url}/app/busybox:v1"]
    assert list(i.repo_digests) == [ref]


# A reference with a tag and a digest ("repo:tag@sha256:..."): the digest wins. containerd's CRI
# normalizes references with reference/docker.ParseDockerRef, which drops the tag of such a
# reference, so it pulls repo@digest, never asks the registry about the tag, and records the repo
# digest but no tag. rktlet does the same, in pulls and in lookups: a tag that was never resolved
# names nothing (recording it would claim what the registry did not say, and would take the tag away
# from the image the registry's tag does name).

def test_tag_and_digest_pull_the_digest(idaemon, registry, proxy, pb):
    d = idaemon
    tagged, other = reg.single_layer_image(), reg.multi_layer_image()
    tagged.push(registry, "busybox", "v1")
    other.push(registry, "busybox", "v2")
    repo = f"{proxy.url}/busybox"
    assert pull(d, pb, f"{repo}:v1") == tagged.id
    proxy.reset()

    # A tag the registry does not have, with other's digest: other, fetched by its digest.
    ref = f"{repo}:no-such-tag@{other.digest}"
    assert pull(d, pb, ref) == other.id
    assert proxy.count("GET", "/v2/busybox/manifests/no-such-tag") == 0
    assert proxy.count("GET", f"/v2/busybox/manifests/{other.digest}") == 1
    assert_stored(d, other)
    # The tag of another image, with other's digest: other again, and v1 stays with tagged.
    assert pull(d, pb, f"{repo}:v1@{other.digest}") == other.id
    assert proxy.count("GET", "/v2/busybox/manifests/v1") == 0
    expected = {tagged.id: ([f"{repo}:v1"], [f"{repo}@{tagged.digest}"]),
                other.id: ([], [f"{repo}@{other.digest}"])}
    assert {i.id: (list(i.repo_tags), list(i.repo_digests)) for i in list_images(d, pb)} == expected
    i = image_status(d, pb, other.id).image
    assert (list(i.repo_tags), list(i.repo_digests)) == expected[other.id]

    # The right tag with a digest the registry does not have: NOT_FOUND, and the tag is not tried.
    proxy.reset()
    e = pull_error(d, pb, f"{repo}:v1@sha256:{'b' * 64}", grpc.StatusCode.NOT_FOUND)
    assert "not found" in e.details().lower(), e.details()
    assert proxy.count("GET", "/v2/busybox/manifests/v1") == 0
    assert proxy.count("GET", f"/v2/busybox/manifests/sha256:{'b' * 64}") == 1
    assert {i.id: (list(i.repo_tags), list(i.repo_digests)) for i in list_images(d, pb)} == expected

    # Lookups too go by the digest alone. With a tag on each image, each image's tag beside the
    # other's digest finds the digest's image (whichever of the two the store lists first).
    assert pull(d, pb, f"{repo}:v2") == other.id
    for r, want in ((ref, other), (f"{repo}:v1@{other.digest}", other), (f"{repo}:v2@{tagged.digest}", tagged),
                    (f"{repo}@{other.digest}", other)):
        assert image_status(d, pb, r).image.id == want.id, r
        assert [x.id for x in list_images(d, pb, r)] == [want.id], r
    assert not image_status(d, pb, f"{repo}:no-such-tag").HasField("image")
    assert image_status(d, pb, f"{repo}:v1").image.id == tagged.id
    assert image_status(d, pb, f"{repo}:v2").image.id == other.id


def test_tag_and_digest_pull_does_not_join_a_pull_of_the_tag(idaemon, registry, proxy, pb):
    d = idaemon
    tagged = reg.multi_layer_image()
    other = reg.Image([reg.Layer([reg.Dir("etc"), reg.File("etc/other", "other\n")])])
    tagged.push(registry, "busybox", "v1")
    other.push(registry, "busybox")
    repo = f"{proxy.url}/busybox"
    base = tagged.layers[0]
    proxy.rate = base.size / 2  # about two seconds for tagged's base layer, other's is tiny
    first = d.images().PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=f"{repo}:v1")),
                                        timeout=PULL_TIMEOUT)
    wait_until(lambda: proxy.sent[f"/v2/busybox/blobs/{base.digest}"] > 0, timeout=60,
               what="the pull of the tag to download its base layer")
    # While the tag's pull is under way, the same tag with other's digest is a pull of other's own.
    assert pull(d, pb, f"{repo}:v1@{other.digest}") == other.id
    assert not first.done(), "the tag's pull ended first: the two pulls did not overlap"
    assert first.result().image_ref == tagged.id
    tags = {i.id: list(i.repo_tags) for i in list_images(d, pb)}
    assert tags == {tagged.id: [f"{repo}:v1"], other.id: []}


def test_pull_without_tag_means_latest(idaemon, registry, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "busybox", "latest")
    assert pull(d, pb, f"{registry.url}/busybox") == image.id
    assert list(image_status(d, pb, image.id).image.repo_tags) == [f"{registry.url}/busybox:latest"]
    assert image_status(d, pb, f"{registry.url}/busybox").image.id == image.id


def test_two_tags_of_one_image_are_one_image(idaemon, registry, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "busybox", "a")
    image.push(registry, "busybox", "b")
    assert pull(d, pb, f"{registry.url}/busybox:a") == image.id
    assert pull(d, pb, f"{registry.url}/busybox:b") == image.id
    images = list_images(d, pb)
    assert len(images) == 1
    assert sorted(images[0].repo_tags) == [f"{registry.url}/busybox:a", f"{registry.url}/busybox:b"]
    assert list(images[0].repo_digests) == [f"{registry.url}/busybox@{image.digest}"]


def test_a_tag_moves_to_the_image_pulled_last(idaemon, registry, pb):
    d = idaemon
    old, new = reg.single_layer_image(), reg.multi_layer_image()
    old.push(registry, "busybox", "latest")
    assert pull(d, pb, f"{registry.url}/busybox:latest") == old.id
    new.push(registry, "busybox", "latest")
    assert pull(d, pb, f"{registry.url}/busybox:latest") == new.id
    tags = {i.id: list(i.repo_tags) for i in list_images(d, pb)}
    assert tags == {old.id: [], new.id: [f"{registry.url}/busybox:latest"]}
    assert image_status(d, pb, f"{registry.url}/busybox:latest").image.id == new.id


def test_image_status_of_an_unknown_image_is_empty(idaemon, registry, pb):
    d = idaemon
    for ref in (f"{registry.url}/nothing:here", "busybox", "sha256:" + "0" * 64, "0" * 64,
                f"{registry.url}/nothing@sha256:{'1' * 64}"):
        st = image_status(d, pb, ref)
        assert not st.HasField("image"), ref
        assert dict(st.info) == {}
        st = image_status(d, pb, ref, verbose=True)
        assert not st.HasField("image"), ref


def test_image_status_verbose_has_the_image_config(idaemon, registry, pb):
    d = idaemon
    image = reg.single_layer_image(entrypoint=["/bin/sh", "-c"], cmd=["echo hi"], stop_signal="SIGQUIT")
    image.push(registry, "busybox", "v1")
    pull(d, pb, f"{registry.url}/busybox:v1")
    st = image_status(d, pb, image.id, verbose=True)
    assert st.image.id == image.id
    assert list(st.info) == ["info"]
    info = json.loads(st.info["info"])
    # The CRI leaves the verbose info free-form. Under containerd's key "imageSpec" it holds the
    # image config exactly as the registry serves it (the blob the manifest names).
    spec = info["imageSpec"]
    assert spec == image.config
    assert spec["architecture"] == reg.HOST_ARCH and spec["os"] == "linux"
    assert spec["rootfs"]["diff_ids"] == image.diff_ids
    c = spec["config"]
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["echo hi"]
    assert c["User"] == "1000" and c["WorkingDir"] == "/home/app" and c["StopSignal"] == "SIGQUIT"
    assert c["Env"] == ["PATH=/bin", "GREETING=hello"]
    # Beside it the image id and each layer as the manifest describes it, with the chain ID the OCI
    # image spec defines (config.md: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
    # DiffID(Ln))), the top one being what containerd reports as "chainID".
    def layers(image):
        manifest = json.loads(image.manifest_bytes)
        return [{"digest": m["digest"], "chainId": chain, "mediaType": m["mediaType"], "size": m["size"]}
                for m, chain in zip(manifest["layers"], image.chain_ids)]
    assert info["id"] == image.id
    assert info["layers"] == layers(image)
    # With three layers, where chain IDs and diff IDs differ.
    multi = reg.multi_layer_image()
    multi.push(registry, "multi", "v1")
    pull(d, pb, f"{registry.url}/multi:v1")
    info = json.loads(image_status(d, pb, f"{registry.url}/multi:v1", verbose=True).info["info"])
    assert info["imageSpec"] == multi.config
    assert info["id"] == multi.id
    assert info["layers"] == layers(multi)


def test_list_images_filters_by_reference(idaemon, registry, pb):
    d = idaemon
    a, b = reg.single_layer_image(), reg.multi_layer_image()
    a.push(registry, "one", "v1")
    b.push(registry, "two", "v1")
    pull(d, pb, f"{registry.url}/one:v1")
    pull(d, pb, f"{registry.url}/two:v1")
    assert sorted(i.id for i in list_images(d, pb)) == sorted([a.id, b.id])
    assert [i.id for i in list_images(d, pb, "")] != []  # an empty filter filters nothing
    assert len(list_images(d, pb, "")) == 2
    assert [i.id for i in list_images(d, pb, f"{registry.url}/one:v1")] == [a.id]
    assert [i.id for i in list_images(d, pb, f"{registry.url}/two@{b.digest}")] == [b.id]
    assert [i.id for i in list_images(d, pb, b.id)] == [b.id]
    assert list_images(d, pb, f"{registry.url}/three:v1") == []


@pytest.mark.parametrize("user,uid,username", [
    ("1000", 1000, ""),
    ("1000:1000", 1000, ""),
    ("0", 0, ""),
    ("app", None, "app"),
    ("app:app", None, "app"),
    ("", None, ""),
])
def test_uid_and_username_come_from_the_config_user(idaemon, registry, pb, user, uid, username):
    d = idaemon
    image = reg.single_layer_image(user=user)
    image.push(registry, "busybox", "v1")
    pull(d, pb, f"{registry.url}/busybox:v1")
    i = image_status(d, pb, image.id).image
    if uid is None:
        assert not i.HasField("uid")
    else:
        assert i.HasField("uid") and i.uid.value == uid
    assert i.username == username


def test_list_reports_each_images_own_user(idaemon, registry, pb):
    d = idaemon
    images = {}
    for name in ("app", "web", "db"):
        image = reg.single_layer_image(user=f"{name}:{name}")
        image.push(registry, name, "v1")
        pull(d, pb, f"{registry.url}/{name}:v1")
        images[image.id] = name
    listed = {i.id: i.username for i in list_images(d, pb, "")}
    assert listed == images


# --- remove and the store on disk ------------------------------------------------------------------

@pytest.mark.parametrize("by", ["tag", "id", "digest"])
def test_remove_image_deletes_its_blobs_and_layers(idaemon, registry, pb, by):
    d = idaemon
    image = reg.multi_layer_image()
    image.push(registry, "busybox", "v1")
    pull(d, pb, f"{registry.url}/busybox:v1")
    assert_stored(d, image)
    ref = {"tag": f"{registry.url}/busybox:v1", "id": image.id, "digest": f"{registry.url}/busybox@{image.digest}"}[by]
    remove_image(d, pb, ref)
    assert list_images(d, pb) == []
    assert not image_status(d, pb, image.id).HasField("image")
    assert not os.path.exists(record_file(d, image.id))
    wait_until(lambda: listdir(store(d, "blobs", "sha256")) == [] and listdir(store(d, "layers")) == [],
               timeout=30, what="the blobs and layers to be deleted")
    # Idempotent, and an image never seen is no error either.
    remove_image(d, pb, ref)
    remove_image(d, pb, f"{registry.url}/never:seen")
    remove_image(d, pb, "sha256:" + "e" * 64)


def test_remove_keeps_layers_another_image_uses(idaemon, registry, pb):
    d = idaemon
    multi, sibling = reg.multi_layer_image(), reg.sibling_image()
    assert multi.chain_ids[0] == sibling.chain_ids[0]
    multi.push(registry, "multi", "v1")
    sibling.push(registry, "sibling", "v1")
    pull(d, pb, f"{registry.url}/multi:v1")
    pull(d, pb, f"{registry.url}/sibling:v1")
    assert len(layer_dirs(d)) == 4  # base, multi's two, sibling's one

    remove_image(d, pb, f"{registry.url}/multi:v1")
    shared = multi.layers[0]

    def only_the_siblings_left():
        return (layer_dirs(d) == sorted(hex_of(c) for c in sibling.chain_ids) and
                listdir(store(d, "blobs", "sha256")) == sorted(hex_of(x) for x in sibling.blobs))
    wait_until(only_the_siblings_left, timeout=30, what="multi's own blobs and layers to be deleted")
    assert os.path.isfile(os.path.join(layer_dir(d, shared.diff_id), "bin", "busybox"))
    assert_stored(d, sibling)
    assert [i.id for i in list_images(d, pb)] == [sibling.id]

    remove_image(d, pb, sibling.id)
    wait_until(lambda: listdir(store(d, "layers")) == [] and listdir(store(d, "blobs", "sha256")) == [],
               timeout=30, what="everything to be deleted")
    assert listdir(store(d, "records")) == []


def test_image_fs_info_reports_the_store(idaemon, registry, pb):
    d = idaemon
    before = fs_info(d, pb)
    assert len(before.image_filesystems) == 1
    fs = before.image_filesystems[0]
    assert fs.fs_id.mountpoint == store(d)
    assert abs(fs.timestamp / 1e9 - time.time()) < 60
    image = reg.single_layer_image()
    image.push(registry, "busybox", "v1")
    pull(d, pb, f"{registry.url}/busybox:v1")
    after = fs_info(d, pb).image_filesystems[0]
    assert after.fs_id.mountpoint == store(d)
    assert after.used_bytes.value > 0 and after.inodes_used.value > 0
    # At least the layer blob and the unpacked busybox.
    assert after.used_bytes.value >= fs.used_bytes.value + image.layers[0].size + os.path.getsize(reg.BUSYBOX)
    assert after.inodes_used.value >= fs.inodes_used.value + 10
    assert after.timestamp >= fs.timestamp


def test_images_survive_a_restart_and_a_sigkill(idaemon, make_daemon, registry, pb):
    d = idaemon
    a, b = reg.single_layer_image(), reg.multi_layer_image()
    a.push(registry, "one", "v1")
    b.push(registry, "two", "v1")
    pull(d, pb, f"{registry.url}/one:v1")
    pull(d, pb, f"{registry.url}/two:v1")
    before = sorted((i.id, tuple(i.repo_tags), tuple(i.repo_digests), i.size) for i in list_images(d, pb))
    assert d.stop() == 0
    d2 = make_daemon("rktlet", config=registries_config([registry.url]))
    after = sorted((i.id, tuple(i.repo_tags), tuple(i.repo_digests), i.size) for i in list_images(d2, pb))
    assert after == before
    d2.kill()
    d3 = make_daemon("rktlet", config=registries_config([registry.url]))
    assert sorted((i.id, tuple(i.repo_tags), tuple(i.repo_digests), i.size) for i in list_images(d3, pb)) == before
    assert_stored(d3, a)
    assert_stored(d3, b)
    assert image_status(d3, pb, f"{registry.url}/two:v1").image.id == b.id


# --- unpacking -------------------------------------------------------------------------------------

def _xattrs_supported(path):
    probe = os.path.join(path, ".xattr-probe")
    open(probe, "w").close()
    try:
        os.setxattr(probe, "trusted.rktlet.probe", b"1")
        os.setxattr(probe, "security.capability", reg.SECURITY_CAPABILITY)
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)


def test_files_keep_modes_owners_times_links_devices_and_xattrs(idaemon, registry, pb, tmp_path):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "busybox", "v1")
    pull(d, pb, f"{registry.url}/busybox:v1")
    root = layer_dir(d, image.chain_ids[0])
    p = lambda *x: os.path.join(root, *x)  # noqa: E731

    assert file_sha(p("bin", "busybox")) == file_sha(reg.BUSYBOX)
    assert stat.S_IMODE(os.stat(p("bin", "busybox")).st_mode) == 0o755
    for a in reg.APPLETS:
        assert os.readlink(p("bin", a)) == "busybox"
    with open(p("etc", "passwd")) as f:
        assert f.read() == reg.PASSWD

    st = os.lstat(p("etc", "motd"))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert int(st.st_mtime) == reg.MOTD_MTIME
    with open(p("etc", "motd"), "rb") as f:
        assert f.read() == reg.MOTD
    hard = os.lstat(p("etc", "motd.hard"))
    assert hard.st_ino == st.st_ino and st.st_nlink == 2
    assert os.readlink(p("etc", "motd.link")) == "motd"
    assert os.readlink(p("etc", "absolute.link")) == "/etc/passwd"

    assert stat.S_IMODE(os.stat(p("bin", "suid")).st_mode) == 0o4755
    srv = os.lstat(p("srv"))
    assert stat.S_IMODE(srv.st_mode) == 0o2775 and (srv.st_uid, srv.st_gid) == (1000, 1000)
    assert stat.S_IMODE(os.lstat(p("tmp")).st_mode) == 0o1777
    home = os.lstat(p("home", "app"))
    assert stat.S_IMODE(home.st_mode) == 0o750 and home.st_uid == 1000 and int(home.st_mtime) == reg.MOTD_MTIME
    dev = os.lstat(p("dev", "null"))
    assert stat.S_ISCHR(dev.st_mode) and (os.major(dev.st_rdev), os.minor(dev.st_rdev)) == (1, 3)
    assert stat.S_IMODE(dev.st_mode) == 0o666

    if not _xattrs_supported(str(tmp_path)):
        machine_skip("the test directory's filesystem takes no trusted.* / security.* xattrs")
    assert os.getxattr(p("bin", "ping"), "trusted.rktlet.test") == b"kept"
    assert os.getxattr(p("bin", "ping"), "security.capability") == reg.SECURITY_CAPABILITY


def test_multi_layer_whiteouts_and_opaque_directory(idaemon, registry, pb):
    d = idaemon
    image = reg.multi_layer_image()
    image.push(registry, "multi", "v1")
    assert pull(d, pb, f"{registry.url}/multi:v1") == image.id
    l1, l2, l3 = (layer_dir(d, c) for c in image.chain_ids)

    # Layer 1 as it is.
    with open(os.path.join(l1, "data", "gone")) as f:
        assert f.read() == "gone\n"
    assert os.path.isfile(os.path.join(l1, "opq", "olddir", "f"))

    # Layer 2: only its own files, whiteouts as 0/0 character devices, the opaque directory marked.
    assert not os.path.exists(os.path.join(l2, "bin"))
    assert sorted(os.listdir(l2)) == ["data", "opq"]
    for name in ("gone", "gone-dir"):
        st = os.lstat(os.path.join(l2, "data", name))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, name
        assert not os.path.lexists(os.path.join(l2, "data", ".wh." + name))
    assert sorted(os.listdir(os.path.join(l2, "data"))) == ["added", "gone", "gone-dir"]
    assert sorted(os.listdir(os.path.join(l2, "opq"))) == ["new"]
    assert os.getxattr(os.path.join(l2, "opq"), "trusted.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(os.path.join(l2, "data"), "trusted.overlay.opaque")

    # Layer 3 makes data/gone again.
    with open(os.path.join(l3, "data", "gone")) as f:
        assert f.read() == "back again\n"
    assert os.path.isfile(os.path.join(l3, "etc", "layer3"))

    # The layers stack as overlayfs expects (when this kernel lets us mount it here).
    merged = os.path.join(d.dir, "merged")
    os.mkdir(merged)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={l3}:{l2}:{l1}", merged],
                       capture_output=True, text=True)
    if r.returncode != 0:
        machine_skip(f"mount overlayfs: {r.stderr.strip()}")
    try:
        assert sorted(os.listdir(os.path.join(merged, "data"))) == ["added", "gone", "keep"]
        with open(os.path.join(merged, "data", "gone")) as f:
            assert f.read() == "back again\n"
        assert sorted(os.listdir(os.path.join(merged, "opq"))) == ["new"]
        assert os.path.isfile(os.path.join(merged, "bin", "busybox"))
    finally:
        subprocess.run(["umount", merged], check=True)


@pytest.mark.parametrize("compression", ["gzip", pytest.param("zstd", marks=needs_zstd), "none"])
def test_layer_compressions(idaemon, registry, pb, compression):
    d = idaemon
    image = reg.single_layer_image(compression)
    assert image.layers[0].media_type == {"gzip": reg.OCI_LAYER_GZIP, "zstd": reg.OCI_LAYER_ZSTD,
                                          "none": reg.OCI_LAYER}[compression]
    image.push(registry, "busybox", compression)
    assert pull(d, pb, f"{registry.url}/busybox:{compression}") == image.id
    assert_stored(d, image)
    root = layer_dir(d, image.layers[0].diff_id)
    assert file_sha(os.path.join(root, "bin", "busybox")) == file_sha(reg.BUSYBOX)
    with open(os.path.join(root, "etc", "motd"), "rb") as f:
        assert f.read() == reg.MOTD


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
def test_multi_arch_index_picks_the_host_architecture(idaemon, registry, pb, docker):
    d = idaemon
    index = reg.multi_arch_index(docker)
    host, foreign = index.image_for(reg.HOST_ARCH), index.image_for(reg.FOREIGN_ARCH)
    index.push(registry, "multiarch", "v1")
    assert pull(d, pb, f"{registry.url}/multiarch:v1") == host.id
    i = image_status(d, pb, host.id).image
    assert list(i.repo_tags) == [f"{registry.url}/multiarch:v1"]
    # The repo digest is the index's, which is what the tag points at.
    assert f"{registry.url}/multiarch@{index.digest}" in list(i.repo_digests)
    assert_stored(d, host)
    with open(os.path.join(layer_dir(d, host.chain_ids[-1]), "etc", "arch")) as f:
        assert f.read() == reg.HOST_ARCH + "\n"
    # Nothing of the other architecture was fetched.
    assert not os.path.exists(blob_file(d, foreign.config_digest))
    assert not os.path.exists(blob_file(d, foreign.layers[0].digest))
    # By the index's digest: the same image.
    assert pull(d, pb, f"{registry.url}/multiarch@{index.digest}") == host.id


def test_docker_schema2_manifest(idaemon, registry, pb):
    d = idaemon
    image = reg.docker_image()
    assert image.media_type == reg.DOCKER_MANIFEST
    image.push(registry, "docker", "v1")
    assert pull(d, pb, f"{registry.url}/docker:v1") == image.id
    i = image_status(d, pb, image.id).image
    assert list(i.repo_digests) == [f"{registry.url}/docker@{image.digest}"]
    assert i.username == "app" and not i.HasField("uid")
    assert_stored(d, image)
    assert file_sha(os.path.join(layer_dir(d, image.chain_ids[0]), "bin", "busybox")) == file_sha(reg.BUSYBOX)


# --- references, mirrors, errors -------------------------------------------------------------------

def test_docker_io_references_go_to_the_mirror(make_daemon, registry, proxy, pb):
    d = make_daemon(config=registries_config([proxy.url], {"docker.io": [proxy.url]}))
    image = reg.single_layer_image()
    image.push(registry, "library/busybox", "latest")
    assert pull(d, pb, "busybox") == image.id
    assert proxy.count("GET", "/v2/library/busybox/manifests/latest") >= 1
    i = image_status(d, pb, "busybox").image
    assert i.id == image.id
    assert list(i.repo_tags) == ["docker.io/library/busybox:latest"]
    assert list(i.repo_digests) == [f"docker.io/library/busybox@{image.digest}"]
    for ref in ("docker.io/library/busybox", "library/busybox:latest", "docker.io/busybox:latest"):
        assert image_status(d, pb, ref).image.id == image.id, ref


def test_mirrors_are_tried_in_order(make_daemon, registry, proxy, pb):
    dead = f"127.0.0.1:{reg.free_port()}"  # nothing listens there
    d = make_daemon(config=registries_config([dead, proxy.url], {"registry.example": [dead, proxy.url]}))
    image = reg.single_layer_image()
    image.push(registry, "team/app", "v2")
    assert pull(d, pb, "registry.example/team/app:v2") == image.id
    assert proxy.blob_gets("team/app", image.layers[0].digest) == 1
    assert list(image_status(d, pb, image.id).image.repo_tags) == ["registry.example/team/app:v2"]


def test_pull_errors_say_why(idaemon, registry, pb):
    d = idaemon
    reg.single_layer_image().push(registry, "busybox", "v1")
    # An unknown tag, repository and digest: 404 with MANIFEST_UNKNOWN or NAME_UNKNOWN.
    for ref in (f"{registry.url}/busybox:nope", f"{registry.url}/nothing:v1",
                f"{registry.url}/busybox@sha256:{'a' * 64}"):
        e = pull_error(d, pb, ref, grpc.StatusCode.NOT_FOUND)
        assert "not found" in e.details().lower() or "unknown" in e.details().lower(), (ref, e.details())
    dead = f"127.0.0.1:{reg.free_port()}"
    e = pull_error(d, pb, f"{dead}/busybox:v1", grpc.StatusCode.UNAVAILABLE)
    assert any(w in e.details().lower() for w in ("connect", "refused", "network", "unreachable")), e.details()
    for bad in ("", "UPPER/case:v1", f"{registry.url}/busybox@sha256:short", "a//b", "busybox:bad tag"):
        with pytest.raises(grpc.RpcError) as e:
            pull(d, pb, bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, e.value.details())
    assert list_images(d, pb) == []


def test_registry_refusals_and_missing_blobs(idaemon, registry, proxy, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "busybox", "v1")
    ref = f"{proxy.url}/busybox:v1"
    # 403: the registry knows who asks and refuses (as registries answer "denied").
    for needle in ("/manifests/", "/blobs/"):
        proxy.fail = {needle: 403}
        e = pull_error(d, pb, ref, grpc.StatusCode.PERMISSION_DENIED)
        assert "403" in e.details() or "forbidden" in e.details().lower(), (needle, e.details())
    # 404 for a blob the manifest names (BLOB_UNKNOWN).
    proxy.fail = {"/blobs/": 404}
    e = pull_error(d, pb, ref, grpc.StatusCode.NOT_FOUND)
    assert "not found" in e.details().lower(), e.details()
    assert list_images(d, pb) == []
    proxy.fail = {}
    assert pull(d, pb, ref) == image.id


# --- authentication --------------------------------------------------------------------------------

PASSWORD = "Zq9-rktlet-s3cret-pw"


@pytest.fixture
def htpasswd_registry(tmp_path):
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd (Debian package apache2-utils) is not installed")
    r = Registry(tmp_path / "auth-registry", auth="htpasswd", users={"rktlet": PASSWORD})
    yield r
    r.stop()


@pytest.mark.parametrize("how", ["username-password", "auth-field"])
def test_htpasswd_registry_with_the_right_credentials(make_daemon, htpasswd_registry, pb, how):
    r = htpasswd_registry
    d = make_daemon(config=registries_config([r.url]))
    image = reg.single_layer_image()
    image.push(r, "private/busybox", "v1")
    if how == "username-password":
        auth = pb.AuthConfig(username="rktlet", password=PASSWORD)
    else:
        auth = pb.AuthConfig(auth=base64.b64encode(f"rktlet:{PASSWORD}".encode()).decode())
    assert pull(d, pb, f"{r.url}/private/busybox:v1", auth) == image.id
    assert_stored(d, image)
    assert_never_logged(d, PASSWORD, base64.b64encode(f"rktlet:{PASSWORD}".encode()).decode())


def test_htpasswd_registry_with_wrong_or_no_credentials(make_daemon, htpasswd_registry, pb):
    r = htpasswd_registry
    d = make_daemon(config=registries_config([r.url]))
    reg.single_layer_image().push(r, "private/busybox", "v1")
    ref = f"{r.url}/private/busybox:v1"
    wrong = "Wr0ng-pa55word-xyz"
    for auth in (pb.AuthConfig(username="rktlet", password=wrong),
                 pb.AuthConfig(auth=base64.b64encode(f"rktlet:{wrong}".encode()).decode()),
                 None):
        e = pull_error(d, pb, ref, grpc.StatusCode.UNAUTHENTICATED, auth)  # the registry's 401
        msg = e.details().lower()
        assert "unauthorized" in msg or "authentication" in msg, e.details()
        assert wrong not in e.details()
    assert list_images(d, pb) == []
    assert listdir(store(d, "records")) == []
    assert_never_logged(d, wrong, base64.b64encode(f"rktlet:{wrong}".encode()).decode())


@needs_openssl
def test_token_auth_anonymous_pull(make_daemon, tmp_path, pb):
    ts = TokenServer(tmp_path / "token", users={"pusher": PASSWORD}, anonymous_actions=["pull"])
    r = Registry(tmp_path / "token-registry", auth="token", token_server=ts)
    try:
        image = reg.single_layer_image()
        image.push(r, "public/busybox", "v1")
        ts.requests.clear()
        d = make_daemon(config=registries_config([r.url]))
        assert pull(d, pb, f"{r.url}/public/busybox:v1") == image.id
        assert_stored(d, image)
        assert ts.requests, "the daemon did not ask the token server"
        for account, scopes, access in ts.requests:
            assert account is None
            assert "repository:public/busybox:pull" in scopes
            assert access == [{"type": "repository", "name": "public/busybox", "actions": ["pull"]}]
    finally:
        r.stop()
        ts.stop()


@needs_openssl
def test_token_auth_with_credentials(make_daemon, tmp_path, pb):
    ts = TokenServer(tmp_path / "token", users={"rktlet": PASSWORD}, anonymous_actions=[])
    r = Registry(tmp_path / "token-registry", auth="token", token_server=ts)
    try:
        image = reg.single_layer_image()
        image.push(r, "private/busybox", "v1")
        d = make_daemon(config=registries_config([r.url]))
        ref = f"{r.url}/private/busybox:v1"
        # Anonymous: a token without access, then the registry's 401.
        e = pull_error(d, pb, ref, grpc.StatusCode.UNAUTHENTICATED)
        assert "unauthorized" in e.details().lower() or "authentication" in e.details().lower(), e.details()
        # Wrong password: the token server's 401.
        e = pull_error(d, pb, ref, grpc.StatusCode.UNAUTHENTICATED,
                       pb.AuthConfig(username="rktlet", password="not-" + PASSWORD))
        assert "unauthorized" in e.details().lower() or "authentication" in e.details().lower(), e.details()
        ts.requests.clear()
        assert pull(d, pb, ref, pb.AuthConfig(username="rktlet", password=PASSWORD)) == image.id
        assert any(account == "rktlet" for account, _, _ in ts.requests)
        assert_stored(d, image)
        assert_never_logged(d, PASSWORD, "not-" + PASSWORD)
    finally:
        r.stop()
        ts.stop()


@needs_openssl
def test_token_auth_with_a_registry_token(make_daemon, tmp_path, pb):
    ts = TokenServer(tmp_path / "token", users={"rktlet": PASSWORD}, anonymous_actions=[])
    r = Registry(tmp_path / "token-registry", auth="token", token_server=ts)
    try:
        image = reg.single_layer_image()
        image.push(r, "private/busybox", "v1")
        token = ts.sign("rktlet", [{"type": "repository", "name": "private/busybox", "actions": ["pull"]}])
        d = make_daemon(config=registries_config([r.url]))
        assert pull(d, pb, f"{r.url}/private/busybox:v1", pb.AuthConfig(registry_token=token)) == image.id
        assert_never_logged(d, token.split(".")[2])
    finally:
        r.stop()
        ts.stop()


# --- integrity -------------------------------------------------------------------------------------

def test_corrupted_blob_is_rejected_and_nothing_is_stored(idaemon, registry, proxy, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "busybox", "v1")
    layer = image.layers[0]
    proxy.corrupt.add(layer.digest)
    ref = f"{proxy.url}/busybox:v1"
    e = pull_error(d, pb, ref, grpc.StatusCode.DATA_LOSS)
    assert "digest" in e.details().lower(), e.details()
    assert proxy.blob_gets("busybox", layer.digest) >= 1
    assert not os.path.exists(blob_file(d, layer.digest))
    assert not os.path.exists(layer_dir(d, layer.diff_id))
    assert listdir(store(d, "records")) == []
    assert list_images(d, pb) == []
    wait_until(lambda: listdir(store(d, "blobs", "tmp")) == [], timeout=10, what="the partial download to go")

    # Served right, the same pull works.
    proxy.corrupt.clear()
    assert pull(d, pb, ref) == image.id
    assert_stored(d, image)


def test_corrupted_manifest_is_rejected(idaemon, registry, proxy, pb):
    d = idaemon
    image = reg.single_layer_image()
    image.push(registry, "busybox", "v1")
    proxy.corrupt.add(image.digest)
    e = pull_error(d, pb, f"{proxy.url}/busybox@{image.digest}", grpc.StatusCode.DATA_LOSS)
    assert "digest" in e.details().lower(), e.details()
    assert list_images(d, pb) == []
    assert listdir(store(d, "records")) == []


def test_concurrent_pulls_of_one_image_download_it_once(idaemon, registry, proxy, pb):
    d = idaemon
    image = reg.multi_layer_image()
    image.push(registry, "busybox", "v1")
    proxy.rate = 2 * 1024 * 1024  # about half a second for the base layer: the pulls overlap
    ref = f"{proxy.url}/busybox:v1"
    stub = d.images()
    futures = [stub.PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=PULL_TIMEOUT)
               for _ in range(5)]
    assert [f.result().image_ref for f in futures] == [image.id] * 5
    for digest in image.blobs:
        assert proxy.blob_gets("busybox", digest) == 1, digest
    assert [i.id for i in list_images(d, pb)] == [image.id]
    assert_stored(d, image)


def test_pulls_of_different_images_run_in_parallel(idaemon, registry, proxy, pb):
    d = idaemon
    a, b = reg.single_layer_image(), reg.sibling_image()
    a.push(registry, "a", "v1")
    b.push(registry, "b", "v1")
    # The biggest layer of each (both hold busybox), about two seconds each at this rate.
    la, lb = max(a.layers, key=lambda l: l.size), max(b.layers, key=lambda l: l.size)
    paths = {f"/v2/a/blobs/{la.digest}": la.size, f"/v2/b/blobs/{lb.digest}": lb.size}
    proxy.rate = max(la.size, lb.size) / 2
    stub = d.images()
    futures = [stub.PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=f"{proxy.url}/{n}:v1")),
                                     timeout=PULL_TIMEOUT) for n in ("a", "b")]

    def both_on_their_way():
        if all(0 < proxy.sent[p] < size for p, size in paths.items()):
            return True
        assert not all(f.done() for f in futures), "the two pulls never downloaded at the same time"
    # In parallel: at one moment both layers are partly downloaded.
    wait_until(both_on_their_way, timeout=PULL_TIMEOUT, interval=0.005, what="both layers to be on their way")
    # Meanwhile the daemon answers: Version returns while the pulls go on.
    assert d.runtime().Version(pb.VersionRequest(), timeout=PULL_TIMEOUT).runtime_name == "rktlet"
    assert not all(f.done() for f in futures), "Version was answered only after the pulls"
    assert [f.result().image_ref for f in futures] == [a.id, b.id]


# --- malicious layers ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(reg.EVIL_IMAGES))
def test_malicious_layer_is_refused_and_writes_nothing_outside(idaemon, registry, pb, tmp_path, kind):
    d = idaemon
    outside = str(tmp_path / "outside")
    reg.prepare_outside(outside)
    image, must_not_exist, unchanged = reg.EVIL_IMAGES[kind](outside)
    image.push(registry, f"evil/{kind}", "v1")
    before = sorted(os.listdir(outside))
    try:
        pulled = pull(d, pb, f"{registry.url}/evil/{kind}:v1")
        error = None
    except grpc.RpcError as e:
        pulled, error = None, e
    for path in must_not_exist:
        assert not os.path.lexists(path), f"{path} was created outside the layer"
    for path, content in unchanged.items():
        with open(path, "rb") as f:
            assert f.read() == content, f"{path} was written through"
        assert os.stat(path).st_nlink == 1, f"{path} was hardlinked into the layer"
    assert sorted(os.listdir(outside)) == before
    assert os.listdir(os.path.join(outside, "x")) == []
    # Nothing named escape-* anywhere in the daemon's directories, the layer's own directory aside.
    for root, dirs, files in os.walk(d.dir):
        for name in dirs + files:
            if name.startswith("escape"):
                assert root.startswith(store(d, "layers") + os.sep), os.path.join(root, name)

    layer = layer_dir(d, image.chain_ids[0])
    if kind == "symlink-then-dir":
        # The OCI image spec (layer.md, "Changeset over existing files"): unless both are
        # directories, an entry whose path exists replaces it (unlink, then create). So the
        # directory entry replaces the symlink d and d/f lands in the layer: pulled, and safe.
        assert error is None, f"the {kind} layer was refused: {error.details()}"
        assert pulled == image.id
        assert os.path.isdir(os.path.join(layer, "d")) and not os.path.islink(os.path.join(layer, "d"))
        with open(os.path.join(layer, "d", "f")) as f:
            assert f.read() == "escaped\n"
        assert [i.id for i in list_images(d, pb)] == [image.id]
        return
    assert error is not None, f"the {kind} layer was accepted"
    assert error.code() != grpc.StatusCode.UNIMPLEMENTED, error.details()
    assert error.details(), "the error says why"
    assert list_images(d, pb) == []
    assert listdir(store(d, "records")) == []
    assert not os.path.exists(layer), "a refused layer is left in the store"


# --- SIGKILL during a pull -------------------------------------------------------------------------

def test_sigkill_during_a_pull_then_pull_again(idaemon, make_daemon, registry, proxy, pb):
    d = idaemon
    image, big_sha = reg.big_image(50)
    image.push(registry, "big", "v1")
    big = image.layers[1]
    path = f"/v2/big/blobs/{big.digest}"
    proxy.rate = 8 * 1024 * 1024
    ref = f"{proxy.url}/big:v1"
    future = d.images().PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=PULL_TIMEOUT)
    wait_until(lambda: proxy.sent[path] >= 8 * 1024 * 1024, timeout=60, what="a part of the big layer to be sent")
    d.kill()
    with pytest.raises(grpc.RpcError):
        future.result()
    assert not os.path.exists(record_file(d, image.id))

    proxy.rate = None
    d2 = make_daemon("rktlet", config=registries_config([registry.url, proxy.url]))
    assert list_images(d2, pb) == []
    assert pull(d2, pb, ref) == image.id
    assert_stored(d2, image)
    assert file_sha(os.path.join(layer_dir(d2, image.chain_ids[1]), "big")) == big_sha
    wait_until(lambda: listdir(store(d2, "blobs", "tmp")) == [], timeout=10, what="no partial download left")


# --- limits: layer bombs, sizes, free space ---------------------------------------------------------
#
# A layer's uncompressed size is its tar stream (what its diff ID hashes). [Images] limits it per
# layer (MaxLayerSize=, 32G by default), per image (MaxImageSize=, 64G), by expansion
# (MaxExpansionRatio=, 100: a layer past 16M uncompressed may be at most 100 times its blob) and
# by the free space it must leave (MinFreeSpace=, 5% of the store's file system). Unpacking stops as
# soon as one is passed; the pull fails RESOURCE_EXHAUSTED naming the layer and the setting, and
# what it brought (blobs, unpacked layers, the partial one) is deleted at once, not at the next
# start.

STORE_PARTS = ("records", "blobs/sha256", "blobs/tmp", "layers", "trash")


def store_contents(d):
    return {part: listdir(store(d, *part.split("/"))) for part in STORE_PARTS}


def wait_store_empty(d, what, timeout=30):
    """Nothing in the store: no record, blob, partial download, layer (whole or partial) or trash."""
    try:
        wait_until(lambda: not any(store_contents(d).values()), timeout, what=what)
    except TimeoutError as e:
        raise AssertionError(f"{e}: the store still holds {store_contents(d)}") from None


@pytest.fixture
def tmpfs_daemon(make_daemon, registry):
    """make(size, images): a daemon whose --root is a tmpfs of that size (mounted in the harness's
    mount namespace, unmounted after the daemon stops), the registry a plain-HTTP one."""
    made = []

    def make(size, images=None):
        d = make_daemon(start=False, config=registries_config([registry.url], images=images))
        lib = os.path.join(d.dir, "lib")
        os.makedirs(lib)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", lib], check=True)
        made.append((d, lib))
        return d.start()

    yield make
    for d, lib in made:
        rc = d.stop()
        subprocess.run(["umount", lib], check=True)
        assert rc == 0, f"rktlet exited with {rc}:\n{d.log()}"


def test_images_settings_are_reported_and_checked(make_daemon, pb):
    def config_of(d):
        return json.loads(d.runtime().Status(pb.StatusRequest(verbose=True), timeout=10).info["config"])
    d = make_daemon("defaults")
    c = config_of(d)
    assert (c["imageMaxLayerSize"], c["imageMaxSize"], c["imageMaxExpansionRatio"]) == (32 << 30, 64 << 30, 100)
    assert (c["imageMinFreeBytes"], c["imageMinFreePercent"]) == (0, 5)
    d = make_daemon("set", config="[Images]\nMaxLayerSize=1T\nMaxImageSize=3G\nMaxExpansionRatio=7\n"
                                  "MinFreeSpace=2G\n")
    c = config_of(d)
    assert (c["imageMaxLayerSize"], c["imageMaxSize"], c["imageMaxExpansionRatio"]) == (1 << 40, 3 << 30, 7)
    assert (c["imageMinFreeBytes"], c["imageMinFreePercent"]) == (2 << 30, 0)
    d = make_daemon("none", config="[Images]\nMinFreeSpace=0\n")
    assert (config_of(d)["imageMinFreeBytes"], config_of(d)["imageMinFreePercent"]) == (0, 0)
    for i, (line, expected) in enumerate([("MaxLayerSize=100K", "must be a size of at least 1M"),
                                          ("MaxImageSize=lots", "must be a size of at least 1M"),
                                          ("MaxExpansionRatio=0", "must be a whole number"),
                                          ("MinFreeSpace=100%", "must be a size such as 1G, or a percentage"),
                                          ("MinFreeSpace=-1", "must be a size such as 1G, or a percentage")]):
        d = make_daemon(f"bad{i}", start=False, config=f"[Images]\n{line}\n")
        d.expect_exit = True
        d.start(wait=False)
        assert d.wait() != 0
        key, value = line.split("=")
        assert f"{d.config}:2: invalid value '{value}' for {key}: {expected}" in d.log(), d.log()


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_layer_bomb_stops_at_the_expansion_ratio_and_leaves_nothing(tmpfs_daemon, registry, pb):
    # 256 MiB of zeros in about 256 KB of gzip (1000:1, where ordinary layers are 2-10:1), on a
    # 96 MiB file system: unpacked whole it would fill it, so the error naming the ratio (rather
    # than a full file system) shows the limit stopped the unpacking as it wrote, at 100 times the
    # blob (about 26 MB). Defaults only.
    d = tmpfs_daemon("96m")
    lib = os.path.join(d.dir, "lib")
    bomb = reg.zero_layer(256 << 20)
    assert bomb.tar_size > 900 * bomb.size, (bomb.tar_size, bomb.size)
    image = reg.Image([reg.base_layer(), bomb])  # a whole layer below it goes too
    image.push(registry, "bomb", "v1")
    before = free_bytes(lib)
    e = pull_error(d, pb, f"{registry.url}/bomb:v1", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert bomb.digest in e.details() and "MaxExpansionRatio=100" in e.details(), e.details()
    wait_store_empty(d, "the bomb's pull to leave nothing")
    assert list_images(d, pb) == []
    assert free_bytes(lib) >= before - (1 << 20)
    # The next pull works, without a restart.
    ok = reg.single_layer_image()
    ok.push(registry, "busybox", "v1")
    assert pull(d, pb, f"{registry.url}/busybox:v1") == ok.id
    assert_stored(d, ok)


def test_layer_and_image_size_limits(make_daemon, registry, proxy, pb):
    d = make_daemon(config=registries_config([registry.url, proxy.url], images={
        "MaxLayerSize": "8M", "MaxImageSize": "12M", "MaxExpansionRatio": "1000000"}))
    # One layer that expands past MaxLayerSize: stopped while unpacking.
    big = reg.zero_layer(10 << 20)
    one = reg.Image([big])
    one.push(registry, "one", "v1")
    e = pull_error(d, pb, f"{proxy.url}/one:v1", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert big.digest in e.details() and "MaxLayerSize=8M" in e.details(), e.details()
    wait_store_empty(d, "the pull past MaxLayerSize to leave nothing")

    # Two layers each within MaxLayerSize, together past MaxImageSize: the second one is stopped.
    a, b = reg.zero_layer(7 << 20, "a"), reg.zero_layer(7 << 20, "b")
    two = reg.Image([a, b])
    two.push(registry, "two", "v1")
    e = pull_error(d, pb, f"{proxy.url}/two:v1", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert b.digest in e.details() and "MaxImageSize=12M" in e.details(), e.details()
    wait_store_empty(d, "the pull past MaxImageSize to leave nothing (its first layer, whole, too)")

    # A blob larger than MaxLayerSize (random bytes do not compress): refused before its download.
    noise = reg.random_layer(10 << 20)
    three = reg.Image([noise])
    three.push(registry, "three", "v1")
    e = pull_error(d, pb, f"{proxy.url}/three:v1", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert noise.digest in e.details() and "MaxLayerSize=8M" in e.details(), e.details()
    assert proxy.blob_gets("three", noise.digest) == 0
    wait_store_empty(d, "the refused pull to leave nothing")

    ok = reg.single_layer_image()
    ok.push(registry, "busybox", "v1")
    assert pull(d, pb, f"{proxy.url}/busybox:v1") == ok.id
    assert_stored(d, ok)


def test_unpacking_leaves_the_free_space_reserve(tmpfs_daemon, registry, pb):
    d = tmpfs_daemon("32m", images={"MinFreeSpace": "8M", "MaxExpansionRatio": "1000000"})
    lib = os.path.join(d.dir, "lib")
    before = free_bytes(lib)
    # 28 MiB would fit in the 32 MiB, but not with 8M left free: stopped while unpacking, with the
    # reserve named (not a full file system).
    zeros = reg.zero_layer(28 << 20)
    image = reg.Image([zeros])
    image.push(registry, "zeros", "v1")
    e = pull_error(d, pb, f"{registry.url}/zeros:v1", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert zeros.digest in e.details() and "MinFreeSpace=8M" in e.details(), e.details()
    assert "full" not in e.details(), e.details()
    wait_store_empty(d, "the pull stopped by the reserve to leave nothing")
    assert free_bytes(lib) >= before - (1 << 20)

    # Blobs that would not leave the reserve: refused before they are downloaded.
    noise = reg.random_layer(26 << 20)
    big = reg.Image([noise])
    big.push(registry, "noise", "v1")
    e = pull_error(d, pb, f"{registry.url}/noise:v1", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "MinFreeSpace=8M" in e.details(), e.details()
    wait_store_empty(d, "the refused pull to leave nothing")

    ok = reg.single_layer_image()
    ok.push(registry, "busybox", "v1")
    assert pull(d, pb, f"{registry.url}/busybox:v1") == ok.id
    assert_stored(d, ok)


def test_a_full_file_system_fails_the_download_and_leaves_nothing(tmpfs_daemon, registry, pb):
    # Without a reserve, a blob larger than the file system: the write fails with ENOSPC, the pull
    # with RESOURCE_EXHAUSTED (not as a network error), and the partial download goes.
    d = tmpfs_daemon("16m", images={"MinFreeSpace": "0"})
    noise = reg.random_layer(20 << 20)
    image = reg.Image([noise])
    image.push(registry, "noise", "v1")
    e = pull_error(d, pb, f"{registry.url}/noise:v1", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert noise.digest in e.details() and os.strerror(errno.ENOSPC) in e.details(), e.details()
    wait_store_empty(d, "the failed download to leave nothing")
    ok = reg.single_layer_image()
    ok.push(registry, "busybox", "v1")
    assert pull(d, pb, f"{registry.url}/busybox:v1") == ok.id


def test_the_trash_is_emptied_at_start(make_daemon, pb):
    # A deletion cut short (the daemon killed while its child deleted) leaves things in the trash.
    d = make_daemon(start=False)
    left = store(d, "trash", "0" * 64 + ".0badf00d")
    os.makedirs(os.path.join(left, "usr", "bin"))
    with open(os.path.join(left, "usr", "bin", "tool"), "w") as f:
        f.write("x\n")
    d.start()
    assert listdir(store(d, "trash")) == []
    assert list_images(d, pb) == []


# --- cancelled pulls -------------------------------------------------------------------------------
#
# A pull whose every caller went away (its deadline passed, its stream was reset) stops, as
# containerd's stops with its context: its downloads end and their partial files go, and so does
# whatever it brought that nothing else uses. While another caller still waits for it, it goes on.

def test_a_cancelled_pull_leaves_no_partial_download(idaemon, registry, proxy, pb):
    d = idaemon
    image = reg.Image([reg.base_layer(), reg.random_layer(4 << 20)])
    image.push(registry, "slow", "v1")
    big = image.layers[1]
    path = f"/v2/slow/blobs/{big.digest}"
    proxy.rate = 64 * 1024  # about a minute for the big layer: the caller's deadline comes first
    ref = f"{proxy.url}/slow:v1"
    future = d.images().PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=10)

    def partly_downloaded():
        assert not future.done(), "the pull ended before its download was seen"
        return proxy.sent[path] > 0 and listdir(store(d, "blobs", "tmp"))
    wait_until(partly_downloaded, timeout=30, what="the big layer to be partly downloaded")
    assert future.exception(timeout=60).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: proxy.sending[path] == 0, timeout=30, what="the daemon to stop the download")
    wait_store_empty(d, "the cancelled pull to leave nothing")
    assert list_images(d, pb) == []

    proxy.rate = None
    assert pull(d, pb, ref) == image.id
    assert_stored(d, image)
    assert listdir(store(d, "blobs", "tmp")) == []


def test_a_pull_cancelled_while_unpacking_leaves_no_partial_layer(tmpfs_daemon, registry, pb):
    # 1 GiB of zeros (allowed here: no ratio limit) takes the unpacking child seconds; the caller
    # resets its stream as soon as the child's directory appears. The child is killed, and its
    # partial directory goes once it has exited.
    d = tmpfs_daemon("2g", images={"MaxExpansionRatio": "1000000"})
    zeros = reg.zero_layer(1 << 30)
    image = reg.Image([reg.base_layer(), zeros])
    image.push(registry, "zeros", "v1")
    req = pb.PullImageRequest(image=pb.ImageSpec(image=f"{registry.url}/zeros:v1"))
    future = d.images().PullImage.future(req, timeout=PULL_TIMEOUT)
    partial = f"{hex_of(image.chain_ids[1])}.tmp-"

    def unpacking():
        assert not future.done(), "the pull ended before its unpacking was seen"
        return any(n.startswith(partial) for n in listdir(store(d, "layers")))
    wait_until(unpacking, timeout=PULL_TIMEOUT, interval=0.005, what="the big layer's unpacking to start")
    assert future.cancel()
    wait_journal(f"_PID={d.pid}", f"MESSAGE=pull {registry.url}/zeros:v1: cancelled by its last caller, stopping.")
    wait_store_empty(d, "the cancelled pull to leave nothing, its partial layer included")
    assert list_images(d, pb) == []


@needs_openssl
def test_a_pull_cancelled_while_it_waits_for_a_token(make_daemon, tmp_path, pb):
    # The token request goes with the request that waits for it: answered after the pull is gone,
    # it reaches nothing (it used to call back into the freed pull).
    ts = TokenServer(tmp_path / "token", users={"pusher": PASSWORD}, anonymous_actions=["pull"])
    r = Registry(tmp_path / "token-registry", auth="token", token_server=ts)
    try:
        image = reg.single_layer_image()
        image.push(r, "public/busybox", "v1")
        d = make_daemon(config=registries_config([r.url]))
        ref = f"{r.url}/public/busybox:v1"
        ts.stall = threading.Event()
        future = d.images().PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=PULL_TIMEOUT)
        wait_until(lambda: ts.waiting == 1, timeout=30, what="the daemon to ask for a token")
        assert future.cancel()
        wait_journal(f"_PID={d.pid}", f"MESSAGE=pull {ref}: cancelled by its last caller, stopping.")
        ts.stall.set()  # the answer comes now, to a daemon that dropped the request
        wait_until(lambda: ts.waiting == 0, timeout=30, what="the token server to answer")
        ts.stall = None
        assert pull(d, pb, ref) == image.id
        assert d.alive()
        assert_stored(d, image)
    finally:
        r.stop()
        ts.stop()


def test_a_download_shared_by_two_pulls_goes_on_when_one_is_cancelled(idaemon, registry, proxy, pb):
    d = idaemon
    image = reg.Image([reg.random_layer(2 << 20)])
    image.push(registry, "shared", "v1")
    layer = image.layers[0]
    path = f"/v2/shared/blobs/{layer.digest}"
    proxy.rate = 32 * 1024  # about a minute
    req = pb.PullImageRequest(image=pb.ImageSpec(image=f"{proxy.url}/shared:v1"))
    stub = d.images()
    first = stub.PullImage.future(req, timeout=10)

    def on_its_way():
        assert not first.done(), "the first pull ended before its download was seen"
        return proxy.sent[path] > 0
    wait_until(on_its_way, timeout=30, what="the layer to be on its way")
    second = stub.PullImage.future(req, timeout=PULL_TIMEOUT)  # joins the first one's pull
    assert first.exception(timeout=60).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert not second.done()
    proxy.rate = None
    assert second.result().image_ref == image.id
    assert proxy.blob_gets("shared", layer.digest) == 1  # the one download went on, not a new one
    assert_stored(d, image)
    assert listdir(store(d, "blobs", "tmp")) == []


# --- RemoveImage of an image in use ----------------------------------------------------------------
#
# rktlet refuses, as CRI-O does ("image used by <container>"), with FAILED_PRECONDITION, while a
# container made from the image exists, created, running or exited: the container's root file
# system is an overlay of the image's layers, and the record is what keeps them. containerd instead
# drops the image's name and keeps the content for the container; kubelet never asks either way
# (its image GC spares every image a container, even an exited one, uses). Once the containers are
# removed, RemoveImage removes it and its layers go.

def test_remove_image_in_use_is_refused_until_its_containers_are_gone(make_daemon, registry, pb):
    if shutil.which("runc") is None:
        pytest.skip("runc (Debian package runc) is not installed")
    import test_containers as tc  # here: it imports this module
    used = reg.full_busybox_image(cmd=["sleep", "1000"])
    other = reg.full_busybox_image(labels={"other": "yes"})  # the same layer, another config
    assert used.chain_ids == other.chain_ids and used.id != other.id
    used.push(registry, "inuse/app", "v1")
    other.push(registry, "inuse/other", "v1")
    ref = f"{registry.url}/inuse/app:v1"
    refs = (ref, used.id, f"{registry.url}/inuse/app@{used.digest}")
    config = registries_config([registry.url])
    d = make_daemon(config=config)
    assert pull(d, pb, ref) == used.id
    assert pull(d, pb, f"{registry.url}/inuse/other:v1") == other.id
    layer = layer_dir(d, used.chain_ids[0])

    def refused():
        for r in refs:
            with pytest.raises(grpc.RpcError) as e:
                remove_image(d, pb, r)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (r, e.value.details())
            assert used.id in e.value.details() and "1 container" in e.value.details(), e.value.details()
        assert [i.id for i in list_images(d, pb, ref)] == [used.id]
        assert_stored(d, used)

    try:
        pod = tc.make_pod(d, pb, name="inuse")
        cfg = tc.ctr_config(pb, "app", ref)
        cid = tc.create(d, pb, pod, cfg)
        refused()  # created
        # The other image goes, its own config blob with it; the layer the container uses stays.
        remove_image(d, pb, other.id)
        wait_until(lambda: not os.path.exists(blob_file(d, other.config_digest)) and listdir(store(d, "trash")) == [],
                   timeout=30, what="the other image's config blob to go")
        assert os.path.isdir(layer)
        tc.start(d, pb, cid)
        refused()  # running
        pid = tc.main_pid(cid)
        assert pid > 0 and tc.cmdline(pid) == ["sleep", "1000"]
        assert file_sha(f"/proc/{pid}/root/bin/busybox") == file_sha(reg.BUSYBOX)
        with open(f"/proc/{pid}/root/etc/passwd") as f:
            assert f.read() == reg.PASSWD

        # After a restart the daemon still knows the container uses it.
        assert d.stop() == 0
        d = make_daemon(config=config)
        refused()
        assert tc.cstatus(d, pb, cid).status.state == pb.CONTAINER_RUNNING
        assert file_sha(f"/proc/{pid}/root/bin/busybox") == file_sha(reg.BUSYBOX)

        tc.stop(d, pb, cid, timeout=1)
        refused()  # exited, not yet removed
        tc.remove(d, pb, cid)
        remove_image(d, pb, ref)
        assert list_images(d, pb) == []
        wait_store_empty(d, "the image's blobs and layers to go once no container uses them")
    finally:
        tc.cleanup(d, pb)
