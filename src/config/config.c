/* rktlet.conf and its drop-ins, overlaid by command-line flags, parsed into one Config. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_gen.h>

#include "log.h"
#include "macro.h"
#include "parse-util.h"
#include "quote.h"
#include "time-util.h"

typedef int (*ConfigParser)(const char *value, void *field, char **ret_error);

typedef struct ConfigItem {
        const char *section;
        const char *key;
        ConfigParser parse;
        size_t offset;
} ConfigItem;

static int parse_path(const char *value, void *field, char **ret_error) {
        char **p = field;

        if (value[0] != '/') {
                *ret_error = strdup("must be an absolute path");
                return -EINVAL;
        }
        char *s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

static int parse_optional_path(const char *value, void *field, char **ret_error) {
        char **p = field, *s;

        if (value[0] == '\0') {
                s = strdup("");
                if (!s)
                        return -ENOMEM;
                free(*p);
                *p = s;
                return 0;
        }
        return parse_path(value, field, ret_error);
}

static int parse_path_list(const char *value, void *field, char **ret_error) {
        char **p = field;

        for (const char *c = value; *c;) {
                if (*c != '/') {
                        *ret_error = strdup("must be absolute paths separated by ':'");
                        return -EINVAL;
                }
                c += strcspn(c, ":");
                if (*c == ':')
                        c++;
        }
        if (!value[0]) {
                *ret_error = strdup("must not be empty");
                return -EINVAL;
        }
        char *s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

static int parse_string(const char *value, void *field, char **ret_error) {
        char **p = field;
        char *s;

        if (strpbrk(value, " \t")) {
                *ret_error = strdup("must not contain white space (separate entries with ',')");
                return -EINVAL;
        }
        s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

static int parse_mirrors(const char *value, void *field, char **ret_error) {
        /* registry=mirror|mirror,registry=mirror */
        for (const char *c = value; *c;) {
                size_t n = strcspn(c, ",");
                const char *eq = memchr(c, '=', n);
                if (!eq || eq == c || eq + 1 == c + n) {
                        *ret_error = strdup("must be registry=mirror[|mirror...] entries separated by ','");
                        return -EINVAL;
                }
                c += n;
                if (*c == ',')
                        c++;
        }
        return parse_string(value, field, ret_error);
}

/* DefaultRuntime=: a handler name, or "" to choose. */
static int parse_runtime_name(const char *value, void *field, char **ret_error) {
        if (value[0] && !config_runtime_name_is_valid(value)) {
                *ret_error = strdup("must be a RuntimeClass handler name: 1 to 63 of a-z, 0-9 and '-', not starting or "
                                    "ending with '-'");
                return -EINVAL;
        }
        return parse_string(value, field, ret_error);
}

/* [Runtime.<name>] Path=: a name looked up in $PATH or an absolute path ("" for the handler's name). */
static int parse_runtime_path(const char *value, void *field, char **ret_error) {
        if (strchr(value, '/') && value[0] != '/') {
                *ret_error = strdup("must be a name looked up in $PATH or an absolute path");
                return -EINVAL;
        }
        return parse_string(value, field, ret_error);
}

