/* Pulling images from OCI distribution (Docker registry v2) endpoints with libcurl's multi
 * interface on the daemon's loop: manifests and indexes, bearer and basic auth, mirrors,
 * digest-verified blobs, layers unpacked in children. Identical pulls in flight share one. */
#include "image-pull.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "build-config.h"
#include "buffer.h"
#include "child.h"
#include "curl-ev.h"
#include "fd-util.h"
#include "fileio.h"
#include "image-ref.h"
#include "image-unpack.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "quote.h"
#include "registry-host.h"
#include "strv.h"
#include "time-util.h"

#define MAX_MANIFEST (4 * 1024 * 1024)
#define MAX_CONFIG (8 * 1024 * 1024)
#define MAX_TOKEN (1024 * 1024)

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

typedef struct Pull Pull;

struct PullWaiter {
        Pull *pull;
        PullWaiter *next;
        PullDone done;
        void *userdata;
};

struct Puller {
        struct ev_loop *loop;
        ImageStore *store;
        CurlEv *curl;
        char **insecure;
        char **mirrors; /* "registry=m1|m2" */
        char **blocked;
        char *certs_dir, *auth_file;
        bool tls_backend_ok; /* libcurl's TLS is the OpenSSL we hand an SSL_CTX callback to */
        char *tls_backend;   /* libcurl's, for the message when not */
        PullLimits limits;
        Pull *pulls;
        PullObserve observe;
        void *observe_userdata;
        bool closing; /* puller_free(): what pulls leave is for the next start's collection */
};

typedef struct Req Req;
typedef void (*ReqDone)(Req *q, int error, const char *message);

/* One HTTP GET with its auth retry; the body goes to memory or to a file with a running sha256. */
struct Req {
        Pull *pull;
        CURL *easy;
        struct curl_slist *headers;
        char *url;
        const char *accept;
        Buffer body;
        size_t max_body;
        int fd; /* >= 0: write the body here */
        EVP_MD_CTX *sha;
        uint64_t received, expected;
        int write_errno; /* writing the body to fd failed: ENOSPC, EDQUOT, EIO… */
        uint64_t last_progress_usec;
        long status;
        char *content_type, *www_auth; /* of the last response, read when it has finished */
        char errbuf[CURL_ERROR_SIZE];  /* libcurl's own words: "SSL certificate problem: …" */
        bool retried_auth;
        bool for_token;
        Req *token; /* the token request this one waits for: it goes with it */
        ReqDone done;
        void *userdata; /* the layer, the token's request or the manifest's reference */
        void (*free_userdata)(void *); /* userdata that is the request's own */
};

/* One layer's unpacking child. A pull that ends first lets go of it (pull = NULL): the child is
 * killed, and its partial directory goes once it has exited (before, it could still write there). */
typedef struct UnpackRun {
        Pull *pull;
        ImageStore *store;
        Child *child;
        char *tmp; /* layers/<hex>.tmp-<random> */
} UnpackRun;

typedef struct LayerDl {
        char *digest, *media_type;
        uint64_t size;
        char *tmp;
        Req *req;
        bool done;
} LayerDl;

struct Pull {
        Puller *p;
        Pull *next;
        char *key;
        ImageRef ref;
        char *name; /* normalized */
        PullWaiter *waiters;

        char *basic;  /* "user:pass" for Basic and for the token endpoint of the endpoint in use */
        char *bearer; /* the token in use */
        char *refresh_token;
        bool kubelet_auth;     /* basic and bearer came from kubelet: for every endpoint */
        char *auth_text;       /* otherwise the auth file, looked up for each endpoint's host */
        size_t auth_len;
        char **endpoints; /* base URLs, mirrors first */
        size_t endpoint;
        RegistryTls tls;  /* from the certs.d directory of the endpoint in use… */
        char *tls_name;   /* …named so under CertsDir=… */
        size_t tls_for;   /* …which is endpoints[tls_for - 1] (0: none read yet) */
        char *endpoint_errors;

        Req *req; /* manifest, config or token request in flight */
        Req *pending_after_token;
        char *manifest_digest;
        yajl_val manifest;
        char *config_digest;
        uint64_t config_size;
        char *config_text;
        LayerDl *layers;
        size_t n_layers, layers_left, unpack_index;
        char **chain_ids;
        UnpackRun *run;
        char *unpack_final;
        uint64_t unpacked; /* uncompressed bytes of the layers below the one being unpacked */
        bool failed;
        bool finished; /* pull_finish() is calling back the waiters */
        bool chains_held;
        uint64_t start_usec;
        uint64_t received; /* bytes from registries, every request together */
        unsigned busy; /* inside a function that goes on using pl after a callback may finish it */
        bool dead;
};

static void pull_fail(Pull *pl, int error, const char *format, ...) _printf_(3, 4);
static void pull_manifest(Pull *pl, const char *reference);

/* --- small helpers ------------------------------------------------------------------------------- */

