"""GetContainerEvents and the streamed lists (StreamPodSandboxes, StreamContainers, StreamImages).

Events: every subscriber gets CONTAINER_CREATED/STARTED/STOPPED/DELETED for each container, with the
pod's status and the statuses of its containers, in the order they happened; a subscriber that
leaves more than [CRI] EventQueueLength= events unread is ended with RESOURCE_EXHAUSTED; a daemon that
stops ends every stream with UNAVAILABLE, and the events it learns at its next start (an exit while
it was down) reach the subscribers of its first minute.

Lists: the same items and filters as the List twins, in messages of at most [CRI] StreamChunkItems=
items, each one made only once the client's flow-control window took the last."""

import os
import signal
import threading
import time

import grpc
import h2.settings
import pytest

from rktlet_test import RawH2, grpc_frame, grpc_unframe, wait_until
from test_containers import (SERVICE, T, cd, cleanup, create, ctr_config, ctr_registry, main_pid, make_pod,  # noqa: F401
                             no_container_leftovers, remove, run, stop, wait_state)
from test_containers import pytestmark  # noqa: F401
from test_images import pull
from test_pods import cni, no_leftovers  # noqa: F401

EVENTS = "/runtime.v1.RuntimeService/GetContainerEvents"


def daemon_with(make_daemon, cd, pb, name, cri):
    """A daemon like cd's (its registry and CNI), with a [CRI] section, the busybox image pulled."""
    kwargs = dict(cd.kwargs, config=cd.kwargs["config"] + "\n[CRI]\n" + cri + "\n")
    d = make_daemon(name, **kwargs)
    d.kwargs = kwargs
    d.ref = cd.ref
    pull(d, pb, cd.ref())
    return d


class Subscriber:
    """A GetContainerEvents stream read by a thread into .events, subscribed once this returns."""

    def __init__(self, d, pb, channel=None):
        self.call = d.runtime(channel).GetContainerEvents(pb.GetEventsRequest(), timeout=300)
        self.call.initial_metadata()  # the daemon sends its headers once the subscription is in place
        self.events = []
        self.error = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for ev in self.call:
                self.events.append(ev)
        except grpc.RpcError as e:
            self.error = e

    def of(self, cid):
        return [e for e in self.events if e.container_id == cid]

    def wait(self, cid, n, timeout=30):
        return wait_until(lambda: len(self.of(cid)) >= n and self.of(cid), timeout,
                          what=f"{n} events of container {cid[:12]} (have {[e.container_event_type for e in self.of(cid)]})")

    def close(self):
        self.call.cancel()
        self.thread.join(10)


def status_of(ev, cid):
    return {s.id: s for s in ev.containers_statuses}.get(cid)


# --- GetContainerEvents ------------------------------------------------------------------------------

def test_events_of_a_container_life_reach_every_subscriber(cd, pb):
    d = cd
    subs = [Subscriber(d, pb), Subscriber(d, pb)]
    try:
        pod = make_pod(d, pb, name="events")
        other = run(d, pb, pod, ctr_config(pb, "other", d.ref(), command=SERVICE))
        began = time.time_ns()
        cid = create(d, pb, pod, ctr_config(pb, "quitter", d.ref(), command=["sh", "-c", "sleep 1; exit 3"]))
        d.runtime().StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
        wait_state(d, pb, cid, pb.CONTAINER_EXITED)
        remove(d, pb, cid)
        ended = time.time_ns()
        want = [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT, pb.CONTAINER_STOPPED_EVENT,
                pb.CONTAINER_DELETED_EVENT]
        for s in subs:
            evs = s.wait(cid, 4)
            assert [e.container_event_type for e in evs] == want
            times = [e.created_at for e in evs]
            assert times == sorted(times) and began <= times[0] and times[-1] <= ended
            for e in evs:
                # The pod's status as PodSandboxStatus has it; the pod's containers as ContainerStatus.
                assert e.pod_sandbox_status.id == pod.id
                assert e.pod_sandbox_status.metadata.name == "events"
                assert e.pod_sandbox_status.state == pb.SANDBOX_READY
                assert status_of(e, other).state == pb.CONTAINER_RUNNING
            created, started, stopped, deleted = evs
            assert status_of(created, cid).state == pb.CONTAINER_CREATED
            assert status_of(started, cid).state == pb.CONTAINER_RUNNING
            assert status_of(started, cid).started_at > 0
            st = status_of(stopped, cid)
            assert st.state == pb.CONTAINER_EXITED and st.exit_code == 3 and st.reason == "Error"
            assert st.finished_at >= st.started_at
            assert status_of(deleted, cid) is None
            assert s.error is None
        want_status = d.runtime().ContainerStatus(pb.ContainerStatusRequest(container_id=other), timeout=10).status
        assert status_of(subs[0].of(cid)[-1], other) == want_status
        stop(d, pb, other, timeout=5)
        for s in subs:
            assert [e.container_event_type for e in s.wait(other, 3)][-1] == pb.CONTAINER_STOPPED_EVENT
    finally:
        for s in subs:
            s.close()


