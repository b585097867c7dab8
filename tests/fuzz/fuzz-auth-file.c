/* Fuzzes the containers-auth.json matching of [Registries] AuthFile= (registry_auth_find()). The
 * input's first line is "<registry> <repository>", the rest the file: whatever it holds, the answer
 * is credentials with a ':' (user:password) or none, or a malformed file with a message and no
 * credentials at all. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "registry-host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = strndup((const char *) data, size), *nl, *sp, *basic = (char *) 1, *error = (char *) 1;
        int r;

        if (!s)
                return 0;
        nl = strchr(s, '\n');
        sp = nl ? memchr(s, ' ', (size_t) (nl - s)) : NULL;
        if (!sp) {
                free(s);
                return 0;
        }
        *sp = *nl = '\0';
        r = registry_auth_find(nl + 1, s, sp + 1, &basic, &error);
        if (r == 0 && (error || (basic && !strchr(basic, ':'))))
                abort();
        if (r < 0 && (basic || (r == -EBADMSG && !error)))
                abort();
        if (r < 0 && r != -EBADMSG && r != -ENOMEM)
                abort();
        free(basic);
        free(error);
        free(s);
        return 0;
}
