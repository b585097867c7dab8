/* Fuzzes what rktlet reads back from disk and from plugins: a pod's state.json (as a restarted
 * daemon loads it) and a CNI result (the pod's addresses). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cni.h"
#include "fd-util.h"
#include "fileio.h"
#include "fuzz.h"
#include "json-util.h"
#include "pod-internal.h"

#define ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char root[64];

static void cleanup(void) {
        (void) rm_rf(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[256], *s;
        PodTable *t = NULL;
        Pod *pod = NULL;
        char **ips = NULL;
        size_t n = 0;

        if (!root[0]) {
                snprintf(root, sizeof root, "/tmp/rktlet-fuzz-state.%d", (int) getpid());
                snprintf(path, sizeof path, "%s/pods/" ID, root);
                if (mkdir_p(path, 0700) < 0)
                        abort();
                atexit(cleanup);
        }
        snprintf(path, sizeof path, "%s/pods/" ID "/state.json", root);
        if (write_file_atomic(path, (const char *) data, size, 0600) < 0)
                return 0;
        PodEnv env = { .state_dir = root, .root_dir = root };
        if (pod_table_new(&env, &t) < 0)
                return 0;
        if (pod_load(t, ID, &pod) >= 0) {
                /* What loads must save again and describe itself. */
                if (pod_save(pod) < 0)
                        abort();
                free(pod_info_json(pod));
                (void) pod_state(pod);
        }
        pod_table_free(t);

        s = strndup((const char *) data, size);
        if (s && cni_result_ips(s, &ips, &n) >= 0) {
                for (size_t i = 0; i < n; i++)
                        if (!ips[i] || strchr(ips[i], '/'))
                                abort();
                for (size_t i = 0; i < n; i++)
                        free(ips[i]);
                free(ips);
        }
        free(s);
        return 0;
}
