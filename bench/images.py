"""Image pull benchmark, run inside tests/integration/run-harness by bench/run-images.

Pushes a ~100 MB image of 4 gzip layers (random data, so compression does not shrink it) to
Debian's docker-registry on loopback, then pulls it with rktlet (download, verify, unpack) and,
side by side in the same run, with `skopeo copy` to an OCI layout followed by `umoci unpack`."""

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
from rktlet_test import Daemon, stubs  # noqa: E402

pb, _ = stubs()
LAYERS = int(os.environ.get("BENCH_LAYERS", "4"))
LAYER_MB = int(os.environ.get("BENCH_LAYER_MB", "25"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layer(i):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for k in range(LAYER_MB):
            data = os.urandom(1024 * 1024)
            ti = tarfile.TarInfo(f"data{i}/blob{k}")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=1)


def start_registry(work):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with open(os.path.join(work, "registry.yml"), "w") as f:
        f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
                f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    proc = subprocess.Popen(["docker-registry", "serve", os.path.join(work, "registry.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/")
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"127.0.0.1:{port}"


def push(host, repo, tag, config, layers):
    def req(method, url, data=None, ctype=None):
        r = urllib.request.Request(url, data=data, method=method)
        if ctype:
            r.add_header("Content-Type", ctype)
        return urllib.request.urlopen(r)

    for blob in [config] + [gz for _, gz in layers]:
        loc = req("POST", f"http://{host}/v2/{repo}/blobs/uploads/").headers["Location"]
        if loc.startswith("/"):
            loc = f"http://{host}{loc}"
        req("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest(blob)}", blob, "application/octet-stream")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(gz), "size": len(gz)}
                   for _, gz in layers]}).encode()
    req("PUT", f"http://{host}/v2/{repo}/manifests/{tag}", manifest, "application/vnd.oci.image.manifest.v1+json")


def main():
    work = tempfile.mkdtemp(prefix="bench-images-")
    registry, host = start_registry(work)
    try:
        layers = [layer(i) for i in range(LAYERS)]
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [digest(raw) for raw, _ in layers]}}).encode()
        push(host, "bench/big", "1", config, layers)
        total = sum(len(gz) for _, gz in layers)
        mb = total / 1e6

        rktlet_times, pair_times = [], []
        for run in range(RUNS):
            d = Daemon(os.path.join(work, f"daemon{run}"), log_level="warning",
                       config=f"[Registries]\nInsecure={host}\n")
            d.start()
            try:
                t0 = time.perf_counter()
                d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=f"{host}/bench/big:1")), timeout=600)
                rktlet_times.append(time.perf_counter() - t0)
            finally:
                d.stop()
                shutil.rmtree(d.dir, ignore_errors=True)

            layout, bundle = os.path.join(work, f"oci{run}"), os.path.join(work, f"bundle{run}")
            t0 = time.perf_counter()
            subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{host}/bench/big:1",
                            f"oci:{layout}:big"], check=True)
            subprocess.run(["umoci", "unpack", "--image", f"{layout}:big", bundle], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pair_times.append(time.perf_counter() - t0)
            shutil.rmtree(layout, ignore_errors=True)
            shutil.rmtree(bundle, ignore_errors=True)
    finally:
        registry.kill()
        registry.wait()
        shutil.rmtree(work, ignore_errors=True)

    best = lambda v: min(v)
    print()
    print(f"Image pull: {LAYERS} gzip layers, {mb:.0f} MB compressed, from docker-registry on loopback")
    print(f"({os.cpu_count()} CPUs, {os.uname().release}; best of {RUNS} runs, each into an empty store)")
    print()
    print(f"{'puller':<40} {'seconds':>9} {'MB/s':>8}")
    print(f"{'-' * 40} {'-' * 9} {'-' * 8}")
    print(f"{'rktlet PullImage (download+verify+unpack)':<40} {best(rktlet_times):9.2f} {mb / best(rktlet_times):8.1f}")
    print(f"{'skopeo copy + umoci unpack':<40} {best(pair_times):9.2f} {mb / best(pair_times):8.1f}")
    verdict = "met" if best(rktlet_times) < best(pair_times) else "MISSED"
    print(f"\ntarget: faster than skopeo + umoci: {verdict} "
          f"({best(pair_times) / best(rktlet_times):.1f}x)")


if __name__ == "__main__":
    main()
