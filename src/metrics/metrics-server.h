/* The Prometheus endpoint: `GET /metrics` over HTTP/1.1 from libmicrohttpd on the daemon's loop,
 * the registry rendered afresh at each scrape; and what the daemon knows of itself from /proc. */
#pragma once

#include <ev.h>
#include <stdbool.h>
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
/* Called once a draining server has answered its open requests (or their time ran out): frees s. */
typedef void (*MetricsServerDrained)(MetricsServer *s, void *userdata);

/* Stops listening (the port closes at once) and lets the connections already open finish, each
 * told to close after its answer, for at most 10 s. false: there were none, and s is the caller's
 * to free now; true: drained() frees it later (metrics_server_free() before then is fine too). */
bool metrics_server_drain(MetricsServer *s, MetricsServerDrained drained, void *userdata);
/* "http://127.0.0.1:9899/metrics" */
const char *metrics_server_url(const MetricsServer *s);

/* The process's open fds (/proc/self/fd) and resident memory in bytes (/proc/self/statm). */
int metrics_process_sample(uint64_t *ret_fds, uint64_t *ret_rss_bytes);
