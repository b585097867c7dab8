/* The metrics registry and its text exposition (Prometheus format 0.0.4). */
#include "metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

typedef struct MetricSeries {
        struct MetricSeries *next;
        char **values;     /* one per label */
        double value;      /* counter, gauge; a histogram's sum */
        uint64_t count;    /* a histogram's observations */
        uint64_t *buckets; /* a histogram's per-bucket (not cumulative) counts */
} MetricSeries;

struct MetricFamily {
        MetricFamily *next;
        char *name, *help;
        MetricType type;
        char **labels;
        size_t n_labels;
        double *bounds;
        size_t n_bounds;
        MetricSeries *series, **series_tail;
};

struct Metrics {
        MetricFamily *families, **tail;
};

static const char *const type_names[_METRIC_TYPE_MAX] = {
        [METRIC_COUNTER] = "counter",
        [METRIC_GAUGE] = "gauge",
        [METRIC_HISTOGRAM] = "histogram",
};

int metrics_new(Metrics **ret) {
        Metrics *m = calloc(1, sizeof *m);

        if (!m)
                return -ENOMEM;
        m->tail = &m->families;
        *ret = m;
        return 0;
}

static void series_free(MetricFamily *f, MetricSeries *s) {
        for (size_t i = 0; i < f->n_labels; i++)
                free(s->values[i]);
        free(s->values);
        free(s->buckets);
        free(s);
}

void metrics_family_clear(MetricFamily *f) {
        MetricSeries *s;

        while ((s = f->series)) {
                f->series = s->next;
                series_free(f, s);
        }
        f->series_tail = &f->series;
}

static void family_free(MetricFamily *f) {
        metrics_family_clear(f);
        for (size_t i = 0; i < f->n_labels; i++)
                free(f->labels[i]);
        free(f->labels);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
}

Metrics *metrics_free(Metrics *m) {
        MetricFamily *f;

        if (!m)
                return NULL;
        while ((f = m->families)) {
                m->families = f->next;
                family_free(f);
        }
        free(m);
        return NULL;
}

int metrics_add_family(Metrics *m, const char *name, const char *help, MetricType type, const char *const *label_names,
                       const double *buckets, size_t n_buckets, MetricFamily **ret) {
        MetricFamily *f;

        if (type < 0 || type >= _METRIC_TYPE_MAX || (type != METRIC_HISTOGRAM && n_buckets > 0))
                return -EINVAL;
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->type = type;
        f->series_tail = &f->series;
        f->name = strdup(name);
        f->help = strdup(help ?: "");
        for (const char *const *l = label_names; l && *l; l++)
                f->n_labels++;
        f->labels = calloc(f->n_labels + 1, sizeof *f->labels);
        f->bounds = calloc(n_buckets + 1, sizeof *f->bounds);
        if (!f->name || !f->help || !f->labels || !f->bounds)
                goto oom;
        for (size_t i = 0; i < f->n_labels; i++)
                if (!(f->labels[i] = strdup(label_names[i])))
                        goto oom;
        if (n_buckets > 0)
                memcpy(f->bounds, buckets, n_buckets * sizeof *buckets);
        f->n_bounds = n_buckets;
        *m->tail = f;
        m->tail = &f->next;
        if (ret)
                *ret = f;
        return 0;
oom:
        family_free(f);
        return -ENOMEM;
}

static bool series_is(const MetricFamily *f, const MetricSeries *s, const char *const *values) {
        for (size_t i = 0; i < f->n_labels; i++)
                if (strcmp(s->values[i], values[i] ?: "") != 0)
                        return false;
        return true;
}

static MetricSeries *series_find(const MetricFamily *f, const char *const *values) {
        for (MetricSeries *s = f->series; s; s = s->next)
                if (series_is(f, s, values))
                        return s;
        return NULL;
}

static MetricSeries *series_get(MetricFamily *f, const char *const *values) {
        MetricSeries *s = series_find(f, values);

        if (s)
                return s;
        s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->values = calloc(f->n_labels + 1, sizeof *s->values);
        if (f->type == METRIC_HISTOGRAM)
                s->buckets = calloc(f->n_bounds + 1, sizeof *s->buckets);
        if (!s->values || (f->type == METRIC_HISTOGRAM && !s->buckets))
                goto oom;
        for (size_t i = 0; i < f->n_labels; i++)
                if (!(s->values[i] = strdup(values[i] ?: "")))
                        goto oom;
        *f->series_tail = s;
        f->series_tail = &s->next;
        return s;
oom:
        series_free(f, s);
        return NULL;
}