/* [Runtime.<name>] Options=: words separated by spaces, each an option of the runtime's own. */
static int parse_options(const char *value, void *field, char **ret_error) {
        char **p = field;

        for (const char *c = value; *c; c++)
                if (*c == '"' || *c == '\\' || *c == '\'') {
                        *ret_error = strdup("must be options separated by spaces, without quotes or backslashes");
                        return -EINVAL;
                }
        char *s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

static int parse_bus(const char *value, void *field, char **ret_error) {
        bool *user = field;

        if (strcmp(value, "system") == 0)
                *user = false;
        else if (strcmp(value, "user") == 0)
                *user = true;
        else {
                *ret_error = strdup("must be 'system' or 'user'");
                return -EINVAL;
        }
        return 0;
}

static int parse_level(const char *value, void *field, char **ret_error) {
        int level = log_level_from_string(value);

        if (level < 0) {
                *ret_error = strdup("must be one of err, warning, notice, info, debug");
                return -EINVAL;
        }
        *(int *) field = level;
        return 0;
}

static int parse_size_field(const char *value, void *field, char **ret_error) {
        uint64_t v;

        if (parse_size(value, &v) < 0 || v == 0 || v > UINT32_MAX) {
                *ret_error = strdup("must be a size between 1 and 4095M, such as 16M");
                return -EINVAL;
        }
        *(uint64_t *) field = v;
        return 0;
}

static int parse_sec_field(const char *value, void *field, char **ret_error) {
        uint64_t v;

        if (parse_sec(value, &v) < 0) {
                *ret_error = strdup("must be a duration, such as 10 or 10s or 500ms");
                return -EINVAL;
        }
        *(uint64_t *) field = v;
        return 0;
}

static int parse_count(const char *value, void *field, char **ret_error) {
        uint64_t v;

        if (parse_uint64(value, &v) < 0 || v == 0 || v > 1000000) {
                *ret_error = strdup("must be a whole number from 1 to 1000000");
                return -EINVAL;
        }
        *(uint32_t *) field = (uint32_t) v;
        return 0;
}

/* Sizes beyond 4G: an image's layers, a file system's reserve. */
static int parse_big_size(const char *value, void *field, char **ret_error) {
        uint64_t v;

        if (parse_size(value, &v) < 0 || v < 1024 * 1024) {
                *ret_error = strdup("must be a size of at least 1M, such as 32G");
                return -EINVAL;
        }
        *(uint64_t *) field = v;
        return 0;
}

/* MinFreeSpace=: a size ("1G", "0" for none) or a percentage of the file system ("5%"). */
static int parse_min_free(const char *value, void *field, char **ret_error) {
        SpaceReserve *reserve = field;
        size_t n = strlen(value);
        uint64_t v;

        if (n > 1 && value[n - 1] == '%') {
                char number[32];
                if (n - 1 >= sizeof number)
                        goto bad;
                memcpy(number, value, n - 1);
                number[n - 1] = '\0';
                if (parse_uint64(number, &v) < 0 || v > 99)
                        goto bad;
                *reserve = (SpaceReserve) { .percent = (uint32_t) v };
                return 0;
        }
        if (parse_size(value, &v) < 0)
                goto bad;
        *reserve = (SpaceReserve) { .bytes = v };
        return 0;
bad:
        *ret_error = strdup("must be a size such as 1G, or a percentage from 0% to 99% of the file system");
        return -EINVAL;
}

static int parse_address(const char *value, void *field, char **ret_error) {
        struct in6_addr a6;
        struct in_addr a4;

        if (inet_pton(AF_INET, value, &a4) != 1 && inet_pton(AF_INET6, value, &a6) != 1) {
                *ret_error = strdup("must be a numeric IPv4 or IPv6 address, such as 127.0.0.1");
                return -EINVAL;
        }
        return parse_string(value, field, ret_error);
}

/* [Metrics] Address=: "" (off), or an address and a port. */
static int parse_address_port(const char *value, void *field, char **ret_error) {
        if (value[0] && parse_ip_port(value, NULL, 0, NULL) < 0) {
                *ret_error = strdup("must be empty (off), or a numeric address and a port such as 127.0.0.1:9899 or "
                                    "[::1]:9899");
                return -EINVAL;
        }
        return parse_string(value, field, ret_error);
}

static int parse_port(const char *value, void *field, char **ret_error) {
        uint64_t v;

        if (parse_uint64(value, &v) < 0 || v > 65535) {
                *ret_error = strdup("must be a port from 0 (chosen by the kernel) to 65535");
                return -EINVAL;
        }
        *(uint32_t *) field = (uint32_t) v;
        return 0;
}

static int parse_positive_sec(const char *value, void *field, char **ret_error) {
        uint64_t v;

        if (parse_sec(value, &v) < 0 || v == 0) {
                *ret_error = strdup("must be a duration above 0, such as 30s or 4h");
                return -EINVAL;
        }
        *(uint64_t *) field = v;
        return 0;
}

static const ConfigItem items[] = {
        { "Daemon", "Listen", parse_path, offsetof(Config, listen) },
        { "Daemon", "StateDirectory", parse_path, offsetof(Config, state_dir) },
        { "Daemon", "RootDirectory", parse_path, offsetof(Config, root_dir) },
        { "Daemon", "Bus", parse_bus, offsetof(Config, user_bus) },
        { "Daemon", "LogLevel", parse_level, offsetof(Config, log_level) },
        { "Daemon", "ShutdownTimeoutSec", parse_sec_field, offsetof(Config, shutdown_timeout_usec) },
        { "GRPC", "MaxMessageSize", parse_size_field, offsetof(Config, max_message_size) },
        { "GRPC", "MaxConcurrentStreams", parse_count, offsetof(Config, max_concurrent_streams) },
        { "GRPC", "MaxConnections", parse_count, offsetof(Config, max_connections) },
        { "CNI", "ConfDir", parse_path, offsetof(Config, cni_conf_dir) },
        { "CNI", "BinDir", parse_path_list, offsetof(Config, cni_bin_dirs) },
        { "CNI", "PluginTimeoutSec", parse_sec_field, offsetof(Config, cni_timeout_usec) },
        { "CNI", "ConfTemplate", parse_path, offsetof(Config, cni_conf_template) },
        { "Registries", "Insecure", parse_string, offsetof(Config, registry_insecure) },
        { "Registries", "Mirrors", parse_mirrors, offsetof(Config, registry_mirrors) },
        { "Registries", "Blocked", parse_string, offsetof(Config, registry_blocked) },
        { "Registries", "CertsDir", parse_optional_path, offsetof(Config, registry_certs_dir) },
        { "Registries", "AuthFile", parse_optional_path, offsetof(Config, registry_auth_file) },
        { "Containers", "Runtime", parse_string, offsetof(Config, oci_runtime) },
        { "Containers", "DefaultRuntime", parse_runtime_name, offsetof(Config, default_runtime) },
        { "Images", "MaxLayerSize", parse_big_size, offsetof(Config, image_max_layer_size) },
        { "Images", "MaxImageSize", parse_big_size, offsetof(Config, image_max_size) },
        { "Images", "MaxExpansionRatio", parse_count, offsetof(Config, image_max_ratio) },
        { "Images", "MinFreeSpace", parse_min_free, offsetof(Config, image_min_free) },
        { "Streaming", "Address", parse_address, offsetof(Config, stream_address) },
        { "Streaming", "Port", parse_port, offsetof(Config, stream_port) },
        { "Streaming", "MaxConnections", parse_count, offsetof(Config, stream_max_connections) },
        { "Streaming", "StreamCreationTimeoutSec", parse_positive_sec, offsetof(Config, stream_creation_timeout_usec) },
        { "Streaming", "StreamIdleTimeoutSec", parse_positive_sec, offsetof(Config, stream_idle_timeout_usec) },
        { "CRI", "StreamChunkItems", parse_count, offsetof(Config, stream_chunk_items) },
        { "CRI", "EventQueueLength", parse_count, offsetof(Config, event_queue_length) },
        { "Streaming", "TLSCertificate", parse_optional_path, offsetof(Config, stream_tls_cert) },
        { "Streaming", "TLSKey", parse_optional_path, offsetof(Config, stream_tls_key) },
        { "Metrics", "Address", parse_address_port, offsetof(Config, metrics_address) },
};

static void config_runtime_done(ConfigRuntime *rt) {
        free(rt->name);
        free(rt->path);
        free(rt->root);
        free(rt->options);
        *rt = (ConfigRuntime) {};
}

int config_init(Config *c) {
        *c = (Config) {
                .listen = strdup("/run/rktlet/rktlet.sock"),
                .state_dir = strdup("/run/rktlet"),
                .root_dir = strdup("/var/lib/rktlet"),
                .log_level = LOG_INFO,
                .shutdown_timeout_usec = 10 * USEC_PER_SEC,
                .max_message_size = 16u << 20,
                .max_concurrent_streams = 1024,
                .max_connections = 1024,
                .cni_conf_dir = strdup("/etc/cni/net.d"),
                .cni_bin_dirs = strdup("/usr/lib/cni:/opt/cni/bin"),
                .cni_timeout_usec = 60 * USEC_PER_SEC,
                .cni_conf_template = strdup(""),
                .registry_insecure = strdup(""),
                .registry_mirrors = strdup(""),
                .registry_blocked = strdup(""),
                .registry_certs_dir = strdup("/etc/rktlet/certs.d"),
                .registry_auth_file = strdup("/etc/rktlet/auth.json"),
                .oci_runtime = strdup(""),
                .default_runtime = strdup(""),
                .image_max_layer_size = 32ULL << 30,
                .image_max_size = 64ULL << 30,
                .image_max_ratio = 100,
                .image_min_free = { .percent = 5 },
                .stream_address = strdup("127.0.0.1"),
                .stream_max_connections = 1000,
                .stream_creation_timeout_usec = 30 * USEC_PER_SEC, /* kubelet's defaults */
                .stream_idle_timeout_usec = 4 * 3600 * USEC_PER_SEC,
                .stream_chunk_items = 500,
                .event_queue_length = 1000,
                .stream_tls_cert = strdup(""),
                .stream_tls_key = strdup(""),
                .metrics_address = strdup(""),
        };
        if (!c->listen || !c->state_dir || !c->root_dir || !c->cni_conf_dir || !c->cni_bin_dirs ||
            !c->cni_conf_template || !c->registry_insecure || !c->registry_mirrors || !c->oci_runtime ||
            !c->registry_blocked || !c->registry_certs_dir || !c->registry_auth_file ||
            !c->default_runtime ||
            !c->stream_address || !c->stream_tls_cert || !c->stream_tls_key || !c->metrics_address) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(Config *c) {
        free(c->listen);
        free(c->state_dir);
        free(c->root_dir);
        free(c->cni_conf_dir);
        free(c->cni_bin_dirs);
        free(c->cni_conf_template);
        free(c->registry_insecure);
        free(c->registry_mirrors);
        free(c->registry_blocked);
        free(c->registry_certs_dir);
        free(c->registry_auth_file);
        free(c->oci_runtime);
        free(c->default_runtime);
        for (size_t i = 0; i < c->n_runtimes; i++)
                config_runtime_done(&c->runtimes[i]);
        free(c->runtimes);
        free(c->stream_address);
        free(c->stream_tls_cert);
        free(c->stream_tls_key);
        free(c->metrics_address);
        *c = (Config) {};
}

bool config_runtime_name_is_valid(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > 63 || name[0] == '-' || name[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
                        return false;
        return true;
}

/* The keys of a [Runtime.<name>] section. */
static const ConfigItem runtime_items[] = {
        { "Runtime", "Path", parse_runtime_path, offsetof(ConfigRuntime, path) },
        { "Runtime", "Root", parse_optional_path, offsetof(ConfigRuntime, root) },
        { "Runtime", "Options", parse_options, offsetof(ConfigRuntime, options) },
};

static ConfigRuntime *config_runtime_get(Config *c, const char *name) {
        for (size_t i = 0; i < c->n_runtimes; i++)
                if (strcmp(c->runtimes[i].name, name) == 0)
                        return &c->runtimes[i];
        ConfigRuntime *a = realloc(c->runtimes, (c->n_runtimes + 1) * sizeof *a);
        if (!a)
                return NULL;
        c->runtimes = a;
        ConfigRuntime *rt = &a[c->n_runtimes];
        *rt = (ConfigRuntime) { .name = strdup(name), .path = strdup(""), .root = strdup(""), .options = strdup("") };
        if (!rt->name || !rt->path || !rt->root || !rt->options) {
                config_runtime_done(rt);
                return NULL;
        }
        c->n_runtimes++;
        return rt;
}

/* [Runtime.<name>] Key=: the section is made by its first key. */
static int config_set_runtime(Config *c, const char *name, const char *key, const char *value, char **ret_error) {
        for (size_t i = 0; i < ELEMENTSOF(runtime_items); i++) {
                if (strcmp(runtime_items[i].key, key) != 0)
                        continue;
                *ret_error = NULL;
                if (!config_runtime_name_is_valid(name)) {
                        if (asprintf(ret_error, "the section [Runtime.%s] does not name a RuntimeClass handler: 1 to 63 of "
                                     "a-z, 0-9 and '-', not starting or ending with '-'", name) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                size_t n = c->n_runtimes;
                ConfigRuntime *rt = config_runtime_get(c, name);
                if (!rt)
                        return -ENOMEM;
                int r = runtime_items[i].parse(value, (uint8_t *) rt + runtime_items[i].offset, ret_error);
                if (r < 0 && c->n_runtimes > n) { /* a section made by a bad value is not left behind */
                        config_runtime_done(rt);
                        c->n_runtimes--;
                }
                return r;
        }
        return -ENOENT;
}

/* -ENOENT: no such key. */
int config_set(Config *c, const char *section, const char *key, const char *value, char **ret_error) {
        if (strncasecmp(section, "Runtime.", 8) == 0)
                return config_set_runtime(c, section + 8, key, value, ret_error);
        for (size_t i = 0; i < ELEMENTSOF(items); i++) {
                if (strcasecmp(items[i].section, section) != 0 || strcmp(items[i].key, key) != 0)
                        continue;
                *ret_error = NULL;
                return items[i].parse(value, (uint8_t *) c + items[i].offset, ret_error);
        }
        return -ENOENT;
}

typedef struct ParseState {
        Config *config;
        const char *path;
        FILE *f;
        unsigned line;
        ConfigWarn warn;
        void *userdata;
        int error;
        char *error_message;
} ParseState;

/* inih keeps at most this many bytes of a section's name, and cuts longer ones without a word. */
#define INIH_MAX_SECTION 49

/* inih reads through this so that we know which line a key came from, and so that a section name
 * inih would cut short ([Runtime.<a long handler name>]) is an error rather than another name. */
static char *reader(char *buf, int size, void *stream) {
        ParseState *st = stream;
        char *s = fgets(buf, size, st->f);
        if (!s)
                return NULL;
        st->line++;
        const char *p = s + strspn(s, " \t");
        if (*p == '[') {
                size_t n = strcspn(p + 1, "]\n");
                if (n > INIH_MAX_SECTION) {
                        st->error = -EINVAL;
                        if (asprintf(&st->error_message, "%s:%u: section name %.*s is too long (at most %d characters)",
                                     st->path, st->line, (int) n, p + 1, INIH_MAX_SECTION) < 0)
                                st->error_message = NULL;
                        return NULL; /* the end, for inih */
                }
        }
        return s;
}

static int config_ini_handler(void *user, const char *section, const char *name, const char *value) {
        ParseState *st = user;
        _cleanup_free_ char *why = NULL;
        char origin[4096];
        int r;

        if (!name || st->error < 0)
                return 1; /* a section header alone, or a file that failed already */

        snprintf(origin, sizeof origin, "%s:%u", st->path, st->line);
        r = config_set(st->config, section, name, value, &why);
        if (r == -ENOENT) {
                char msg[512];
                snprintf(msg, sizeof msg, "unknown key %s in section [%s], ignoring", QUOTE(name), section);
                if (st->warn)
                        st->warn(origin, msg, st->userdata);
                return 1;
        }
        if (r < 0) {
                st->error = r;
                if (asprintf(&st->error_message, "%s: invalid value %s for %s: %s", origin, QUOTE(value), name,
                             why ? why : strerror(-r)) < 0)
                        st->error_message = NULL;
                return 0;
        }
        return 1;
}

static int config_load_file(Config *c, const char *path, ConfigWarn warn, void *userdata, char **ret_error) {
        ParseState st = { .config = c, .path = path, .warn = warn, .userdata = userdata };
        int r;

        st.f = fopen(path, "re");
        if (!st.f)
                return errno == ENOENT ? 0 : -errno;
        r = ini_parse_stream(reader, &st, config_ini_handler, &st);
        fclose(st.f);

        if (st.error < 0) {
                *ret_error = st.error_message;
                return st.error;
        }
        if (r != 0) {
                if (asprintf(ret_error, "%s:%i: syntax error", path, r > 0 ? r : (int) st.line) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        return 0;
}

static int dropin_filter(const struct dirent *de) {
        size_t n = strlen(de->d_name);
        return de->d_name[0] != '.' && n > 5 && strcmp(de->d_name + n - 5, ".conf") == 0;
}

int config_load(Config *c, const char *path, ConfigWarn warn, void *userdata, char **ret_error) {
        _cleanup_free_ char *dir = NULL;
        struct dirent **list = NULL;
        int n, r;

        *ret_error = NULL;
        r = config_load_file(c, path, warn, userdata, ret_error);
        if (r < 0) {
                if (!*ret_error && asprintf(ret_error, "%s: %s", path, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }

        if (asprintf(&dir, "%s.d", path) < 0)
                return -ENOMEM;
        n = scandir(dir, &list, dropin_filter, alphasort);
        if (n < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;

        r = 0;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;
                if (r >= 0) {
                        if (asprintf(&p, "%s/%s", dir, list[i]->d_name) < 0)
                                r = -ENOMEM;
                        else
                                r = config_load_file(c, p, warn, userdata, ret_error);
                        if (r < 0 && !*ret_error && asprintf(ret_error, "%s: %s", p ? p : dir, strerror(-r)) < 0)
                                *ret_error = NULL;
                }
                free(list[i]);
        }
        free(list);
        return r;
}

static void gen_str(yajl_gen g, const char *key, const char *value) {
        yajl_gen_string(g, (const unsigned char *) key, strlen(key));
        yajl_gen_string(g, (const unsigned char *) value, strlen(value));
}

static void gen_int(yajl_gen g, const char *key, long long value) {
        yajl_gen_string(g, (const unsigned char *) key, strlen(key));
        yajl_gen_integer(g, value);
}

int config_to_json(const Config *c, char **ret) {
        const unsigned char *buf;
        size_t len;
        yajl_gen g = yajl_gen_alloc(NULL);

        if (!g)
                return -ENOMEM;
        yajl_gen_map_open(g);
        gen_str(g, "listen", c->listen);
        gen_str(g, "stateDirectory", c->state_dir);
        gen_str(g, "rootDirectory", c->root_dir);
        gen_str(g, "bus", c->user_bus ? "user" : "system");
        gen_str(g, "logLevel", log_level_to_string(c->log_level));
        gen_int(g, "shutdownTimeoutUSec", (long long) c->shutdown_timeout_usec);
        gen_int(g, "maxMessageSize", (long long) c->max_message_size);
        gen_int(g, "maxConcurrentStreams", c->max_concurrent_streams);
        gen_int(g, "maxConnections", c->max_connections);
        gen_str(g, "cniConfDir", c->cni_conf_dir);
        gen_str(g, "cniBinDir", c->cni_bin_dirs);
        gen_int(g, "cniPluginTimeoutUSec", (long long) c->cni_timeout_usec);
        gen_str(g, "cniConfTemplate", c->cni_conf_template);
        gen_str(g, "registryInsecure", c->registry_insecure);
        gen_str(g, "registryMirrors", c->registry_mirrors);
        gen_str(g, "registryBlocked", c->registry_blocked);
        gen_str(g, "registryCertsDir", c->registry_certs_dir);
        gen_str(g, "registryAuthFile", c->registry_auth_file);
        gen_str(g, "ociRuntime", c->oci_runtime);
        gen_str(g, "defaultRuntime", c->default_runtime);
        yajl_gen_string(g, (const unsigned char *) "runtimes", strlen("runtimes"));
        yajl_gen_array_open(g);
        for (size_t i = 0; i < c->n_runtimes; i++) {
                yajl_gen_map_open(g);
                gen_str(g, "name", c->runtimes[i].name);
                gen_str(g, "path", c->runtimes[i].path);
                gen_str(g, "root", c->runtimes[i].root);
                gen_str(g, "options", c->runtimes[i].options);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        gen_int(g, "imageMaxLayerSize", (long long) c->image_max_layer_size);
        gen_int(g, "imageMaxSize", (long long) c->image_max_size);
        gen_int(g, "imageMaxExpansionRatio", c->image_max_ratio);
        gen_int(g, "imageMinFreeBytes", (long long) c->image_min_free.bytes);
        gen_int(g, "imageMinFreePercent", c->image_min_free.percent);
        gen_str(g, "streamingAddress", c->stream_address);
        gen_int(g, "streamingPort", c->stream_port);
        gen_int(g, "streamingMaxConnections", c->stream_max_connections);
        gen_int(g, "streamChunkItems", c->stream_chunk_items);
        gen_int(g, "eventQueueLength", c->event_queue_length);
        gen_int(g, "streamingCreationTimeoutUSec", (long long) c->stream_creation_timeout_usec);
        gen_int(g, "streamingIdleTimeoutUSec", (long long) c->stream_idle_timeout_usec);
        gen_str(g, "streamingTLSCertificate", c->stream_tls_cert);
        gen_str(g, "streamingTLSKey", c->stream_tls_key);
        gen_str(g, "metricsAddress", c->metrics_address);
        yajl_gen_map_close(g);

        yajl_gen_get_buf(g, &buf, &len);
        *ret = strndup((const char *) buf, len);
        yajl_gen_free(g);
        return *ret ? 0 : -ENOMEM;
}

/* --- the effective configuration as rktlet.conf text ---------------------------------------------- */

static void dump_usec(FILE *f, uint64_t v) {
        if (v % USEC_PER_SEC == 0)
                fprintf(f, "%llus", (unsigned long long) (v / USEC_PER_SEC));
        else if (v % 1000 == 0)
                fprintf(f, "%llums", (unsigned long long) (v / 1000));
        else
                fprintf(f, "%lluus", (unsigned long long) v);
}

static bool dump_as_string(ConfigParser p) {
        return p == parse_path || p == parse_optional_path || p == parse_path_list || p == parse_string ||
               p == parse_mirrors || p == parse_address || p == parse_address_port || p == parse_runtime_name ||
               p == parse_options;
}

/* One value, written back in the form its parser reads. false: the parser has no dump form. */
static bool dump_value(FILE *f, const ConfigItem *it, const void *field) {
        ConfigParser p = it->parse;

        if (dump_as_string(p))
                fputs(*(char *const *) field, f);
        else if (p == parse_bus)
                fputs(*(const bool *) field ? "user" : "system", f);
        else if (p == parse_level)
                fputs(log_level_to_string(*(const int *) field), f);
        else if (p == parse_sec_field || p == parse_positive_sec)
                dump_usec(f, *(const uint64_t *) field);
        else if (p == parse_size_field || p == parse_big_size)
                fprintf(f, "%llu", (unsigned long long) *(const uint64_t *) field);
        else if (p == parse_count || p == parse_port)
                fprintf(f, "%u", (unsigned) *(const uint32_t *) field);
        else if (p == parse_min_free) {
                const SpaceReserve *r = field;
                if (r->percent > 0)
                        fprintf(f, "%u%%", (unsigned) r->percent);
                else
                        fprintf(f, "%llu", (unsigned long long) r->bytes);
        } else
                return false;
        return true;
}

int config_dump(const Config *c, FILE *f) {
        const char *section = NULL;
        Config def;
        int r;

        r = config_init(&def);
        if (r < 0)
                return r;
        fputs("# The effective configuration: rktlet.conf, its drop-ins and the command line.\n", f);
        for (size_t i = 0; i < ELEMENTSOF(items); i++) {
                const ConfigItem *it = &items[i];
                const void *field = (const uint8_t *) c + it->offset;
                bool is_string = dump_as_string(it->parse);

                if (!section || strcmp(section, it->section) != 0) {
                        fprintf(f, "%s[%s]\n", section ? "\n" : "", it->section);
                        section = it->section;
                }
                /* An empty string is "unset": written as a comment when that is the default, since the
                 * key may not parse empty; a key whose default is not empty (CertsDir=, AuthFile=) is
                 * written empty, which turns it off. */
                if (is_string && !(*(char *const *) field)[0]) {
                        const char *d = *(char *const *) ((const uint8_t *) &def + it->offset);
                        fprintf(f, "%s%s=\n", d[0] ? "" : "#", it->key);
                        continue;
                }
                fprintf(f, "%s=", it->key);
                if (!dump_value(f, it, field)) {
                        config_done(&def);
                        return -EOPNOTSUPP;
                }
                fputc('\n', f);
        }
        /* Each handler's section, every key written (an empty one as a comment). */
        for (size_t i = 0; i < c->n_runtimes; i++) {
                fprintf(f, "\n[Runtime.%s]\n", c->runtimes[i].name);
                for (size_t j = 0; j < ELEMENTSOF(runtime_items); j++) {
                        const char *v = *(char *const *) ((const uint8_t *) &c->runtimes[i] + runtime_items[j].offset);
                        /* Path= is always written, empty or not, so that the section is there when read back. */
                        if (!v[0] && j > 0)
                                fprintf(f, "#%s=\n", runtime_items[j].key);
                        else
                                fprintf(f, "%s=%s\n", runtime_items[j].key, v);
                }
        }
        config_done(&def);
        return fflush(f) == 0 ? 0 : -errno;
}
