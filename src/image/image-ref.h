/* Image references normalized as kubelet and containerd do: "busybox" is
 * docker.io/library/busybox:latest; tags, @sha256: digests and registries with ports. */
#pragma once

typedef struct ImageRef {
        char *registry;   /* "docker.io", "127.0.0.1:5000" */
        char *repository; /* "library/busybox" */
        char *tag;        /* NULL when only a digest was given */
        char *digest;     /* "sha256:<64 hex>" or NULL */
} ImageRef;

/* -EINVAL with a message for a malformed reference. */
int image_ref_parse(const char *s, ImageRef *ret, const char **ret_error);
void image_ref_done(ImageRef *r);
/* "registry/repository:tag" (or "@digest" when there is no tag). */
char *image_ref_name(const ImageRef *r);
/* What r stands for: "registry/repository@digest" when it has a digest, a tag beside it ignored
 * (containerd's CRI normalizes with reference/docker.ParseDockerRef, which drops it), else
 * "registry/repository:tag". */
char *image_ref_canonical(const ImageRef *r);
/* "registry/repository" */
char *image_ref_repo(const ImageRef *r);
/* The host to talk to: docker.io is served by registry-1.docker.io. */
const char *image_ref_host(const ImageRef *r);
int digest_valid(const char *d);
