/* The image store under <root>/images: blobs by digest, layers unpacked once per chain ID, and
 * image records (JSON, written atomically). What goes is first renamed into trash/ (at once, on
 * the loop: no pull can find it any more) and then deleted there by a child. */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ImageLayer {
        char *digest;  /* of the blob as stored in the registry */
        char *diff_id; /* of the uncompressed tar */
        char *chain_id;
        char *media_type;
        uint64_t size;
} ImageLayer;

typedef struct Image {
        struct Image *prev, *next;
        char *id; /* "sha256:<config digest>" */
        char **repo_tags, **repo_digests; /* NULL-terminated */
        char *user;                       /* the config's User */
        uint64_t size;                    /* config and layer blobs */
        ImageLayer *layers;
        size_t n_layers;
        unsigned users; /* containers made from it: RemoveImage refuses while there are any */
} Image;

typedef struct ImageStore {
        struct ev_loop *loop;
        char *dir; /* <root>/images */
        Image *images;
        unsigned n_images;
        char **busy; /* digests and chain IDs pulls in flight rely on: never collected */
} ImageStore;

int image_store_new(struct ev_loop *loop, const char *root, ImageStore **ret);
ImageStore *image_store_free(ImageStore *s);

char *image_store_blob_path(ImageStore *s, const char *digest);
char *image_store_layer_path(ImageStore *s, const char *chain_id);
bool image_store_has_blob(ImageStore *s, const char *digest);
bool image_store_has_layer(ImageStore *s, const char *chain_id);

/* By id (or a unique id prefix, with or without "sha256:"), repo tag, repo digest or a reference
 * that normalizes to one of them. */
Image *image_store_find(ImageStore *s, const char *ref);

/* Adds the image or merges tags and digests into the one with the same id; a tag moves away from
 * any other image. Persists. Takes over img. */
int image_store_add(ImageStore *s, Image *img, Image **ret);
/* Removes the record; blobs and layers no other image uses are deleted in a child. */
int image_store_remove(ImageStore *s, Image *img);
/* Moves path (a blob, a layer directory, a partial one) into the trash and deletes it in a child. */
void image_store_discard_path(ImageStore *s, const char *path);
/* Those of these blobs (by digest) and layers (by chain ID) that no record uses and no pull holds
 * go the same way: what a failed or cancelled pull brought. Either list may be NULL. */
void image_store_discard_unused(ImageStore *s, char *const *digests, char *const *chain_ids);
/* What unpacking counted for a layer: its uncompressed size (the tar stream; the files' bytes for
 * layers unpacked before that was recorded). 0 when unknown. */
uint64_t image_store_layer_size(ImageStore *s, const char *chain_id);
/* Deletes blobs and layers no record uses and the trash (what a crash left); at start, before
 * serving. */
void image_store_collect(ImageStore *s);
/* The collector's decisions, from the records and the holds alone. A blob (by digest: an image's
 * config or one of its layers) or a layer (by chain ID) is used while a record names it or a pull
 * holds it. Containers hold their image's record (Image.users), not its blobs. */
bool image_store_blob_used(ImageStore *s, const char *digest);
bool image_store_layer_used(ImageStore *s, const char *chain_id);
typedef enum ImageGcArea {
        IMAGE_GC_BLOBS,  /* blobs/sha256/<hex> */
        IMAGE_GC_LAYERS, /* layers/<hex> (a directory) and layers/<hex>.json (its usage) */
} ImageGcArea;
/* Whether image_store_collect() keeps this entry of that directory: what is used, dot files, and a
 * layer's usage file (it goes with its directory). Partial unpacks and unknown names go. */
bool image_store_gc_keep(ImageStore *s, ImageGcArea area, const char *name);
/* A pull relies on a blob or layer (by digest or chain ID): removals leave it alone until released. */
void image_store_hold(ImageStore *s, const char *id);
void image_store_release(ImageStore *s, const char *id);
/* Bytes and inodes the store uses (walks it: small stores; a child would do large ones). */
int image_store_usage(ImageStore *s, uint64_t *ret_bytes, uint64_t *ret_inodes);

void image_free(Image *img);
void image_layers_free(ImageLayer *l, size_t n);
char *image_config_path(ImageStore *s, const Image *img);
