/* Strings in a request, judged on the wire before protobuf-c unpacks them: protobuf strings may hold
 * NUL, which every C string after unpacking silently ends at ("<id>\0garbage" would act on <id>). */
#include "cri-strings.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 32

/* Fields whose value is a name, an id or a path: no control character belongs in them. Free text
 * (commands, arguments, env values, annotations, labels' values) may hold newlines and tabs. */
static bool field_is_name_or_path(const char *name) {
        static const char *const exact[] = {
                "name",     "namespace",     "uid",           "hostname",        "log_directory", "image",
                "cgroup_parent", "runtime_handler", "working_dir", "user_image", "username",
        };
        size_t n = strlen(name);

        for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
                if (strcmp(name, exact[i]) == 0)
                        return true;
        return (n > 3 && strcmp(name + n - 3, "_id") == 0) || (n > 5 && strcmp(name + n - 5, "_path") == 0);
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 64; shift += 7) {
                if (*p >= end)
                        return -EBADMSG;
                uint8_t b = *(*p)++;
                v |= (uint64_t) (b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

typedef struct Path {
        const struct Path *parent;
        const char *name;
} Path;

static void path_format(const Path *p, char *buf, size_t size) {
        const char *names[MAX_DEPTH + 1];
        size_t n = 0, off = 0;

        for (; p && n < MAX_DEPTH + 1; p = p->parent)
                names[n++] = p->name;
        buf[0] = '\0';
        while (n > 0 && off < size) {
                int k = snprintf(buf + off, size - off, "%s%s", off ? "." : "", names[--n]);
                if (k < 0)
                        break;
                off += (size_t) k;
        }
}

static int check_message(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                         const Path *path, unsigned depth, char *why, size_t why_size) {
        int r;

        if (depth > MAX_DEPTH)
                return 0; /* protobuf-c judges nesting this deep itself */
        while (p < end) {
                uint64_t key, len;

                if (read_varint(&p, end, &key) < 0)
                        return 0; /* does not decode: protobuf-c says so */
                switch (key & 7) {
                case 0:
                        if (read_varint(&p, end, &len) < 0)
                                return 0;
                        continue;
                case 1:
                        if (end - p < 8)
                                return 0;
                        p += 8;
                        continue;
                case 5:
                        if (end - p < 4)
                                return 0;
                        p += 4;
                        continue;
                case 2:
                        break;
                default:
                        return 0;
                }
                if (read_varint(&p, end, &len) < 0 || len > (uint64_t) (end - p))
                        return 0;

                const ProtobufCFieldDescriptor *f =
                        key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned) (key >> 3)) : NULL;
                Path here = { path, f ? f->name : NULL };
                /* KeyValue.value is bytes in the schema, but it is an environment variable's value,
                 * which execve() ends at a NUL as well. */
                bool text = f && (f->type == PROTOBUF_C_TYPE_STRING ||
                                  (f->type == PROTOBUF_C_TYPE_BYTES && strcmp(d->short_name, "KeyValue") == 0));
                if (text) {
                        const uint8_t *nul = memchr(p, '\0', len);
                        const char *what = nul ? "a NUL byte" : NULL;

                        for (size_t i = 0; !what && field_is_name_or_path(f->name) && i < len; i++)
                                if (p[i] < 0x20 || p[i] == 0x7f)
                                        what = "a control character";
                        if (what) {
                                char field[256];
                                path_format(&here, field, sizeof field);
                                snprintf(why, why_size, "%s holds %s", field, what);
                                return -EINVAL;
                        }
                } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                        r = check_message(f->descriptor, p, p + len, &here, depth + 1, why, why_size);
                        if (r < 0)
                                return r;
                }
                p += len;
        }
        return 0;
}

int cri_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, char *why,
                      size_t why_size) {
        return check_message(d, buf, buf + len, NULL, 0, why, why_size);
}
