/* Asynchronous unit jobs on systemd: StartTransientUnit and StopUnit, each finished by its
 * JobRemoved signal, with a deadline; services watched through their PropertiesChanged signals. The
 * client outlives its bus: when the connection drops and another one is attached, or when systemd
 * leaves the bus and comes back (daemon-reexec), its jobs are checked again and its watches re-read. */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "error-chain.h"

typedef struct SystemdClient SystemdClient;
typedef struct SystemdOp SystemdOp;

/* error: NULL when the job ended with result "done"; else an ERROR_SYSTEM error whose errno says
 * what happened: EEXIST (StartTransientUnit: the unit exists already), ENOENT (StopUnit: no such
 * unit loaded), ETIMEDOUT, ECONNRESET (the bus dropped before systemd took the job, a KillUnit whose
 * answer the bus lost, or the client freed), or EIO with the message naming the D-Bus error
 * ("<unit>: <D-Bus error name>: <text>") or the job result ("failed", "dependency", "canceled"…).
 * error is valid during the call only. The op is freed right after.
 *
 * A job whose JobRemoved the bus may have lost is checked once systemd is back: still queued, it is
 * waited for; gone, the unit's ActiveState says how it ended (0, or -EIO naming the state). A
 * StopUnit or ResetFailedUnit whose reply was lost is sent again (both are idempotent); a
 * StartTransientUnit whose reply was lost is looked for by its unit (its job waited for, or its
 * state taken); a KillUnit whose reply was lost fails with -ECONNRESET (sending a signal twice is
 * not harmless). Until then the op's deadline runs. */
typedef void (*SystemdOpDone)(const Error *error, void *userdata);
/* Appends the properties of a transient unit: entries of an a(sv) already opened. */
typedef int (*SystemdAppendProperties)(sd_bus_message *m, void *userdata);
/* systemd is on the bus (again): generation counts its appearances, 1 the first time. */
typedef void (*SystemdReady)(SystemdClient *c, unsigned generation, void *userdata);

/* A client with no bus yet: ops cannot be submitted until systemd_client_attach(). */
int systemd_client_new(struct ev_loop *loop, SystemdClient **ret);
void systemd_client_set_ready(SystemdClient *c, SystemdReady ready, void *userdata);
/* Told of every op that ended (not of one cancelled): "start", "stop", "kill" or "reset-failed",
 * whether it succeeded and how long it took, from the call to the job's JobRemoved. */
typedef void (*SystemdObserve)(const char *kind, bool ok, uint64_t usec, void *userdata);
void systemd_client_set_observer(SystemdClient *c, SystemdObserve observe, void *userdata);
/* Makes bus the client's: matches JobRemoved, the watched units' PropertiesChanged and systemd's
 * name on the bus; once systemd owns it, Subscribe, the jobs checked again and every watch re-read.
 * Takes a reference on bus. */
int systemd_client_attach(SystemdClient *c, sd_bus *bus);
/* The bus dropped: its slots go; ops and watches wait for the next attach (a lost KillUnit fails
 * now, with why in its message). May call ops' done callbacks. */
void systemd_client_detach(SystemdClient *c, const char *why);
/* Ops fail with -ECONNRESET; watches stay (inert) until freed. */
SystemdClient *systemd_client_free(SystemdClient *c);

int systemd_start_transient_unit(SystemdClient *c, const char *name, SystemdAppendProperties append,
                                 void *append_userdata, uint64_t timeout_usec, SystemdOpDone done,
                                 void *userdata, SystemdOp **ret);
int systemd_stop_unit(SystemdClient *c, const char *name, uint64_t timeout_usec, SystemdOpDone done,
                      void *userdata, SystemdOp **ret);
/* KillUnit(name, who, signo): who is "main", "control" or "all". Ends with the reply. */
int systemd_kill_unit(SystemdClient *c, const char *name, const char *who, int signo, uint64_t timeout_usec,
                      SystemdOpDone done, void *userdata, SystemdOp **ret);
/* ResetFailedUnit(name): a failed transient unit is then unloaded. */
int systemd_reset_failed_unit(SystemdClient *c, const char *name, uint64_t timeout_usec, SystemdOpDone done,
                              void *userdata, SystemdOp **ret);

/* SetUnitProperties(name, runtime=true, the properties append() adds): a loaded unit's resource
 * settings changed live (systemd writes the cgroup files of the controllers it owns). Ends with the
 * reply; a reply the bus lost fails with -ECONNRESET (not sent again: the caller decides). */
int systemd_set_unit_properties(SystemdClient *c, const char *name, SystemdAppendProperties append,
                                void *append_userdata, uint64_t timeout_usec, SystemdOpDone done, void *userdata,
                                SystemdOp **ret);

/* systemd-resources.c: kubelet's cpu shares (2…262144, clamped) on systemd's CPUWeight scale
 * (1…10000). */
uint64_t systemd_shares_to_weight(int64_t shares);
/* "0-3,7" as systemd's CPU (or NUMA node) set: a bitmap, byte i bit j for number 8i + j (below
 * SYSTEMD_CPUSET_MAX); -EINVAL when it is no such list. */
#define SYSTEMD_CPUSET_MAX 8192
int systemd_cpuset_parse(const char *s, uint8_t **ret, size_t *ret_len);
/* Appends CPUWeight (for shares), CPUQuotaPerSecUSec and CPUQuotaPeriodUSec (quota and period in
 * µs; period 0: 100 ms) and MemoryMax, each only where its value is positive. */
int systemd_append_limits(sd_bus_message *m, int64_t shares, int64_t quota, int64_t period, int64_t memory);
/* 0 when s is NULL, "" or such a list; -EINVAL when not, -ENOMEM. */
int systemd_cpuset_check(const char *s);
/* Appends the property (AllowedCPUs, AllowedMemoryNodes) for list; NULL or "": unset. */
int systemd_append_cpuset(sd_bus_message *m, const char *property, const char *list);

/* What systemd knows of a service's main process. */
typedef struct SystemdServiceInfo {
        bool gone; /* the properties could not be read */
        uint32_t main_pid, exec_main_pid;
        uint32_t control_pid; /* ExecStart= of a Type=forking service while it runs: still starting */
        int32_t exec_main_code, exec_main_status; /* CLD_EXITED/CLD_KILLED/CLD_DUMPED and status */
        uint64_t exec_main_start_usec, exec_main_exit_usec; /* CLOCK_REALTIME, 0 when not yet */
        char result[32];                                    /* "success", "exit-code", "oom-kill"… */
} SystemdServiceInfo;

typedef struct SystemdWatch SystemdWatch;
/* Called with the service's properties after each PropertiesChanged signal of the unit, after
 * systemd_watch_refresh(), and each time systemd is (back) on the bus. */
typedef void (*SystemdUnitChanged)(SystemdWatch *w, const SystemdServiceInfo *info, void *userdata);
/* Watches a service (loaded or not yet): its PropertiesChanged signals trigger a GetAll. The watch
 * moves with the client to each new bus. */
int systemd_watch_service(SystemdClient *c, const char *name, SystemdUnitChanged changed, void *userdata,
                          SystemdWatch **ret);
void systemd_watch_refresh(SystemdWatch *w);
SystemdWatch *systemd_watch_free(SystemdWatch *w);

/* Drops interest in an op: done() is not called. The job itself goes on in systemd. */
void systemd_op_cancel(SystemdOp *op);

/* True when name is a valid unit name with the given suffix (".slice", ".service"); for slices also
 * that the dashes make a valid hierarchy ("a-b.slice" is in "a.slice"). */
bool systemd_unit_name_valid(const char *name, const char *suffix);
