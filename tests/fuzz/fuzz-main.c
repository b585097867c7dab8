/* Replays fuzz inputs (files, or every file in directories) through LLVMFuzzerTestOneInput, so that
 * each corpus runs on every `meson test` without libFuzzer. Fails when an input cannot be read, when
 * the target returns non-zero for one, and when nothing at all was replayed (a corpus gone missing
 * must not pass as a clean run). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
        FILE *f = fopen(path, "re");
        uint8_t *data = NULL;
        size_t size = 0, cap = 0;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        for (;;) {
                if (size == cap) {
                        uint8_t *n = realloc(data, cap = cap ? cap * 2 : 4096);
                        if (!n) {
                                free(data);
                                fclose(f);
                                return -1;
                        }
                        data = n;
                }
                size_t k = fread(data + size, 1, cap - size, f);
                if (k == 0)
                        break;
                size += k;
        }
        fclose(f);
        int r = LLVMFuzzerTestOneInput(data, size);
        free(data);
        if (r != 0) {
                fprintf(stderr, "%s: the target returned %d\n", path, r);
                return -1;
        }
        return 0;
}

static int run_path(const char *path, unsigned *n) {
        struct stat st;
        struct dirent **entries;
        int k, r = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
                (*n)++;
                return run_file(path);
        }
        k = scandir(path, &entries, NULL, alphasort);
        if (k < 0)
                return -1;
        for (int i = 0; i < k; i++) {
                char *p;
                if (entries[i]->d_name[0] != '.' && asprintf(&p, "%s/%s", path, entries[i]->d_name) >= 0) {
                        if (run_path(p, n) < 0)
                                r = -1;
                        free(p);
                }
                free(entries[i]);
        }
        free(entries);
        return r;
}

int main(int argc, char *argv[]) {
        unsigned n = 0;
        int r = 0;

        for (int i = 1; i < argc; i++)
                if (run_path(argv[i], &n) < 0)
                        r = 1;
        printf("%u input(s) replayed\n", n);
        if (n == 0) {
                fprintf(stderr, "no input replayed: the corpus is empty or missing\n");
                return 1;
        }
        return r;
}
