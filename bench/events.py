"""GetContainerEvents benchmark, run inside tests/integration/run-harness by bench/run-events.

A docker-registry on loopback serves the full busybox image of the integration tests; rktlet pulls
it and runs one host-network pod (bench/containers.py's). One client subscribes to
GetContainerEvents; then BENCH_EVENTS (default 30) containers run `sh -c 'sleep 0.2'`, one after the
other, after 2 warm-up ones. For each, the exit-to-event latency is the time the client received the
CONTAINER_STOPPED_EVENT minus the container's finished_at in it (systemd's ExecMainExitTimestamp,
the exit as systemd saw it), both CLOCK_REALTIME on the same machine. It also reports the time from
the STARTED to the STOPPED event, and that every container had its four events in order."""

import os
import queue
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import containers  # noqa: E402
from containers import Bench, pct, registry_and_daemon  # noqa: E402
from rktlet_test import stubs  # noqa: E402

pb, _ = stubs()
N = int(os.environ.get("BENCH_EVENTS", "30"))
WARMUP = 2
T = 60
containers.COMMAND[:] = ["sh", "-c", "sleep 0.2"]  # what Bench's containers run


def main():
    work = tempfile.mkdtemp(prefix="bench-events-")
    r, image, ref, d = registry_and_daemon(work)
    problems = []
    latencies, runs = [], []
    try:
        d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        b = Bench(d, ref)
        call = d.runtime().GetContainerEvents(pb.GetEventsRequest(), timeout=600)
        call.initial_metadata()
        events = queue.Queue()

        def read():
            try:
                for ev in call:
                    events.put((time.time_ns(), ev))
            except Exception as e:  # noqa: BLE001 (the cancel at the end)
                events.put((time.time_ns(), e))
        threading.Thread(target=read, daemon=True).start()

        for i in range(N + WARMUP):
            cid, _, _ = b.run(f"e{i}")
            got = {}
            while pb.CONTAINER_STOPPED_EVENT not in got:
                t, ev = events.get(timeout=T)
                if isinstance(ev, Exception):
                    raise ev
                if ev.container_id == cid:
                    got[ev.container_event_type] = (t, ev)
            t_stop, ev = got[pb.CONTAINER_STOPPED_EVENT]
            st = {s.id: s for s in ev.containers_statuses}[cid]
            b.remove(cid)
            while pb.CONTAINER_DELETED_EVENT not in got:
                t, e = events.get(timeout=T)
                if not isinstance(e, Exception) and e.container_id == cid:
                    got[e.container_event_type] = (t, e)
            if sorted(got) != [0, 1, 2, 3]:
                problems.append(f"container {i}: events {sorted(got)}")
            if i >= WARMUP:
                latencies.append((t_stop - st.finished_at) / 1e6)
                runs.append((t_stop - got[pb.CONTAINER_STARTED_EVENT][0]) / 1e6)
        call.cancel()
    except Exception as e:  # noqa: BLE001
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        exit_status = d.stop()
        r.stop()
    if exit_status != 0:
        problems.append(f"rktlet exited with {exit_status} on SIGTERM")

    print()
    print(f"rktlet GetContainerEvents ({os.cpu_count()} CPUs, {os.uname().release}, {N} containers after {WARMUP} warm-up)")
    print()
    print(f"{'metric':<46} {'min':>9} {'p50':>9} {'p90':>9} {'max':>9}")
    print(f"{'-' * 46} {'-' * 9} {'-' * 9} {'-' * 9} {'-' * 9}")
    for label, ms in (("exit (finished_at) to STOPPED event received", latencies),
                      ("STARTED event to STOPPED event (sleep 0.2)", runs)):
        if ms:
            print(f"{label:<46} {min(ms):7.2f}ms {pct(ms, 50):7.2f}ms {pct(ms, 90):7.2f}ms {max(ms):7.2f}ms")
    if latencies:
        print()
        print(f"exit-to-event p50 {pct(latencies, 50):.2f} ms (target < 50 ms)")
    if problems:
        print()
        print("PROBLEMS:")
        for p in problems:
            print("  -", p)
        sys.exit(1)


if __name__ == "__main__":
    main()
