/* Logging: structured journal entries when the journal is there, plain stderr otherwise. */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* CODE_FILE= and friends name the caller of log_*(), not this file. */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>
#include <unistd.h>

static int max_level = LOG_INFO;
static int journal = 0;
/* Whether stderr is itself connected to the journal (we run as a service): then never duplicate. */
static int stderr_is_journal = 0;
/* With a journal, what is at least this important is also shown on stderr (unless that is the
 * journal already). */
static int stderr_level = LOG_WARNING;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

static int stderr_matches_journal_stream(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return 0;
        if (fstat(STDERR_FILENO, &st) < 0)
                return 0;
        return st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

void log_setup(void) {
        stderr_is_journal = stderr_matches_journal_stream();
        journal = stderr_is_journal || access("/run/systemd/journal/socket", F_OK) == 0;
}

void log_set_max_level(int level) {
        max_level = level;
}

void log_set_stderr_level(int level) {
        stderr_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

int log_to_journal(void) {
        return journal;
}

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (level_names[i] && strcmp(level_names[i], s) == 0)
                        return (int) i;
        if (strcmp(s, "error") == 0)
                return LOG_ERR;
        if (strcmp(s, "warn") == 0)
                return LOG_WARNING;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(level_names))
                return NULL;
        return level_names[level];
}

/* A message about one pod or container starts "pod <ID>: " or "container <ID>: " (64 hex digits):
 * its entry gets POD_SANDBOX_ID= or CONTAINER_ID=, so journalctl can select by it. */
static bool id_field(const char *msg, char field[static sizeof("POD_SANDBOX_ID=") + 64]) {
        static const struct {
                const char *prefix, *name;
        } kinds[] = { { "pod ", "POD_SANDBOX_ID=" }, { "container ", "CONTAINER_ID=" } };

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                size_t n = strlen(kinds[i].prefix);
                if (strncmp(msg, kinds[i].prefix, n) != 0)
                        continue;
                const char *id = msg + n;
                if (strspn(id, "0123456789abcdef") != 64 || id[64] != ':')
                        return false;
                snprintf(field, sizeof("POD_SANDBOX_ID=") + 64, "%s%.64s", kinds[i].name, id);
                return true;
        }
        return false;
}

static void log_to_journal_send(int level, int error, const char *file, int line, const char *func,
                                const char *const *fields, const char *msg) {
        char prio[sizeof("PRIORITY=") + 4], errno_field[sizeof("ERRNO=") + 12], code_line[32];
        char id[sizeof("POD_SANDBOX_ID=") + 64];
        char code_file[256], code_func[128];
        char *message;
        struct iovec iov[32];
        size_t n = 0;

        if (asprintf(&message, "MESSAGE=%s", msg) < 0)
                return;
        snprintf(prio, sizeof prio, "PRIORITY=%i", level);
        iov[n++] = (struct iovec) { .iov_base = message, .iov_len = strlen(message) };
        iov[n++] = (struct iovec) { .iov_base = prio, .iov_len = strlen(prio) };
        iov[n++] = (struct iovec) { .iov_base = (char *) "SYSLOG_IDENTIFIER=rktlet",
                                    .iov_len = strlen("SYSLOG_IDENTIFIER=rktlet") };
        if (file) {
                snprintf(code_file, sizeof code_file, "CODE_FILE=%s", file);
                snprintf(code_line, sizeof code_line, "CODE_LINE=%i", line);
                snprintf(code_func, sizeof code_func, "CODE_FUNC=%s", func);
                iov[n++] = (struct iovec) { .iov_base = code_file, .iov_len = strlen(code_file) };
                iov[n++] = (struct iovec) { .iov_base = code_line, .iov_len = strlen(code_line) };
                iov[n++] = (struct iovec) { .iov_base = code_func, .iov_len = strlen(code_func) };
        }
        if (error != 0) {
                snprintf(errno_field, sizeof errno_field, "ERRNO=%i", abs(error));
                iov[n++] = (struct iovec) { .iov_base = errno_field, .iov_len = strlen(errno_field) };
        }
        if (id_field(msg, id))
                iov[n++] = (struct iovec) { .iov_base = id, .iov_len = strlen(id) };
        for (size_t i = 0; fields && fields[i] && n < ELEMENTSOF(iov); i++)
                iov[n++] = (struct iovec) { .iov_base = (char *) fields[i], .iov_len = strlen(fields[i]) };

        (void) sd_journal_sendv(iov, (int) n);
        free(message);
}

int log_internalv(int level, int error, const char *file, int line, const char *func, const char *const *fields,
                  const char *format, va_list ap) {
        char buf[2048];
        int saved = errno;

        if (error != 0)
                errno = abs(error); /* for %m */
        vsnprintf(buf, sizeof buf, format, ap);

        if (journal)
                log_to_journal_send(level, error, file, line, func, fields, buf);
        /* Without a journal everything goes to stderr; with one, warnings and errors are also shown to
         * whoever started us by hand, unless stderr is the journal already. */
        if (!journal || (!stderr_is_journal && level <= stderr_level))
                fprintf(stderr, "rktlet: %s\n", buf);

        errno = saved;
        return -abs(error);
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *const *fields,
                 const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_internalv(level, error, file, line, func, fields, format, ap);
        va_end(ap);
        return r;
}
