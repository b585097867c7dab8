/* rktlet: a Kubernetes CRI runtime on systemd. Parses the command line and config, then runs. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "config.h"
#include "log.h"
#include "manager.h"

#define DEFAULT_CONFIG SYSCONFDIR "/rktlet/rktlet.conf"

typedef struct Override {
        const char *section, *key, *value, *flag;
} Override;

static void help(void) {
        printf("Usage: rktlet [OPTIONS]\n"
               "A Kubernetes CRI runtime that runs pods and containers as systemd units.\n\n"
               "  -c --config=FILE            Config file (default %s; drop-ins in FILE.d/*.conf)\n"
               "  -l --listen=PATH            Unix socket to serve on (default /run/rktlet/rktlet.sock)\n"
               "     --user                   Talk to the user's systemd on the user bus\n"
               "     --state-dir=DIR          Runtime state (default /run/rktlet)\n"
               "     --root=DIR               Persistent state (default /var/lib/rktlet)\n"
               "     --log-level=LEVEL        err, warning, notice, info or debug (default info)\n"
               "     --max-message-size=BYTES Largest request message (default 16M)\n"
               "     --shutdown-timeout=SEC   Time in-flight calls get after SIGTERM (default 10)\n"
               "     --cni-conf-dir=DIR       CNI network configurations (default /etc/cni/net.d)\n"
               "     --cni-bin-dir=DIRS       CNI plugins, ':'-separated (default /usr/lib/cni:/opt/cni/bin)\n"
               "     --dump-config            Print the effective configuration and exit\n"
               "     --teardown               Stop and remove every pod and container, then exit\n"
               "                              (with the serving daemon stopped; serves nothing)\n"
               "  -h --help                   Show this help\n"
               "  -V --version                Show the version\n\n"
               "See rktlet(8) and rktlet.conf(5).\n",
               DEFAULT_CONFIG);
}

static void config_warning(const char *origin, const char *message, void *userdata) {
        log_warning("%s: %s", origin, message);
}

/* The command line: the config file and what overrides it. 1 to go on, 0 to exit with success
 * (--help, --version), < 0 to fail (said on stderr). */
static int parse_argv(int argc, char *argv[], const char **ret_config_path, Override overrides[], size_t max_overrides,
                      size_t *ret_n_overrides, bool *ret_teardown, bool *ret_dump) {
        enum {
                ARG_USER = 0x100,
                ARG_STATE_DIR,
                ARG_ROOT,
                ARG_LOG_LEVEL,
                ARG_MAX_MESSAGE_SIZE,
                ARG_SHUTDOWN_TIMEOUT,
                ARG_CNI_CONF_DIR,
                ARG_CNI_BIN_DIR,
                ARG_TEARDOWN,
                ARG_DUMP_CONFIG,
        };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "listen", required_argument, NULL, 'l' },
                { "user", no_argument, NULL, ARG_USER },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "root", required_argument, NULL, ARG_ROOT },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "max-message-size", required_argument, NULL, ARG_MAX_MESSAGE_SIZE },
                { "shutdown-timeout", required_argument, NULL, ARG_SHUTDOWN_TIMEOUT },
                { "cni-conf-dir", required_argument, NULL, ARG_CNI_CONF_DIR },
                { "cni-bin-dir", required_argument, NULL, ARG_CNI_BIN_DIR },
                { "teardown", no_argument, NULL, ARG_TEARDOWN },
                { "dump-config", no_argument, NULL, ARG_DUMP_CONFIG },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        size_t n_overrides = 0;
        int c;

        while ((c = getopt_long(argc, argv, "c:l:hV", options, NULL)) >= 0) {
                Override o = { .value = optarg };
                switch (c) {
                case 'c':
                        *ret_config_path = optarg;
                        continue;
                case 'l':
                        o = (Override) { "Daemon", "Listen", optarg, "--listen" };
                        break;
                case ARG_USER:
                        o = (Override) { "Daemon", "Bus", "user", "--user" };
                        break;
                case ARG_STATE_DIR:
                        o = (Override) { "Daemon", "StateDirectory", optarg, "--state-dir" };
                        break;
                case ARG_ROOT:
                        o = (Override) { "Daemon", "RootDirectory", optarg, "--root" };
                        break;
                case ARG_LOG_LEVEL:
                        o = (Override) { "Daemon", "LogLevel", optarg, "--log-level" };
                        break;
                case ARG_MAX_MESSAGE_SIZE:
                        o = (Override) { "GRPC", "MaxMessageSize", optarg, "--max-message-size" };
                        break;
                case ARG_SHUTDOWN_TIMEOUT:
                        o = (Override) { "Daemon", "ShutdownTimeoutSec", optarg, "--shutdown-timeout" };
                        break;
                case ARG_CNI_CONF_DIR:
                        o = (Override) { "CNI", "ConfDir", optarg, "--cni-conf-dir" };
                        break;
                case ARG_CNI_BIN_DIR:
                        o = (Override) { "CNI", "BinDir", optarg, "--cni-bin-dir" };
                        break;
                case ARG_TEARDOWN:
                        *ret_teardown = true;
                        continue;
                case ARG_DUMP_CONFIG:
                        *ret_dump = true;
                        continue;
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("%s %s\n", PROJECT_NAME, PROJECT_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "Try 'rktlet --help'.\n");
                        return -EINVAL;
                }
                if (n_overrides >= max_overrides) {
                        fprintf(stderr, "rktlet: too many options\n");
                        return -E2BIG;
                }
                overrides[n_overrides++] = o;
        }
        if (optind < argc) {
                fprintf(stderr, "rktlet: unexpected argument '%s'. Try 'rktlet --help'.\n", argv[optind]);
                return -EINVAL;
        }
        *ret_n_overrides = n_overrides;
        return 1;
}

