/* Seccomp: the default profile (Docker's and containerd's rules, decided by the container's
 * capabilities) and Localhost profiles (OCI or Docker format) converted to OCI linux.seccomp. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "fileio.h"
#include "json-util.h"
#include "macro.h"
#include "oci-spec.h"
#include "quote.h"
#include "strv.h"

#define NAMES(...) ((const char *const[]){ __VA_ARGS__, NULL })

#if defined(__x86_64__)
#define NATIVE_SCMP_ARCH "SCMP_ARCH_X86_64"
#define NATIVE_GO_ARCH "amd64"
static const char *const default_architectures[] = { "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", NULL };
#elif defined(__aarch64__)
#define NATIVE_SCMP_ARCH "SCMP_ARCH_AARCH64"
#define NATIVE_GO_ARCH "arm64"
static const char *const default_architectures[] = { "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", NULL };
#else
#error "the default seccomp profile knows x86_64 and aarch64 only"
#endif

#define CLONE_NAMESPACE_FLAGS UINT64_C(0x7E020000) /* NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET */
#define AF_VSOCK_VALUE 40

typedef struct SeccompArg {
        unsigned index;
        uint64_t value, value_two;
        const char *op;
} SeccompArg;

typedef struct SeccompRule {
        const char *const *names;
        const char *cap;  /* NULL: every container */
        bool without_cap; /* the rule is for containers lacking cap (instead of holding it) */
        int errno_ret;    /* > 0: SCMP_ACT_ERRNO with it, instead of SCMP_ACT_ALLOW */
        SeccompArg arg;   /* op NULL: none */
} SeccompRule;

/* What every container may call. */
static const char *const allowed_always[] = {
        "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir",
        "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
        "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
        "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
        "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
        "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
        "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
        "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
        "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
        "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
        "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
        "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
        "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
        "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
        "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
        "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch",
        "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
        "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set",
        "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
        "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
        "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64",
        "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
        "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
        "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
        "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
        "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
        "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
        "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
        "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
        "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
        "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
        "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
        "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
        "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
        "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
        "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile",
        "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid",
        "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid",
        "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
        "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
        "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr",
        "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
        "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
        "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
        "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
        "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
        "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
        "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
        "writev",
        /* ptrace is safe since kernel 4.8 (seccomp runs after the tracer's changes). */
        "process_vm_readv", "process_vm_writev", "ptrace",
#if defined(__x86_64__)
        "arch_prctl", "modify_ldt",
#elif defined(__aarch64__)
        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
        "set_tls",
#endif
        NULL,
};

