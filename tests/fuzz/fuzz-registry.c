/* Fuzzes what a registry sends a pull: manifests, indexes (platform selection), image configs,
 * token replies, WWW-Authenticate challenges and layer blobs, through image_pull() itself against a
 * registry served from the input on 127.0.0.1 (no other host is ever contacted).
 *
 * The input is a list of responses separated by "\n--\n". Each is
 *
 *     <status> [<content type>]\n
 *     <WWW-Authenticate value, or nothing>\n
 *     <body>
 *
 * Blob requests (…/blobs/sha256:X) get the response whose body hashes to X, 404 without one; every
 * other request (manifests, the token endpoint) the next response in order. In response i, "@N@"
 * (a digit N > i) stands for "sha256:" and the hex SHA-256 of response N's body, and "@R@" for
 * this registry's base URL: digests and realms a fuzzer could not guess otherwise. With
 * $FUZZ_VERBOSE set, each pull's outcome goes to stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "child.h"
#include "fd-util.h"
#include "fuzz.h"
#include "image-pull.h"
#include "image-ref.h"
#include "image-store.h"
#include "log.h"

#define MAX_RESPONSES 10
#define MAX_BYTES (256 * 1024)
#define REPO "fuzz/app"

typedef struct Response {
        int status;
        char *content_type, *www_auth;
        char *body;
        size_t body_len;
        char digest[7 + 64 + 1];
} Response;

typedef struct Conn {
        ev_io io;
        char req[8192];
        size_t req_len;
        char *out;
        size_t out_len, out_off;
} Conn;

static struct ev_loop *loop;
static int listen_fd = -1;
static ev_io accept_io;
static char base_url[64]; /* "http://127.0.0.1:<port>" */
static char host[32];     /* "127.0.0.1:<port>" */
static char root[64];

static Response responses[MAX_RESPONSES];
static size_t n_responses, next_response;
static unsigned open_conns;

static bool pull_ended;
static int pull_error;
static char *pull_message;
static Image *pull_image;

static void sha256_digest(const void *data, size_t len, char out[static 7 + 64 + 1]) {
        unsigned char md[32];
        unsigned n = 0;

        if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL))
                abort();
        strcpy(out, "sha256:");
        for (unsigned i = 0; i < 32; i++)
                sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

/* s[0..len) with the placeholders response i may use replaced; a new NUL-terminated string. */
static char *substitute(const char *s, size_t len, size_t i, size_t *ret_len) {
        size_t cap = len + 1, n = 0;
        char *o = malloc(cap);

        if (!o)
                abort();
        for (size_t k = 0; k < len;) {
                const char *with = NULL;
                if (k + 2 < len && s[k] == '@' && s[k + 2] == '@') {
                        if (s[k + 1] == 'R')
                                with = base_url;
                        else if (s[k + 1] >= '0' && s[k + 1] <= '9' && (size_t) (s[k + 1] - '0') > i &&
                                 (size_t) (s[k + 1] - '0') < n_responses)
                                with = responses[s[k + 1] - '0'].digest;
                }
                size_t add = with ? strlen(with) : 1;
                if (n + add + 1 > cap) {
                        cap = (n + add + 1) * 2;
                        o = realloc(o, cap);
                        if (!o)
                                abort();
                }
                if (with) {
                        memcpy(o + n, with, add);
                        k += 3;
                } else
                        o[n] = s[k++];
                n += add;
        }
        o[n] = '\0';
        if (ret_len)
                *ret_len = n;
        return o;
}

/* A header value as we will send it: one line, and any URL in it pointing here only. */
static bool header_safe(const char *v) {
        if (strpbrk(v, "\r\n@\\"))
                return false;
        for (const char *p = v; (p = strstr(p, "://")); p += 3)
                if (strncmp(p + 3, host, strlen(host)) != 0)
                        return false;
        return true;
}

static void responses_free(void) {
        for (size_t i = 0; i < n_responses; i++) {
                free(responses[i].content_type);
                free(responses[i].www_auth);
                free(responses[i].body);
        }
        memset(responses, 0, sizeof responses);
        n_responses = next_response = 0;
}

