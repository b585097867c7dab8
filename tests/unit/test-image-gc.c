/* Unit tests of the image store's collector: which blobs and layers are kept or reclaimed given the
 * records, shared layers, holds of pulls in flight and partial pulls; the decisions alone, then a
 * real store directory collected at start and an image removed (its deletion child on a real loop). */
#include <dirent.h>
#include <errno.h>
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

#include "child.h"
#include "fd-util.h"
#include "fileio.h"
#include "image-store.h"
#include "json-util.h"
#include "strv.h"
#include "test-loop.h"

static char root[] = "/tmp/test-image-gc-XXXXXX";
static struct ev_loop *loop;

/* A digest or chain ID of our own: "sha256:" and 64 times c, for an upper-case c 63 times its
 * lower case and a '0' (chain IDs here, apart from the digests). */
static const char *id(char c) {
        static char buf[16][7 + 64 + 1];
        static unsigned next;
        char *b = buf[next++ % 16];
        bool upper = c >= 'A' && c <= 'F';
        memcpy(b, "sha256:", 7);
        memset(b + 7, upper ? c - 'A' + 'a' : c, 64);
        if (upper)
                b[7 + 63] = '0';
        b[7 + 64] = '\0';
        return b;
}

static const char *hex_of(const char *digest) {
        return digest + 7;
}

/* An image whose config is config_c and whose layers are (digest, chain ID) pairs of characters. */
static Image *image(char config_c, const char *tag, const char *layers) {
        Image *img = calloc(1, sizeof *img);
        size_t n = strlen(layers) / 2;

        assert_non_null(img);
        img->id = strdup(id(config_c));
        assert_int_equal(strv_push(&img->repo_tags, tag), 0);
        img->layers = calloc(n + 1, sizeof *img->layers);
        assert_non_null(img->layers);
        for (size_t i = 0; i < n; i++) {
                img->layers[i] = (ImageLayer) {
                        .digest = strdup(id(layers[2 * i])),
                        .diff_id = strdup(id(layers[2 * i])),
                        .chain_id = strdup(id(layers[2 * i + 1])),
                        .media_type = strdup("application/vnd.oci.image.layer.v1.tar+gzip"),
                        .size = 100,
                };
                img->n_layers++;
        }
        return img;
}

static void put(const char *rel, const char *text) {
        char path[512];
        snprintf(path, sizeof path, "%s/images/%s", root, rel);
        assert_int_equal(mkdir_parents(path, 0700), 0);
        assert_int_equal(write_file_replace(path, text, strlen(text), 0600), 0);
}

static void put_dir(const char *rel) {
        char path[512];
        snprintf(path, sizeof path, "%s/images/%s", root, rel);
        assert_int_equal(mkdir_p(path, 0700), 0);
}

static bool there(const char *rel) {
        char path[512];
        snprintf(path, sizeof path, "%s/images/%s", root, rel);
        return access(path, F_OK) == 0;
}

static size_t entries(const char *rel) {
        char path[512];
        struct dirent *de;
        size_t n = 0;
        snprintf(path, sizeof path, "%s/images/%s", root, rel);
        DIR *d = opendir(path);
        assert_non_null(d);
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        n++;
        closedir(d);
        return n;
}

static void blob(const char *digest) {
        char rel[128];
        snprintf(rel, sizeof rel, "blobs/sha256/%s", hex_of(digest));
        put(rel, "blob");
}

static void layer(const char *chain, bool usage) {
        char rel[128];
        snprintf(rel, sizeof rel, "layers/%s/etc", hex_of(chain));
        put_dir(rel);
        if (usage) {
                snprintf(rel, sizeof rel, "layers/%s.json", hex_of(chain));
                put(rel, "{\"bytes\":10,\"inodes\":2,\"size\":2048}");
        }
}

static bool blob_there(const char *digest) {
        char rel[128];
        snprintf(rel, sizeof rel, "blobs/sha256/%s", hex_of(digest));
        return there(rel);
}

static bool layer_there(const char *chain) {
        char rel[128], usage[128];
        snprintf(rel, sizeof rel, "layers/%s", hex_of(chain));
        snprintf(usage, sizeof usage, "layers/%s.json", hex_of(chain));
        assert_int_equal(there(rel), there(usage)); /* a layer and its usage go together */
        return there(rel);
}

