/* The Prometheus endpoint: `GET /metrics` over HTTP/1.1 from libmicrohttpd on the daemon's loop,
 * the registry rendered afresh at each scrape; and what the daemon knows of itself from /proc. */
#pragma once

#include <ev.h>
#include <stdint.h>

#include "metrics.h"

typedef struct MetricsServer MetricsServer;

/* Runs before each scrape renders the registry: gauges computed from the owner's tables. */
typedef void (*MetricsCollect)(Metrics *m, void *userdata);

/* address: "127.0.0.1:9899" or "[::1]:9899" (port 0: the kernel chooses). -EINVAL for a bad
 * address; bind()'s errno otherwise. The server does not own m. */
int metrics_server_new(struct ev_loop *loop, const char *address, Metrics *m, MetricsCollect collect, void *userdata,
                       MetricsServer **ret);
MetricsServer *metrics_server_free(MetricsServer *s);
/* "http://127.0.0.1:9899/metrics" */
const char *metrics_server_url(const MetricsServer *s);

/* The process's open fds (/proc/self/fd) and resident memory in bytes (/proc/self/statm). */
int metrics_process_sample(uint64_t *ret_fds, uint64_t *ret_rss_bytes);