/* Splits and resolves the input; false for one we do not serve (a header that could point away). */
static bool responses_parse(const char *data, size_t size) {
        const char *pieces[MAX_RESPONSES];
        size_t lens[MAX_RESPONSES];

        for (const char *p = data, *end = data + size; n_responses < MAX_RESPONSES;) {
                const char *sep = memmem(p, (size_t) (end - p), "\n--\n", 4);
                pieces[n_responses] = p;
                lens[n_responses++] = sep ? (size_t) (sep - p) : (size_t) (end - p);
                if (!sep)
                        break;
                p = sep + 4;
        }
        /* From the last: a response's placeholders name later ones only. */
        for (size_t i = n_responses; i-- > 0;) {
                const char *p = pieces[i], *end = p + lens[i], *nl = memchr(p, '\n', lens[i]);
                const char *l1_end = nl ?: end, *l2 = nl ? nl + 1 : end;
                const char *nl2 = memchr(l2, '\n', (size_t) (end - l2)), *l2_end = nl2 ?: end, *body = nl2 ? nl2 + 1 : end;
                Response *r = &responses[i];
                char *line1 = substitute(p, (size_t) (l1_end - p), i, NULL), *ct;

                r->status = (int) strtol(line1, &ct, 10);
                if (r->status < 100 || r->status > 599)
                        r->status = 200;
                ct += strspn(ct, " ");
                r->content_type = ct[0] ? strdup(ct) : NULL;
                free(line1);
                r->www_auth = substitute(l2, (size_t) (l2_end - l2), i, NULL);
                r->body = substitute(body, (size_t) (end - body), i, &r->body_len);
                if ((r->content_type && !header_safe(r->content_type)) || !header_safe(r->www_auth))
                        return false;
                sha256_digest(r->body, r->body_len, r->digest);
        }
        return true;
}

static const Response *route(const char *path) {
        const char *blobs = "/v2/" REPO "/blobs/";

        if (strncmp(path, blobs, strlen(blobs)) == 0) {
                for (size_t i = 0; i < n_responses; i++)
                        if (strcmp(responses[i].digest, path + strlen(blobs)) == 0)
                                return &responses[i];
                return NULL;
        }
        return next_response < n_responses ? &responses[next_response++] : NULL;
}

static void conn_free(Conn *c) {
        ev_io_stop(loop, &c->io);
        close(c->io.fd);
        free(c->out);
        free(c);
        open_conns--;
}

static void conn_write(struct ev_loop *l, ev_io *w, int revents) {
        Conn *c = (Conn *) w;

        (void) l;
        (void) revents;
        while (c->out_off < c->out_len) {
                ssize_t k = write(w->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (k < 0 && errno == EAGAIN)
                        return;
                if (k <= 0) {
                        conn_free(c);
                        return;
                }
                c->out_off += (size_t) k;
        }
        conn_free(c);
}

static void conn_respond(Conn *c) {
        char path[4096] = "";
        const Response *r;
        FILE *f;

        sscanf(c->req, "GET %4095s ", path);
        r = route(path);
        f = open_memstream(&c->out, &c->out_len);
        if (!f)
                abort();
        if (!r)
                fputs("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", f);
        else {
                fprintf(f, "HTTP/1.1 %d Fuzz\r\nContent-Length: %zu\r\nConnection: close\r\n", r->status, r->body_len);
                if (r->content_type)
                        fprintf(f, "Content-Type: %s\r\n", r->content_type);
                if (r->www_auth[0])
                        fprintf(f, "WWW-Authenticate: %s\r\n", r->www_auth);
                fputs("\r\n", f);
                fwrite(r->body, 1, r->body_len, f);
        }
        fclose(f);
        ev_io_stop(loop, &c->io);
        ev_io_init(&c->io, conn_write, c->io.fd, EV_WRITE);
        ev_io_start(loop, &c->io);
}

static void conn_read(struct ev_loop *l, ev_io *w, int revents) {
        Conn *c = (Conn *) w;
        ssize_t k;

        (void) l;
        (void) revents;
        k = read(w->fd, c->req + c->req_len, sizeof c->req - 1 - c->req_len);
        if (k < 0 && errno == EAGAIN)
                return;
        if (k <= 0) {
                conn_free(c);
                return;
        }
        c->req_len += (size_t) k;
        c->req[c->req_len] = '\0';
        if (strstr(c->req, "\r\n\r\n") || c->req_len == sizeof c->req - 1)
                conn_respond(c);
}

static void on_accept(struct ev_loop *l, ev_io *w, int revents) {
        (void) l;
        (void) w;
        (void) revents;
        for (;;) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        return;
                Conn *c = calloc(1, sizeof *c);
                if (!c)
                        abort();
                open_conns++;
                ev_io_init(&c->io, conn_read, fd, EV_READ);
                ev_io_start(loop, &c->io);
        }
}

