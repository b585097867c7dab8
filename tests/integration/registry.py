"""A local OCI registry for the image tests: Debian's docker-registry (distribution v2) on loopback,
optionally behind htpasswd or token auth (with a token server written here), a proxy in front of it
that counts, slows down or corrupts what it serves, and test images built in Python.

Everything binds to 127.0.0.1 inside the harness's network namespace. Tools used: docker-registry,
htpasswd (apache2-utils), openssl (token server key, certificate and RS256 signatures), zstd, and
/bin/busybox (busybox-static) as the content of the test images.
"""

import base64
import collections
import dataclasses
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import platform
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tarfile
import threading
import time
import urllib.parse
import uuid
import zlib

DOCKER_REGISTRY = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"

# --- media types -----------------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

ACCEPT_ALL = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386", "i386": "386"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())
# An architecture that is not this machine's, for the other entry of multi-arch indexes.
FOREIGN_ARCH = "s390x" if HOST_ARCH != "s390x" else "ppc64le"

DEFAULT_MTIME = 1_600_000_000  # files of the test layers, unless an entry says otherwise


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest):
    return digest.split(":", 1)[1]


def chain_ids(diff_ids):
    """The OCI chain IDs of layers with these diff IDs (ChainID(L0) = DiffID(L0),
    ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)))."""
    out = []
    for d in diff_ids:
        out.append(d if not out else sha256(f"{out[-1]} {d}".encode()))
    return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


# --- layer tars ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Entry:
    """One tar entry. kind: file, dir, symlink, hardlink, chardev, blockdev, fifo. Paths are written
    exactly as given (no normalization), so that malicious layers can be made too."""
    path: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""  # symlink target, or the hardlink's (archive) path
    mode: int = None
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: int = DEFAULT_MTIME
    xattrs: dict = None  # name -> bytes, written as PAX SCHILY.xattr.<name>
    major: int = 0
    minor: int = 0


def File(path, data=b"", **kw):
    return Entry(path, "file", data=data if isinstance(data, bytes) else data.encode(), **kw)


def Dir(path, **kw):
    return Entry(path, "dir", **kw)


def Symlink(path, target, **kw):
    return Entry(path, "symlink", target=target, **kw)


def Hardlink(path, target, **kw):
    return Entry(path, "hardlink", target=target, **kw)


def CharDev(path, major, minor, **kw):
    return Entry(path, "chardev", major=major, minor=minor, **kw)


def Whiteout(path):
    """The AUFS/OCI whiteout deleting `path` of the layers below."""
    d, name = os.path.split(path)
    return File(os.path.join(d, ".wh." + name))


def Opaque(directory):
    """The OCI marker making `directory` opaque (hiding what the layers below have in it)."""
    return File(os.path.join(directory, ".wh..wh..opq"))


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE,
          "fifo": tarfile.FIFOTYPE}
_MODES = {"file": 0o644, "dir": 0o755, "symlink": 0o777, "hardlink": 0o644, "chardev": 0o666,
          "blockdev": 0o660, "fifo": 0o644}


