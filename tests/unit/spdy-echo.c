/* An echo server over src/stream/spdy.c for tests/integration/test_spdy.py, where Go's spdystream
 * (the SPDY of client-go, kubelet and crictl) is the client.
 *
 *   spdy-echo SOCKET [RECORD]
 *
 * Listens on the unix socket SOCKET, prints "ready", accepts one connection and serves it: every
 * SYN_STREAM gets a SYN_REPLY, then a HEADERS frame with the stream's own headers; its DATA comes
 * back on the same stream, FIN after FIN. A RST_STREAM just ends the stream. At the start the server
 * sends a PING, and it opens one stream of its own (header x-from: server) with "hello from server"
 * and FIN, after the client's first stream; what comes back on it is printed. The peer's GOAWAY or
 * EOF ends the session, as does a peer that is gone when we write. RECORD, if given, gets every byte the client sent (a fuzz seed).
 *
 * Prints "ready", then at the end one line:
 *   streams=N bytes=M pongs=P closed=C resets=R server-stream='...' error=E
 * and exits 0 unless the session failed. Output is bounded: past 4 MiB queued, reading stops until
 * the client has taken some (the back-pressure the daemon will apply). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "spdy.h"

#define HIGH_WATER (4u * 1024 * 1024)

static unsigned n_streams, n_pongs, n_closed, n_resets;
static unsigned long long n_bytes;
static uint32_t server_stream;
static char server_reply[256];
static size_t server_reply_len;
static bool opened_own;

static int on_syn_stream(SpdySession *s, uint32_t id, uint32_t assoc, uint8_t prio, const SpdyHeader *h, size_t n,
                         bool fin, bool unidirectional, void *userdata) {
        int r;

        n_streams++;
        r = spdy_session_submit_syn_reply(s, id, NULL, 0, false);
        if (r < 0)
                return r;
        r = spdy_session_submit_headers(s, id, h, n, false);
        if (r < 0)
                return r;
        if (fin) {
                r = spdy_session_submit_data(s, id, NULL, 0, true);
                if (r < 0)
                        return r;
        }
        if (!opened_own) {
                const SpdyHeader mine[] = { { "x-from", 6, "server", 6 } };
                static const char hello[] = "hello from server";

                opened_own = true;
                r = spdy_session_submit_syn_stream(s, 0, 0, mine, 1, 0, &server_stream);
                if (r < 0)
                        return r;
                r = spdy_session_submit_data(s, server_stream, hello, strlen(hello), true);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int on_data(SpdySession *s, uint32_t id, const uint8_t *data, size_t len, bool fin, void *userdata) {
        if (id == server_stream) {
                size_t n = len < sizeof server_reply - 1 - server_reply_len ? len : sizeof server_reply - 1 - server_reply_len;
                memcpy(server_reply + server_reply_len, data, n);
                server_reply_len += n;
                return 0;
        }
        n_bytes += len;
        return spdy_session_submit_data(s, id, data, len, fin);
}

static int on_rst_stream(SpdySession *s, uint32_t id, uint32_t status, void *userdata) {
        n_resets++;
        return 0;
}

static int on_ping(SpdySession *s, uint32_t id, bool reply, void *userdata) {
        if (reply)
                n_pongs++;
        return 0;
}

static void on_stream_close(SpdySession *s, uint32_t id, uint32_t status, void *userdata) {
        n_closed++;
}

static int serve(int fd, FILE *record) {
        static const SpdyCallbacks cb = {
                .on_syn_stream = on_syn_stream,
                .on_data = on_data,
                .on_rst_stream = on_rst_stream,
                .on_ping = on_ping,
                .on_stream_close = on_stream_close,
        };
        SpdySession *s;
        static uint8_t buf[65536];
        bool eof = false;
        int r;

        r = spdy_session_new(&s, true, &cb, NULL, NULL);
        if (r < 0)
                return r;
        r = spdy_session_submit_ping(s, NULL);
        while (r >= 0) {
                struct pollfd p = { .fd = fd };
                bool want_read = !eof && spdy_session_want_read(s) && spdy_session_queued(s) < HIGH_WATER;

                if (want_read)
                        p.events |= POLLIN;
                if (spdy_session_want_write(s))
                        p.events |= POLLOUT;
                if (p.events == 0)
                        break; /* nothing to send, nothing more to read */
                if (poll(&p, 1, 30000) <= 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (p.revents & (POLLOUT | POLLERR)) {
                        const uint8_t *out;
                        size_t n = spdy_session_peek_output(s, &out);
                        ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
                        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
                                break; /* the peer is gone: the end, not a failure */
                        if (w < 0 && errno != EAGAIN && errno != EINTR) {
                                r = -errno;
                                break;
                        }
                        if (w > 0)
                                spdy_session_consume_output(s, (size_t) w);
                }
                if (want_read && (p.revents & (POLLIN | POLLHUP))) {
                        ssize_t n = read(fd, buf, sizeof buf);
                        if (n < 0 && errno != EAGAIN && errno != EINTR) {
                                r = -errno;
                                break;
                        }
                        if (n == 0)
                                eof = true;
                        if (n > 0) {
                                if (record)
                                        fwrite(buf, 1, (size_t) n, record);
                                r = spdy_session_recv(s, buf, (size_t) n);
                        }
                }
        }
        printf("streams=%u bytes=%llu pongs=%u closed=%u resets=%u server-stream='%s' error=%d\n", n_streams,
               n_bytes, n_pongs, n_closed, n_resets, server_reply, r < 0 ? r : 0);
        spdy_session_free(s);
        return r < 0 ? r : 0;
}

int main(int argc, char **argv) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        FILE *record = NULL;
        int l, fd, r;

        if (argc < 2 || argc > 3 || strlen(argv[1]) >= sizeof sa.sun_path) {
                fprintf(stderr, "usage: spdy-echo SOCKET [RECORD]\n");
                return 2;
        }
        if (argc == 3) {
                record = fopen(argv[2], "we");
                if (!record) {
                        perror(argv[2]);
                        return 1;
                }
        }
        strcpy(sa.sun_path, argv[1]);
        l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l < 0 || bind(l, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(l, 1) < 0) {
                perror(argv[1]);
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        fd = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
                perror("accept");
                return 1;
        }
        r = serve(fd, record);
        if (record)
                fclose(record);
        close(fd);
        close(l);
        return r < 0 ? 1 : 0;
}
