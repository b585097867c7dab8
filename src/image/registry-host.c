/* Per-registry settings read from files when a pull starts: a host's certs.d directory and the
 * credentials of a containers-auth.json file. */
#include "registry-host.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "json-util.h"
#include "quote.h"
#include "strv.h"

#define MAX_PEM_FILE (1024 * 1024)
#define MAX_AUTH_FILE (4 * 1024 * 1024)
#define MAX_DIR_ENTRIES 256

bool registry_host_valid(const char *host) {
        return host && host[0] && host[0] != '.' && !strchr(host, '/');
}

bool registry_tls_backend_ok(const char *ssl_version, unsigned long openssl_num) {
        unsigned major = 0, minor = 0;

        /* A libcurl with several backends writes the inactive ones in parentheses: the active one
         * must be OpenSSL, first. */
        if (!ssl_version || strncmp(ssl_version, "OpenSSL/", 8) != 0 ||
            sscanf(ssl_version + 8, "%u.%u", &major, &minor) != 2)
                return false;
        if (major != (unsigned) (openssl_num >> 28))
                return false;
        /* Before 3.0 each minor version had an ABI of its own. */
        return major >= 3 || minor == (unsigned) ((openssl_num >> 20) & 0xff);
}

char *registry_certs_name(const char *endpoint_url, const char *registry) {
        const char *h = strstr(endpoint_url, "://");

        if (registry)
                return strdup(registry);
        /* A mirror written with a path (m.example/prefix): its host's directory, as containerd's. */
        h = h ? h + 3 : endpoint_url;
        return strndup(h, strcspn(h, "/"));
}

static bool has_suffix(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);
        return n > k && strcmp(s + n - k, suffix) == 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void registry_tls_done(RegistryTls *t) {
        if (!t)
                return;
        sk_X509_pop_free(t->cas, X509_free);
        if (t->key_pem)
                OPENSSL_cleanse(t->key_pem, t->key_len);
        free(t->key_pem);
        free(t->cert_pem);
        free(t->cert_path);
        *t = (RegistryTls) {};
}

static int set_error(char **ret_error, int r, const char *format, ...) __attribute__((format(printf, 3, 4)));
static int set_error(char **ret_error, int r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return r;
}

/* A file of the certs.d directory or the auth file, which must be a regular file: a FIFO or a
 * device named so must not hold up the daemon's loop. An error names the file. */
static int read_setting(const char *path, size_t max, char **ret, size_t *ret_len, char **ret_error,
                        const char *what) {
        int r = read_regular_file(path, max, ret, ret_len);

        if (r == -EINVAL)
                return set_error(ret_error, r, "%s%s is not a regular file", what, path);
        if (r < 0)
                return set_error(ret_error, r, "cannot read %s%s: %s", what, path, strerror(-r));
        return r;
}

/* Every certificate of a PEM file onto cas; -EINVAL when it holds none. */
static int add_cas(struct stack_st_X509 *cas, const char *pem, size_t len) {
        BIO *bio = BIO_new_mem_buf(pem, (int) len);
        unsigned n = 0;
        X509 *x;

        if (!bio)
                return -ENOMEM;
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
                if (!sk_X509_push(cas, x)) {
                        X509_free(x);
                        BIO_free(bio);
                        return -ENOMEM;
                }
                n++;
        }
        BIO_free(bio);
        ERR_clear_error(); /* the end of the file reads as an error: not ours to leave behind */
        return n > 0 ? 0 : -EINVAL;
}

/* No passphrase: an encrypted key fails to load instead of prompting on the daemon's terminal. */
static int no_password(char *buf, int size, int rwflag, void *u) {
        return 0;
}

/* Whether the client certificate and key parse and belong together, checked when they are read:
 * libcurl would find out only at the handshake, as a certificate problem that says no file. */
