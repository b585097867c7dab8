/* Image references normalized as kubelet and containerd do: "busybox" is
 * docker.io/library/busybox:latest; tags, @sha256: digests and registries with ports. */
#include "image-ref.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void image_ref_done(ImageRef *r) {
        free(r->registry);
        free(r->repository);
        free(r->tag);
        free(r->digest);
        *r = (ImageRef) {};
}

int digest_valid(const char *d) {
        if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
                return 0;
        return strspn(d + 7, "0123456789abcdef") == 64;
}

static int component_valid(const char *s, size_t n) {
        /* [a-z0-9]+ with single '.', '_', '__' or '-'+ separators */
        if (n == 0)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789._-", s[i]))
                        return 0;
        return strchr("._-", s[0]) == NULL && strchr("._-", s[n - 1]) == NULL;
}

int image_ref_parse(const char *s, ImageRef *ret, const char **ret_error) {
        ImageRef r = {};
        const char *at, *rest, *slash, *colon;
        char *name = NULL;

        *ret = (ImageRef) {};
        if (!s || !s[0] || strlen(s) > 4096) {
                *ret_error = "the image reference is empty or too long";
                return -EINVAL;
        }
        at = strchr(s, '@');
        if (at) {
                if (!digest_valid(at + 1)) {
                        *ret_error = "the digest is not sha256:<64 lowercase hex digits>";
                        return -EINVAL;
                }
                r.digest = strdup(at + 1);
                name = strndup(s, (size_t) (at - s));
        } else
                name = strdup(s);
        if (!name)
                goto oom;

        /* The first component is a registry when it has a '.' or ':' or is "localhost". */
        slash = strchr(name, '/');
        if (slash && (memchr(name, '.', (size_t) (slash - name)) || memchr(name, ':', (size_t) (slash - name)) ||
                      ((size_t) (slash - name) == 9 && strncmp(name, "localhost", 9) == 0))) {
                r.registry = strndup(name, (size_t) (slash - name));
                rest = slash + 1;
        } else {
                r.registry = strdup("docker.io");
                rest = name;
        }
        if (!r.registry)
                goto oom;
        if (strcmp(r.registry, "index.docker.io") == 0 || strcmp(r.registry, "registry-1.docker.io") == 0) {
                free(r.registry);
                r.registry = strdup("docker.io");
        }

        /* A tag is after the last ':' that follows the last '/'. */
        colon = strrchr(rest, ':');
        if (colon && !strchr(colon, '/')) {
                r.tag = strdup(colon + 1);
                r.repository = strndup(rest, (size_t) (colon - rest));
        } else
                r.repository = strdup(rest);
        if (!r.repository || (colon && !strchr(colon, '/') && !r.tag))
                goto oom;
        if (r.tag && (!r.tag[0] || strlen(r.tag) > 128 ||
                      strspn(r.tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(r.tag) ||
                      strchr(".-", r.tag[0]))) {
                *ret_error = "the tag is not valid";
                goto invalid;
        }
        for (const char *p = r.repository;;) {
                const char *e = strchr(p, '/');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                if (!component_valid(p, n)) {
                        *ret_error = "the repository name is not valid (lowercase letters, digits, '.', '_', '-', '/')";
                        goto invalid;
                }
                if (!e)
                        break;
                p = e + 1;
        }
        if (strcmp(r.registry, "docker.io") == 0 && !strchr(r.repository, '/')) {
                char *lib;
                if (asprintf(&lib, "library/%s", r.repository) < 0)
                        goto oom;
                free(r.repository);
                r.repository = lib;
        }
        if (!r.tag && !r.digest && !(r.tag = strdup("latest")))
                goto oom;
        free(name);
        *ret = r;
        return 0;
oom:
        free(name);
        image_ref_done(&r);
        *ret_error = "out of memory";
        return -ENOMEM;
invalid:
        free(name);
        image_ref_done(&r);
        return -EINVAL;
}

char *image_ref_name(const ImageRef *r) {
        char *s;
        if (r->tag ? asprintf(&s, "%s/%s:%s", r->registry, r->repository, r->tag) < 0
                   : asprintf(&s, "%s/%s@%s", r->registry, r->repository, r->digest) < 0)
                return NULL;
        return s;
}

char *image_ref_canonical(const ImageRef *r) {
        char *s;
        if (r->digest ? asprintf(&s, "%s/%s@%s", r->registry, r->repository, r->digest) < 0
                      : asprintf(&s, "%s/%s:%s", r->registry, r->repository, r->tag) < 0)
                return NULL;
        return s;
}

char *image_ref_repo(const ImageRef *r) {
        char *s;
        return asprintf(&s, "%s/%s", r->registry, r->repository) < 0 ? NULL : s;
}

const char *image_ref_host(const ImageRef *r) {
        return strcmp(r->registry, "docker.io") == 0 ? "registry-1.docker.io" : r->registry;
}
