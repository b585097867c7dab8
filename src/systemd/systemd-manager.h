/* Asynchronous calls to systemd's manager object, org.freedesktop.systemd1. */
#pragma once

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "error-chain.h"

/* error < 0: the call failed, message says why (D-Bus error name and text, or errno). */
typedef void (*SystemdVersionDone)(const Error *error, const char *value, void *userdata);

/* Reads the manager's Version property. The returned slot cancels the call when unref'ed. */
int systemd_get_version(sd_bus *bus, uint64_t timeout_usec, SystemdVersionDone done, void *userdata,
                        sd_bus_slot **ret_slot);
/* Reads any string property of the manager ("ControlGroup": the root of its cgroup tree). */
int systemd_get_manager_string(sd_bus *bus, const char *property, uint64_t timeout_usec, SystemdVersionDone done,
                               void *userdata, sd_bus_slot **ret_slot);
/* The cgroup path of a slice below the manager's root: "a-b.slice" → "/a.slice/a-b.slice". */
char *systemd_slice_path(const char *slice);