static int setup(void **state) {
        assert_non_null(mkdtemp(root));
        loop = ev_loop_new(EVBACKEND_EPOLL); /* not the default loop: its SIGCHLD watcher would reap the children */
        return loop ? 0 : -1;
}

static int teardown(void **state) {
        ev_loop_destroy(loop);
        return rm_rf(root) < 0 ? -1 : 0;
}

/* Each test starts from an empty store. */
static int fresh(void **state) {
        char path[512];
        snprintf(path, sizeof path, "%s/images", root);
        return rm_rf(path) < 0 && errno != ENOENT ? -1 : 0;
}

static bool no_children(void *userdata) {
        return child_count() == 0;
}

/* Until the store's deletion children are done, at most 10 s. */
static void run_children(void) {
        loop_run_until(loop, no_children, NULL, 10.);
        assert_int_equal(child_count(), 0);
}

static void test_decisions_follow_records(void **state) {
        ImageStore *s;
        Image *a, *b, *got;

        assert_int_equal(image_store_new(loop, root, &s), 0);
        /* a: config 1, layers (a→A) (b→B); b: config 2, layers (b→B) (c→C): B is shared. */
        assert_int_equal(image_store_add(s, image('1', "docker.io/library/a:1", "aAbB"), &a), 0);
        assert_int_equal(image_store_add(s, image('2', "docker.io/library/b:1", "bBcC"), &b), 0);
        assert_int_equal(s->n_images, 2);

        /* Configs and layer blobs by digest, layers by chain ID; nothing else. */
        assert_true(image_store_blob_used(s, id('1')));
        assert_true(image_store_blob_used(s, id('2')));
        for (const char *c = "abc"; *c; c++)
                assert_true(image_store_blob_used(s, id(*c)));
        for (const char *c = "ABC"; *c; c++)
                assert_true(image_store_layer_used(s, id(*c)));
        assert_false(image_store_blob_used(s, id('d')));
        assert_false(image_store_layer_used(s, id('D')));
        /* A digest is not a chain ID nor the reverse: the two name spaces are apart. */
        assert_false(image_store_layer_used(s, id('a')));
        assert_false(image_store_blob_used(s, id('A')));

        /* A container using an image holds its record (RemoveImage refuses), not its blobs. */
        a->users = 3;
        assert_false(image_store_blob_used(s, id('d')));
        a->users = 0;

        /* Re-adding the same config merges into the one record. */
        assert_int_equal(image_store_add(s, image('1', "docker.io/library/a:latest", "aAbB"), &got), 0);
        assert_ptr_equal(got, a);
        assert_int_equal(s->n_images, 2);
        assert_true(strv_contains(a->repo_tags, "docker.io/library/a:latest"));

        /* Removing a: its own blobs and layer go, the shared ones stay for b. */
        assert_int_equal(image_store_remove(s, a), 0);
        assert_int_equal(s->n_images, 1);
        assert_false(image_store_blob_used(s, id('1')));
        assert_false(image_store_blob_used(s, id('a')));
        assert_false(image_store_layer_used(s, id('A')));
        assert_true(image_store_blob_used(s, id('b')));
        assert_true(image_store_layer_used(s, id('B')));
        assert_true(image_store_layer_used(s, id('C')));
        run_children();
        image_store_free(s);
}

static void test_holds_of_pulls(void **state) {
        ImageStore *s;

        assert_int_equal(image_store_new(loop, root, &s), 0);
        assert_false(image_store_blob_used(s, id('e')));
        image_store_hold(s, id('e'));
        image_store_hold(s, id('E'));
        image_store_hold(s, id('e')); /* a second pull of the same blob */
        assert_true(image_store_blob_used(s, id('e')));
        assert_true(image_store_layer_used(s, id('E')));
        image_store_release(s, id('e'));
        assert_true(image_store_blob_used(s, id('e'))); /* the other pull still holds it */
        image_store_release(s, id('e'));
        assert_false(image_store_blob_used(s, id('e')));
        image_store_release(s, id('E'));
        assert_false(image_store_layer_used(s, id('E')));
        image_store_release(s, id('f')); /* never held: nothing happens */
        image_store_release(s, NULL);
        image_store_free(s);
}