/* The config files, then the flags over them; failures are logged. */
static int load_config(Config *config, const char *config_path, const Override overrides[], size_t n_overrides) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = config_init(config);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the configuration: %m");
        r = config_load(config, config_path, config_warning, NULL, &error);
        if (r < 0) {
                log_error("Bad configuration: %s", error ? error : strerror(-r));
                config_done(config);
                return r;
        }
        /* Flags override the files. */
        for (size_t i = 0; i < n_overrides; i++) {
                _cleanup_free_ char *why = NULL;
                r = config_set(config, overrides[i].section, overrides[i].key, overrides[i].value, &why);
                if (r < 0) {
                        log_error("Bad option %s='%s': %s", overrides[i].flag, overrides[i].value,
                                  why ? why : strerror(-r));
                        config_done(config);
                        return r;
                }
        }
        return 0;
}

typedef struct Reload {
        const char *config_path;
        const Override *overrides;
        size_t n_overrides;
} Reload;

/* SIGHUP: the files and flags read again, as at start-up. */
static int reload_config(Config *ret, void *userdata) {
        const Reload *r = userdata;
        return load_config(ret, r->config_path, r->overrides, r->n_overrides);
}

int main(int argc, char *argv[]) {
        Override overrides[16];
        size_t n_overrides = 0;
        const char *config_path = DEFAULT_CONFIG;
        Config config;
        Manager *m = NULL;
        bool teardown = false, dump = false;
        int r;

        log_setup();

        r = parse_argv(argc, argv, &config_path, overrides, ELEMENTSOF(overrides), &n_overrides, &teardown, &dump);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        r = load_config(&config, config_path, overrides, n_overrides);
        if (r < 0)
                return EXIT_FAILURE;
        if (dump) {
                r = config_dump(&config, stdout);
                config_done(&config);
                if (r < 0)
                        log_error_errno(r, "Failed to print the configuration: %m");
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        log_set_max_level(config.log_level);
        if (teardown)
                log_set_stderr_level(LOG_INFO); /* a command: its caller (a maintainer script) reads stderr */

        /* Writes to a peer that went away must fail with EPIPE, not kill us. */
        signal(SIGPIPE, SIG_IGN);

        r = manager_new(&config, &m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                config_done(&config);
                return EXIT_FAILURE;
        }
        m->teardown.enabled = teardown;
        Reload reload = { config_path, overrides, n_overrides };
        m->load_config = reload_config;
        m->load_config_userdata = &reload;
        r = manager_start(m);
        if (r < 0) {
                manager_free(m);
                return EXIT_FAILURE;
        }
        r = manager_run(m);
        /* Stopping already: a further SIGTERM or SIGINT must not turn the exit status into a death by
         * signal (manager_free() ignores them too, once libev has given their default actions back). */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        manager_free(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