def raw_subscriber(d, window=0):
    """A raw HTTP/2 GetContainerEvents subscriber whose stream window is `window` bytes: it takes
    nothing past it. Returns (client, stream id) once the response headers came."""
    h = RawH2(d.socket)
    h.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    h.flush()
    sid = h.request(EVENTS, grpc_frame(b""))
    wait_until(lambda: h.pump() or h.responses[sid].headers or h.responses[sid].ended, 10,
               interval=0, what="the events stream's headers")
    assert h.responses[sid].headers.get(":status") == "200", h.responses[sid].__dict__
    return h, sid


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS:")))


def test_a_subscriber_that_does_not_read_is_ended_and_the_others_go_on(cd, make_daemon, pb):
    d = daemon_with(make_daemon, cd, pb, "queue", "EventQueueLength=6")
    try:
        good = Subscriber(d, pb)
        h, sid = raw_subscriber(d)
        pod = make_pod(d, pb, name="unread")
        rss0 = rss_kib(d.pid)
        cids = []
        for i in range(3):  # 12 events: twice what the stuck subscriber may leave unread
            cid = create(d, pb, pod, ctr_config(pb, f"c{i}", d.ref(), command=["true"]))
            d.runtime().StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
            wait_state(d, pb, cid, pb.CONTAINER_EXITED)
            remove(d, pb, cid)
            cids.append(cid)
        r = h.response(sid)  # its trailers came although its window never opened
        assert r.data == b""
        assert r.grpc_status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], r.__dict__
        assert "unread" in r.grpc_message and "6" in r.grpc_message
        assert "a subscriber left 6 events" in d.log()
        for cid in cids:
            assert [e.container_event_type for e in good.wait(cid, 4)] == [
                pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT, pb.CONTAINER_STOPPED_EVENT,
                pb.CONTAINER_DELETED_EVENT]
        assert good.error is None
        assert rss_kib(d.pid) - rss0 < 32 * 1024
        # A new stuck subscriber on the same connection meets the same end; the daemon serves on.
        sid2 = h.request(EVENTS, grpc_frame(b""))
        for i in range(4):  # CREATED and DELETED each: 8 events
            remove(d, pb, create(d, pb, pod, ctr_config(pb, "late", d.ref(), command=["true"], attempt=i)))
        assert h.response(sid2).grpc_status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        h.close()
        good.close()
    finally:
        cleanup(d, pb)


def test_events_across_a_daemon_restart(cd, make_daemon, pb):
    """The daemon stops: the streams end with UNAVAILABLE (clients subscribe again). A container
    that exits while it is down: the restarted daemon learns it from systemd at start and its first
    subscribers get the STOPPED event."""
    d = cd
    pod = make_pod(d, pb, name="restart-ev")
    quitter = run(d, pb, pod, ctr_config(pb, "quitter", d.ref(), command=["sh", "-c", "sleep 3; exit 7"]))
    wait_state(d, pb, quitter, pb.CONTAINER_RUNNING)
    pid = main_pid(quitter)
    ch = grpc.insecure_channel("unix://" + d.socket, options=[("grpc.use_local_subchannel_pool", 1)])
    sub = Subscriber(d, pb, ch)
    d.send_signal(signal.SIGTERM)
    sub.thread.join(10)
    assert sub.error is not None and sub.error.code() == grpc.StatusCode.UNAVAILABLE, sub.error
    assert "stopping" in sub.error.details()
    ch.close()
    assert d.stop() == 0
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 20, what="the quitter to exit")

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        sub2 = Subscriber(d2, pb)
        evs = sub2.wait(quitter, 1)
        assert [e.container_event_type for e in evs] == [pb.CONTAINER_STOPPED_EVENT]
        st = status_of(evs[0], quitter)
        assert st.state == pb.CONTAINER_EXITED and st.exit_code == 7, st
        assert evs[0].pod_sandbox_status.id == pod.id
        remove(d2, pb, quitter)
        assert [e.container_event_type for e in sub2.wait(quitter, 2)][-1] == pb.CONTAINER_DELETED_EVENT
        sub2.close()
    finally:
        cleanup(d2, pb)


# --- Stream* -----------------------------------------------------------------------------------------

def streamed(call):
    return [list(m) for m in call]