static void test_gc_keep_names(void **state) {
        ImageStore *s;
        Image *a;
        char name[128];

        assert_int_equal(image_store_new(loop, root, &s), 0);
        assert_int_equal(image_store_add(s, image('1', "docker.io/library/a:1", "aA"), &a), 0);

        assert_true(image_store_gc_keep(s, IMAGE_GC_BLOBS, hex_of(id('1'))));
        assert_true(image_store_gc_keep(s, IMAGE_GC_BLOBS, hex_of(id('a'))));
        assert_false(image_store_gc_keep(s, IMAGE_GC_BLOBS, hex_of(id('b'))));
        assert_false(image_store_gc_keep(s, IMAGE_GC_BLOBS, "not-a-digest"));
        assert_true(image_store_gc_keep(s, IMAGE_GC_BLOBS, ".hidden"));

        assert_true(image_store_gc_keep(s, IMAGE_GC_LAYERS, hex_of(id('A'))));
        assert_false(image_store_gc_keep(s, IMAGE_GC_LAYERS, hex_of(id('B'))));
        /* A usage file goes with its directory, whether that stays or goes. */
        snprintf(name, sizeof name, "%s.json", hex_of(id('B')));
        assert_true(image_store_gc_keep(s, IMAGE_GC_LAYERS, name));
        /* A partial unpack goes even when its layer is used: the finished one has the plain name. */
        snprintf(name, sizeof name, "%s.tmp-1a2b3c", hex_of(id('A')));
        assert_false(image_store_gc_keep(s, IMAGE_GC_LAYERS, name));
        assert_false(image_store_gc_keep(s, IMAGE_GC_LAYERS, "stray"));
        /* A layer's chain ID is not a blob's digest. */
        assert_false(image_store_gc_keep(s, IMAGE_GC_LAYERS, hex_of(id('a'))));
        image_store_free(s);
}

/* A store as a daemon killed half way through pulls would leave it, collected at start. */
static void test_collect_real_store(void **state) {
        char rel[256], record[2048];
        ImageStore *s;
        Image *a, *b;

        put_dir("records");
        snprintf(record, sizeof record,
                 "{\"id\":\"%s\",\"repoTags\":[\"docker.io/library/a:1\"],\"repoDigests\":[],\"size\":300,"
                 "\"layers\":[{\"digest\":\"%s\",\"diffId\":\"%s\",\"chainId\":\"%s\",\"size\":100},"
                 "{\"digest\":\"%s\",\"diffId\":\"%s\",\"chainId\":\"%s\",\"size\":100}]}",
                 id('1'), id('a'), id('a'), id('A'), id('b'), id('b'), id('B'));
        snprintf(rel, sizeof rel, "records/%s.json", hex_of(id('1')));
        put(rel, record);
        snprintf(record, sizeof record,
                 "{\"id\":\"%s\",\"repoTags\":[\"docker.io/library/b:1\"],\"layers\":["
                 "{\"digest\":\"%s\",\"diffId\":\"%s\",\"chainId\":\"%s\"},"
                 "{\"digest\":\"%s\",\"diffId\":\"%s\",\"chainId\":\"%s\"}]}",
                 id('2'), id('b'), id('b'), id('B'), id('c'), id('c'), id('C'));
        snprintf(rel, sizeof rel, "records/%s.json", hex_of(id('2')));
        put(rel, record);
        /* Unreadable records count for nothing: what only they name goes. */
        snprintf(rel, sizeof rel, "records/%s.json", hex_of(id('3')));
        put(rel, "{\"id\": \"sha256:3333");
        snprintf(record, sizeof record, "{\"id\":\"%s\",\"layers\":[{\"digest\":\"%s\"}]}", id('4'), id('d'));
        snprintf(rel, sizeof rel, "records/%s.json", hex_of(id('4')));
        put(rel, record); /* a layer without its chain ID */
        snprintf(record, sizeof record, "{\"id\":\"%s\",\"layers\":[{\"digest\":\"%s\",\"chainId\":\"../../x\"}]}",
                 id('5'), id('d'));
        snprintf(rel, sizeof rel, "records/%s.json", hex_of(id('5')));
        put(rel, record);
        put("records/notes.txt", "not a record");

        for (const char *c = "12345abcd"; *c; c++)
                blob(id(*c));
        put("blobs/sha256/junk", "x");
        layer(id('A'), true);
        layer(id('B'), true);
        layer(id('C'), true);
        layer(id('D'), true); /* no record uses it */
        snprintf(rel, sizeof rel, "layers/%s.tmp-77aa/usr", hex_of(id('C')));
        put_dir(rel); /* an unpack cut short */
        put("blobs/tmp/download-1", "half a blob");
        put_dir("trash/x.0000beef/deep/er");

        assert_int_equal(image_store_new(loop, root, &s), 0);
        assert_int_equal(s->n_images, 2);
        a = image_store_find(s, "docker.io/library/a:1");
        b = image_store_find(s, "b:1");
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(a->n_layers, 2);
        assert_int_equal(a->size, 300);
        assert_string_equal(b->layers[1].chain_id, id('C'));

        for (const char *c = "12abc"; *c; c++)
                assert_true(blob_there(id(*c)));
        for (const char *c = "345d"; *c; c++)
                assert_false(blob_there(id(*c)));
        assert_false(there("blobs/sha256/junk"));
        for (const char *c = "ABC"; *c; c++)
                assert_true(layer_there(id(*c)));
        assert_false(layer_there(id('D')));
        snprintf(rel, sizeof rel, "layers/%s.tmp-77aa", hex_of(id('C')));
        assert_false(there(rel));
        assert_int_equal(entries("blobs/tmp"), 0);
        assert_int_equal(entries("trash"), 0);
        assert_int_equal(entries("layers"), 6);
        assert_true(image_store_has_layer(s, id('B')));
        assert_int_equal(image_store_layer_size(s, id('B')), 2048);

        /* Removing a: the record at once; its own blobs and layer out of their names at once (into
         * the trash), deleted there by a child; the shared layer and b's stay. */
        assert_int_equal(image_store_remove(s, a), 0);
        snprintf(rel, sizeof rel, "records/%s.json", hex_of(id('1')));
        assert_false(there(rel));
        assert_false(blob_there(id('1')));
        assert_false(blob_there(id('a')));
        assert_false(layer_there(id('A')));
        assert_false(image_store_has_layer(s, id('A')));
        assert_true(blob_there(id('b')));
        assert_true(layer_there(id('B')));
        assert_true(blob_there(id('2')));
        assert_true(layer_there(id('C')));
        run_children();
        assert_int_equal(entries("trash"), 0);
        image_store_free(s);

        /* And what stays survives the next start. */
        assert_int_equal(image_store_new(loop, root, &s), 0);
        assert_int_equal(s->n_images, 1);
        assert_true(blob_there(id('b')) && blob_there(id('c')) && blob_there(id('2')));
        assert_true(layer_there(id('B')) && layer_there(id('C')));
        assert_int_equal(entries("layers"), 4);
        image_store_free(s);
}

