"""Streaming benchmark (Exec and PortForward), run inside tests/integration/run-harness by
bench/run-stream.

One host-network pod with one running busybox container: `sleep 1000`, and a sink on port 9100
(busybox `nc -ll -e`, one `cat >/dev/null` per connection). The client is exec-go
(tests/integration/exec-go: grpc-go and docker/spdystream, kubelet's stack), built like the tests
build it. In rounds, so that both sides of each comparison see the same machine:

1. Exec of `echo x`: from the gRPC Exec call to the first stdout byte through the SPDY session
   (call, URL, TCP connect, upgrade, five streams, the runtime's exec, the byte), and to the v4
   Status; beside ExecSync of the same command from the same client (its whole round trip);
2. PortForward throughput: BENCH_PF_MIB MiB (256 by default) sent through the tunnel to the sink,
   until the sink closes; beside the same bytes over a direct TCP connection to the same sink
   (the pod shares the harness's network namespace, so 127.0.0.1:9100 is the pod's own listener).

Times only: nothing here asserts on them."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "bench"))
from rktlet_test import stubs, wait_until  # noqa: E402
from containers import Bench, T, pct, registry_and_daemon  # noqa: E402
import gocri  # noqa: E402

pb, _ = stubs()
RUNS = int(os.environ.get("BENCH_EXEC_RUNS", "30"))
ROUNDS = 3
PF_MIB = int(os.environ.get("BENCH_PF_MIB", "256"))
PF_ROUNDS = int(os.environ.get("BENCH_PF_ROUNDS", "3"))
SINK = ["sh", "-c", "printf '#!/bin/sh\\ncat >/dev/null\\n' >/tmp/sink; chmod +x /tmp/sink; "
        "nc -ll -p 9100 -e /tmp/sink & sleep 1000"]


def main():
    binary, _ = gocri.build(program="exec-go")
    work = tempfile.mkdtemp(prefix="bench-stream-")
    _, _, ref, d = registry_and_daemon(work)
    try:
        d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        b = Bench(d, ref)
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="sink"), image=pb.ImageSpec(image=ref),
                               log_path="sink.log")
        c.command.extend(SINK)
        cid = b.stub.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=b.pod_id, config=c,
                                                               sandbox_config=b.pod_config), timeout=T).container_id
        b.start(cid)

        def listening():
            with open("/proc/net/tcp") as f4, open("/proc/net/tcp6") as f6:
                return ":238C " in f4.read() + f6.read()
        wait_until(listening, 20, what="the sink to listen")

        def go(*args):
            r = subprocess.run([binary, "-socket", d.socket, "-timeout", "600s", *args], capture_output=True,
                               text=True, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"exec-go {args}: {r.returncode}: {r.stdout}{r.stderr}")
            return json.loads(r.stdout)

        req = json.dumps({"container_id": cid, "cmd": ["echo", "x"], "stdout": True, "stderr": True})
        go("bench-exec", "3", req)  # warm-up
        first, total, sync = [], [], []
        for _ in range(ROUNDS):
            r = go("bench-exec", str(RUNS // ROUNDS), req)
            first += r["first_byte_ms"]
            total += r["total_ms"]
            sync += go("bench-execsync", str(RUNS // ROUNDS), req)["ms"]

        n = PF_MIB * 1024 * 1024
        tunnel, direct = [], []
        for _ in range(PF_ROUNDS):
            tunnel.append(go("bench-pf", b.pod_id, "9100", str(n))["seconds"])
            direct.append(go("bench-tcp", "127.0.0.1:9100", str(n))["seconds"])
        b.stop(cid)
        b.remove(cid)
    finally:
        d.stop()

    print()
    print(f"Exec and PortForward through the streaming server (exec-go: grpc-go + docker/spdystream; "
          f"{os.cpu_count()} CPUs, {os.uname().release}; {len(first)} runs per row after 3 warm-up, in {ROUNDS} rounds)")
    print()
    print(f"{'metric':<52} {'p50':>10} {'p90':>10} {'max':>10}")
    print(f"{'-' * 52} {'-' * 10} {'-' * 10} {'-' * 10}")
    for label, v in (("Exec echo x: call to first stdout byte", first), ("Exec echo x: call to the v4 Status", total),
                     ("ExecSync echo x (gRPC round trip)", sync)):
        print(f"{label:<52} {pct(v, 50):>7.1f} ms {pct(v, 90):>7.1f} ms {max(v):>7.1f} ms")
    print()
    print(f"Exec first byte p50 / ExecSync p50: {pct(first, 50) / pct(sync, 50):.2f}")
    print()
    mb = n / 1e6
    print(f"{'PortForward ' + str(PF_MIB) + ' MiB to a sink in the pod':<52} {'best':>10} {'median':>10}")
    print(f"{'-' * 52} {'-' * 10} {'-' * 10}")
    for label, v in (("through the tunnel (SPDY, the daemon)", tunnel), ("direct TCP to the same listener", direct)):
        print(f"{label:<52} {mb / min(v):>5.0f} MB/s {mb / pct(v, 50):>5.0f} MB/s")
    print()
    print(f"tunnel / direct (median throughput): {pct(direct, 50) / pct(tunnel, 50):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
