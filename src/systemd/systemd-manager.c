/* Asynchronous calls to systemd's manager object, org.freedesktop.systemd1. */
#include "systemd-manager.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

typedef struct VersionCall {
        SystemdVersionDone done;
        void *userdata;
} VersionCall;

static void version_call_free(void *p) {
        free(p);
}

static int version_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        VersionCall *v = userdata;
        const char *version = NULL;
        Error error = ERROR_INIT;
        int r;

        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                /* A timeout or a bus gone: systemd is not there now. */
                (void) error_set(&error, ERROR_UNAVAILABLE, sd_bus_message_get_errno(m) ?: EIO, "%s: %s", e->name,
                                 e->message ? e->message : "");
        } else if ((r = sd_bus_message_read(m, "v", "s", &version)) < 0)
                (void) error_errno(&error, r, "unexpected reply");
        v->done(error_is_set(&error) ? &error : NULL, version, v->userdata);
        error_done(&error);
        return 0;
}

int systemd_get_manager_string(sd_bus *bus, const char *property, uint64_t timeout_usec, SystemdVersionDone done,
                               void *userdata, sd_bus_slot **ret_slot) {
        sd_bus_message *m = NULL;
        sd_bus_slot *slot = NULL;
        VersionCall *v;
        int r;

        v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        v->done = done;
        v->userdata = userdata;

        r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                           "org.freedesktop.DBus.Properties", "Get");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", "org.freedesktop.systemd1.Manager", property);
        if (r >= 0)
                r = sd_bus_call_async(bus, &slot, m, version_reply, v, timeout_usec);
        sd_bus_message_unref(m);
        if (r < 0) {
                free(v);
                return r;
        }
        /* The slot owns v from here on: freed when the reply came or the call was cancelled. */
        sd_bus_slot_set_destroy_callback(slot, version_call_free);
        *ret_slot = slot;
        return 0;
}

int systemd_get_version(sd_bus *bus, uint64_t timeout_usec, SystemdVersionDone done, void *userdata,
                        sd_bus_slot **ret_slot) {
        return systemd_get_manager_string(bus, "Version", timeout_usec, done, userdata, ret_slot);
}

char *systemd_slice_path(const char *slice) {
        size_t n = strlen(slice), k = strlen(".slice");
        char *out = NULL, *p;
        size_t len = 0;
        FILE *f;

        if (n <= k || strcmp(slice + n - k, ".slice") != 0)
                return NULL;
        if (strcmp(slice, "-.slice") == 0)
                return strdup("");
        f = open_memstream(&out, &len);
        if (!f)
                return NULL;
        /* "a-b-c.slice" is /a.slice/a-b.slice/a-b-c.slice. */
        for (p = strchr(slice, '-'); p && p < slice + n - k; p = strchr(p + 1, '-'))
                fprintf(f, "/%.*s.slice", (int) (p - slice), slice);
        fprintf(f, "/%s", slice);
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}