static const SeccompRule rules[] = {
        { NAMES("socket"), .arg = { 0, AF_VSOCK_VALUE, 0, "SCMP_CMP_NE" } },
        /* personality(): PER_LINUX, PER_LINUX32, UNAME26 variants and the query. */
        { NAMES("personality"), .arg = { 0, 0x0, 0, "SCMP_CMP_EQ" } },
        { NAMES("personality"), .arg = { 0, 0x0008, 0, "SCMP_CMP_EQ" } },
        { NAMES("personality"), .arg = { 0, 0x20000, 0, "SCMP_CMP_EQ" } },
        { NAMES("personality"), .arg = { 0, 0x20008, 0, "SCMP_CMP_EQ" } },
        { NAMES("personality"), .arg = { 0, 0xffffffff, 0, "SCMP_CMP_EQ" } },

        { NAMES("open_by_handle_at"), "CAP_DAC_READ_SEARCH" },
        { NAMES("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
                "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                "umount2", "unshare", "pivot_root", "keyctl", "add_key", "request_key"),
          "CAP_SYS_ADMIN" },
        /* Without CAP_SYS_ADMIN: clone() without namespace flags (flags are argument 0 on x86_64
         * and aarch64), and clone3() fails with ENOSYS so that libcs fall back to clone(). */
        { NAMES("clone"), "CAP_SYS_ADMIN", true, .arg = { 0, CLONE_NAMESPACE_FLAGS, 0, "SCMP_CMP_MASKED_EQ" } },
        { NAMES("clone3"), "CAP_SYS_ADMIN", true, .errno_ret = ENOSYS },
        { NAMES("reboot"), "CAP_SYS_BOOT" },
        { NAMES("chroot"), "CAP_SYS_CHROOT" },
        { NAMES("delete_module", "init_module", "finit_module"), "CAP_SYS_MODULE" },
        { NAMES("acct"), "CAP_SYS_PACCT" },
        { NAMES("kcmp", "pidfd_getfd", "process_madvise"), "CAP_SYS_PTRACE" },
        { NAMES("iopl", "ioperm"), "CAP_SYS_RAWIO" },
        { NAMES("settimeofday", "stime", "clock_settime", "clock_settime64"), "CAP_SYS_TIME" },
        { NAMES("vhangup"), "CAP_SYS_TTY_CONFIG" },
        { NAMES("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"), "CAP_SYS_NICE" },
        { NAMES("syslog"), "CAP_SYSLOG" },
        { NAMES("bpf"), "CAP_BPF" },
        { NAMES("perf_event_open"), "CAP_PERFMON" },
};

static void gen_key_strv_const(yajl_gen g, const char *key, const char *const *l) {
        json_gen_key_strv(g, key, (char **) l);
}

static void gen_arg(yajl_gen g, const SeccompArg *a) {
        yajl_gen_map_open(g);
        json_gen_key_int(g, "index", a->index);
        json_gen_key_int(g, "value", (long long) a->value);
        json_gen_key_int(g, "valueTwo", (long long) a->value_two);
        json_gen_key_str(g, "op", a->op);
        yajl_gen_map_close(g);
}

int oci_seccomp_default_gen(struct yajl_gen_t *g, char **capabilities) {
        yajl_gen_map_open(g);
        json_gen_key_str(g, "defaultAction", "SCMP_ACT_ERRNO");
        json_gen_key_int(g, "defaultErrnoRet", EPERM);
        gen_key_strv_const(g, "architectures", default_architectures);

        json_gen_str(g, "syscalls");
        yajl_gen_array_open(g);

        yajl_gen_map_open(g);
        gen_key_strv_const(g, "names", allowed_always);
        json_gen_key_str(g, "action", "SCMP_ACT_ALLOW");
        yajl_gen_map_close(g);

        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                const SeccompRule *r = rules + i;

                if (r->cap && strv_contains(capabilities, r->cap) == r->without_cap)
                        continue;

                yajl_gen_map_open(g);
                gen_key_strv_const(g, "names", r->names);
                if (r->errno_ret > 0) {
                        json_gen_key_str(g, "action", "SCMP_ACT_ERRNO");
                        json_gen_key_int(g, "errnoRet", r->errno_ret);
                } else
                        json_gen_key_str(g, "action", "SCMP_ACT_ALLOW");
                if (r->arg.op) {
                        json_gen_str(g, "args");
                        yajl_gen_array_open(g);
                        gen_arg(g, &r->arg);
                        yajl_gen_array_close(g);
                }
                yajl_gen_map_close(g);
        }

        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
        return 0;
}

/* Localhost profiles. */

static bool array_has_str(yajl_val a, const char *s) {
        if (!YAJL_IS_ARRAY(a))
                return false;
        for (size_t i = 0; i < a->u.array.len; i++)
                if (YAJL_IS_STRING(a->u.array.values[i]) && strcmp(a->u.array.values[i]->u.string, s) == 0)
                        return true;
        return false;
}

/* Whether the running kernel is at least "major.minor". */
static bool kernel_at_least(const char *version) {
        unsigned want_major = 0, want_minor = 0, major = 0, minor = 0;
        struct utsname u;

        if (sscanf(version, "%u.%u", &want_major, &want_minor) < 1 || uname(&u) < 0 ||
            sscanf(u.release, "%u.%u", &major, &minor) < 1)
                return true;
        return major > want_major || (major == want_major && minor >= want_minor);
}

