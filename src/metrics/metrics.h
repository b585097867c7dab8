/* A registry of Prometheus metrics (counters, gauges, histograms with labels) and their rendering in
 * the text exposition format 0.0.4. No I/O, no globals: the Manager owns one Metrics. */
#pragma once

#include <errno.h>
#include <stddef.h>

typedef enum MetricType {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM,
        _METRIC_TYPE_MAX,
        _METRIC_TYPE_INVALID = -EINVAL,
} MetricType;

typedef struct Metrics Metrics;
typedef struct MetricFamily MetricFamily;

/* The content type of metrics_render()'s text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

int metrics_new(Metrics **ret);
Metrics *metrics_free(Metrics *m);

/* Registers a family, rendered in the order of registration. label_names is NULL-terminated (NULL:
 * no labels); buckets (histograms only) are the ascending upper bounds, +Inf not among them. */
int metrics_add_family(Metrics *m, const char *name, const char *help, MetricType type, const char *const *label_names,
                       const double *buckets, size_t n_buckets, MetricFamily **ret);

/* values: one per label name, in their order (NULL when the family has no labels). The series is
 * made on first use. -ENOMEM only. */
int metrics_inc(MetricFamily *f, const char *const *values, double v);     /* counters (and gauges) */
int metrics_set(MetricFamily *f, const char *const *values, double v);     /* gauges */
int metrics_observe(MetricFamily *f, const char *const *values, double v); /* histograms */
/* Drops every series of a family: gauges computed afresh at each scrape. */
void metrics_family_clear(MetricFamily *f);
/* The value of a counter or gauge series, the count of a histogram's; 0 when there is no such series. */
double metrics_get(const MetricFamily *f, const char *const *values);

/* The whole registry as text; *ret is NUL-terminated, its length in *ret_len. */
int metrics_render(const Metrics *m, char **ret, size_t *ret_len);
