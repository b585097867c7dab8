/* Unit tests of a registry's certs.d directory and of containers-auth.json matching
 * (src/image/registry-host.c). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/x509.h>

#include "registry-host.h"

static const char cert_pem[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBjDCCATOgAwIBAgIUa/QKstGY6Dez+qkbik376nNHDw0wCgYIKoZIzj0EAwIw\n"
        "GzEZMBcGA1UEAwwQcmt0bGV0LXVuaXQtdGVzdDAgFw0yNjEyMDIxNTA3MDJaGA8y\n"
        "MTI2MTEwODE1MDcwMlowGzEZMBcGA1UEAwwQcmt0bGV0LXVuaXQtdGVzdDBZMBMG\n"
        "ByqGSM49AgEGCCqGSM49AwEHA0IABHdQ4QsMOPD+uzEGpN9To+kS1VrCTdtHkHqm\n"
        "F5hxTppBIcSp473uS2EYKlV3uvIKIiPaMjmxkEvHXxahZ3qO4GGjUzBRMB0GA1Ud\n"
        "DgQWBBThXX4+NFYzafbzdW8Hx/6dWEXIGDAfBgNVHSMEGDAWgBThXX4+NFYzafbz\n"
        "dW8Hx/6dWEXIGDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIF59\n"
        "8uAP7AE7wcmxJQDOyLqKkmLJBbtsyYGP3GzRuQhyAiAkYKCDEiFitJXoyq8+kP29\n"
        "4pnh13Y0y8LNQ2xnNekbUw==\n"
        "-----END CERTIFICATE-----\n"
        ;

/* A client certificate and its key; another key; the first key encrypted (passphrase "x"). */
static const char client_cert_pem[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBkTCCATegAwIBAgIUO9pltKXwAtQ3IO/KcHEv8w3CCdIwCgYIKoZIzj0EAwIw\n"
        "HTEbMBkGA1UEAwwScmt0bGV0LXVuaXQtY2xpZW50MCAXDTI2MTIwMjE1MzMzNVoY\n"
        "DzIxMjYxMTA4MTUzMzM1WjAdMRswGQYDVQQDDBJya3RsZXQtdW5pdC1jbGllbnQw\n"
        "WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT0VKfe7/gf2MY4MTUpsLqXXTqwbwCg\n"
        "Sd8GAN+dyBbp+437mAvwv03Yje1nULU7wp6b1t64HUmXH6oOphjCpkv5o1MwUTAd\n"
        "BgNVHQ4EFgQU+qEipf5RY43yekQ3z8tNe38S7ZEwHwYDVR0jBBgwFoAU+qEipf5R\n"
        "Y43yekQ3z8tNe38S7ZEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF\n"
        "AiEA0NzSFFbmS1LHycAL0BIV2thZyFpXrSKuM54jiMmMCmICIBRViNNo6Hj5Wqir\n"
        "SDjtFM9cJGItcp5DFzYxYclI9I7e\n"
        "-----END CERTIFICATE-----\n"
        ;

static const char client_key_pem[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrsF5ibGjg+0kNVCb\n"
        "EIK1BVIb7iZAbVjcO+7XfeDhoXahRANCAAT0VKfe7/gf2MY4MTUpsLqXXTqwbwCg\n"
        "Sd8GAN+dyBbp+437mAvwv03Yje1nULU7wp6b1t64HUmXH6oOphjCpkv5\n"
        "-----END PRIVATE KEY-----\n"
        ;

static const char other_key_pem[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFcEH1LTgsUGsp3tL\n"
        "/vJi+UwzfoHNn+5PDWI7tPJy5mGhRANCAAQkuy4yOuv5hSytOTgEHbDfnpJD9HIo\n"
        "rEjgUbCBEGjm6JHOYYETb5Kgad0iMhTYSIBCNXHVgYajEem8N/Vgv9eg\n"
        "-----END PRIVATE KEY-----\n"
        ;

static const char encrypted_key_pem[] =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        "MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhDfLylmJsnIwICCAAw\n"
        "DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEC3OtUpScUS994P3ywy7lBQEgZDZ\n"
        "nYxgiljiCO7RePfJJPX1Lt6a/1Q+4WsFR0+GFiftTahzdFtJE7Oi1nYzncgWACgF\n"
        "Vab8tdLmq9JfY0AIoGOXrnQ+kKY+uQzLxSSs5nZs98LULQQWpLth8HgQwyCL29eC\n"
        "aKfyoXuNgBPE4H9Ggi5+Kz0//eORiLsVC25kLygy0puU86B12O0+aHovRwTz3cI=\n"
        "-----END ENCRYPTED PRIVATE KEY-----\n"
        ;

/* base64 of "u1:p1", "u2:p2", "u3:p3" */
#define U1 "dTE6cDE="
#define U2 "dTI6cDI="
#define U3 "dTM6cDM="

static void find(const char *json, const char *registry, const char *repository, const char *want) {
        char *basic = NULL, *error = NULL;

        assert_int_equal(registry_auth_find(json, registry, repository, &basic, &error), 0);
        assert_null(error);
        if (want)
                assert_string_equal(basic, want);
        else
                assert_null(basic);
        free(basic);
}

static void find_bad(const char *json) {
        char *basic = NULL, *error = NULL;

        assert_int_equal(registry_auth_find(json, "r:5000", "a/b", &basic, &error), -EBADMSG);
        assert_null(basic);
        assert_non_null(error);
        free(error);
}

static void test_auth_most_specific(void **state) {
        static const char j[] = "{\"auths\": {\"r:5000\": {\"auth\": \"" U1 "\"}, \"r:5000/team/app\": {\"auth\": \"" U3
                                "\"}, \"r:5000/team\": {\"auth\": \"" U2 "\"}}}";

        find(j, "r:5000", "team/app", "u3:p3");
        find(j, "r:5000", "team/app/sub", "u3:p3");
        find(j, "r:5000", "team/other", "u2:p2");
        find(j, "r:5000", "team2/app", "u1:p1"); /* "team" is no prefix of "team2" */
        find(j, "r:5000", "teamapp", "u1:p1");
        find(j, "r", "team/app", NULL); /* another port is another registry */
        find(j, "r:50001", "team/app", NULL);
        find(j, "q:5000", "team/app", NULL);
}

static void test_auth_docker_keys(void **state) {
        find("{\"auths\": {\"https://index.docker.io/v1/\": {\"auth\": \"" U1 "\"}}}", "docker.io", "library/busybox",
             "u1:p1");
        find("{\"auths\": {\"https://r:5000\": {\"auth\": \"" U2 "\"}}}", "r:5000", "a", "u2:p2");
        find("{\"auths\": {\"r:5000\": {\"identitytoken\": \"x\"}}}", "r:5000", "a", NULL);
        find("{}", "r:5000", "a", NULL);
        find("{\"auths\": {}}", "r:5000", "a", NULL);
}

static void test_auth_malformed(void **state) {
        find_bad("");
        find_bad("{");
        find_bad("[]");
        find_bad("{\"auths\": []}");
        find_bad("{\"auths\": {\"r:5000\": \"x\"}}");
        find_bad("{\"auths\": {\"r:5000\": {\"auth\": 1}}}");
        find_bad("{\"auths\": {\"r:5000\": {\"auth\": \"!!!!\"}}}");
        find_bad("{\"auths\": {\"r:5000\": {\"auth\": \"bm9jb2xvbg==\"}}}"); /* "nocolon" */
        /* A bad entry for another registry spoils the file: nothing of it is used. */
        find_bad("{\"auths\": {\"r:5000\": {\"auth\": \"" U1 "\"}, \"other\": {\"auth\": \"@@@@\"}}}");
}

static void auth_file(const char *dir, const char *text, const char *want, int want_r) {
        char path[1024], *basic = NULL, *error = NULL;

        snprintf(path, sizeof path, "%s/auth.json", dir);
        if (text) {
                FILE *f = fopen(path, "w");
                assert_non_null(f);
                fputs(text, f);
                fclose(f);
        } else
                (void) unlink(path);
        assert_int_equal(registry_auth_load(path, "r:5000", "a", &basic, &error), want_r);
        if (want_r < 0) {
                assert_non_null(error);
                assert_non_null(strstr(error, path)); /* the message names the file */
        }
        if (want)
                assert_string_equal(basic, want);
        else
                assert_null(basic);
        free(basic);
        free(error);
}

static void put(const char *dir, const char *name, const char *text) {
        char path[1024];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static void rm(const char *dir, const char *name) {
        char path[1024];

        snprintf(path, sizeof path, "%s/%s", dir, name);
        assert_int_equal(unlink(path), 0);
}

static void test_auth_file(void **state) {
        char dir[] = "/tmp/test-registry-host-XXXXXX";

        assert_non_null(mkdtemp(dir));
        auth_file(dir, NULL, NULL, 0); /* no file: no credentials */
        auth_file(dir, "{\"auths\": {\"r:5000\": {\"auth\": \"" U1 "\"}}}", "u1:p1", 0);
        auth_file(dir, "{\"auths\": ", NULL, -EBADMSG);
        rm(dir, "auth.json");
        /* A FIFO as the auth file: an error naming it, at once. */
        char fifo[1024], *basic = NULL, *error = NULL;
        snprintf(fifo, sizeof fifo, "%s/auth.json", dir);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        assert_int_equal(registry_auth_load(fifo, "r:5000", "a", &basic, &error), -EINVAL);
        assert_null(basic);
        assert_non_null(strstr(error, fifo));
        free(error);
        rm(dir, "auth.json");
        assert_int_equal(rmdir(dir), 0);
}

static int load(const char *certs, const char *host, RegistryTls *t, char **error) {
        *error = NULL;
        *t = (RegistryTls) {};
        return registry_tls_load(certs, host, t, error);
}

static void test_tls_dir(void **state) {
        char certs[] = "/tmp/test-registry-host-XXXXXX", host[256];
        RegistryTls t;
        char *error;

        assert_non_null(mkdtemp(certs));
        /* No directory for the host: nothing, and no error. */
        assert_int_equal(load(certs, "r:5000", &t, &error), 0);
        assert_null(t.cas);
        assert_null(t.cert_pem);
        assert_int_equal(load("", "r:5000", &t, &error), 0);
        /* Names that would leave the directory. */
        assert_int_equal(load(certs, "..", &t, &error), -EINVAL);
        assert_non_null(error);
        free(error);
        assert_int_equal(load(certs, "a/b", &t, &error), -EINVAL);
        free(error);

        snprintf(host, sizeof host, "%s/r:5000", certs);
        assert_int_equal(mkdir(host, 0755), 0);
        assert_int_equal(load(certs, "r:5000", &t, &error), 0);
        assert_null(t.cas);

        put(host, "ca.crt", cert_pem);
        put(host, "other.crt", cert_pem);
        put(host, "README", "not read");
        assert_int_equal(load(certs, "r:5000", &t, &error), 0);
        assert_non_null(t.cas);
        assert_int_equal(sk_X509_num(t.cas), 2);
        assert_null(t.cert_pem);
        registry_tls_done(&t);

        /* A .cert without its .key, and the reverse: errors that name the file. */
        put(host, "client.cert", cert_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "client.cert"));
        assert_non_null(strstr(error, "client.key"));
        free(error);
        /* A key that is no key, another certificate's key, an encrypted key: errors naming the key
         * (read when the pull starts, not found out at the handshake). */
        put(host, "client.key", "KEY");
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "client.key"));
        free(error);
        put(host, "client.key", other_key_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "client.key"));
        assert_non_null(strstr(error, "does not belong"));
        free(error);
        put(host, "client.cert", client_cert_pem);
        put(host, "client.key", encrypted_key_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "client.key"));
        free(error);
        /* A certificate that is none. */
        put(host, "client.cert", "CERT");
        put(host, "client.key", client_key_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "client.cert"));
        free(error);
        put(host, "client.cert", client_cert_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), 0);
        assert_string_equal(t.cert_pem, client_cert_pem);
        assert_string_equal(t.key_pem, client_key_pem);
        assert_int_equal(t.key_len, strlen(client_key_pem));
        registry_tls_done(&t);
        put(host, "b.key", client_key_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "b.key"));
        assert_non_null(strstr(error, "b.cert"));
        free(error);
        /* Two pairs: the first in name order (its own, not client.key, is checked against it). */
        put(host, "b.cert", cert_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "b.key"));
        free(error);
        put(host, "b.cert", client_cert_pem);
        assert_int_equal(load(certs, "r:5000", &t, &error), 0);
        assert_non_null(strstr(t.cert_path, "b.cert"));
        registry_tls_done(&t);

        /* A .crt that holds no certificate. */
        put(host, "bad.crt", "garbage\n");
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "bad.crt"));
        free(error);

        rm(host, "bad.crt");

        /* A FIFO named *.crt (or a client certificate) is an error naming it, at once: no wait
         * for a writer that never comes. */
        char fifo[1024];
        snprintf(fifo, sizeof fifo, "%s/fifo.crt", host);
        assert_int_equal(mkfifo(fifo, 0644), 0);
        assert_int_equal(load(certs, "r:5000", &t, &error), -EINVAL);
        assert_non_null(strstr(error, "fifo.crt"));
        assert_non_null(strstr(error, "not a regular file"));
        free(error);
        rm(host, "fifo.crt");
        rm(host, "b.cert");
        rm(host, "b.key");
        rm(host, "client.cert");
        rm(host, "client.key");
        rm(host, "ca.crt");
        rm(host, "other.crt");
        rm(host, "README");
        assert_int_equal(rmdir(host), 0);
        assert_int_equal(rmdir(certs), 0);
}

