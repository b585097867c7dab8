/* Client input quoted in messages: bounded, escaped, between single quotes. */
#pragma once

#include <stddef.h>

/* At most this many bytes of quoted input text (after escaping) go into a message. */
#define QUOTE_MAX 200
/* Room for one quoted string: the quotes, QUOTE_MAX bytes, "…", " (N bytes)" and the NUL. */
#define QUOTE_BUF_SIZE (QUOTE_MAX + 2 + 32 + 1)

/* s between single quotes, for an error message or a log line: control characters, '\'' and '\\'
 * escaped as in C ("\n", "\x1b", "\u0085"), bytes that are no UTF-8 as "\xNN"; longer than
 * QUOTE_MAX, it is cut at a character and the length of the whole given:
 * 'kubepods…' (10240 bytes). NULL is quoted as ''. Returns buf. */
const char *quote(const char *s, char buf[static QUOTE_BUF_SIZE]);

/* quote() into a buffer that lives until the end of the enclosing block, for printf() arguments:
 *     error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "log_path %s is not relative", QUOTE(s->log_path)); */
#define QUOTE(s) quote((s), (char[QUOTE_BUF_SIZE]) {})
