/* Unpacking one layer blob (tar, gzip or zstd) into a directory, in a child process that is
 * chrooted into that directory, with whiteouts turned into overlayfs form. */
#pragma once

#include <stdbool.h>
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

/* What unpacking does with one tar entry, decided from its names alone. */
typedef enum UnpackEntryKind {
        UNPACK_ENTRY_ROOT,     /* "", ".", "./": the layer directory itself, skipped */
        UNPACK_ENTRY_WRITE,    /* written as the tar says (libarchive, with its secure flags) */
        UNPACK_ENTRY_WHITEOUT, /* ".wh.<name>": <name> from the layers below is deleted */
        UNPACK_ENTRY_OPAQUE,   /* ".wh..wh..opq": its directory hides the layers below */
} UnpackEntryKind;

/* path: the entry's name (NULL: it has none); hardlink: its hard link target or NULL. Returns the
 * UnpackEntryKind, *ret_path the name without its leading "./" (within path). -EPERM with *ret_why
 * (and *ret_path, which may be NULL) when the layer is refused for it: a path or hard link target
 * that is absolute or goes through "..". */
int unpack_entry_classify(const char *path, const char *hardlink, const char **ret_path, const char **ret_why);

typedef struct UnpackStats {
        uint64_t bytes;  /* the files' contents */
        uint64_t inodes; /* entries written, whiteouts included */
        uint64_t size;   /* the uncompressed tar stream */
} UnpackStats;

struct archive;
/* The part of image_unpack_child() after it entered the layer directory: every entry of in (an
 * opened archive reader) under the current directory, against job's limits (compressed: the
 * blob's size, for the expansion ratio). Errors as image_unpack_child() says, the message on
 * stderr. */
int image_unpack_stream(struct archive *in, uint64_t compressed, const UnpackJob *job, UnpackStats *ret);

/* "32G", "100M", "4096": the largest binary unit that divides v. */
void format_size(uint64_t v, char buf[static 32]);
/* MinFreeSpace= as it was set: "1G" (bytes) or "5%" (percent). */
void format_reserve(uint64_t bytes, uint32_t percent, char buf[static 32]);
/* What MinFreeSpace= keeps free on the file system st describes. */
uint64_t reserve_bytes(const struct statvfs *st, uint64_t bytes, uint32_t percent);
