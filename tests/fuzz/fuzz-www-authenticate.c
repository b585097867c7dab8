/* Fuzzes the parameters of a registry's WWW-Authenticate challenge ("Bearer realm=…,service=…,
 * scope=…") as a 401 is answered: each value found is a piece of the header, up to its closing
 * quote or (unquoted) the next comma or space, never more. The full 401 and token exchange is in fuzz-registry. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "image-pull.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const keys[] = { "realm", "service", "scope" }; /* what the pull asks for */
        char *s = strndup((const char *) data, size);

        if (!s)
                return 0;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
                char *v = image_pull_auth_param(s, keys[i]);
                if (!v)
                        continue;
                if (!strstr(s, v))
                        abort();
                /* A value ends at its closing quote, or (unquoted) at a comma or space. */
                if (strchr(v, '"') && strpbrk(v, ", "))
                        abort();
                free(v);
        }
        free(s);
        return 0;
}