def make_tar(entries):
    """An uncompressed PAX tar of entries: a list of Entry, or a dict path -> bytes | str | Entry
    (in order; bytes and str are regular files)."""
    if isinstance(entries, dict):
        entries = [v if isinstance(v, Entry) else File(k, v) for k, v in entries.items()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.path)
            ti.type = _TYPES[e.kind]
            ti.mode = _MODES[e.kind] if e.mode is None else e.mode
            ti.uid, ti.gid, ti.uname, ti.gname = e.uid, e.gid, e.uname, e.gname
            ti.mtime = e.mtime
            if e.kind in ("symlink", "hardlink"):
                ti.linkname = e.target
            if e.kind in ("chardev", "blockdev"):
                ti.devmajor, ti.devminor = e.major, e.minor
            if e.xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                  for k, v in e.xattrs.items()}
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def tar_from_dir(directory):
    """An uncompressed tar of a directory's contents (names relative to it, sorted, hardlinks as
    hardlink entries, owners and modes as on disk)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                tf.add(path, arcname=os.path.relpath(path, directory), recursive=False)
    return buf.getvalue()


def compress(data, compression, level=None):
    """compression: "gzip", "zstd" or "none"."""
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6 if level is None else level, mtime=0)
    if compression == "zstd":
        if shutil.which("zstd") is None:
            raise RuntimeError("the zstd command is not installed (Debian package zstd)")
        return subprocess.run(["zstd", "-q", "-c", f"-{level or 3}"], input=data, capture_output=True,
                              check=True).stdout
    if compression == "none":
        return data
    raise ValueError(compression)


class Layer:
    """A layer blob: the tar, its compressed form, digest, diff ID and media types."""

    def __init__(self, tar, compression="gzip", level=None, blob=None, diff_id=None):
        if blob is not None:  # made elsewhere (zero_layer): the tar is not kept
            self.tar, self.compression, self.blob = None, compression, blob
            self.digest, self.diff_id, self.size = sha256(blob), diff_id, len(blob)
            self.media_type = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}[compression]
            return
        if not isinstance(tar, (bytes, bytearray)):
            tar = make_tar(tar)
        self.tar = bytes(tar)
        self.compression = compression
        self.blob = compress(self.tar, compression, level)
        self.digest = sha256(self.blob)
        self.diff_id = sha256(self.tar)
        self.size = len(self.blob)
        self.media_type = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}[compression]

    def descriptor(self, docker=False):
        if docker and self.compression != "gzip":
            raise ValueError("Docker schema2 layers are gzip")
        return {"mediaType": DOCKER_LAYER_GZIP if docker else self.media_type, "digest": self.digest,
                "size": self.size}


def image_config(layers, arch=HOST_ARCH, os_="linux", cmd=("/bin/sh",), entrypoint=None, user="",
                 env=None, workdir="/", stop_signal=None, labels=None, variant=None):
    """The image config JSON (bytes) of these layers."""
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    config = {"Env": list(env if env is not None else [path]),
              "Cmd": list(cmd) if cmd is not None else None,
              "WorkingDir": workdir, "User": user}
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    if stop_signal:
        config["StopSignal"] = stop_signal
    if labels:
        config["Labels"] = dict(labels)
    c = {"created": "2020-09-13T12:26:40Z", "architecture": arch, "os": os_, "config": config,
         "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
         "history": [{"created": "2020-09-13T12:26:40Z", "created_by": f"rktlet test layer {i}"}
                     for i in range(len(layers))]}
    if variant:
        c["variant"] = variant
    return _json(c)


class Image:
    """One image manifest (OCI, or Docker schema2 with docker=True) with its config and layers."""

    def __init__(self, layers, docker=False, arch=HOST_ARCH, **config):
        self.layers = [l if isinstance(l, Layer) else Layer(l) for l in layers]
        self.docker = docker
        self.arch = arch
        self.config_bytes = image_config(self.layers, arch=arch, **config)
        self.config = json.loads(self.config_bytes)
        self.config_digest = sha256(self.config_bytes)
        self.id = self.config_digest  # what PullImage answers and ListImages shows as id
        self.media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        self.manifest_bytes = _json({
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "digest": self.config_digest,
                       "size": len(self.config_bytes)},
            "layers": [l.descriptor(docker) for l in self.layers],
        })
        self.digest = sha256(self.manifest_bytes)
        self.blobs = {self.config_digest: self.config_bytes}
        for l in self.layers:
            self.blobs[l.digest] = l.blob
        self.diff_ids = [l.diff_id for l in self.layers]
        self.chain_ids = chain_ids(self.diff_ids)
        # What the CRI reports as size: config and layer blobs (the manifest is allowed on top).
        self.size = len(self.config_bytes) + sum(l.size for l in self.layers)

    def platform(self):
        return {"architecture": self.arch, "os": "linux"}

    def push(self, registry, repo, tag=None, auth=None):
        """Pushes blobs and manifest, by tag (or by digest without one); returns the manifest digest."""
        return push(registry, repo, tag or self.digest, self.manifest_bytes, self.media_type, self.blobs, auth)


class Index:
    """A multi-arch OCI index (or Docker manifest list with docker=True) of images."""

    def __init__(self, images, docker=False):
        self.images = list(images)
        self.docker = docker
        self.media_type = DOCKER_MANIFEST_LIST if docker else OCI_INDEX
        self.manifest_bytes = _json({
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [{"mediaType": i.media_type, "digest": i.digest, "size": len(i.manifest_bytes),
                           "platform": i.platform()} for i in self.images],
        })
        self.digest = sha256(self.manifest_bytes)

    def image_for(self, arch):
        return next(i for i in self.images if i.arch == arch)

    def push(self, registry, repo, tag=None, auth=None):
        for i in self.images:  # the registry checks that the index's manifests exist
            i.push(registry, repo, None, auth)
        return push(registry, repo, tag or self.digest, self.manifest_bytes, self.media_type, {}, auth)


# --- the test images -------------------------------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\n"
APPLETS = ("sh", "ls", "cat", "echo", "id")

# What the single-layer image holds besides busybox, for the tests to check after unpacking.
MOTD = b"hello from the rktlet tests\n"
MOTD_MTIME = 1_234_567_890
SECURITY_CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")  # v2, effective, cap_net_raw


def busybox_entries():
    """A minimal root filesystem: busybox and its applets, passwd and group (root, app 1000:1000)."""
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    return [Dir("bin"), File("bin/busybox", bb, mode=0o755),
            *[Symlink(f"bin/{a}", "busybox") for a in APPLETS],
            Dir("etc"), File("etc/passwd", PASSWD), File("etc/group", GROUP),
            Dir("home"), Dir("home/app", uid=1000, gid=1000, mode=0o750, mtime=MOTD_MTIME),
            Dir("tmp", mode=0o1777), Dir("root", mode=0o700)]


def busybox_applets():
    """Every applet name of /bin/busybox (`busybox --list`), without busybox itself."""
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    return sorted({a for a in out.split() if a and "/" not in a and a != "busybox"})


def full_busybox_entries():
    """A root filesystem for running containers: busybox with a symlink for every applet in bin/,
    passwd and group (root, app 1000:1000), /tmp 1777 and the empty /proc, /sys and /dev."""
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    return [Dir("bin"), File("bin/busybox", bb, mode=0o755),
            *[Symlink(f"bin/{a}", "busybox") for a in busybox_applets()],
            Dir("etc"), File("etc/passwd", PASSWD), File("etc/group", GROUP),
            Dir("home"), Dir("home/app", uid=1000, gid=1000, mode=0o750),
            Dir("tmp", mode=0o1777), Dir("root", mode=0o700),
            Dir("proc", mode=0o555), Dir("sys", mode=0o555), Dir("dev")]


def full_busybox_image(**config):
    """One layer of full_busybox_entries(); config as image_config() takes it (cmd, entrypoint, env,
    workdir, user, stop_signal, labels). By default: root, PATH=/bin, workdir /, Cmd echo image-cmd."""
    layer = _cached("full-busybox", lambda: Layer(full_busybox_entries()))
    config.setdefault("cmd", ["/bin/sh", "-c", "echo image-cmd"])
    config.setdefault("env", ["PATH=/bin"])
    return Image([layer], **config)


def checked_entries():
    """Modes, owners, times, links, a device node and xattrs, for the tests to find kept."""
    return [File("etc/motd", MOTD, mode=0o640, uid=1000, gid=1000, uname="app", gname="app", mtime=MOTD_MTIME),
            Symlink("etc/motd.link", "motd"),
            Hardlink("etc/motd.hard", "etc/motd", mode=0o640, uid=1000, gid=1000, mtime=MOTD_MTIME),
            Symlink("etc/absolute.link", "/etc/passwd"),  # absolute, but only a symlink: fine
            File("bin/suid", b"#!/bin/sh\n", mode=0o4755),
            File("bin/ping", b"not really ping\n", mode=0o755,
                 xattrs={"security.capability": SECURITY_CAPABILITY, "trusted.rktlet.test": b"kept"}),
            Dir("dev"), CharDev("dev/null", 1, 3, mode=0o666),
            Dir("srv", uid=1000, gid=1000, mode=0o2775)]


_cache = {}


def _cached(key, build):
    if key not in _cache:
        _cache[key] = build()
    return _cache[key]


def single_layer_image(compression="gzip", user="1000", **config):
    """busybox + checked entries in one layer. compression: gzip, zstd or none."""
    layer = _cached(("single", compression), lambda: Layer(busybox_entries() + checked_entries(), compression))
    config.setdefault("cmd", ["/bin/sh", "-c", "echo hello"])
    config.setdefault("env", ["PATH=/bin", "GREETING=hello"])
    config.setdefault("workdir", "/home/app")
    config.setdefault("stop_signal", "SIGTERM")
    return Image([layer], user=user, **config)


def base_layer():
    return _cached("base", lambda: Layer(busybox_entries() + [
        Dir("data"), File("data/keep", "keep\n"), File("data/gone", "gone\n"),
        Dir("data/gone-dir"), File("data/gone-dir/x", "x\n"),
        Dir("opq"), File("opq/old", "old\n"), Dir("opq/olddir"), File("opq/olddir/f", "f\n")]))


def multi_layer_image(**config):
    """Three layers: base (busybox, data/, opq/); 2: whiteouts of data/gone and data/gone-dir, opq/
    made opaque with a new file; 3: data/gone made again."""
    l2 = _cached("multi2", lambda: Layer([Dir("data"), Whiteout("data/gone"), Whiteout("data/gone-dir"),
                                         File("data/added", "added\n"),
                                         Dir("opq"), Opaque("opq"), File("opq/new", "new\n")]))
    l3 = _cached("multi3", lambda: Layer([Dir("data"), File("data/gone", "back again\n"), File("etc/layer3", "3\n")]))
    return Image([base_layer(), l2, l3], **config)


def sibling_image():
    """Shares multi_layer_image's base layer, with a layer of its own on top."""
    l2 = _cached("sibling2", lambda: Layer([Dir("data"), File("data/sibling", "sibling\n")]))
    return Image([base_layer(), l2], labels={"image": "sibling"})


