/* CNI: the network configuration rendered from [CNI] ConfTemplate= for the pod CIDR kubelet gave. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"
#include "error-chain.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "strv.h"

#define CNI_TEMPLATE_VAR "{{.PodCIDR}}"

/* text with every {{.PodCIDR}} replaced; NULL when out of memory. */
static char *substitute(const char *text, const char *pod_cidr) {
        char *out = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&out, &n);

        if (!f)
                return NULL;
        for (const char *p = text, *q; *p; p = q + strlen(CNI_TEMPLATE_VAR)) {
                q = strstr(p, CNI_TEMPLATE_VAR);
                if (!q) {
                        fputs(p, f);
                        break;
                }
                fwrite(p, 1, (size_t) (q - p), f);
                fputs(pod_cidr, f);
        }
        fclose(f);
        return out;
}

int cni_render_template(const char *template_path, const char *conf_dir, const char *pod_cidr, Error *error) {
        _cleanup_free_ char *text = NULL, *out = NULL, *path = NULL;
        int r;

        assert(template_path);
        assert(conf_dir);
        if (!template_path[0] || !pod_cidr)
                return 0;
        r = read_file(template_path, 1024 * 1024, &text, NULL);
        if (r < 0)
                return error_errno(error, r, "cannot read the CNI config template %s", template_path);
        out = substitute(text, pod_cidr);
        if (!out)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        /* First by name, so that it is the network rktlet uses; inotify picks it up. */
        r = mkdir_p(conf_dir, 0755);
        if (r >= 0 && asprintf(&path, "%s/10-rktlet.conflist", conf_dir) < 0) {
                path = NULL;
                r = -ENOMEM;
        }
        if (r >= 0)
                r = write_file_atomic(path, out, strlen(out), 0644);
        if (r < 0)
                return error_errno(error, r, "cannot write the CNI config %s", path ?: conf_dir);
        log_info("CNI: wrote %s from %s for pod CIDR %s.", path, template_path, pod_cidr);
        return 0;
}
