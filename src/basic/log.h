/* Logging: structured journal entries when the journal is there, plain stderr otherwise. */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

void log_setup(void);
void log_set_max_level(int level);
/* With a journal, entries up to this level also go to stderr (default LOG_WARNING): for commands run
 * by hand, whose caller reads their stderr. */
void log_set_stderr_level(int level);
int log_get_max_level(void);
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);
/* Whether entries go to the journal (for tests and the Status info). */
int log_to_journal(void);

/* fields: NULL or a NULL-terminated array of "KEY=value" strings attached to the journal entry.
 * Returns -abs(error), so that "return log_error_errno(r, …)" works. */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *const *fields,
                 const char *format, ...) _printf_(7, 8);
int log_internalv(int level, int error, const char *file, int line, const char *func, const char *const *fields,
                  const char *format, va_list ap) _printf_(7, 0);

#define log_full_errno(level, error, ...)                                               \
        ({                                                                              \
                int _l_ = (level), _e_ = (error);                                       \
                _l_ <= log_get_max_level() ? log_internal(_l_, _e_, __FILE__, __LINE__, __func__, NULL, __VA_ARGS__) \
                                           : -abs(_e_);                                 \
        })
#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)
#define log_fields(level, fields, ...)                                  \
        do {                                                            \
                int _l2_ = (level);                                     \
                if (_l2_ <= log_get_max_level())                        \
                        (void) log_internal(_l2_, 0, __FILE__, __LINE__, __func__, fields, __VA_ARGS__); \
        } while (0)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)