static void cleanup(void) {
        if (root[0])
                (void) rm_rf(root);
}

static void setup(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;

        log_set_max_level(LOG_CRIT); /* the pulls' failures are the point, not news */
        loop = ev_loop_new(EVBACKEND_EPOLL); /* not the default loop: its SIGCHLD watcher would reap the unpack children */
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *) &a, sizeof a) < 0 || listen(listen_fd, 64) < 0 ||
            getsockname(listen_fd, (struct sockaddr *) &a, &len) < 0)
                abort();
        snprintf(host, sizeof host, "127.0.0.1:%u", ntohs(a.sin_port));
        snprintf(base_url, sizeof base_url, "http://%s", host);
        ev_io_init(&accept_io, on_accept, listen_fd, EV_READ);
        ev_io_start(loop, &accept_io);
        snprintf(root, sizeof root, "/tmp/rktlet-fuzz-registry.%d", (int) getpid());
        atexit(cleanup);
}

static void pull_done(const Error *error, Image *img, void *userdata) {
        (void) userdata;
        pull_ended = true;
        pull_error = error_to_errno(error);
        pull_message = error_is_set(error) && error->message ? strdup(error->message) : NULL;
        pull_image = img;
}

static void deadline(struct ev_loop *l, ev_timer *w, int revents) {
        (void) l;
        (void) w;
        (void) revents;
        /* Every request here is answered at once: a pull that is still going hangs. */
        fprintf(stderr, "the pull did not end within 10s\n");
        abort();
}

/* What a pull that succeeded must have recorded. */
static void check_image(ImageStore *s, const Image *img) {
        char ref[128];

        if (!img || !digest_valid(img->id) || img->n_layers == 0 || !img->repo_digests || !img->repo_digests[0])
                abort();
        for (size_t i = 0; i < img->n_layers; i++)
                if (!digest_valid(img->layers[i].digest) || !digest_valid(img->layers[i].diff_id) ||
                    !digest_valid(img->layers[i].chain_id) || !image_store_has_layer(s, img->layers[i].chain_id))
                        abort();
        snprintf(ref, sizeof ref, "%s/" REPO ":v1", host);
        if (image_store_find(s, ref) != img || image_store_find(s, img->id) != img)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ImageStore *store = NULL;
        Puller *puller = NULL;
        PullWaiter *w = NULL;
        const char *error = NULL;
        char image[128];
        ev_timer timer;

        if (listen_fd < 0)
                setup();
        if (size > MAX_BYTES)
                return 0;
        if (!responses_parse((const char *) data, size))
                goto out;
        pull_ended = false;
        pull_image = NULL;
        if (image_store_new(loop, root, &store) < 0 || puller_new(loop, store, &(PullRegistries) { .insecure = host }, NULL, &puller) < 0)
                abort();
        snprintf(image, sizeof image, "%s/" REPO ":v1", host);
        PullAuth auth = { .username = "fuzz", .password = "secret" };
        if (image_pull(puller, image, &auth, pull_done, NULL, &w, &error) < 0)
                abort();

        ev_timer_init(&timer, deadline, 10.0, 0.);
        ev_timer_start(loop, &timer);
        while (!pull_ended)
                ev_run(loop, EVRUN_ONCE);
        if (pull_error < 0 ? !pull_message || !pull_message[0] || pull_image : !pull_image)
                abort();
        /* Layers unpack in children, out of libFuzzer's sight: their sanitizers' reports come back
         * as the pull's message (the child's first line of stderr). */
        if (pull_error < 0 && (strstr(pull_message, "Sanitizer") || strstr(pull_message, "runtime error")))
                abort();
        if (pull_error >= 0)
                check_image(store, pull_image);
        if (getenv("FUZZ_VERBOSE")) /* what a seed reaches, for whoever writes one */
                fprintf(stderr, "pull: %s\n", pull_error < 0 ? pull_message : pull_image->id);
        puller_free(puller);
        /* The store's clean-up children and our connections end before the next input. */
        while (child_count() > 0 || open_conns > 0)
                ev_run(loop, EVRUN_ONCE);
        ev_timer_stop(loop, &timer);
        image_store_free(store);
        free(pull_message);
        pull_message = NULL;
out:
        responses_free();
        (void) rm_rf(root);
        return 0;
}