def arch_image(arch, docker=False):
    """busybox + /etc/arch naming the architecture, as built for `arch`."""
    layer = _cached(("arch", arch), lambda: Layer(busybox_entries() + [File("etc/arch", arch + "\n")]))
    return Image([layer], docker=docker, arch=arch)


def multi_arch_index(docker=False):
    """An index (or Docker manifest list) whose first entry is FOREIGN_ARCH and second HOST_ARCH."""
    foreign = Image([_cached(("archonly", FOREIGN_ARCH),
                             lambda: Layer([Dir("etc"), File("etc/arch", FOREIGN_ARCH + "\n")]))],
                    docker=docker, arch=FOREIGN_ARCH)
    return Index([foreign, arch_image(HOST_ARCH, docker)], docker=docker)


def docker_image():
    """A Docker schema2 manifest (docker media types, gzip layer)."""
    return Image([_cached(("single", "gzip"), lambda: Layer(busybox_entries() + checked_entries()))],
                 docker=True, user="app", labels={"kind": "docker"})


def zero_layer(size, name="zeros"):
    """A gzip layer whose tar holds one file `name` of `size` zero bytes, compressed as it is made
    (the tar is never whole in memory): a layer bomb, gzip packs zeros about 1000:1. .tar_size is
    the tar's length (its uncompressed size)."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = size, 0o644, DEFAULT_MTIME
    header = ti.tobuf(format=tarfile.PAX_FORMAT)
    tail = b"\0" * (-size % 512) + b"\0" * 1024  # the file's padding, then two zero blocks
    tail += b"\0" * (-(len(header) + size + len(tail)) % tarfile.RECORDSIZE)
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    h = hashlib.sha256()
    out = []

    def put(data):
        h.update(data)
        out.append(z.compress(data))
    put(header)
    chunk = b"\0" * (1 << 20)
    left = size
    while left:
        n = min(left, len(chunk))
        put(chunk[:n])
        left -= n
    put(tail)
    out.append(z.flush())
    layer = Layer(None, "gzip", blob=b"".join(out), diff_id="sha256:" + h.hexdigest())
    layer.tar_size = len(header) + size + len(tail)
    return layer


def random_layer(size, name="random"):
    """A gzip layer holding one file of `size` random bytes: it does not compress."""
    return Layer([File(name, os.urandom(size))], "gzip", level=1)


def big_image(megabytes=50):
    """busybox and a layer holding `megabytes` MB of random bytes in /big (gzip level 1); returns
    (image, sha256 hex of /big)."""
    data = os.urandom(megabytes * 1024 * 1024)
    big = Layer([File("big", data)], "gzip", level=1)
    return Image([base_layer(), big]), hashlib.sha256(data).hexdigest()


# Malicious layers. `outside` is an existing directory (in the test's tmp dir) that an unsafe
# extraction would write into; each returns (image, paths that must not exist afterwards,
# {path: content} of files that must stay unchanged).

def _deep(path):
    """A relative path that climbs to / from any depth, then goes to `path` (absolute)."""
    return "../" * 64 + path.lstrip("/")


def evil_dotdot_image(outside):
    return (Image([Layer(busybox_entries() + [File("../escape-dotdot", "escaped\n"),
                                               File(_deep(f"{outside}/escape-dotdot"), "escaped\n")])]),
            [f"{outside}/escape-dotdot"], {})


def evil_symlink_image(outside):
    return (Image([Layer(busybox_entries() + [Symlink("link", "/"),
                                               File(f"link/{outside.lstrip('/')}/escape-symlink", "escaped\n"),
                                               Symlink("link2", outside),
                                               File("link2/escape-symlink2", "escaped\n")])]),
            [f"{outside}/escape-symlink", f"{outside}/escape-symlink2"], {})


def evil_hardlink_image(outside):
    """A hardlink to a file outside (absolute path), then a regular file of that name (writing
    through the link would change the outside file)."""
    secret = f"{outside}/secret"
    return (Image([Layer(busybox_entries() + [Hardlink("hl", secret), File("hl", "pwned\n")])]),
            [], {secret: b"secret\n"})


def evil_hardlink_dotdot_image(outside):
    secret = f"{outside}/secret"
    return (Image([Layer(busybox_entries() + [Hardlink("hl", _deep(secret)), File("hl", "pwned\n")])]),
            [], {secret: b"secret\n"})


def evil_symlink_dir_image(outside):
    """A symlink d -> outside/x, then a directory entry d, then d/f."""
    return (Image([Layer(busybox_entries() + [Symlink("d", f"{outside}/x"), Dir("d"), File("d/f", "escaped\n")])]),
            [f"{outside}/x/f"], {})


def prepare_outside(outside):
    """The directory the malicious layers aim at, with the sentinel files they must not touch."""
    os.makedirs(f"{outside}/x", exist_ok=True)
    with open(f"{outside}/secret", "wb") as f:
        f.write(b"secret\n")


EVIL_IMAGES = {"dotdot": evil_dotdot_image, "absolute-symlink": evil_symlink_image,
               "hardlink-absolute": evil_hardlink_image, "hardlink-dotdot": evil_hardlink_dotdot_image,
               "symlink-then-dir": evil_symlink_dir_image}


# --- an HTTP client of the distribution API (push and checks) -------------------------------------

def _challenge(header):
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class Client:
    """Requests to a registry at host:port with basic or bearer auth as the registry asks.
    auth: None or (username, password)."""

    def __init__(self, host, auth=None, timeout=60, tls=None):
        self.host = host
        self.auth = auth
        self.timeout = timeout
        self.tls = tls  # an ssl.SSLContext: the registry speaks HTTPS
        self.authorization = None
        self.tokens = 0  # tokens obtained

    def _basic(self):
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()

    def _raw(self, method, path, body=None, headers=None):
        conn = (http.client.HTTPSConnection(self.host, timeout=self.timeout, context=self.tls) if self.tls
                else http.client.HTTPConnection(self.host, timeout=self.timeout))
        try:
            h = dict(headers or {})
            if self.authorization:
                h["Authorization"] = self.authorization
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def token(self, params):
        """A bearer token from the realm of a challenge."""
        realm = urllib.parse.urlsplit(params["realm"])
        query = {k: params[k] for k in ("service", "scope") if k in params}
        conn = http.client.HTTPConnection(realm.netloc, timeout=self.timeout)
        try:
            h = {"Authorization": self._basic()} if self.auth else {}
            conn.request("GET", realm.path + "?" + urllib.parse.urlencode(query), headers=h)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        if r.status != 200:
            raise PermissionError(f"token server {params['realm']}: {r.status} {data!r}")
        j = json.loads(data)
        self.tokens += 1
        return j.get("token") or j["access_token"]

    def request(self, method, path, body=None, headers=None, ok=(200,)):
        """(status, headers with lowercase names, body); raises unless status is in ok."""
        status, h, data = self._raw(method, path, body, headers)
        if status == 401 and "www-authenticate" in h:
            scheme, params = _challenge(h["www-authenticate"])
            if scheme == "basic" and self.auth:
                self.authorization = self._basic()
                status, h, data = self._raw(method, path, body, headers)
            elif scheme == "bearer":
                self.authorization = "Bearer " + self.token(params)
                status, h, data = self._raw(method, path, body, headers)
        if ok and status not in ok:
            raise RuntimeError(f"{method} http://{self.host}{path}: {status} {data[:500]!r}")
        return status, h, data

    def get_manifest(self, repo, ref, accept=ACCEPT_ALL):
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})

    def get_blob(self, repo, digest):
        return self.request("GET", f"/v2/{repo}/blobs/{digest}")[2]


def push(registry, repo, ref, manifest_bytes, media_type, blobs, auth=None):
    """Pushes blobs (digest -> bytes, monolithic uploads, skipped when the registry has them) then
    the manifest under ref (a tag or a digest). registry: a Registry, "host:port" or a Client.
    Returns the manifest digest the registry reports."""
    if isinstance(registry, Client):
        client = registry
    elif isinstance(registry, Registry):
        client = registry.client(auth)
    else:
        client = Client(registry if isinstance(registry, str) else registry.url,
                        auth if auth is not None else getattr(registry, "credentials", None))
    for digest, data in blobs.items():
        assert sha256(data) == digest, f"blob {digest} does not match its bytes"
        status, _, _ = client.request("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
        if status == 200:
            continue
        _, h, _ = client.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"", ok=(202,))
        loc = urllib.parse.urlsplit(h["location"])
        path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(digest)
        client.request("PUT", path, body=data, ok=(201,),
                       headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    _, h, _ = client.request("PUT", f"/v2/{repo}/manifests/{ref}", body=manifest_bytes, ok=(201,),
                             headers={"Content-Type": media_type})
    return h.get("docker-content-digest", sha256(manifest_bytes))


# --- the token server ------------------------------------------------------------------------------

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The Docker token auth server: GET /token?service=&scope= (and the OAuth2 POST form) answers
    RS256 JWTs signed with a key whose self-signed certificate the registry trusts.

    users: {username: password}; a request with credentials must match one (else 401) and gets the
    actions it asks for. Anonymous requests get anonymous_actions (e.g. ["pull"]; [] gives a token
    without access, as Docker Hub does, which the registry then refuses).

    .stall: None, or a threading.Event that GET /token waits for before answering; .waiting counts
    the requests waiting on it now."""

    def __init__(self, directory, users=None, anonymous_actions=("pull",), service="rktlet-test-registry",
                 issuer="rktlet-test-token-issuer"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.users = dict(users or {})
        self.anonymous_actions = list(anonymous_actions)
        self.service, self.issuer = service, issuer
        self.key = os.path.join(self.dir, "token.key")
        self.cert = os.path.join(self.dir, "token.crt")
        if shutil.which("openssl") is None:
            raise RuntimeError("the openssl command is not installed (Debian package openssl)")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                        "-out", self.cert, "-days", "2", "-subj", "/CN=rktlet-test-token-issuer", "-sha256"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.lock = threading.Lock()
        self.requests = []  # (account or None, scopes, granted)
        self.stall = None
        self.waiting = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body, headers=()):
                try:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client went away (a cancelled pull)

            def _handle(self, params, creds):
                scopes = params.get("scope", [])
                scopes = [s for sc in scopes for s in sc.split(" ") if s]
                account = None
                if creds is not None:
                    user, password = creds
                    if server.users.get(user) != password:
                        with server.lock:
                            server.requests.append((user, scopes, None))
                        return self._answer(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}',
                                            [("WWW-Authenticate", 'Basic realm="rktlet-test-token"')])
                    account = user
                access = []
                for s in scopes:
                    typ, _, rest = s.partition(":")
                    name, _, actions = rest.rpartition(":")
                    wanted = [a for a in actions.split(",") if a]
                    allowed = wanted if account else [a for a in wanted if a in server.anonymous_actions]
                    if allowed:
                        access.append({"type": typ, "name": name, "actions": allowed})
                with server.lock:
                    server.requests.append((account, scopes, access))
                token = server.sign(account or "", access)
                self._answer(200, _json({"token": token, "access_token": token, "expires_in": 300,
                                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))

            def _creds(self):
                h = self.headers.get("Authorization", "")
                if not h.lower().startswith("basic "):
                    return None
                user, _, password = base64.b64decode(h[6:]).decode().partition(":")
                return user, password

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                if u.path != "/token":
                    return self._answer(404, b"{}")
                stall = server.stall
                if stall is not None:
                    with server.lock:
                        server.waiting += 1
                    try:
                        stall.wait(120)
                    finally:
                        with server.lock:
                            server.waiting -= 1
                self._handle(urllib.parse.parse_qs(u.query), self._creds())

            def do_POST(self):  # OAuth2: grant_type=password|refresh_token
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                params = urllib.parse.parse_qs(body.decode())
                creds = self._creds()
                if params.get("grant_type") == ["password"]:
                    creds = (params.get("username", [""])[0], params.get("password", [""])[0])
                self._handle(params, creds)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"127.0.0.1:{self.port}"
        self.realm = f"http://{self.url}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, subject, access, lifetime=300):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + lifetime,
                  "nbf": now - 30, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (_b64url(_json(header)) + "." + _b64url(_json(claims))).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input,
                             check=True, capture_output=True).stdout
        return signing_input.decode() + "." + _b64url(sig)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- certificates ----------------------------------------------------------------------------------

