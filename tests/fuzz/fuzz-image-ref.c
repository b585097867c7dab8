/* Fuzzes image reference parsing: anything either parses into a reference whose normalized name
 * parses again to the same name, or fails with a message. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "image-ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = strndup((const char *) data, size), *name = NULL, *again = NULL;
        ImageRef r, r2;
        const char *error = NULL;

        if (!s)
                return 0;
        if (image_ref_parse(s, &r, &error) < 0) {
                if (!error)
                        abort();
                free(s);
                return 0;
        }
        name = image_ref_name(&r);
        if (name) {
                if (image_ref_parse(name, &r2, &error) < 0)
                        abort(); /* a normalized name must parse */
                again = image_ref_name(&r2);
                if (again && strcmp(again, name) != 0)
                        abort(); /* and normalize to itself */
                free(again);
                image_ref_done(&r2);
        }
        free(name);
        image_ref_done(&r);
        free(s);
        return 0;
}