/* What a failed pull brought goes unless a record uses it or another pull holds it. */
static void test_discard_unused_after_failed_pull(void **state) {
        ImageStore *s;
        Image *a;
        char *digests[] = { strdup(id('a')), strdup(id('e')), strdup(id('f')), NULL };
        char *chains[] = { strdup(id('A')), strdup(id('E')), strdup(id('F')), NULL };

        assert_int_equal(image_store_new(loop, root, &s), 0);
        assert_int_equal(image_store_add(s, image('1', "docker.io/library/a:1", "aA"), &a), 0);
        for (const char *c = "aef"; *c; c++)
                blob(id(*c));
        for (const char *c = "AEF"; *c; c++)
                layer(id(*c), true);
        image_store_hold(s, id('f'));
        image_store_hold(s, id('F'));

        image_store_discard_unused(s, digests, chains);
        assert_true(blob_there(id('a')));
        assert_true(layer_there(id('A')));
        assert_false(blob_there(id('e')));
        assert_false(layer_there(id('E')));
        assert_true(blob_there(id('f')));
        assert_true(layer_there(id('F')));
        run_children();
        assert_int_equal(entries("trash"), 0);

        /* Nothing there to discard (a layer never finished): nothing happens. */
        char *missing[] = { strdup(id('9')), NULL };
        image_store_discard_unused(s, missing, missing);
        free(missing[0]);
        for (size_t i = 0; i < 3; i++) {
                free(digests[i]);
                free(chains[i]);
        }
        assert_int_equal(child_count(), 0);
        image_store_release(s, id('f'));
        image_store_release(s, id('F'));
        image_store_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_decisions_follow_records, fresh),
                cmocka_unit_test_setup(test_holds_of_pulls, fresh),
                cmocka_unit_test_setup(test_gc_keep_names, fresh),
                cmocka_unit_test_setup(test_collect_real_store, fresh),
                cmocka_unit_test_setup(test_discard_unused_after_failed_pull, fresh),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