/* "sha256:<64 hex digits>" of a finished SHA-256. */
static void format_digest(const unsigned char md[static 32], char out[static 7 + 64 + 1]) {
        strcpy(out, "sha256:");
        for (unsigned i = 0; i < 32; i++)
                sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

static char *sha256_hex(const void *data, size_t len) {
        unsigned char md[32];
        unsigned int n = 0;
        char *out = malloc(7 + 64 + 1);

        if (!out || !EVP_Digest(data, len, md, &n, EVP_sha256(), NULL)) {
                free(out);
                return NULL;
        }
        format_digest(md, out);
        return out;
}

static const char *host_arch(void) {
        static char arch[sizeof(((struct utsname *) NULL)->machine)];
        struct utsname u;

        if (arch[0])
                return arch;
        uname(&u);
        const char *a = strcmp(u.machine, "x86_64") == 0    ? "amd64"
                        : strcmp(u.machine, "aarch64") == 0 ? "arm64"
                        : strncmp(u.machine, "armv", 4) == 0 ? "arm"
                        : strcmp(u.machine, "i686") == 0    ? "386"
                                                            : u.machine;
        snprintf(arch, sizeof arch, "%s", a);
        return arch;
}

/* --- requests ------------------------------------------------------------------------------------ */

static void req_free(Req *q) {
        if (!q)
                return;
        req_free(q->token);
        if (q->free_userdata)
                q->free_userdata(q->userdata);
        if (q->easy) {
                curl_ev_remove(q->pull->p->curl, q->easy);
                curl_easy_cleanup(q->easy);
        }
        curl_slist_free_all(q->headers);
        buffer_free(&q->body);
        if (q->sha)
                EVP_MD_CTX_free(q->sha);
        safe_close(q->fd);
        free(q->url);
        free(q->content_type);
        free(q->www_auth);
        free(q);
}

static size_t req_write(char *data, size_t size, size_t n, void *userdata) {
        Req *q = userdata;
        size_t len = size * n;

        q->received += len;
        if (q->pull)
                q->pull->received += len;
        if (q->fd >= 0) {
                if (q->expected > 0 && q->received > q->expected)
                        return 0; /* more than the manifest said: stop */
                if (EVP_DigestUpdate(q->sha, data, len) != 1)
                        return 0;
                for (size_t off = 0; off < len;) {
                        ssize_t k = write(q->fd, data + off, len - off);
                        if (k < 0) {
                                q->write_errno = errno;
                                return 0;
                        }
                        off += (size_t) k;
                }
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (q->expected > 16 * 1024 * 1024 && now - q->last_progress_usec > 5000000) {
                        q->last_progress_usec = now;
                        log_info("pull %s: layer %s: %llu of %llu bytes", q->pull->name,
                                 ((LayerDl *) q->userdata)->digest, (unsigned long long) q->received,
                                 (unsigned long long) q->expected);
                }
                return len;
        }
        if (buffer_len(&q->body) + len > q->max_body)
                return 0;
        return buffer_append(&q->body, data, len) < 0 ? 0 : len;
}

/* The value of the last name: header of the transfer's last response (after redirects, and not
 * of a 1xx or a proxy's CONNECT reply), trailers included; NULL when it has none. */
static char *last_header(CURL *easy, const char *name) {
        const unsigned origin = CURLH_HEADER | CURLH_TRAILER;
        struct curl_header *h;

        if (curl_easy_header(easy, name, 0, origin, -1, &h) != CURLHE_OK)
                return NULL;
        if (h->amount > 1 && curl_easy_header(easy, name, h->amount - 1, origin, -1, &h) != CURLHE_OK)
                return NULL;
        return strdup(h->value);
}

/* What the finished transfer's response says that is used once the request is done: the manifest's
 * Content-Type, and the 401's challenge (read again by req_start() when it repeats the request). */
static void req_read_headers(Req *q) {
        free(q->content_type);
        q->content_type = last_header(q->easy, "Content-Type");
        if (q->content_type)
                q->content_type[strcspn(q->content_type, ";")] = '\0';
        free(q->www_auth);
        q->www_auth = last_header(q->easy, "WWW-Authenticate");
}

static void req_start(Req *q);

static char *auth_param(const char *challenge, const char *key) {
        size_t n = strlen(key);
        for (const char *p = challenge; (p = strstr(p, key));) {
                if ((p == challenge || p[-1] == ' ' || p[-1] == ',') && p[n] == '=') {
                        p += n + 1;
                        if (*p == '"') {
                                const char *e = strchr(p + 1, '"');
                                return e ? strndup(p + 1, (size_t) (e - p - 1)) : NULL;
                        }
                        return strndup(p, strcspn(p, ", "));
                }
                p += n;
        }
        return NULL;
}

static void token_done(Req *t, int error, const char *message);

/* 401 with a Bearer challenge: ask the token endpoint, then repeat the request. */
static bool req_handle_auth(Req *q) {
        Pull *pl = q->pull;
        char *realm = NULL, *service = NULL, *scope = NULL, *url = NULL, *e_service = NULL, *e_scope = NULL;
        CURL *esc;

        if (q->retried_auth || !q->www_auth)
                return false;
        q->retried_auth = true;
        if (strncasecmp(q->www_auth, "Basic", 5) == 0) {
                if (!pl->basic)
                        return false;
                req_start(q);
                return true;
        }
        if (strncasecmp(q->www_auth, "Bearer", 6) != 0)
                return false;
        realm = auth_param(q->www_auth, "realm");
        service = auth_param(q->www_auth, "service");
        scope = auth_param(q->www_auth, "scope");
        if (!realm || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0)) {
                free(realm);
                free(service);
                free(scope);
                return false;
        }
        esc = curl_easy_init();
        if (esc) {
                e_service = service ? curl_easy_escape(esc, service, 0) : NULL;
                if (scope)
                        e_scope = curl_easy_escape(esc, scope, 0);
                else {
                        char *s = NULL;
                        if (asprintf(&s, "repository:%s:pull", pl->ref.repository) >= 0)
                                e_scope = curl_easy_escape(esc, s, 0);
                        free(s);
                }
                if (asprintf(&url, "%s%s%s%s%s%s", realm, strchr(realm, '?') ? "&" : "?", service ? "service=" : "",
                             e_service ?: "", service ? "&scope=" : "scope=", e_scope ?: "") < 0)
                        url = NULL;
                curl_free(e_service);
                curl_free(e_scope);
                curl_easy_cleanup(esc);
        }
        free(realm);
        free(service);
        free(scope);
        if (!url)
                return false;

        Req *t = calloc(1, sizeof *t);
        if (!t) {
                free(url);
                return false;
        }
        t->pull = pl;
        t->fd = -1;
        t->url = url;
        t->max_body = MAX_TOKEN;
        t->for_token = true;
        t->retried_auth = true;
        t->done = token_done;
        t->userdata = q;
        free(pl->bearer);
        pl->bearer = NULL;
        q->token = t;
        req_start(t);
        return true;
}

static void token_done(Req *t, int error, const char *message) {
        Req *q = t->userdata;
        Pull *pl = t->pull;
        yajl_val v = NULL;
        const char *token;

        if (error >= 0) {
                buffer_append(&t->body, "", 1);
                v = json_parse((const char *) buffer_peek(&t->body), NULL, 0);
                token = json_get_str(v, "token") ?: json_get_str(v, "access_token");
                if (token)
                        pl->bearer = strdup(token);
        }
        yajl_tree_free(v);
        q->token = NULL;
        req_free(t);
        if (!pl->bearer) {
                /* Let the original request fail with its 401. */
                q->done(q, -ENOKEY, error < 0 ? message : "unauthorized: the token endpoint gave no token");
                return;
        }
        req_start(q);
}

static void req_finished(CURL *easy, CURLcode result, void *userdata) {
        Req *q = userdata;
        char message[512];

        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &q->status);
        req_read_headers(q);
        if (result != CURLE_OK) {
                if (result == CURLE_WRITE_ERROR && q->write_errno > 0) {
                        /* The store's file system, not the network: ENOSPC is RESOURCE_EXHAUSTED. */
                        snprintf(message, sizeof message, "cannot write the download to the image store: %s",
                                 strerror(q->write_errno));
                        q->done(q, q->write_errno == ENOSPC || q->write_errno == EDQUOT ? -ENOSPC : -EIO, message);
                        return;
                }
                if (result == CURLE_WRITE_ERROR && q->fd < 0 && buffer_len(&q->body) >= q->max_body / 2)
                        snprintf(message, sizeof message, "response too large");
                else if (result == CURLE_WRITE_ERROR && q->expected > 0 && q->received > q->expected)
                        snprintf(message, sizeof message, "more data than the manifest's %llu bytes",
                                 (unsigned long long) q->expected);
                else {
                        /* The error buffer says which certificate problem, where there is one. A
                         * registry that wants a client certificate it did not get closes the
                         * connection after the handshake (TLS 1.3): a hint where to put one. */
                        Pull *pl = q->pull;
                        const char *endpoint = pl->endpoints[pl->endpoint];
                        bool hint = !pl->tls.cert_pem && pl->p->certs_dir[0] && pl->tls_name &&
                                    strncmp(endpoint, "https:", 6) == 0 &&
                                    (result == CURLE_RECV_ERROR || result == CURLE_SEND_ERROR ||
                                     result == CURLE_SSL_CONNECT_ERROR);
                        snprintf(message, sizeof message, "network: %s%s%s%s%s%s%s%s", curl_easy_strerror(result),
                                 q->errbuf[0] ? " (" : "", q->errbuf, q->errbuf[0] ? ")" : "",
                                 hint ? "; if the registry requires a client certificate, none is in " : "",
                                 hint ? pl->p->certs_dir : "", hint ? "/" : "", hint ? pl->tls_name : "");
                }
                /* A local certificate or CA file libcurl could not use is the operator's to mend
                 * (FAILED_PRECONDITION), not the network's: registry_tls_load() checks the files,
                 * so this is what slipped past it. */
                q->done(q,
                        result == CURLE_WRITE_ERROR                                              ? -EBADMSG
                        : result == CURLE_SSL_CERTPROBLEM || result == CURLE_SSL_CACERT_BADFILE ? -EPERM
                                                                                                : -EHOSTUNREACH,
                        message);
                return;
        }
        if (q->status == 401 && req_handle_auth(q))
                return;
        if (q->status == 401 || q->status == 403) {
                q->done(q, q->status == 401 ? -ENOKEY : -EACCES,
                        q->status == 401 ? "unauthorized (HTTP 401): authentication required or wrong credentials"
                                         : "forbidden (HTTP 403)");
                return;
        }
        if (q->status == 404) {
                q->done(q, -ENOENT, "not found (HTTP 404)");
                return;
        }
        if (q->status < 200 || q->status >= 300) {
                snprintf(message, sizeof message, "HTTP %ld", q->status);
                q->done(q, -EIO, message);
                return;
        }
        q->done(q, 0, NULL);
}

/* The CAs of the host's certs.d, added to the store that libcurl filled from the system's bundle:
 * trusted besides those, as docker and containerd trust them (CURLOPT_CAINFO would replace them). */
