/* Fuzzes stop signal names (an image's StopSignal, the CRI's): any string is a signal number in
 * 1..SIGRTMAX or -EINVAL, and what names a signal names it again in every spelling the parser
 * takes ("SIGTERM", "term", "15"). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctr.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = strndup((const char *) data, size), buf[64];
        int sig;

        if (!s)
                return 0;
        sig = ctr_signal_from_string(s);
        free(s);
        if (sig == -EINVAL)
                return 0;
        if (sig < 1 || sig > SIGRTMAX)
                abort();
        snprintf(buf, sizeof buf, "%d", sig);
        if (ctr_signal_from_string(buf) != sig)
                abort();
        if (sig < SIGRTMIN) {
                const char *name = sigabbrev_np(sig);
                if (name) {
                        snprintf(buf, sizeof buf, "SIG%s", name);
                        if (ctr_signal_from_string(buf) != sig || ctr_signal_from_string(name) != sig)
                                abort();
                }
        } else {
                snprintf(buf, sizeof buf, "RTMIN+%d", sig - SIGRTMIN);
                if (ctr_signal_from_string(buf) != sig)
                        abort();
                snprintf(buf, sizeof buf, "SIGRTMAXMINUS%d", SIGRTMAX - sig);
                if (ctr_signal_from_string(buf) != sig)
                        abort();
        }
        return 0;
}
