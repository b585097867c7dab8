/* Fuzzes image records (src/image/image-store.c) as the store loads them from <root>/images/records/
 * at start: the input is one record file. Whatever it says, loading and the collection that follows
 * do not crash; an image that loads has a valid id and layers whose digest and chain ID are
 * digests (they name files of the store); its layer paths stay in layers/; it is found by its id
 * and tags; and saved again (a tag added) and reloaded it is the same image. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd-util.h"
#include "fileio.h"
#include "fuzz.h"
#include "image-ref.h"
#include "image-store.h"
#include "json-util.h"
#include "log.h"
#include "strv.h"

#define ID "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char root[64];
static struct ev_loop *loop;

static void cleanup(void) {
        (void) rm_rf(root);
}

static bool strv_equal_(char **a, char **b) {
        size_t n = strv_length(a);
        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

static bool str_equal(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check(ImageStore *s, Image *img) {
        if (!digest_valid(img->id) || image_store_find(s, img->id) != img)
                abort();
        for (size_t i = 0; i < img->n_layers; i++) {
                const ImageLayer *l = &img->layers[i];
                if (!digest_valid(l->digest) || !digest_valid(l->chain_id))
                        abort();
                char *p = image_store_layer_path(s, l->chain_id), *b = image_store_blob_path(s, l->digest);
                if (!p || !b || strchr(p + strlen(s->dir) + strlen("/layers/"), '/') ||
                    strchr(b + strlen(s->dir) + strlen("/blobs/sha256/"), '/'))
                        abort();
                free(p);
                free(b);
                if (!image_store_blob_used(s, l->digest) || !image_store_layer_used(s, l->chain_id))
                        abort();
        }
        for (char **t = img->repo_tags; t && *t; t++)
                if (!image_store_find(s, *t))
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[256];
        ImageStore *s, *s2;
        Image *img, *extra, *added;

        if (!root[0]) {
                log_set_max_level(LOG_CRIT); /* unreadable records are the point, not news */
                snprintf(root, sizeof root, "/tmp/rktlet-fuzz-image-record.%d", (int) getpid());
                loop = ev_loop_new(EVBACKEND_EPOLL);
                if (!loop)
                        abort();
                atexit(cleanup);
        }
        (void) rm_rf(root);
        snprintf(path, sizeof path, "%s/images/records/%s.json", root, &ID[7]);
        if (mkdir_parents(path, 0700) < 0 || write_file_replace(path, (const char *) data, size, 0600) < 0)
                abort();
        if (image_store_new(loop, root, &s) < 0)
                abort();
        if (s->n_images > 1)
                abort();
        img = s->images;
        if (!img) {
                image_store_free(s);
                return 0;
        }
        check(s, img);
        if (strcmp(img->id, ID) != 0) {
                /* Records are named by their id; one that is not would be saved beside itself. */
                image_store_free(s);
                return 0;
        }

        /* Saved again: a second image takes a new tag and gives it up to nobody; the first one's
         * record is written anew when the tag moves to it from the second. */
        extra = calloc(1, sizeof *extra);
        if (!extra || !(extra->id = strdup("sha256:" "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")) ||
            strv_push(&extra->repo_tags, "fuzz.example/moved:1") < 0)
                abort();
        if (image_store_add(s, extra, &added) < 0)
                abort();
        extra = added;
        Image *again = calloc(1, sizeof *again);
        if (!again || !(again->id = strdup(img->id)) || strv_push(&again->repo_tags, "fuzz.example/moved:1") < 0)
                abort();
        if (image_store_add(s, again, &added) < 0 || added != img)
                abort();
        if (!strv_contains(img->repo_tags, "fuzz.example/moved:1") || strv_contains(extra->repo_tags, "fuzz.example/moved:1"))
                abort();

        if (image_store_new(loop, root, &s2) < 0)
                abort();
        Image *back = image_store_find(s2, img->id);
        if (!back || s2->n_images != 2 || back->n_layers != img->n_layers || back->size != img->size ||
            !str_equal(back->user, img->user) || !strv_equal_(back->repo_tags, img->repo_tags) ||
            !strv_equal_(back->repo_digests, img->repo_digests))
                abort();
        for (size_t i = 0; i < img->n_layers; i++)
                if (!str_equal(back->layers[i].digest, img->layers[i].digest) ||
                    !str_equal(back->layers[i].chain_id, img->layers[i].chain_id) ||
                    !str_equal(back->layers[i].diff_id, img->layers[i].diff_id) ||
                    !str_equal(back->layers[i].media_type, img->layers[i].media_type) ||
                    back->layers[i].size != img->layers[i].size)
                        abort();
        check(s2, back);
        image_store_free(s2);
        image_store_free(s);
        return 0;
}