static void certs_name(const char *url, const char *registry, const char *want) {
        char *n = registry_certs_name(url, registry);

        assert_non_null(n);
        assert_string_equal(n, want);
        free(n);
}

static void test_certs_name(void **state) {
        /* Docker Hub's directory is docker.io, as containerd's and docker's; a mirror keeps its host. */
        certs_name("https://registry-1.docker.io", "docker.io", "docker.io");
        certs_name("https://127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000");
        certs_name("https://mirror.example:5000", NULL, "mirror.example:5000");
        certs_name("http://10.0.0.5", NULL, "10.0.0.5");
        /* A mirror with a path: its host's directory. */
        certs_name("https://m.example/prefix", NULL, "m.example");
        certs_name("https://m.example:5000/a/b", NULL, "m.example:5000");
}

static void test_tls_backend(void **state) {
        assert_true(registry_tls_backend_ok("OpenSSL/3.0.11", 0x300000b0UL));
        assert_true(registry_tls_backend_ok("OpenSSL/3.2.1", 0x30000000UL));
        assert_true(registry_tls_backend_ok("OpenSSL/1.1.1w", 0x1010117fUL));
        assert_false(registry_tls_backend_ok("OpenSSL/1.1.1w", 0x300000b0UL)); /* another OpenSSL */
        assert_false(registry_tls_backend_ok("OpenSSL/1.0.2u", 0x1010117fUL));
        assert_false(registry_tls_backend_ok("GnuTLS/3.7.9", 0x300000b0UL));
        assert_false(registry_tls_backend_ok("wolfSSL/5.5.4", 0x300000b0UL));
        assert_false(registry_tls_backend_ok("(OpenSSL/3.0.11) GnuTLS/3.7.9", 0x300000b0UL)); /* inactive */
        assert_false(registry_tls_backend_ok(NULL, 0x300000b0UL));
        assert_false(registry_tls_backend_ok("OpenSSL/", 0x300000b0UL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_auth_most_specific),
                cmocka_unit_test(test_auth_docker_keys),
                cmocka_unit_test(test_auth_malformed),
                cmocka_unit_test(test_auth_file),
                cmocka_unit_test(test_tls_dir),
                cmocka_unit_test(test_certs_name),
                cmocka_unit_test(test_tls_backend),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
