/* The files a pod's containers mount later: hostname, hosts and resolv.conf in its run directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "json-util.h"
#include "pod-internal.h"

/* A pod with a user namespace of its own gets files its root owns (may write, as on the node),
 * not ones of the node's root, who is nobody in there. */
static int write_in(const Pod *pod, const char *dir, const char *name, const char *data) {
        char *path;
        int r;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        r = write_file_atomic(path, data, strlen(data), 0644);
        if (r >= 0 && pod->spec.userns == POD_NS_POD && chown(path, pod->spec.uids[0].host_id, pod->spec.gids[0].host_id) < 0)
                r = -errno;
        free(path);
        return r;
}

static char *resolv_conf(const PodSpec *s) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        if (!(s->dns_servers && s->dns_servers[0]) && !(s->dns_searches && s->dns_searches[0]) &&
            !(s->dns_options && s->dns_options[0])) {
                /* No DNS config: the host's, as containerd and CRI-O do. */
                char *host = NULL;
                if (read_file("/etc/resolv.conf", 64 * 1024, &host, NULL) >= 0)
                        return host;
                return strdup("");
        }
        f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        if (s->dns_searches && s->dns_searches[0]) {
                fputs("search", f);
                for (char **p = s->dns_searches; *p; p++)
                        fprintf(f, " %s", *p);
                fputc('\n', f);
        }
        for (char **p = s->dns_servers; p && *p; p++)
                fprintf(f, "nameserver %s\n", *p);
        if (s->dns_options && s->dns_options[0]) {
                fputs("options", f);
                for (char **p = s->dns_options; *p; p++)
                        fprintf(f, " %s", *p);
                fputc('\n', f);
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

int pod_write_files(const Pod *pod) {
        const PodSpec *s = &pod->spec;
        char *dir = pod_run_dir(pod), *hostname = NULL, *hosts = NULL, *resolv = NULL;
        int r = -ENOMEM;

        if (!dir)
                return -ENOMEM;
        if (asprintf(&hostname, "%s\n", pod->hostname) < 0)
                goto out;
        /* The pod's host name resolves to each of its IPs once it has them (the primary first), as
         * in the hosts file kubelet writes. */
        size_t hosts_len = 0;
        FILE *f = open_memstream(&hosts, &hosts_len);
        if (!f)
                goto out;
        fprintf(f,
                "# Written by rktlet for pod %s/%s.\n"
                "127.0.0.1\tlocalhost\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\n"
                "fe00::0\tip6-mcastprefix\n"
                "fe00::1\tip6-allnodes\n"
                "fe00::2\tip6-allrouters\n",
                s->namespace, s->name);
        for (size_t i = 0; i < pod->n_ips; i++)
                fprintf(f, "%s\t%s\n", pod->ips[i], pod->hostname);
        if (fclose(f) != 0 || !hosts) {
                r = -ENOMEM;
                goto out;
        }
        resolv = resolv_conf(s);
        if (!resolv) {
                r = -ENOMEM;
                goto out;
        }
        if ((r = write_in(pod, dir, "hostname", hostname)) < 0 || (r = write_in(pod, dir, "hosts", hosts)) < 0 ||
            (r = write_in(pod, dir, "resolv.conf", resolv)) < 0)
                goto out;
        r = 0;
out:
        free(dir);
        free(hostname);
        free(hosts);
        free(resolv);
        return r;
}
