/* Unpacking one layer blob (tar, gzip or zstd) into a directory, in a child process that is
 * chrooted into that directory, with whiteouts turned into overlayfs form. */
#pragma once

#include <stdint.h>
#include <sys/statvfs.h>

/* A layer's "uncompressed size" is the length of its tar stream (what its diff ID hashes): file
 * contents, headers and padding. The limits stop the child as soon as the stream passes them. */
typedef struct UnpackJob {
        const char *blob; /* the layer blob */
        const char *dir;  /* the new layer directory (created by the child) */
        uint64_t max_layer;      /* MaxLayerSize=: uncompressed bytes of this layer; 0: none */
        uint64_t max_image;      /* MaxImageSize=: uncompressed bytes of the image's layers; 0: none */
        uint64_t image_below;    /* what the layers below this one already take of max_image */
        uint32_t max_ratio;      /* MaxExpansionRatio=: uncompressed / compressed; 0: none */
        uint64_t min_free_bytes; /* MinFreeSpace= as bytes… */
        uint32_t min_free_percent; /* …or as a percentage of the file system; both 0: none */
} UnpackJob;

/* The expansion ratio is not applied below this: a small layer of zeros harms nobody. */
#define UNPACK_RATIO_FLOOR (16ULL * 1024 * 1024)

/* A ChildSpec setup function: prints "<bytes> <inodes> <uncompressed size>" on success. On failure
 * an error line on stderr (the layer entry, or the limit and its setting) and "error <errno>" on
 * stdout: EFBIG for a size or ratio limit, ENOSPC when free space runs short, EPERM for a refused
 * entry, EIO for an unreadable layer. */
int image_unpack_child(void *userdata);

/* "32G", "100M", "4096": the largest binary unit that divides v. */
void format_size(uint64_t v, char buf[static 32]);
/* MinFreeSpace= as it was set: "1G" (bytes) or "5%" (percent). */
void format_reserve(uint64_t bytes, uint32_t percent, char buf[static 32]);
/* What MinFreeSpace= keeps free on the file system st describes. */
uint64_t reserve_bytes(const struct statvfs *st, uint64_t bytes, uint32_t percent);