class CertAuthority:
    """A CA made with openssl in directory, and the certificates it issues: .cert and .key are PEM
    paths of the CA itself."""

    def __init__(self, directory, name="rktlet test CA"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.cert = os.path.join(self.dir, "ca.crt")
        self.key = os.path.join(self.dir, "ca.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=" + name,
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                       check=True, capture_output=True)

    def issue(self, name, san=None, client=False):
        """(certificate path, key path) for CN=name, signed by this CA: a server certificate for
        san ("IP:127.0.0.1"), or a client certificate."""
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        ext = ["-addext", "basicConstraints=critical,CA:FALSE",
               "-addext", "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
        if san:
            ext += ["-addext", "subjectAltName=" + san]
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
                        "-CA", self.cert, "-CAkey", self.key, *ext],
                       check=True, capture_output=True)
        return cert, key


# --- the registry ----------------------------------------------------------------------------------

class Registry:
    """docker-registry serving a fresh storage directory on 127.0.0.1:<free port>.

    auth: None, "htpasswd" (users: {name: password}) or "token" (token_server: a TokenServer).
    tls: None (plain HTTP) or a CertAuthority that issues the registry's certificate (SAN IP:127.0.0.1);
    client_ca: a CertAuthority whose client certificates the registry then requires (http.tls.clientcas).
    .url is "127.0.0.1:PORT"; .credentials is (user, password) of the first user, which push() uses."""

    def __init__(self, directory, auth=None, users=None, token_server=None, start=True, tls=None, client_ca=None):
        if not os.access(DOCKER_REGISTRY, os.X_OK):
            raise RuntimeError(f"{DOCKER_REGISTRY} is not installed (Debian package docker-registry)")
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.storage = os.path.join(self.dir, "storage")
        self.config = os.path.join(self.dir, "config.yml")
        self.logfile = os.path.join(self.dir, "registry.log")
        self.auth = auth
        self.users = dict(users or {})
        self.credentials = next(iter(self.users.items()), None)
        self.token_server = token_server
        self.proc = None
        self.port = None
        self.ca = tls
        self.client_ca = client_ca
        self.tls_context = None
        if tls is not None:
            self.tls_cert, self.tls_key = tls.issue("registry", san="IP:127.0.0.1")
            self.tls_context = ssl.create_default_context(cafile=tls.cert)
            if client_ca is not None:
                # The tests' own client (pushes, the readiness check) shows a certificate too.
                self.client_cert = client_ca.issue("pusher", client=True)
                self.tls_context.load_cert_chain(*self.client_cert)
        if auth == "htpasswd":
            if shutil.which("htpasswd") is None:
                raise RuntimeError("the htpasswd command is not installed (Debian package apache2-utils)")
            lines = [subprocess.run(["htpasswd", "-nbB", u, p], check=True, capture_output=True,
                                    text=True).stdout.strip() for u, p in self.users.items()]
            self.htpasswd = os.path.join(self.dir, "htpasswd")
            with open(self.htpasswd, "w") as f:
                f.write("\n".join(lines) + "\n")
        elif auth == "token":
            assert token_server is not None
            if not self.credentials and token_server.users:
                self.credentials = next(iter(token_server.users.items()))
        elif auth is not None:
            raise ValueError(auth)
        if start:
            self.start()

    def _write_config(self):
        q = json.dumps  # JSON strings are YAML strings
        lines = ["version: 0.1",
                 "log:", "  level: info", "  accesslog:", "    disabled: false",
                 "storage:", "  filesystem:", f"    rootdirectory: {q(self.storage)}",
                 "  delete:", "    enabled: true",
                 "  maintenance:", "    uploadpurging:", "      enabled: false",
                 "http:", f"  addr: {q(self.url)}", "  secret: rktlet-test-secret",
                 *(["  tls:", f"    certificate: {q(self.tls_cert)}", f"    key: {q(self.tls_key)}"]
                   if self.ca else []),
                 *(["    clientcas:", f"      - {q(self.client_ca.cert)}"] if self.client_ca else []),
                 "health:", "  storagedriver:", "    enabled: false"]
        if self.auth == "htpasswd":
            lines += ["auth:", "  htpasswd:", "    realm: rktlet-test", f"    path: {q(self.htpasswd)}"]
        elif self.auth == "token":
            t = self.token_server
            lines += ["auth:", "  token:", f"    realm: {q(t.realm)}", f"    service: {q(t.service)}",
                      f"    issuer: {q(t.issuer)}", f"    rootcertbundle: {q(t.cert)}"]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=20.0):
        for attempt in range(5):
            if self.port is None or attempt:
                self.port = free_port()
            self.url = f"127.0.0.1:{self.port}"
            self._write_config()
            with open(self.logfile, "ab") as log:
                self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", self.config], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, env=_clean_env())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    status, _, _ = Client(self.url, timeout=2, tls=self.tls_context)._raw("GET", "/v2/")
                    if status in (200, 401):
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.stop()
                raise RuntimeError(f"docker-registry did not answer on {self.url} within {timeout}s:\n{self.log()}")
            if "address already in use" not in self.log():
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}:\n{self.log()}")
        raise RuntimeError(f"docker-registry found no free port:\n{self.log()}")

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def client(self, auth=None):
        return Client(self.url, auth if auth is not None else self.credentials, tls=self.tls_context)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _clean_env():
    # docker-registry reads REGISTRY_* variables as configuration; none of the caller's.
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