static CURLcode add_cas_to_ctx(CURL *easy, void *ssl_ctx, void *userdata) {
        X509_STORE *store = SSL_CTX_get_cert_store(ssl_ctx);
        STACK_OF(X509) *cas = userdata;

        for (int i = 0; store && i < sk_X509_num(cas); i++)
                (void) X509_STORE_add_cert(store, sk_X509_value(cas, i)); /* a duplicate is no error here */
        return CURLE_OK;
}

/* The TLS settings of the host's certs.d: a setting libcurl refuses is an error (the CAs or the
 * certificate would go unused unsaid), with its name in *ret_what. */
static CURLcode req_set_tls(Req *q, const char **ret_what) {
        const RegistryTls *t = &q->pull->tls;
        CURLcode c = CURLE_OK;

#define SET(opt, value)                                                  \
        do {                                                             \
                c = curl_easy_setopt(q->easy, opt, value);               \
                if (c != CURLE_OK) {                                     \
                        *ret_what = #opt;                                \
                        return c;                                        \
                }                                                        \
        } while (0)
        if (t->cas) {
                /* Not the store libcurl may cache for every connection (CURLOPT_CA_CACHE_TIMEOUT): the
                 * CAs of one host must not become trusted for all of them. */
                SET(CURLOPT_CA_CACHE_TIMEOUT, 0L);
                SET(CURLOPT_SSL_CTX_FUNCTION, add_cas_to_ctx);
                SET(CURLOPT_SSL_CTX_DATA, t->cas);
        }
        /* libcurl matches connections and TLS sessions for reuse without the callback: one these
         * CAs verified (or this certificate opened) would serve a later pull whose directory no
         * longer has them (a ca.crt taken away). Closed after each request, and no session kept
         * to resume: a full handshake per request, for such hosts only. */
        if (t->cas || t->cert_pem) {
                SET(CURLOPT_FORBID_REUSE, 1L);
                SET(CURLOPT_SSL_SESSIONID_CACHE, 0L);
        }
        if (t->cert_pem) {
                struct curl_blob cert = { t->cert_pem, t->cert_len, CURL_BLOB_COPY },
                                 key = { t->key_pem, t->key_len, CURL_BLOB_COPY };
                SET(CURLOPT_SSLCERT_BLOB, &cert);
                SET(CURLOPT_SSLCERTTYPE, "PEM");
                SET(CURLOPT_SSLKEY_BLOB, &key);
                SET(CURLOPT_SSLKEYTYPE, "PEM");
        }
#undef SET
        return c;
}