/* Docker's "includes"/"excludes" filters of one syscall entry: whether it applies. */
static bool docker_filters_match(yajl_val call, char **capabilities) {
        yajl_val ex = json_get(call, "excludes"), in = json_get(call, "includes"), caps, k;

        if (array_has_str(json_get(ex, "arches"), NATIVE_GO_ARCH))
                return false;
        caps = json_get(ex, "caps");
        for (size_t i = 0; YAJL_IS_ARRAY(caps) && i < caps->u.array.len; i++)
                if (YAJL_IS_STRING(caps->u.array.values[i]) &&
                    strv_contains(capabilities, caps->u.array.values[i]->u.string))
                        return false;
        k = json_get(ex, "minKernel");
        if (YAJL_IS_STRING(k) && kernel_at_least(k->u.string))
                return false;

        k = json_get(in, "arches");
        if (YAJL_IS_ARRAY(k) && k->u.array.len > 0 && !array_has_str(k, NATIVE_GO_ARCH))
                return false;
        caps = json_get(in, "caps");
        for (size_t i = 0; YAJL_IS_ARRAY(caps) && i < caps->u.array.len; i++)
                if (!YAJL_IS_STRING(caps->u.array.values[i]) ||
                    !strv_contains(capabilities, caps->u.array.values[i]->u.string))
                        return false;
        k = json_get(in, "minKernel");
        if (YAJL_IS_STRING(k) && !kernel_at_least(k->u.string))
                return false;
        return true;
}

static int profile_error(Error *error, const char *path, const char *what) {
        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "seccomp profile %s: %s", QUOTE(path), what);
}

/* Everything generation relies on, checked before anything is generated. */
static int profile_check(yajl_val p, const char *path, Error *error) {
        yajl_val calls = json_get(p, "syscalls"), a;

        if (!YAJL_IS_OBJECT(p))
                return profile_error(error, path, "not a JSON object");
        if (!json_get_str(p, "defaultAction"))
                return profile_error(error, path, "no \"defaultAction\"");
        a = json_get(p, "architectures");
        if (a && !YAJL_IS_ARRAY(a))
                return profile_error(error, path, "\"architectures\" is no array");
        a = json_get(p, "archMap");
        if (a && !YAJL_IS_ARRAY(a))
                return profile_error(error, path, "\"archMap\" is no array");
        if (calls && !YAJL_IS_ARRAY(calls))
                return profile_error(error, path, "\"syscalls\" is no array");

        for (size_t i = 0; calls && i < calls->u.array.len; i++) {
                yajl_val c = calls->u.array.values[i], names = json_get(c, "names"), args = json_get(c, "args");

                if (!YAJL_IS_OBJECT(c) || !json_get_str(c, "action"))
                        return profile_error(error, path, "a syscall rule without \"action\"");
                if (!json_get_str(c, "name") && !(YAJL_IS_ARRAY(names) && names->u.array.len > 0))
                        return profile_error(error, path, "a syscall rule without \"names\"");
                if (args && !YAJL_IS_ARRAY(args) && !YAJL_IS_NULL(args))
                        return profile_error(error, path, "a syscall rule whose \"args\" is no array");
                for (size_t j = 0; YAJL_IS_ARRAY(args) && j < args->u.array.len; j++) {
                        yajl_val arg = args->u.array.values[j];
                        if (!YAJL_IS_INTEGER(json_get(arg, "index")) || !json_get_str(arg, "op"))
                                return profile_error(error, path, "a syscall argument without index or op");
                }
        }
        return 0;
}

static void gen_copy(yajl_gen g, yajl_val obj, const char *key) {
        yajl_val v = json_get(obj, key);

        if (v && !YAJL_IS_NULL(v)) {
                json_gen_str(g, key);
                json_gen_value(g, v);
        }
}