# --- a proxy in front of a registry ----------------------------------------------------------------

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade"}
_BY_DIGEST = re.compile(r"^/v2/(.+)/(blobs|manifests)/(sha256:[0-9a-f]{64})$")


class Proxy:
    """An HTTP/1.1 reverse proxy on 127.0.0.1:<port> in front of upstream ("host:port"). It keeps the
    Host header, so the registry's upload locations point back at the proxy.

    .requests: (method, path, status) of every request; .authorizations: the Authorization header
    of every request that had one; .sent: path -> body bytes sent;
    .corrupt: digests whose blobs (or manifests fetched by digest) get one byte flipped;
    .rate: bytes/s for blob bodies (None: as fast as possible; read again before each chunk);
    .fail: path substring -> HTTP status answered instead of forwarding;
    .sending: path -> bodies being sent now (a body ends when it is sent whole or the client
    goes away, which the proxy sees at its next write);
    .drop_after: None, or a byte count: a blob body is cut after that many bytes and its connection
    reset (RST, no orderly close), as a registry or a load balancer dying mid-transfer does; .dropped
    counts the bodies cut so."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.requests = []
        self.authorizations = []
        self.sent = collections.Counter()
        self.sending = collections.Counter()
        self.corrupt = set()
        self.rate = None
        self.fail = {}
        self.drop_after = None
        self.dropped = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                path = urllib.parse.urlsplit(self.path).path
                sending = None
                body = None
                if "Content-Length" in self.headers:
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                if "Authorization" in self.headers:
                    with proxy.lock:
                        proxy.authorizations.append(self.headers["Authorization"])
                for needle, status in list(proxy.fail.items()):
                    if needle in self.path:
                        with proxy.lock:
                            proxy.requests.append((self.command, path, status))
                        self.send_response(status)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    with proxy.lock:
                        proxy.requests.append((self.command, path, r.status))
                    rheaders = [(k, v) for k, v in r.getheaders() if k.lower() not in _HOP]
                    length = r.getheader("Content-Length")
                    no_body = self.command == "HEAD" or r.status in (204, 304)
                    if length is None and not no_body:
                        data = r.read()
                        rheaders.append(("Content-Length", str(len(data))))
                        chunks = [data]
                    else:
                        chunks = None
                    self.send_response(r.status)
                    for k, v in rheaders:
                        self.send_header(k, v)
                    self.end_headers()
                    if no_body:
                        return
                    m = _BY_DIGEST.match(path)
                    blob = m and m.group(2) == "blobs" and self.command == "GET" and r.status in (200, 206)
                    flip = m and self.command == "GET" and r.status in (200, 206) and m.group(3) in proxy.corrupt
                    total = int(length) if length is not None else len(chunks[0])
                    target = min(100, total - 1)  # the byte flipped in a corrupted blob
                    offset = 0
                    with proxy.lock:
                        proxy.sending[path] += 1
                    sending = path
                    while True:
                        if chunks is not None:
                            chunk = chunks.pop(0) if chunks else b""
                        else:
                            chunk = r.read(65536)
                        if not chunk:
                            break
                        if flip and offset <= target < offset + len(chunk):
                            i = target - offset
                            chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
                        drop = proxy.drop_after
                        if blob and drop is not None and offset + len(chunk) > drop:
                            self.wfile.write(chunk[:max(0, drop - offset)])
                            self.wfile.flush()
                            with proxy.lock:
                                proxy.sent[path] += max(0, drop - offset)
                                proxy.dropped += 1
                            # SO_LINGER 0: close() sends RST, the transfer ends mid-body.
                            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            self.connection.close()
                            self.close_connection = True
                            return
                        self.wfile.write(chunk)
                        offset += len(chunk)
                        with proxy.lock:
                            proxy.sent[path] += len(chunk)
                        rate = proxy.rate
                        if blob and rate:
                            time.sleep(len(chunk) / rate)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    self.close_connection = True
                finally:
                    if sending is not None:
                        with proxy.lock:
                            proxy.sending[sending] -= 1
                    conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def count(self, method, path):
        """How many requests with this method had exactly this path."""
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def blob_gets(self, repo, digest):
        return self.count("GET", f"/v2/{repo}/blobs/{digest}")

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.sent.clear()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