int metrics_inc(MetricFamily *f, const char *const *values, double v) {
        MetricSeries *s = series_get(f, values);

        if (!s)
                return -ENOMEM;
        s->value += v;
        return 0;
}

int metrics_set(MetricFamily *f, const char *const *values, double v) {
        MetricSeries *s = series_get(f, values);

        if (!s)
                return -ENOMEM;
        s->value = v;
        return 0;
}

int metrics_observe(MetricFamily *f, const char *const *values, double v) {
        MetricSeries *s;
        size_t i;

        if (f->type != METRIC_HISTOGRAM)
                return -EINVAL;
        s = series_get(f, values);
        if (!s)
                return -ENOMEM;
        for (i = 0; i < f->n_bounds && v > f->bounds[i]; i++)
                ;
        s->buckets[i]++; /* i == n_bounds: only +Inf */
        s->count++;
        s->value += v;
        return 0;
}

double metrics_get(const MetricFamily *f, const char *const *values) {
        const MetricSeries *s = series_find(f, values);

        if (!s)
                return 0;
        return f->type == METRIC_HISTOGRAM ? (double) s->count : s->value;
}

/* --- rendering ----------------------------------------------------------------------------------- */

/* As Go's strconv.FormatFloat(v, 'g', -1, 64) would, near enough: the shortest text that reads back
 * as v; whole numbers without an exponent up to 2^53. */
static const char *format_double(char *buf, size_t size, double v) {
        if (isnan(v))
                return "NaN";
        if (isinf(v))
                return v > 0 ? "+Inf" : "-Inf";
        if (v == floor(v) && fabs(v) < 9007199254740992.) {
                snprintf(buf, size, "%.0f", v);
                return buf;
        }
        for (int prec = 6; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        break;
        }
        return buf;
}

static void put_double(FILE *f, double v) {
        char buf[64];

        fputs(format_double(buf, sizeof buf, v), f);
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void put_escaped(FILE *f, const char *s, bool quote) {
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else if (quote && *s == '"')
                        fputs("\\\"", f);
                else
                        fputc(*s, f);
        }
}

/* {a="x",b="y"} with an extra le= for buckets (le: NULL none); nothing when there are no labels. */
static void put_labels(FILE *out, const MetricFamily *f, const MetricSeries *s, const char *le) {
        bool first = true;

        if (f->n_labels == 0 && !le)
                return;
        fputc('{', out);
        for (size_t i = 0; i < f->n_labels; i++) {
                fprintf(out, "%s%s=\"", first ? "" : ",", f->labels[i]);
                put_escaped(out, s->values[i], true);
                fputc('"', out);
                first = false;
        }
        if (le)
                fprintf(out, "%sle=\"%s\"", first ? "" : ",", le);
        fputc('}', out);
}

static void render_family(FILE *out, const MetricFamily *f) {
        fprintf(out, "# HELP %s ", f->name);
        put_escaped(out, f->help, false);
        fprintf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (const MetricSeries *s = f->series; s; s = s->next) {
                if (f->type != METRIC_HISTOGRAM) {
                        fputs(f->name, out);
                        put_labels(out, f, s, NULL);
                        fputc(' ', out);
                        put_double(out, s->value);
                        fputc('\n', out);
                        continue;
                }
                uint64_t cumulative = 0;
                for (size_t i = 0; i <= f->n_bounds; i++) {
                        char buf[64];
                        const char *le = i == f->n_bounds ? "+Inf" : format_double(buf, sizeof buf, f->bounds[i]);

                        cumulative += s->buckets[i];
                        fprintf(out, "%s_bucket", f->name);
                        put_labels(out, f, s, le);
                        fprintf(out, " %llu\n", (unsigned long long) cumulative);
                }
                fprintf(out, "%s_sum", f->name);
                put_labels(out, f, s, NULL);
                fputc(' ', out);
                put_double(out, s->value);
                fprintf(out, "\n%s_count", f->name);
                put_labels(out, f, s, NULL);
                fprintf(out, " %llu\n", (unsigned long long) s->count);
        }
}

int metrics_render(const Metrics *m, char **ret, size_t *ret_len) {
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);

        if (!out)
                return -ENOMEM;
        for (const MetricFamily *f = m->families; f; f = f->next)
                render_family(out, f);
        if (ferror(out) | (fclose(out) != 0)) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}
