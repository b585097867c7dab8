/* Fuzzes the rktlet.conf parser: any file content either loads or fails with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static void ignore(const char *origin, const char *message, void *userdata) {
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[64], *error = NULL, *json = NULL;
        Config c;
        int fd, r;

        fd = memfd_create("rktlet.conf", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (write(fd, data, size) != (ssize_t) size) {
                close(fd);
                return 0;
        }
        snprintf(path, sizeof path, "/proc/self/fd/%i", fd);
        if (config_init(&c) < 0) {
                close(fd);
                return 0;
        }
        r = config_load(&c, path, ignore, NULL, &error);
        if (r < 0 && !error)
                abort(); /* every failure explains itself */
        if (r >= 0 && config_to_json(&c, &json) < 0)
                abort();
        free(json);
        free(error);
        config_done(&c);
        close(fd);
        return 0;
}
