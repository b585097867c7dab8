/* Per-registry settings read from files when a pull starts, laid out as docker and containerd lay
 * them out: a host's directory under [Registries] CertsDir= (CA certificates, a client certificate)
 * and the credentials of a containers-auth.json(5) file ([Registries] AuthFile=). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* OpenSSL's STACK_OF(X509), kept opaque here. */
struct stack_st_X509;

typedef struct RegistryTls {
        struct stack_st_X509 *cas; /* every *.crt of the directory; NULL when none */
        char *cert_pem, *key_pem;  /* the client certificate and its key; NULL when none */
        size_t cert_len, key_len;
        char *cert_path; /* which pair was taken, for messages */
} RegistryTls;

/* Whether host may name a directory: no '/', not "." or "..", no leading '.'. */
bool registry_host_valid(const char *host);

/* Whether libcurl's TLS backend (curl_version_info()'s ssl_version, "OpenSSL/3.0.11") is the
 * OpenSSL rktlet is linked with (OpenSSL_version_num()): the only one whose SSL_CTX the CAs of a
 * certs.d directory can be added to (CURLOPT_SSL_CTX_FUNCTION). */
bool registry_tls_backend_ok(const char *ssl_version, unsigned long openssl_num);

/* The name of an endpoint's directory under CertsDir=: for the registry itself (registry not
 * NULL) the image's registry name, as containerd and docker name it (docker.io, not
 * registry-1.docker.io, the host spoken to); for a mirror (registry NULL) the host of its URL
 * ("https://host:port", "https://host/prefix"). New string; NULL when out of memory. */
char *registry_certs_name(const char *endpoint_url, const char *registry);

/* Reads certs_dir/host/: "*.crt" are CAs trusted besides the system's, "<name>.cert" with
 * "<name>.key" a client certificate (the first pair in name order). A directory that is not
 * there is no settings (0, *ret empty). -EINVAL (a .cert without its .key or the reverse, a .crt
 * without a certificate in it, a client certificate or key that does not parse, a key that is
 * encrypted or not the certificate's), or the errno of a file that cannot be read, with a message that
 * names the file in *ret_error. *ret is written only on success. */
int registry_tls_load(const char *certs_dir, const char *host, RegistryTls *ret, char **ret_error);
void registry_tls_done(RegistryTls *t);

/* The "user:password" that a containers-auth.json text gives registry/repository ("127.0.0.1:5000",
 * "team/app"): the entry of the most specific key, "registry/team/app" before "registry/team"
 * before "registry" (keys written as docker's "https://host/v1/" count as the host). *ret_basic is
 * NULL when no key matches. -EBADMSG with a message in *ret_error when the text is no such file
 * (not JSON, "auths" no object, an entry no object, an "auth" that is no base64 of "user:pass"):
 * then nothing of it is used. */
int registry_auth_find(const char *json, const char *registry, const char *repository, char **ret_basic,
                       char **ret_error);
/* The text of the auth file at path, checked whole with registry_auth_find(), for lookups of each
 * host a pull speaks to: *ret_text NULL when there is no such file (or no path). A file that
 * cannot be read or is malformed gives the errno (-EBADMSG) and a message naming the file. Free
 * the text with registry_auth_text_free(), which wipes it. */
int registry_auth_read(const char *path, char **ret_text, size_t *ret_len, char **ret_error);
void registry_auth_text_free(char *text, size_t len);
/* registry_auth_find() on the file at path; a file that is not there gives no credentials. */
int registry_auth_load(const char *path, const char *registry, const char *repository, char **ret_basic,
                       char **ret_error);
