/* Fuzzes Localhost seccomp profiles (OCI linux.seccomp, or Docker's format with archMap and
 * includes/excludes), as a container's config.json is generated from one: a profile is either
 * refused with a message, or becomes a "seccomp" value that is valid JSON with what the runtime
 * needs (a defaultAction and an array of syscall rules, each with names and an action). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_gen.h>

#include "fd-util.h"
#include "fileio.h"
#include "fuzz.h"
#include "json-util.h"
#include "oci-spec.h"

static char path[64];

static void cleanup(void) {
        (void) unlink(path);
}

static void check_generated(const char *json) {
        yajl_val v = json ? json_parse(json, NULL, 0) : NULL, calls;

        if (!v || !YAJL_IS_OBJECT(v) || !json_get_str(v, "defaultAction"))
                abort();
        calls = json_get(v, "syscalls");
        if (!YAJL_IS_ARRAY(calls))
                abort();
        for (size_t i = 0; i < calls->u.array.len; i++) {
                yajl_val c = calls->u.array.values[i];
                if (!YAJL_IS_ARRAY(json_get(c, "names")) || !json_get_str(c, "action"))
                        abort();
        }
        yajl_tree_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* A container with some of the default capabilities, or (odd sizes) one with CAP_SYS_ADMIN:
         * one profile read per input, as each read takes a 4 MiB buffer (slow under ASan). */
        char *caps[][4] = {
                { (char *) "CAP_CHOWN", (char *) "CAP_KILL", (char *) "CAP_NET_BIND_SERVICE", NULL },
                { (char *) "CAP_CHOWN", (char *) "CAP_SYS_ADMIN", (char *) "CAP_SYS_PTRACE", NULL },
        };
        Error message = ERROR_INIT;
        char *json = NULL;
        const unsigned char *buf;
        yajl_gen g;
        size_t len;
        int r;

        if (!path[0]) {
                snprintf(path, sizeof path, "/tmp/rktlet-fuzz-seccomp.%d.json", (int) getpid());
                atexit(cleanup);
        }
        if (write_file_replace(path, (const char *) data, size, 0600) < 0)
                return 0;
        g = yajl_gen_alloc(NULL);
        if (!g)
                abort();
        r = oci_seccomp_profile_gen(g, path, caps[size & 1], &message);
        if (r < 0) {
                if (!error_is_set(&message) || !message.message || !message.message[0])
                        abort(); /* a refusal says why */
                if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok || len != 0)
                        abort(); /* and generates nothing */
        } else {
                if (error_is_set(&message))
                        abort();
                json = json_gen_steal(g);
                check_generated(json);
        }
        free(json);
        error_done(&message);
        yajl_gen_free(g);
        return 0;
}