def test_stream_lists_are_chunked_and_filtered_as_the_lists(cd, make_daemon, pb):
    d = daemon_with(make_daemon, cd, pb, "chunks", "StreamChunkItems=2")
    rt = d.runtime()
    try:
        pods = [make_pod(d, pb, name=f"sp{i}") for i in range(3)]
        cids = [create(d, pb, pods[i % 2], ctr_config(pb, f"c{i}", d.ref(), command=["true"], labels={"n": str(i % 2)}))
                for i in range(5)]
        run_id = cids[0]
        d.runtime().StartContainer(pb.StartContainerRequest(container_id=run_id), timeout=T)
        wait_state(d, pb, run_id, pb.CONTAINER_EXITED)

        def containers(**f):
            flt = pb.ContainerFilter(**f) if f else None
            want = rt.ListContainers(pb.ListContainersRequest(filter=flt), timeout=10).containers
            msgs = [m.containers for m in rt.StreamContainers(pb.StreamContainersRequest(filter=flt), timeout=30)]
            assert all(1 <= len(m) <= 2 for m in msgs), [len(m) for m in msgs]
            got = [c for m in msgs for c in m]
            assert sorted(got, key=lambda c: c.id) == sorted(want, key=lambda c: c.id)
            return msgs, got

        msgs, got = containers()
        assert len(msgs) == 3 and sorted(c.id for c in got) == sorted(cids)
        assert len(containers(pod_sandbox_id=pods[1].id)[1]) == 2
        assert len(containers(pod_sandbox_id=pods[2].id)[1]) == 0
        assert [c.id for c in containers(id=cids[3][:10])[1]] == [cids[3]]
        assert [c.id for c in containers(state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED))[1]] == [run_id]
        assert len(containers(label_selector={"n": "1"})[1]) == 2

        def sandboxes(**f):
            flt = pb.PodSandboxFilter(**f) if f else None
            want = rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=flt), timeout=10).items
            msgs = [m.pod_sandboxes for m in rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(filter=flt), timeout=30)]
            assert all(1 <= len(m) <= 2 for m in msgs)
            got = [p for m in msgs for p in m]
            assert sorted(got, key=lambda p: p.id) == sorted(want, key=lambda p: p.id)
            return msgs, got

        msgs, got = sandboxes()
        assert len(msgs) == 2 and sorted(p.id for p in got) == sorted(p.id for p in pods)
        assert [p.id for p in sandboxes(label_selector={"app": "sp2"})[1]] == [pods[2].id]
        assert [p.id for p in sandboxes(id=pods[1].id)[1]] == [pods[1].id]

        for name in ("entrypoint", "usr1", "app-user"):
            pull(d, pb, cd.ref(name))
        ims = d.images()
        want = ims.ListImages(pb.ListImagesRequest(), timeout=10).images
        msgs = [m.images for m in ims.StreamImages(pb.StreamImagesRequest(), timeout=30)]
        assert [len(m) for m in msgs] == [2, 2]
        assert sorted((i for m in msgs for i in m), key=lambda i: i.id) == sorted(want, key=lambda i: i.id)
        one = pb.ImageFilter(image=pb.ImageSpec(image=cd.ref("usr1")))
        assert [i.id for m in ims.StreamImages(pb.StreamImagesRequest(filter=one), timeout=30) for i in m.images] == \
            [i.id for i in ims.ListImages(pb.ListImagesRequest(filter=one), timeout=10).images]
        # Nothing matches: the stream ends OK without a message.
        assert streamed(rt.StreamContainers(pb.StreamContainersRequest(
            filter=pb.ContainerFilter(id="0000000000")), timeout=10)) == []
    finally:
        cleanup(d, pb)


def test_stream_waits_for_the_reader_and_makes_each_message_then(cd, make_daemon, pb):
    """A reader whose window is shut gets nothing past the first message, made at once; what is
    removed before it reads is not in the messages made after."""
    d = daemon_with(make_daemon, cd, pb, "slow", "StreamChunkItems=1")
    rt = d.runtime()
    try:
        pod = make_pod(d, pb, name="slow")
        cids = [create(d, pb, pod, ctr_config(pb, f"c{i}", d.ref(), command=["true"])) for i in range(4)]
        order = [c.id for m in rt.StreamContainers(pb.StreamContainersRequest(), timeout=30) for c in m.containers]
        assert sorted(order) == sorted(cids)
        h = RawH2(d.socket)
        h.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        h.flush()
        sid = h.request("/runtime.v1.RuntimeService/StreamContainers", grpc_frame(b""))
        wait_until(lambda: h.pump() or h.responses[sid].headers, 10, interval=0, what="the response headers")
        # The reader takes nothing; the daemon serves on meanwhile. The last one goes away.
        remove(d, pb, order[-1])
        h.sock.settimeout(0.3)
        try:
            h.pump()
        except TimeoutError:
            pass
        assert h.responses[sid].data == b"" and not h.responses[sid].ended
        h.sock.settimeout(10)
        h.conn.increment_flow_control_window(1 << 20, stream_id=sid)
        h.flush()
        r = h.response(sid)
        assert r.grpc_status == 0, r.__dict__
        msgs = [pb.StreamContainersResponse.FromString(m) for m in grpc_unframe(r.data)]
        assert [[c.id for c in m.containers] for m in msgs] == [[c] for c in order[:-1]]
        # A reader that goes away half way: the stream's work ends with it, the daemon serves on.
        sid = h.request("/runtime.v1.RuntimeService/StreamContainers", grpc_frame(b""))
        h.conn.increment_flow_control_window(1, stream_id=sid)
        h.flush()
        wait_until(lambda: h.pump() or h.responses[sid].headers, 10, interval=0, what="the response headers")
        h.conn.reset_stream(sid)
        h.flush()
        assert rt.Version(pb.VersionRequest(), timeout=10).runtime_name == "rktlet"
        h.close()
    finally:
        cleanup(d, pb)