static void gen_architectures(yajl_gen g, yajl_val p) {
        yajl_val archs = json_get(p, "architectures"), map = json_get(p, "archMap");

        if (YAJL_IS_ARRAY(archs)) {
                json_gen_str(g, "architectures");
                json_gen_value(g, archs);
                return;
        }
        if (!YAJL_IS_ARRAY(map))
                return;

        /* Docker: the native architecture's entry, with its sub-architectures. */
        json_gen_str(g, "architectures");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < map->u.array.len; i++) {
                yajl_val e = map->u.array.values[i], subs = json_get(e, "subArchitectures");
                const char *arch = json_get_str(e, "architecture");

                if (!arch || strcmp(arch, NATIVE_SCMP_ARCH) != 0)
                        continue;
                json_gen_str(g, arch);
                for (size_t j = 0; YAJL_IS_ARRAY(subs) && j < subs->u.array.len; j++)
                        if (YAJL_IS_STRING(subs->u.array.values[j]))
                                json_gen_str(g, subs->u.array.values[j]->u.string);
        }
        yajl_gen_array_close(g);
}

static void gen_syscall(yajl_gen g, yajl_val c) {
        yajl_val names = json_get(c, "names"), args = json_get(c, "args");
        const char *name = json_get_str(c, "name");

        yajl_gen_map_open(g);
        json_gen_str(g, "names");
        yajl_gen_array_open(g);
        for (size_t i = 0; YAJL_IS_ARRAY(names) && i < names->u.array.len; i++)
                if (YAJL_IS_STRING(names->u.array.values[i]))
                        json_gen_str(g, names->u.array.values[i]->u.string);
        if (!YAJL_IS_ARRAY(names) && name)
                json_gen_str(g, name);
        yajl_gen_array_close(g);
        json_gen_key_str(g, "action", json_get_str(c, "action"));
        gen_copy(g, c, "errnoRet");

        if (YAJL_IS_ARRAY(args) && args->u.array.len > 0) {
                json_gen_str(g, "args");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < args->u.array.len; i++) {
                        yajl_val a = args->u.array.values[i];

                        yajl_gen_map_open(g);
                        gen_copy(g, a, "index");
                        gen_copy(g, a, "value");
                        gen_copy(g, a, "valueTwo");
                        gen_copy(g, a, "op");
                        yajl_gen_map_close(g);
                }
                yajl_gen_array_close(g);
        }
        yajl_gen_map_close(g);
}

int oci_seccomp_profile_gen(struct yajl_gen_t *g, const char *path, char **capabilities, Error *error) {
        _cleanup_free_ char *text = NULL;
        char err[256];
        yajl_val p, calls;
        int r;

        if (!path)
                return profile_error(error, "", "no path given");
        r = read_file(path, 4 * 1024 * 1024, &text, NULL);
        if (r < 0) {
                char what[128];
                snprintf(what, sizeof what, "cannot read: %s", strerror(-r));
                return profile_error(error, path, what);
        }
        p = json_parse(text, err, sizeof err);
        if (!p)
                return profile_error(error, path, err);
        r = profile_check(p, path, error);
        if (r < 0) {
                yajl_tree_free(p);
                return r;
        }

        yajl_gen_map_open(g);
        gen_copy(g, p, "defaultAction");
        gen_copy(g, p, "defaultErrnoRet");
        gen_architectures(g, p);
        gen_copy(g, p, "flags");
        gen_copy(g, p, "listenerPath");
        gen_copy(g, p, "listenerMetadata");
        json_gen_str(g, "syscalls");
        yajl_gen_array_open(g);
        calls = json_get(p, "syscalls");
        for (size_t i = 0; calls && i < calls->u.array.len; i++)
                if (docker_filters_match(calls->u.array.values[i], capabilities))
                        gen_syscall(g, calls->u.array.values[i]);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);

        yajl_tree_free(p);
        return 0;
}