static void req_start(Req *q) {
        Pull *pl = q->pull;
        char *auth = NULL;

        if (q->easy) {
                curl_ev_remove(pl->p->curl, q->easy);
                curl_easy_cleanup(q->easy);
        }
        curl_slist_free_all(q->headers);
        q->headers = NULL;
        buffer_free(&q->body);
        q->body = (Buffer) {};
        q->received = 0;
        q->write_errno = 0;
        q->errbuf[0] = '\0';
        if (q->fd >= 0) {
                /* Starting over (after auth): the file and the hash too. */
                if (ftruncate(q->fd, 0) < 0 || lseek(q->fd, 0, SEEK_SET) < 0 ||
                    EVP_DigestInit_ex(q->sha, EVP_sha256(), NULL) != 1) {
                        q->done(q, -EIO, "cannot reset the download file");
                        return;
                }
        }
        q->easy = curl_easy_init();
        if (!q->easy) {
                q->done(q, -ENOMEM, "out of memory");
                return;
        }
        if (q->accept) {
                char *h = NULL;
                if (asprintf(&h, "Accept: %s", q->accept) >= 0)
                        q->headers = curl_slist_append(q->headers, h);
                free(h);
        }
        if (!q->for_token && pl->bearer && asprintf(&auth, "Authorization: Bearer %s", pl->bearer) >= 0)
                q->headers = curl_slist_append(q->headers, auth);
        free(auth);
        curl_easy_setopt(q->easy, CURLOPT_URL, q->url);
        curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, q->headers);
        curl_easy_setopt(q->easy, CURLOPT_WRITEFUNCTION, req_write);
        curl_easy_setopt(q->easy, CURLOPT_WRITEDATA, q);
        curl_easy_setopt(q->easy, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(q->easy, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(q->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(q->easy, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(q->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(q->easy, CURLOPT_LOW_SPEED_TIME, 120L);
        curl_easy_setopt(q->easy, CURLOPT_USERAGENT, "rktlet/" PROJECT_VERSION);
        curl_easy_setopt(q->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(q->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(q->easy, CURLOPT_ERRORBUFFER, q->errbuf);
        const char *what = NULL;
        CURLcode c = req_set_tls(q, &what);
        if (c != CURLE_OK) {
                char m[256];
                snprintf(m, sizeof m, "libcurl refuses %s for the certs.d settings of this host: %s", what,
                         curl_easy_strerror(c));
                q->done(q, c == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EPERM, m);
                return;
        }
        /* Basic credentials go to the registry (when it asked) and to its token endpoint, never along
         * a redirect to another host. */
        if (pl->basic && (q->for_token || (q->retried_auth && q->www_auth && strncasecmp(q->www_auth, "Basic", 5) == 0))) {
                curl_easy_setopt(q->easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
                curl_easy_setopt(q->easy, CURLOPT_USERPWD, pl->basic);
                curl_easy_setopt(q->easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
        }
        if (curl_ev_add(pl->p->curl, q->easy, req_finished, q) < 0)
                q->done(q, -EIO, "cannot start the transfer");
}

static Req *req_new(Pull *pl, const char *url, const char *accept, size_t max_body, ReqDone done, void *userdata) {
        Req *q = calloc(1, sizeof *q);

        if (!q)
                return NULL;
        q->pull = pl;
        q->fd = -1;
        q->url = strdup(url);
        q->accept = accept;
        q->max_body = max_body;
        q->done = done;
        q->userdata = userdata;
        if (!q->url) {
                free(q);
                return NULL;
        }
        return q;
}

/* --- the pull ------------------------------------------------------------------------------------ */

static void unpack_run_free(UnpackRun *run) {
        if (!run)
                return;
        free(run->tmp);
        free(run);
}

static void pull_free(Pull *pl) {
        Puller *p = pl->p;
        char **digests = NULL;

        image_store_release(p->store, pl->config_digest);
        for (size_t i = 0; i < pl->n_layers; i++)
                image_store_release(p->store, pl->layers[i].digest);
        for (size_t i = 0; pl->chains_held && i < pl->n_layers; i++)
                image_store_release(p->store, pl->chain_ids[i]);

        for (Pull **pp = &p->pulls; *pp; pp = &(*pp)->next)
                if (*pp == pl) {
                        *pp = pl->next;
                        break;
                }
        req_free(pl->req);
        for (size_t i = 0; i < pl->n_layers; i++) {
                req_free(pl->layers[i].req);
                if (pl->layers[i].tmp)
                        (void) unlink(pl->layers[i].tmp);
                free(pl->layers[i].tmp);
        }
        if (pl->run) {
                if (p->closing) {
                        child_abandon(pl->run->child);
                        unpack_run_free(pl->run);
                } else {
                        pl->run->pull = NULL; /* unpack_done() deletes its directory once it has exited */
                        (void) child_kill(pl->run->child, SIGKILL);
                }
        }
        if (!p->closing) {
                /* What this pull brought that nothing uses: all of it when it failed or was
                 * cancelled, none when it recorded its image. Not left for the next start. */
                if (pl->config_digest)
                        (void) strv_push(&digests, pl->config_digest);
                for (size_t i = 0; i < pl->n_layers; i++)
                        if (pl->layers[i].digest)
                                (void) strv_push(&digests, pl->layers[i].digest);
                image_store_discard_unused(p->store, digests, pl->chain_ids);
                strv_free(digests);
        }
        for (size_t i = 0; i < pl->n_layers; i++) {
                free(pl->layers[i].digest);
                free(pl->layers[i].media_type);
        }
        free(pl->layers);
        while (pl->waiters) {
                PullWaiter *w = pl->waiters;
                pl->waiters = w->next;
                free(w);
        }
        strv_free(pl->chain_ids);
        strv_free(pl->endpoints);
        registry_tls_done(&pl->tls);
        free(pl->tls_name);
        yajl_tree_free(pl->manifest);
        image_ref_done(&pl->ref);
        free(pl->key);
        free(pl->name);
        if (pl->basic)
                OPENSSL_cleanse(pl->basic, strlen(pl->basic));
        free(pl->basic);
        free(pl->bearer);
        free(pl->refresh_token);
        registry_auth_text_free(pl->auth_text, pl->auth_len);
        free(pl->endpoint_errors);
        free(pl->manifest_digest);
        free(pl->config_digest);
        free(pl->config_text);
        free(pl->unpack_final);
        free(pl);
}

static void pull_unlink(Pull *pl) {
        for (Pull **pp = &pl->p->pulls; *pp; pp = &(*pp)->next)
                if (*pp == pl) {
                        *pp = pl->next;
                        break;
                }
        pl->next = NULL;
}

static void pull_finish(Pull *pl, const Error *error, Image *img) {
        PullWaiter *w;

        pl->finished = true;
        /* Out of the table first: a waiter's callback may start the same pull again. */
        pull_unlink(pl);
        if (error_is_set(error))
                log_warning("pull %s failed: %s", pl->name, error_text(error));
        else
                log_info("pull %s: done, image %s: %llu bytes downloaded in %.3f s.", pl->name, img->id,
                         (unsigned long long) pl->received,
                         (double) (now_usec(CLOCK_MONOTONIC) - pl->start_usec) / USEC_PER_SEC);
        if (pl->p->observe)
                pl->p->observe(!error_is_set(error), pl->received, now_usec(CLOCK_MONOTONIC) - pl->start_usec,
                               pl->p->observe_userdata);
        /* One at a time off the list: a callback may cancel a waiter further down it. */
        while ((w = pl->waiters)) {
                pl->waiters = w->next;
                w->done(error, img, w->userdata);
                free(w);
        }
        if (pl->busy > 0)
                pl->dead = true;
        else
                pull_free(pl);
}

static void pull_fail(Pull *pl, int error, const char *format, ...) {
        char *m = NULL;
        va_list ap;

        if (pl->failed)
                return;
        pl->failed = true;
        va_start(ap, format);
        if (vasprintf(&m, format, ap) < 0)
                m = NULL;
        va_end(ap);
        /* Where the registry protocol's errors are born, errno says which: EBADMSG is content that
         * does not match or parse, EPERM a layer refused, or a host's certs.d or the auth file that
         * cannot be used (FAILED_PRECONDITION: the operator must mend a file); the rest as errno
         * implies (ENOKEY a 401, EACCES a 403 or a blocked registry, EHOSTUNREACH no registry,
         * EFBIG/ENOSPC a limit, ENOENT a 404). */
        Error e = {
                .kind = error == -EBADMSG ? ERROR_CORRUPT : error == -EPERM ? ERROR_WRONG_STATE : ERROR_SYSTEM,
                .errno_value = error < 0 ? -error : EIO,
                .message = m ?: strdup("pull failed"),
        };
        pull_finish(pl, &e, NULL);
        error_done(&e);
}

static char *endpoint_url(Pull *pl, const char *kind, const char *reference) {
        char *u;
        if (asprintf(&u, "%s/v2/%s/%s/%s", pl->endpoints[pl->endpoint], pl->ref.repository, kind, reference) < 0)
                return NULL;
        return u;
}

static void unpack_next(Pull *pl);

static void pull_record(Pull *pl) {
        yajl_val cfg = json_parse(pl->config_text, NULL, 0);
        const char *user = json_get_str(json_get(cfg, "config"), "User");
        Image *img = calloc(1, sizeof *img), *stored;
        char *repo = image_ref_repo(&pl->ref), *d = NULL;
        int r = -ENOMEM;

        if (!img || !repo)
                goto fail;
        img->id = strdup(pl->config_digest);
        img->user = user && user[0] ? strdup(user) : NULL;
        img->repo_tags = calloc(2, sizeof(char *));
        img->repo_digests = calloc(2, sizeof(char *));
        img->layers = calloc(pl->n_layers + 1, sizeof *img->layers);
        if (!img->id || !img->repo_tags || !img->repo_digests || !img->layers)
                goto fail;
        /* A tag beside a digest was never asked for (the digest was pulled): it names nothing. */
        if (pl->ref.tag && !pl->ref.digest)
                img->repo_tags[0] = image_ref_name(&pl->ref);
        if (asprintf(&d, "%s@%s", repo, pl->manifest_digest) >= 0)
                img->repo_digests[0] = d;
        img->size = pl->config_size;
        yajl_val diff = json_get(json_get(cfg, "rootfs"), "diff_ids");
        for (size_t i = 0; i < pl->n_layers; i++) {
                img->layers[i] = (ImageLayer) {
                        .digest = strdup(pl->layers[i].digest),
                        .diff_id = strdup(diff->u.array.values[i]->u.string),
                        .chain_id = strdup(pl->chain_ids[i]),
                        .media_type = strdup(pl->layers[i].media_type ?: ""),
                        .size = pl->layers[i].size,
                };
                img->n_layers++;
                img->size += pl->layers[i].size;
        }
        r = image_store_add(pl->p->store, TAKE_PTR(img), &stored);
        if (r < 0)
                goto fail;
        yajl_tree_free(cfg);
        free(repo);
        pull_finish(pl, NULL, stored);
        return;
fail:
        image_free(img);
        yajl_tree_free(cfg);
        free(repo);
        pull_fail(pl, r, "cannot save the image record: %s", strerror(-r));
}

static void unpack_done(Child *child, const ChildResult *res, void *userdata) {
        UnpackRun *run = userdata;
        Pull *pl = run->pull;
        ImageStore *s = run->store;
        unsigned long long bytes = 0, inodes = 0, size = 0;
        char *usage = NULL, *data = NULL;
        int error = 0;

        if (!pl) {
                /* Its pull ended first; now that nothing writes there, the partial layer goes. */
                image_store_discard_path(s, run->tmp);
                unpack_run_free(run);
                return;
        }
        pl->run = NULL;
        const char *digest = pl->layers[pl->unpack_index].digest, *chain = pl->chain_ids[pl->unpack_index];
        if (res->exit_code != 0) {
                const char *why = res->timed_out ? "timed out" : res->err && res->err[0] ? res->err : "unpacking failed";
                /* A limit (EFBIG) or the free space (ENOSPC) is RESOURCE_EXHAUSTED; a refused or
                 * unreadable layer FAILED_PRECONDITION. */
                if (res->timed_out || sscanf(res->out ?: "", "error %d", &error) != 1 ||
                    (error != EFBIG && error != ENOSPC))
                        error = EPERM;
                image_store_discard_path(s, run->tmp);
                unpack_run_free(run);
                pull_fail(pl, -error, "layer %s: %.*s", digest, (int) strcspn(why, "\n"), why);
                return;
        }
        if (sscanf(res->out ?: "", "%llu %llu %llu", &bytes, &inodes, &size) != 3) {
                image_store_discard_path(s, run->tmp);
                unpack_run_free(run);
                pull_fail(pl, -EIO, "layer %s: cannot finish unpacking: the child reported no usage", digest);
                return;
        }
        if (rename(run->tmp, pl->unpack_final) < 0) {
                int e = errno;
                image_store_discard_path(s, run->tmp);
                unpack_run_free(run);
                if (!image_store_has_layer(s, chain)) {
                        pull_fail(pl, -EIO, "layer %s: cannot finish unpacking: %s", digest, strerror(e));
                        return;
                }
                /* Another pull unpacked the same layer meanwhile: its copy serves. */
                pl->unpacked += image_store_layer_size(s, chain);
                pl->unpack_index++;
                unpack_next(pl);
                return;
        }
        unpack_run_free(run);
        if (asprintf(&usage, "%s.json", pl->unpack_final) >= 0 &&
            asprintf(&data, "{\"bytes\":%llu,\"inodes\":%llu,\"size\":%llu}", bytes, inodes, size) >= 0)
                (void) write_file_atomic(usage, data, strlen(data), 0600);
        free(usage);
        free(data);
        pl->unpacked += size;
        pl->unpack_index++;
        unpack_next(pl);
}

static void unpack_next(Pull *pl) {
        ImageStore *s = pl->p->store;
        const PullLimits *lim = &pl->p->limits;
        UnpackRun *run = NULL;
        char *blob = NULL;
        uint32_t rnd = 0;
        int r = -ENOMEM;

        while (pl->unpack_index < pl->n_layers && image_store_has_layer(s, pl->chain_ids[pl->unpack_index])) {
                pl->unpacked += image_store_layer_size(s, pl->chain_ids[pl->unpack_index]);
                pl->unpack_index++;
        }
        if (pl->unpack_index >= pl->n_layers) {
                pull_record(pl);
                return;
        }
        free(pl->unpack_final);
        pl->unpack_final = image_store_layer_path(s, pl->chain_ids[pl->unpack_index]);
        (void) getrandom(&rnd, sizeof rnd, 0);
        run = calloc(1, sizeof *run);
        blob = image_store_blob_path(s, pl->layers[pl->unpack_index].digest);
        if (!pl->unpack_final || !run || !blob || asprintf(&run->tmp, "%s.tmp-%08x", pl->unpack_final, rnd) < 0)
                goto fail;
        run->pull = pl;
        run->store = s;
        /* A directory without its usage file was left by a crash between unpacking and recording:
         * out of the way (at once, here: a pull that finished the same layer renamed it and wrote
         * the usage file in one callback, so this is never one in use). */
        if (access(pl->unpack_final, F_OK) == 0)
                image_store_discard_path(s, pl->unpack_final);

        UnpackJob job = {
                .blob = blob,
                .dir = run->tmp,
                .max_layer = lim->max_layer_size,
                .max_image = lim->max_image_size,
                .image_below = pl->unpacked,
                .max_ratio = lim->max_ratio,
                .min_free_bytes = lim->min_free_bytes,
                .min_free_percent = lim->min_free_percent,
        };
        ChildSpec spec = {
                .setup = image_unpack_child,
                .setup_userdata = &job,
                .timeout_usec = 3600ULL * 1000 * 1000,
                .max_output = 64 * 1024,
        };
        r = child_spawn(pl->p->loop, &spec, unpack_done, run, &run->child);
        if (r < 0)
                goto fail;
        pl->run = run;
        free(blob);
        return;
fail:
        unpack_run_free(run);
        free(blob);
        pull_fail(pl, r, "cannot start unpacking: %s", strerror(-r));
}

static void layers_all_done(Pull *pl) {
        yajl_val cfg = json_parse(pl->config_text, NULL, 0);
        yajl_val diff = json_get(json_get(cfg, "rootfs"), "diff_ids");

        if (!YAJL_IS_ARRAY(diff) || diff->u.array.len != pl->n_layers) {
                yajl_tree_free(cfg);
                pull_fail(pl, -EBADMSG, "image config: rootfs.diff_ids does not match the manifest's %zu layers",
                          pl->n_layers);
                return;
        }
        pl->chain_ids = calloc(pl->n_layers + 1, sizeof(char *));
        for (size_t i = 0; pl->chain_ids && i < pl->n_layers; i++) {
                const char *d = YAJL_IS_STRING(diff->u.array.values[i]) ? diff->u.array.values[i]->u.string : NULL;
                if (!digest_valid(d)) {
                        yajl_tree_free(cfg);
                        pull_fail(pl, -EBADMSG, "image config: diff_id %zu is not a sha256 digest", i);
                        return;
                }
                if (i == 0)
                        pl->chain_ids[0] = strdup(d);
                else {
                        char *s = NULL;
                        if (asprintf(&s, "%s %s", pl->chain_ids[i - 1], d) >= 0)
                                pl->chain_ids[i] = sha256_hex(s, strlen(s));
                        free(s);
                }
        }
        yajl_tree_free(cfg);
        for (size_t i = 0; pl->chain_ids && i < pl->n_layers; i++)
                image_store_hold(pl->p->store, pl->chain_ids[i]);
        pl->chains_held = pl->chain_ids != NULL;
        unpack_next(pl);
}

static void layer_done(Req *q, int error, const char *message) {
        Pull *pl = q->pull;
        LayerDl *l = q->userdata;
        unsigned char md[32];
        unsigned int n = 0;
        char got[7 + 65];

        l->req = NULL;
        if (error < 0) {
                req_free(q);
                pull_fail(pl, error, "layer %s: %s", l->digest, message);
                return;
        }
        EVP_DigestFinal_ex(q->sha, md, &n);
        format_digest(md, got);
        uint64_t received = q->received;
        req_free(q);
        if (strcmp(got, l->digest) != 0) {
                pull_fail(pl, -EBADMSG, "layer %s: digest mismatch: the registry sent %s", l->digest, got);
                return;
        }
        if (l->size > 0 && received != l->size) {
                pull_fail(pl, -EBADMSG, "layer %s: size mismatch: %llu bytes instead of %llu", l->digest,
                          (unsigned long long) received, (unsigned long long) l->size);
                return;
        }
        char *final = image_store_blob_path(pl->p->store, l->digest);
        if (!final || rename(l->tmp, final) < 0) {
                free(final);
                pull_fail(pl, -EIO, "layer %s: cannot store it: %s", l->digest, strerror(errno));
                return;
        }
        free(final);
        free(l->tmp);
        l->tmp = NULL;
        l->done = true;
        if (--pl->layers_left == 0)
                layers_all_done(pl);
}

/* The limits the manifest alone shows to be passed, before anything is downloaded: a layer's
 * blob is about as large as its tar or larger, and the blobs to fetch must leave MinFreeSpace=. */
static bool layers_fit(Pull *pl) {
        const PullLimits *lim = &pl->p->limits;
        uint64_t total = 0, missing = 0;
        struct statvfs st;
        char a[32];

        for (size_t i = 0; i < pl->n_layers; i++) {
                LayerDl *l = &pl->layers[i];
                bool dup = false;
                if (lim->max_layer_size > 0 && l->size > lim->max_layer_size) {
                        format_size(lim->max_layer_size, a);
                        pull_fail(pl, -EFBIG, "layer %s: its blob of %llu bytes exceeds MaxLayerSize=%s", l->digest,
                                  (unsigned long long) l->size, a);
                        return false;
                }
                total += l->size;
                for (size_t k = 0; k < i; k++)
                        dup = dup || strcmp(pl->layers[k].digest, l->digest) == 0;
                if (!dup && !image_store_has_blob(pl->p->store, l->digest))
                        missing += l->size;
        }
        if (lim->max_image_size > 0 && total > lim->max_image_size) {
                format_size(lim->max_image_size, a);
                pull_fail(pl, -EFBIG, "manifest %s: its layer blobs of %llu bytes exceed MaxImageSize=%s",
                          pl->manifest_digest, (unsigned long long) total, a);
                return false;
        }
        bool reserve = lim->min_free_bytes > 0 || lim->min_free_percent > 0;
        if (missing > 0 && reserve && statvfs(pl->p->store->dir, &st) == 0) {
                uint64_t avail = (uint64_t) st.f_bavail * st.f_frsize;
                if (avail < missing || avail - missing < reserve_bytes(&st, lim->min_free_bytes, lim->min_free_percent)) {
                        format_reserve(lim->min_free_bytes, lim->min_free_percent, a);
                        pull_fail(pl, -ENOSPC,
                                  "manifest %s: downloading its %llu bytes of layers would leave less than MinFreeSpace=%s "
                                  "free on the image store (%llu bytes free)",
                                  pl->manifest_digest, (unsigned long long) missing, a, (unsigned long long) avail);
                        return false;
                }
        }
        return true;
}

static void download_layers(Pull *pl) {
        yajl_val layers = json_get(pl->manifest, "layers");
        ImageStore *s = pl->p->store;

        if (!YAJL_IS_ARRAY(layers) || layers->u.array.len == 0) {
                pull_fail(pl, -EBADMSG, "manifest %s has no layers", pl->manifest_digest);
                return;
        }
        pl->n_layers = layers->u.array.len;
        pl->layers = calloc(pl->n_layers, sizeof *pl->layers);
        if (!pl->layers) {
                pull_fail(pl, -ENOMEM, "out of memory");
                return;
        }
        for (size_t i = 0; i < pl->n_layers; i++) {
                yajl_val l = layers->u.array.values[i];
                long long size = 0;
                const char *d = json_get_str(l, "digest"), *mt = json_get_str(l, "mediaType");
                (void) json_get_int(l, "size", &size);
                if (!digest_valid(d) || size < 0) {
                        pull_fail(pl, -EBADMSG, "manifest %s: layer %zu has no valid sha256 digest or size",
                                  pl->manifest_digest, i);
                        return;
                }
                if (mt && strstr(mt, "foreign") == NULL && strstr(mt, "tar") == NULL) {
                        pull_fail(pl, -EBADMSG, "manifest %s: layer %zu has media type %s", pl->manifest_digest, i,
                                  QUOTE(mt));
                        return;
                }
                pl->layers[i] = (LayerDl) { .digest = strdup(d), .media_type = mt ? strdup(mt) : NULL, .size = (uint64_t) size };
                image_store_hold(s, pl->layers[i].digest);
        }
        if (!layers_fit(pl))
                return;
        pl->layers_left = pl->n_layers;
        pl->busy++;
        for (size_t i = 0; i < pl->n_layers && !pl->failed; i++) {
                LayerDl *l = &pl->layers[i];
                bool dup = false;
                for (size_t k = 0; k < i; k++)
                        dup = dup || strcmp(pl->layers[k].digest, l->digest) == 0;
                if (dup || image_store_has_blob(s, l->digest)) {
                        l->done = true;
                        pl->layers_left--;
                        continue;
                }
                uint32_t rnd = 0;
                (void) getrandom(&rnd, sizeof rnd, 0);
                char *url = endpoint_url(pl, "blobs", l->digest);
                Req *q = url ? req_new(pl, url, NULL, 0, layer_done, l) : NULL;
                free(url);
                if (!q || asprintf(&l->tmp, "%s/blobs/tmp/%s.%08x", s->dir, l->digest + 7, rnd) < 0) {
                        req_free(q);
                        pull_fail(pl, -ENOMEM, "out of memory");
                        break;
                }
                q->fd = open(l->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                q->sha = EVP_MD_CTX_new();
                q->expected = l->size;
                q->last_progress_usec = now_usec(CLOCK_MONOTONIC);
                if (q->fd < 0 || !q->sha || EVP_DigestInit_ex(q->sha, EVP_sha256(), NULL) != 1) {
                        req_free(q);
                        pull_fail(pl, -EIO, "layer %s: cannot create %s: %s", l->digest, l->tmp, strerror(errno));
                        break;
                }
                l->req = q;
                req_start(q);
        }
        pl->busy--;
        if (pl->dead) {
                pull_free(pl);
                return;
        }
        if (!pl->failed && pl->layers_left == 0)
                layers_all_done(pl);
}

static void config_done(Req *q, int error, const char *message) {
        Pull *pl = q->pull;
        char *got;

        pl->req = NULL;
        if (error < 0) {
                req_free(q);
                pull_fail(pl, error, "image config %s: %s", pl->config_digest, message);
                return;
        }
        got = sha256_hex(buffer_peek(&q->body), buffer_len(&q->body));
        if (!got || strcmp(got, pl->config_digest) != 0) {
                req_free(q);
                pull_fail(pl, -EBADMSG, "image config %s: digest mismatch: the registry sent %s", pl->config_digest,
                          got ?: "?");
                free(got);
                return;
        }
        free(got);
        pl->config_size = buffer_len(&q->body);
        pl->config_text = strndup((const char *) buffer_peek(&q->body), buffer_len(&q->body));
        req_free(q);
        yajl_val cfg = pl->config_text ? json_parse(pl->config_text, NULL, 0) : NULL;
        if (!cfg) {
                pull_fail(pl, -EBADMSG, "image config %s is not JSON", pl->config_digest);
                return;
        }
        yajl_tree_free(cfg);
        char *path = image_store_blob_path(pl->p->store, pl->config_digest);
        int r = path ? write_file_atomic(path, pl->config_text, pl->config_size, 0600) : -ENOMEM;
        free(path);
        if (r < 0) {
                pull_fail(pl, r, "cannot store the image config: %s", strerror(-r));
                return;
        }
        download_layers(pl);
}

static void fetch_config(Pull *pl) {
        yajl_val c = json_get(pl->manifest, "config");
        const char *d = json_get_str(c, "digest");
        char *url;

        if (!digest_valid(d)) {
                pull_fail(pl, -EBADMSG, "manifest %s has no valid config digest", pl->manifest_digest);
                return;
        }
        pl->config_digest = strdup(d);
        image_store_hold(pl->p->store, pl->config_digest);
        url = endpoint_url(pl, "blobs", d);
        pl->req = url ? req_new(pl, url, NULL, MAX_CONFIG, config_done, NULL) : NULL;
        free(url);
        if (!pl->req || !pl->config_digest) {
                pull_fail(pl, -ENOMEM, "out of memory");
                return;
        }
        req_start(pl->req);
}

/* A manifest request failed: the next mirror, or the registry itself, or the pull fails with what
 * each endpoint said. Takes q and reference. */
static void manifest_failed(Pull *pl, Req *q, char *reference, int error, const char *message) {
        char *errors = NULL;
        bool last = pl->endpoint + 1 >= strv_length(pl->endpoints);

        /* The endpoint holds the registry's name as the client wrote it: bounded. */
        if (asprintf(&errors, "%s%s%s: %s", pl->endpoint_errors ?: "", pl->endpoint_errors ? "; " : "",
                     QUOTE(pl->endpoints[pl->endpoint]), message) >= 0) {
                free(pl->endpoint_errors);
                pl->endpoint_errors = errors;
        }
        req_free(q);
        if (!last && !pl->manifest_digest) {
                /* A mirror failed: the next one, or the registry itself. */
                pl->endpoint++;
                pull_manifest(pl, reference);
                free(reference);
                return;
        }
        free(reference);
        pull_fail(pl, error, "manifest: %s", pl->endpoint_errors ?: message);
}

/* The digest of an index's linux/<arch> manifest, or NULL. */
static const char *index_pick(yajl_val v) {
        yajl_val list = json_get(v, "manifests");

        for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len; i++) {
                yajl_val m = list->u.array.values[i], pf = json_get(m, "platform");
                const char *os = json_get_str(pf, "os"), *arch = json_get_str(pf, "architecture");
                if (os && arch && strcmp(os, "linux") == 0 && strcmp(arch, host_arch()) == 0 &&
                    digest_valid(json_get_str(m, "digest")))
                        return json_get_str(m, "digest");
        }
        return NULL;
}

/* An index (digest: its own) fetched: *ret_next is its platform's manifest to fetch next. Otherwise
 * the pull has failed, and the error is returned. */
static int index_next(Pull *pl, yajl_val v, const char *digest, char **ret_next) {
        const char *chosen = index_pick(v);

        if (!chosen) {
                pull_fail(pl, -ENOENT, "manifest list %s has no image for linux/%s", digest, host_arch());
                return -ENOENT;
        }
        if (pl->manifest_digest) {
                pull_fail(pl, -EBADMSG, "manifest list %s points at another list", digest);
                return -EBADMSG;
        }
        /* The platform's manifest; repo digests name the list, as docker and containerd do. */
        pl->manifest_digest = strdup(digest);
        *ret_next = strdup(chosen);
        return 0;
}

static void manifest_done(Req *q, int error, const char *message) {
        Pull *pl = q->pull;
        char *digest = NULL, *reference = q->userdata;
        yajl_val v = NULL;
        const char *mt;

        q->userdata = NULL; /* ours now */
        q->free_userdata = NULL;
        pl->req = NULL;
        if (error < 0) {
                manifest_failed(pl, q, reference, error, message);
                return;
        }
        digest = sha256_hex(buffer_peek(&q->body), buffer_len(&q->body));
        if (!digest) {
                req_free(q);
                free(reference);
                pull_fail(pl, -ENOMEM, "out of memory");
                return;
        }
        if (digest_valid(reference) && strcmp(reference, digest) != 0) {
                req_free(q);
                q = NULL;
                pull_fail(pl, -EBADMSG, "manifest %s: digest mismatch: the registry sent %s", reference, digest);
                goto out;
        }
        buffer_append(&q->body, "", 1);
        v = json_parse((const char *) buffer_peek(&q->body), NULL, 0);
        if (!v) {
                req_free(q);
                q = NULL;
                pull_fail(pl, -EBADMSG, "manifest %s is not JSON", digest);
                goto out;
        }
        mt = json_get_str(v, "mediaType") ?: q->content_type ?: "";
        if (json_get(v, "manifests") || strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0) {
                char *next = NULL;
                req_free(q);
                q = NULL;
                if (index_next(pl, v, digest, &next) < 0)
                        goto out;
                yajl_tree_free(v);
                free(digest);
                free(reference);
                pull_manifest(pl, next);
                free(next);
                return;
        }
        if (json_get(v, "fsLayers")) {
                req_free(q);
                q = NULL;
                pull_fail(pl, -EBADMSG, "manifest %s is Docker schema 1, which rktlet does not pull", digest);
                goto out;
        }
        if (!pl->manifest_digest)
                pl->manifest_digest = strdup(digest);
        pl->manifest = v;
        v = NULL;
        req_free(q);
        q = NULL;
        fetch_config(pl);
out:
        req_free(q);
        yajl_tree_free(v);
        free(digest);
        free(reference);
}

/* The auth file's credentials for the endpoint in use, as containerd and CRI-O look them up: by
 * the host spoken to, so that a mirror gets its own entry and never the registry's. The registry
 * itself is looked up by the image's registry name (docker.io, not registry-1.docker.io); a
 * mirror written with a path (m.example/prefix) by its host, the path leading the repository's. */
static int endpoint_auth(Pull *pl) {
        const char *url = pl->endpoints[pl->endpoint], *host = strstr(url, "://");
        bool registry = pl->endpoint + 1 >= strv_length(pl->endpoints);
        _cleanup_free_ char *h = NULL, *repo = NULL, *error = NULL;
        char *basic = NULL;
        int r;

        if (pl->kubelet_auth)
                return 0;
        /* Nothing of the last endpoint's: its credentials, nor a token its realm gave. */
        if (pl->basic)
                OPENSSL_cleanse(pl->basic, strlen(pl->basic));
        free(pl->basic);
        free(pl->bearer);
        free(pl->refresh_token);
        pl->basic = pl->bearer = pl->refresh_token = NULL;
        if (!pl->auth_text)
                return 0;
        host = host ? host + 3 : url;
        if (registry) {
                h = strdup(pl->ref.registry);
                repo = strdup(pl->ref.repository);
        } else {
                size_t n = strcspn(host, "/");
                h = strndup(host, n);
                if (host[n] == '/') {
                        if (asprintf(&repo, "%s/%s", host + n + 1, pl->ref.repository) < 0)
                                repo = NULL;
                } else
                        repo = strdup(pl->ref.repository);
        }
        if (!h || !repo)
                return -ENOMEM;
        r = registry_auth_find(pl->auth_text, h, repo, &basic, &error);
        if (r < 0)
                return r; /* the text was checked whole when the pull started: out of memory */
        pl->basic = basic;
        return 0;
}

/* The certs.d directory of the endpoint in use, read once when the pull turns to it (the next
 * pull sees a file dropped there meanwhile, as containerd's does), and its credentials. false: the
 * endpoint failed. */
static bool endpoint_tls(Pull *pl, const char *reference) {
        const char *url = pl->endpoints[pl->endpoint];
        bool registry = pl->endpoint + 1 >= strv_length(pl->endpoints);
        _cleanup_free_ char *error = NULL;
        RegistryTls t;
        int r;

        if (pl->tls_for == pl->endpoint + 1)
                return true;
        registry_tls_done(&pl->tls);
        pl->tls_for = 0;
        if (endpoint_auth(pl) < 0) {
                pull_fail(pl, -ENOMEM, "out of memory");
                return false;
        }
        free(pl->tls_name);
        pl->tls_name = registry_certs_name(url, registry ? pl->ref.registry : NULL);
        if (!pl->tls_name) {
                pull_fail(pl, -ENOMEM, "out of memory");
                return false;
        }
        r = registry_tls_load(pl->p->certs_dir, pl->tls_name, &t, &error);
        if (r < 0) {
                char *ref = strdup(reference);
                if (!ref) {
                        pull_fail(pl, -ENOMEM, "out of memory");
                        return false;
                }
                manifest_failed(pl, NULL, ref, r == -ENOMEM ? r : -EPERM, error ?: strerror(-r));
                return false;
        }
        if ((t.cas || t.cert_pem) && !pl->p->tls_backend_ok) {
                /* Another backend would ignore the CAs unsaid (or, wolfSSL, take the callback's
                 * pointer for what it is not): the operator must hear the directory is not used. */
                char *ref = strdup(reference), *m = NULL;
                registry_tls_done(&t);
                if (!ref || asprintf(&m, "%s/%s holds certificates, but CertsDir= needs libcurl built with the "
                                     "OpenSSL rktlet uses (libcurl's TLS is %s)", pl->p->certs_dir, pl->tls_name,
                                     pl->p->tls_backend) < 0) {
                        free(ref);
                        pull_fail(pl, -ENOMEM, "out of memory");
                        return false;
                }
                manifest_failed(pl, NULL, ref, -EPERM, m);
                free(m);
                return false;
        }
        pl->tls = t;
        pl->tls_for = pl->endpoint + 1;
        return true;
}

static void pull_manifest(Pull *pl, const char *reference) {
        char *url, *ref;

        if (!endpoint_tls(pl, reference))
                return;
        url = endpoint_url(pl, "manifests", reference);
        ref = strdup(reference);

        pl->req = url && ref ? req_new(pl, url, MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST,
                                       MAX_MANIFEST, manifest_done, ref)
                             : NULL;
        free(url);
        if (!pl->req) {
                free(ref);
                pull_fail(pl, -ENOMEM, "out of memory");
                return;
        }
        pl->req->free_userdata = free;
        req_start(pl->req);
}

/* --- entry points -------------------------------------------------------------------------------- */

static char *scheme_for(Puller *p, const char *host) {
        char *u;
        return asprintf(&u, "%s://%s", strv_contains(p->insecure, host) ? "http" : "https", host) < 0 ? NULL : u;
}

static bool host_blocked(Puller *p, const char *host) {
        return strv_contains(p->blocked, host);
}

static char **endpoints_for(Puller *p, const ImageRef *ref) {
        char **l = calloc(16, sizeof(char *));
        size_t n = 0, k = strlen(ref->registry);

        if (!l)
                return NULL;
        for (char **m = p->mirrors; m && *m && n < 14; m++) {
                if (strncmp(*m, ref->registry, k) != 0 || (*m)[k] != '=')
                        continue;
                char **hosts = strv_split(*m + k + 1, "|");
                for (char **h = hosts; h && *h && n < 14; h++)
                        if (!host_blocked(p, *h)) /* a blocked host is no mirror either */
                                l[n++] = scheme_for(p, *h);
                strv_free(hosts);
        }
        l[n++] = scheme_for(p, image_ref_host(ref));
        return l;
}

/* The lists and paths of r, new; false when out of memory (nothing set). */
static bool registries_set(Puller *p, const PullRegistries *r) {
        char **i = strv_split(r->insecure ?: "", ","), **m = strv_split(r->mirrors ?: "", ","),
             **b = strv_split(r->blocked ?: "", ","), *c = strdup(r->certs_dir ?: ""), *a = strdup(r->auth_file ?: "");

        if (!i || !m || !b || !c || !a) {
                strv_free(i);
                strv_free(m);
                strv_free(b);
                free(c);
                free(a);
                return false;
        }
        strv_free(p->insecure);
        strv_free(p->mirrors);
        strv_free(p->blocked);
        free(p->certs_dir);
        free(p->auth_file);
        p->insecure = i;
        p->mirrors = m;
        p->blocked = b;
        p->certs_dir = c;
        p->auth_file = a;
        return true;
}

int puller_new(struct ev_loop *loop, ImageStore *store, const PullRegistries *registries, const PullLimits *limits,
               Puller **ret) {
        Puller *p = calloc(1, sizeof *p);
        int r;

        if (!p)
                return -ENOMEM;
        p->loop = loop;
        p->store = store;
        if (limits)
                p->limits = *limits;
        const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
        p->tls_backend_ok = cv && registry_tls_backend_ok(cv->ssl_version, OpenSSL_version_num());
        p->tls_backend = strdup(cv && cv->ssl_version ? cv->ssl_version : "none");
        if (!p->tls_backend) {
                free(p);
                return -ENOMEM;
        }
        r = curl_ev_new(loop, &p->curl);
        if (r < 0 || !registries_set(p, registries ?: &(PullRegistries) {})) {
                puller_free(p);
                return r < 0 ? r : -ENOMEM;
        }
        *ret = p;
        return 0;
}

int puller_reconfigure(Puller *p, const PullRegistries *registries, const PullLimits *limits) {
        if (!registries_set(p, registries))
                return -ENOMEM;
        if (limits)
                p->limits = *limits;
        return 0;
}

void puller_set_observer(Puller *p, PullObserve observe, void *userdata) {
        p->observe = observe;
        p->observe_userdata = userdata;
}

Puller *puller_free(Puller *p) {
        if (!p)
                return NULL;
        p->closing = true;
        while (p->pulls)
                pull_free(p->pulls);
        curl_ev_free(p->curl);
        strv_free(p->insecure);
        strv_free(p->mirrors);
        strv_free(p->blocked);
        free(p->certs_dir);
        free(p->auth_file);
        free(p->tls_backend);
        free(p);
        return NULL;
}

void pull_waiter_cancel(PullWaiter *w) {
        Pull *pl;

        if (!w)
                return;
        pl = w->pull;
        for (PullWaiter **pw = &pl->waiters; *pw; pw = &(*pw)->next)
                if (*pw == w) {
                        *pw = w->next;
                        break;
                }
        free(w);
        if (pl->waiters || pl->finished)
                return;
        /* Nobody waits any more: stop, and take away what the pull left half done. A later pull
         * of the same image starts afresh. */
        log_info("pull %s: cancelled by its last caller, stopping.", pl->name);
        pl->failed = pl->finished = true;
        pull_unlink(pl);
        if (pl->busy > 0)
                pl->dead = true;
        else
                pull_free(pl);
}

int image_pull(Puller *p, const char *image, const PullAuth *auth, PullDone done, void *userdata,
               PullWaiter **ret, const char **ret_error) {
        PullWaiter *w = calloc(1, sizeof *w);
        ImageRef ref;
        _cleanup_free_ char *auth_error = NULL;
        bool blocked;
        Pull *pl;
        char *name;
        int r;

        if (!w)
                return -ENOMEM;
        r = image_ref_parse(image, &ref, ret_error);
        if (r < 0) {
                free(w);
                return r;
        }
        /* "repo:tag@digest" is a pull of repo@digest: it must not wait for a pull of repo:tag. */
        name = image_ref_canonical(&ref);
        if (!name) {
                free(w);
                image_ref_done(&ref);
                return -ENOMEM;
        }
        w->done = done;
        w->userdata = userdata;
        /* A blocked registry is refused before anything: it joins no pull that was started before
         * a reload blocked it, and it sees no request. */
        blocked = host_blocked(p, ref.registry) || host_blocked(p, image_ref_host(&ref));
        for (pl = p->pulls; pl && !blocked; pl = pl->next)
                if (strcmp(pl->key, name) == 0 && !pl->failed)
                        break;
        if (pl) {
                /* The same image is on its way already: wait for that pull. */
                free(name);
                image_ref_done(&ref);
                w->pull = pl;
                w->next = pl->waiters;
                pl->waiters = w;
                *ret = w;
                return 0;
        }
        pl = calloc(1, sizeof *pl);
        if (!pl) {
                free(w);
                free(name);
                image_ref_done(&ref);
                return -ENOMEM;
        }
        pl->p = p;
        pl->start_usec = now_usec(CLOCK_MONOTONIC);
        pl->ref = ref;
        pl->key = name;
        pl->name = strdup(name);
        pl->endpoints = endpoints_for(p, &ref);
        if (auth) {
                if (auth->registry_token && auth->registry_token[0])
                        pl->bearer = strdup(auth->registry_token);
                if (auth->username && auth->username[0]) {
                        if (asprintf(&pl->basic, "%s:%s", auth->username, auth->password ?: "") < 0)
                                pl->basic = NULL;
                } else if (auth->auth && auth->auth[0]) {
                        unsigned char out[4096];
                        size_t n = strlen(auth->auth);
                        int k = n < sizeof out * 3 / 4 ? EVP_DecodeBlock(out, (const unsigned char *) auth->auth, (int) n) : -1;
                        if (k > 0) {
                                while (k > 0 && out[k - 1] == '\0')
                                        k--; /* padding */
                                pl->basic = strndup((const char *) out, (size_t) k);
                        }
                        OPENSSL_cleanse(out, sizeof out);
                } else if (auth->identity_token && auth->identity_token[0])
                        /* Registries that hand out identity tokens accept them as the password of
                         * a "<token>" user at their token endpoint, as docker does for basic flows. */
                        if (asprintf(&pl->basic, "<token>:%s", auth->identity_token) < 0)
                                pl->basic = NULL;
        }
        pl->kubelet_auth = pl->basic || pl->bearer;
        /* Only when kubelet passed no credentials: the auth file, read at each pull, so that an
         * entry written meanwhile is used without a reload, and looked up for each endpoint as
         * the pull turns to it (endpoint_auth()). */
        if (!blocked && !pl->kubelet_auth) {
                r = registry_auth_read(p->auth_file, &pl->auth_text, &pl->auth_len, &auth_error);
                if (r == -ENOMEM) {
                        free(w);
                        pull_free(pl);
                        return r;
                }
                if (r < 0 && !auth_error)
                        auth_error = strdup(strerror(-r));
        }
        if (!pl->name || !pl->endpoints || (r < 0 && !auth_error)) {
                free(w);
                pull_free(pl);
                return -ENOMEM;
        }
        pl->next = p->pulls;
        p->pulls = pl;
        w->pull = pl;
        pl->waiters = w;
        *ret = w;
        pl->busy++;
        if (blocked)
                /* PERMISSION_DENIED: policy, which no retry and no credentials change. */
                pull_fail(pl, -EACCES, "registry %s is blocked by [Registries] Blocked=", QUOTE(ref.registry));
        else if (auth_error)
                pull_fail(pl, -EPERM, "%s", auth_error); /* logged by pull_finish(), once */
        else {
                log_info("pull %s: starting (from %s%s).", pl->name, pl->endpoints[0],
                         pl->endpoints[1] ? " and others" : "");
                pull_manifest(pl, ref.digest ?: ref.tag);
        }
        pl->busy--;
        if (pl->dead)
                pull_free(pl); /* failed at once; done() already ran */
        return 0;
}

/* --- for tests ----------------------------------------------------------------------------------- */

char *image_pull_auth_param(const char *challenge, const char *key) {
        return auth_param(challenge, key);
}
