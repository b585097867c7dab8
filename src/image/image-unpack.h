/* Unpacking one layer blob (tar, gzip or zstd) into a directory, in a child process that is
 * chrooted into that directory, with whiteouts turned into overlayfs form. */
#pragma once

#include <stdint.h>

typedef struct UnpackJob {
        const char *blob; /* the layer blob */
        const char *dir;  /* the new layer directory (created by the child) */
} UnpackJob;

/* A ChildSpec setup function: prints "<bytes> <inodes>" on success; an error line on stderr. */
int image_unpack_child(void *userdata);