static int check_client_pair(const RegistryTls *t, const char *cert_path, const char *key_path, char **ret_error) {
        BIO *cb = BIO_new_mem_buf(t->cert_pem, (int) t->cert_len), *kb = BIO_new_mem_buf(t->key_pem, (int) t->key_len);
        X509 *cert = cb ? PEM_read_bio_X509(cb, NULL, no_password, NULL) : NULL;
        EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL) : NULL;
        int r = 0;

        if (!cb || !kb)
                r = -ENOMEM;
        else if (!cert)
                r = set_error(ret_error, -EINVAL, "client certificate %s holds no PEM certificate", cert_path);
        else if (!key)
                r = set_error(ret_error, -EINVAL,
                              "client key %s holds no PEM private key (or one encrypted with a passphrase)", key_path);
        else if (X509_check_private_key(cert, key) != 1)
                r = set_error(ret_error, -EINVAL, "client key %s does not belong to the certificate %s", key_path,
                              cert_path);
        EVP_PKEY_free(key);
        X509_free(cert);
        BIO_free(kb);
        BIO_free(cb);
        ERR_clear_error();
        return r;
}

int registry_tls_load(const char *certs_dir, const char *host, RegistryTls *ret, char **ret_error) {
        RegistryTls t = {};
        char *dir = NULL, *path = NULL, *pem = NULL, **names = NULL;
        size_t n = 0, len;
        DIR *d;
        int r = 0;

        *ret_error = NULL;
        if (!certs_dir || !certs_dir[0]) {
                *ret = t;
                return 0;
        }
        if (!registry_host_valid(host))
                return set_error(ret_error, -EINVAL, "registry host %s cannot name a directory of %s", QUOTE(host),
                                 certs_dir);
        if (asprintf(&dir, "%s/%s", certs_dir, host) < 0)
                return -ENOMEM;
        d = opendir(dir);
        if (!d) {
                r = errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
                if (r < 0)
                        set_error(ret_error, r, "cannot open %s: %s", dir, strerror(-r));
                free(dir);
                if (r == 0)
                        *ret = t;
                return r;
        }
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.')
                        continue;
                if (!has_suffix(de->d_name, ".crt") && !has_suffix(de->d_name, ".cert") &&
                    !has_suffix(de->d_name, ".key"))
                        continue;
                if (n >= MAX_DIR_ENTRIES) {
                        r = set_error(ret_error, -E2BIG, "%s: more than %d certificate files", dir, MAX_DIR_ENTRIES);
                        break;
                }
                if (strv_push(&names, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        if (r < 0)
                goto out;
        if (n > 1)
                qsort(names, n, sizeof *names, cmp_str);

        for (size_t i = 0; i < n && r >= 0; i++) {
                const char *name = names[i];
                free(path);
                path = NULL;
                free(pem);
                pem = NULL;
                if (asprintf(&path, "%s/%s", dir, name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (has_suffix(name, ".crt")) {
                        r = read_setting(path, MAX_PEM_FILE, &pem, &len, ret_error, "");
                        if (r < 0)
                                break;
                        if (!t.cas && !(t.cas = sk_X509_new_null())) {
                                r = -ENOMEM;
                                break;
                        }
                        r = add_cas(t.cas, pem, len);
                        if (r == -EINVAL)
                                set_error(ret_error, r, "%s holds no PEM certificate", path);
                        continue;
                }
                /* "<name>.cert" goes with "<name>.key", as docker pairs them; either alone is a mistake
                 * the operator must hear of, not a pull that silently goes without. */
                size_t base = strlen(name) - (has_suffix(name, ".cert") ? 5 : 4);
                char *other = NULL;
                if (asprintf(&other, "%.*s%s", (int) base, name, has_suffix(name, ".cert") ? ".key" : ".cert") < 0) {
                        r = -ENOMEM;
                        break;
                }
                bool paired = bsearch(&other, names, n, sizeof *names, cmp_str) != NULL;
                if (!paired) {
                        if (has_suffix(name, ".cert"))
                                r = set_error(ret_error, -EINVAL, "client certificate %s has no key %s beside it", path,
                                              other);
                        else
                                r = set_error(ret_error, -EINVAL, "client key %s has no certificate %s beside it", path,
                                              other);
                        free(other);
                        break;
                }
                if (has_suffix(name, ".cert") && !t.cert_pem) {
                        char *kpath = NULL;
                        if (asprintf(&kpath, "%s/%s", dir, other) < 0) {
                                free(other);
                                r = -ENOMEM;
                                break;
                        }
                        r = read_setting(path, MAX_PEM_FILE, &t.cert_pem, &t.cert_len, ret_error, "");
                        if (r >= 0) {
                                r = read_setting(kpath, MAX_PEM_FILE, &t.key_pem, &t.key_len, ret_error, "");
                                if (r >= 0)
                                        r = check_client_pair(&t, path, kpath, ret_error);
                        }
                        free(kpath);
                        if (r >= 0) {
                                t.cert_path = path;
                                path = NULL;
                        }
                }
                free(other);
        }
out:
        free(pem);
        free(path);
        free(dir);
        strv_free(names);
        if (r < 0) {
                registry_tls_done(&t);
                return r;
        }
        *ret = t;
        return 0;
}

/* --- containers-auth.json ------------------------------------------------------------------------ */

/* A key as the registry (and path) it names: docker's "https://index.docker.io/v1/" is
 * "docker.io"; a scheme takes its path away (docker wrote URLs of hosts). New string. */
static char *normalize_key(const char *key) {
        const char *k = key;
        size_t n;

        if (strncmp(k, "https://", 8) == 0 || strncmp(k, "http://", 7) == 0) {
                k = strstr(k, "://") + 3;
                n = strcspn(k, "/");
        } else
                n = strlen(k);
        while (n > 0 && k[n - 1] == '/')
                n--;
        if ((n == 15 && strncmp(k, "index.docker.io", 15) == 0) ||
            (n == 20 && strncmp(k, "registry-1.docker.io", 20) == 0))
                return strdup("docker.io");
        return strndup(k, n);
}

/* "user:password" of an entry's "auth"; NULL with -EBADMSG when it is not that. */
static int decode_auth(const char *b64, char **ret) {
        size_t n = strlen(b64);
        unsigned char *out;
        int k;

        if (n == 0 || n % 4 != 0 || n > MAX_AUTH_FILE)
                return -EBADMSG;
        out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        k = EVP_DecodeBlock(out, (const unsigned char *) b64, (int) n);
        if (k > 0 && b64[n - 1] == '=')
                k--;
        if (k > 0 && b64[n - 2] == '=')
                k--;
        if (k <= 0 || memchr(out, '\0', (size_t) k) || !memchr(out, ':', (size_t) k)) {
                if (k > 0)
                        OPENSSL_cleanse(out, (size_t) k);
                free(out);
                return -EBADMSG;
        }
        out[k] = '\0';
        *ret = (char *) out;
        return 0;
}

int registry_auth_find(const char *json, const char *registry, const char *repository, char **ret_basic,
                       char **ret_error) {
        char err[256] = "";
        yajl_val v = json_parse(json, err, sizeof err), auths;
        char *best = NULL;
        size_t best_len = 0;
        int r = 0;

        *ret_basic = NULL;
        *ret_error = NULL;
        if (!v) {
                /* yajl's next lines quote the text around the error: credentials, maybe. */
                err[strcspn(err, "\n")] = '\0';
                *ret_error = strdup(err[0] ? err : "not JSON");
                return -EBADMSG;
        }
        auths = json_get(v, "auths");
        if (!YAJL_IS_OBJECT(v) || (auths && !YAJL_IS_OBJECT(auths))) {
                yajl_tree_free(v);
                *ret_error = strdup("\"auths\" is not an object");
                return -EBADMSG;
        }
        size_t rlen = strlen(registry);
        for (size_t i = 0; auths && i < auths->u.object.len; i++) {
                const char *key = auths->u.object.keys[i];
                yajl_val e = auths->u.object.values[i];
                const char *b64 = json_get_str(e, "auth");
                char *basic = NULL, *nk;

                /* The whole file is checked: a mistake in any entry makes it unusable, so that no
                 * pull goes on with half of what the operator wrote. */
                if (!YAJL_IS_OBJECT(e) || (json_get(e, "auth") && !b64)) {
                        r = -EBADMSG;
                        if (asprintf(ret_error, "entry %s is not an object with a string \"auth\"", QUOTE(key)) < 0)
                                *ret_error = NULL;
                        break;
                }
                if (!b64)
                        continue; /* identity tokens and the like: not credentials rktlet uses */
                r = decode_auth(b64, &basic);
                if (r < 0) {
                        if (r == -EBADMSG && asprintf(ret_error, "entry %s: \"auth\" is not base64 of \"%s\"",
                                                      QUOTE(key), "user:password") < 0)
                                *ret_error = NULL;
                        break;
                }
                nk = normalize_key(key);
                if (!nk) {
                        free(basic);
                        r = -ENOMEM;
                        break;
                }
                /* key is the registry, or the registry and a leading part of the repository's path
                 * ending at a '/'. */
                size_t kl = strlen(nk);
                bool match = strncmp(nk, registry, rlen) == 0 &&
                             (nk[rlen] == '\0' ||
                              (nk[rlen] == '/' && strncmp(nk + rlen + 1, repository, kl - rlen - 1) == 0 &&
                               (repository[kl - rlen - 1] == '\0' || repository[kl - rlen - 1] == '/')));
                free(nk);
                if (match && (!best || kl > best_len)) {
                        if (best)
                                OPENSSL_cleanse(best, strlen(best));
                        free(best);
                        best = basic;
                        best_len = kl;
                        basic = NULL;
                }
                if (basic)
                        OPENSSL_cleanse(basic, strlen(basic));
                free(basic);
        }
        yajl_tree_free(v);
        if (r < 0) {
                if (best)
                        OPENSSL_cleanse(best, strlen(best));
                free(best);
                return r;
        }
        *ret_basic = best;
        return 0;
}

int registry_auth_read(const char *path, char **ret_text, size_t *ret_len, char **ret_error) {
        char *text = NULL, *m = NULL, *basic = NULL;
        size_t len;
        int r;

        *ret_text = NULL;
        *ret_len = 0;
        *ret_error = NULL;
        if (!path || !path[0])
                return 0;
        r = read_setting(path, MAX_AUTH_FILE, &text, &len, ret_error, "the auth file ");
        if (r == -ENOENT) {
                free(*ret_error);
                *ret_error = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        if (strlen(text) != len) {
                OPENSSL_cleanse(text, len);
                free(text);
                if (asprintf(ret_error, "the auth file %s holds a NUL byte", path) < 0)
                        *ret_error = NULL;
                return -EBADMSG;
        }
        /* The whole file is checked whatever the registry: "" matches no key. */
        r = registry_auth_find(text, "", "", &basic, &m);
        free(basic);
        if (r < 0) {
                OPENSSL_cleanse(text, len);
                free(text);
                if (asprintf(ret_error, "the auth file %s is malformed: %s", path, m ?: "out of memory") < 0)
                        *ret_error = NULL;
                free(m);
                return r;
        }
        *ret_text = text;
        *ret_len = len;
        return 0;
}

void registry_auth_text_free(char *text, size_t len) {
        if (text)
                OPENSSL_cleanse(text, len);
        free(text);
}

int registry_auth_load(const char *path, const char *registry, const char *repository, char **ret_basic,
                       char **ret_error) {
        char *text = NULL;
        size_t len;
        int r;

        *ret_basic = NULL;
        r = registry_auth_read(path, &text, &len, ret_error);
        if (r < 0 || !text)
                return r;
        r = registry_auth_find(text, registry, repository, ret_basic, ret_error);
        registry_auth_text_free(text, len);
        return r;
}
