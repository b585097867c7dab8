/* Client input quoted in messages: bounded, escaped, between single quotes. Whatever a client sends
 * (a 10 KB pod id, a newline in an annotation, an ANSI escape in a capability name) comes back into
 * an error message or a log line at most QUOTE_MAX bytes long and with nothing a terminal acts on. */
#include "quote.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The code point of the UTF-8 sequence at p and its length in bytes; 0 when p holds no valid
 * sequence (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short). */
static size_t utf8_decode(const unsigned char *p, uint32_t *ret) {
        static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
        size_t n = p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 && p[0] < 0xE0 ? 2 : 0;
        uint32_t c;

        if (n == 0 || (n == 3 && p[0] >= 0xF0))
                return 0;
        c = p[0] & (0x7F >> n);
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xC0) != 0x80) /* also the NUL that ends the string */
                        return 0;
                c = c << 6 | (p[i] & 0x3F);
        }
        if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
                return 0;
        *ret = c;
        return n;
}

/* Characters that change how text reads without being seen: C1 controls, line and paragraph
 * separators, the bidirectional overrides and isolates (a "Trojan Source" name). */
static bool invisible(uint32_t c) {
        return (c >= 0x80 && c <= 0x9F) || c == 0x2028 || c == 0x2029 || (c >= 0x202A && c <= 0x202E) ||
               (c >= 0x2066 && c <= 0x2069) || c == 0xFEFF;
}

/* The character at p as it is quoted into out (up to 7 bytes, not NUL-terminated): the length of
 * that, and in *ret_in how many bytes of p it took. */
static size_t escape_one(const unsigned char *p, char out[static 8], size_t *ret_in) {
        static const char hex[] = "0123456789abcdef";
        uint32_t c;
        size_t n;

        *ret_in = 1;
        switch (p[0]) {
        case '\n':
                return memcpy(out, "\\n", 2), 2;
        case '\r':
                return memcpy(out, "\\r", 2), 2;
        case '\t':
                return memcpy(out, "\\t", 2), 2;
        case '\\':
                return memcpy(out, "\\\\", 2), 2;
        case '\'':
                return memcpy(out, "\\'", 2), 2;
        }
        if (p[0] >= 0x20 && p[0] < 0x7F) {
                out[0] = (char) p[0];
                return 1;
        }
        if (p[0] < 0x80) { /* the other C0 controls and DEL */
                out[0] = '\\', out[1] = 'x', out[2] = hex[p[0] >> 4], out[3] = hex[p[0] & 0xF];
                return 4;
        }
        n = utf8_decode(p, &c);
        if (n == 0) {
                out[0] = '\\', out[1] = 'x', out[2] = hex[p[0] >> 4], out[3] = hex[p[0] & 0xF];
                return 4;
        }
        *ret_in = n;
        if (invisible(c)) {
                out[0] = '\\', out[1] = 'u';
                for (int i = 0; i < 4; i++)
                        out[2 + i] = hex[(c >> (12 - 4 * i)) & 0xF];
                return 6;
        }
        memcpy(out, p, n);
        return n;
}

const char *quote(const char *s, char buf[static QUOTE_BUF_SIZE]) {
        static const char ellipsis[] = "…";
        const unsigned char *p = (const unsigned char *) (s ?: "");
        size_t total = 0, fit = 0, in = 0, k;
        char one[8], *o = buf;

        /* How much of s fits: all of it when its escaped form is QUOTE_MAX bytes or less, else what
         * fits before the ellipsis. */
        for (size_t i = 0; p[i] && total <= QUOTE_MAX; i += k) {
                total += escape_one(p + i, one, &k);
                if (total + strlen(ellipsis) <= QUOTE_MAX)
                        fit = i + k;
                in = i + k;
        }
        bool cut = total > QUOTE_MAX;
        if (!cut)
                fit = in;

        *o++ = '\'';
        for (size_t i = 0; i < fit; i += k) {
                size_t n = escape_one(p + i, one, &k);
                memcpy(o, one, n);
                o += n;
        }
        if (cut)
                o = stpcpy(o, ellipsis);
        *o++ = '\'';
        if (cut)
                snprintf(o, QUOTE_BUF_SIZE - (size_t) (o - buf), " (%zu bytes)", strlen(s));
        else
                *o = '\0';
        return buf;
}
