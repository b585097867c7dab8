/* The OCI runtime bundle's config.json, generated with yajl from a fully resolved OciSpec: the
 * process, mounts, namespaces, security (capabilities, seccomp, masked paths) and resources of one
 * container. Also the defaults containerd and Docker apply (capabilities, mounts, masked and
 * read-only paths, the default seccomp profile) and the look-up of users in an image's rootfs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error-chain.h"

typedef struct OciMount {
        char *destination, *source, *type;
        char **options; /* NULL-terminated */
} OciMount;

typedef struct OciNamespace {
        char *type; /* "pid", "network", "ipc", "uts", "mount", "cgroup", "user" */
        char *path; /* NULL: a new one */
} OciNamespace;

/* linux.uidMappings / gidMappings: one range each. */
typedef struct OciIdMapping {
        uint32_t container_id, host_id, size;
} OciIdMapping;

typedef struct OciDevice {
        char *path;      /* in the container */
        char type;       /* 'c' or 'b' */
        int64_t major, minor;
        uint32_t file_mode;
        uid_t uid;
        gid_t gid;
        char *permissions; /* cgroup access, "rwm" */
} OciDevice;

typedef struct OciRlimit {
        char *type; /* "RLIMIT_NOFILE" */
        uint64_t soft, hard;
} OciRlimit;

typedef enum OciSeccomp {
        OCI_SECCOMP_RUNTIME_DEFAULT, /* the profile this project ships (oci_seccomp_default) */
        OCI_SECCOMP_UNCONFINED,      /* no seccomp section */
        OCI_SECCOMP_LOCALHOST,       /* seccomp_profile_path: an OCI/Docker seccomp JSON file */
} OciSeccomp;

typedef struct OciSpec {
        /* process */
        char **args, **env; /* NULL-terminated; env "K=V" */
        char *cwd;
        uid_t uid;
        gid_t gid;
        gid_t *additional_gids;
        size_t n_additional_gids;
        bool terminal; /* always false here: stdio are passed through; kept for completeness */
        bool no_new_privileges;
        char **capabilities; /* NULL-terminated "CAP_…" names: bounding, effective, permitted (and
                              * inheritable empty, ambient empty) */
        OciRlimit *rlimits;
        size_t n_rlimits;
        bool has_oom_score_adj;
        int oom_score_adj;
        char *apparmor_profile; /* NULL: none */

        /* root */
        char *rootfs; /* absolute path */
        bool readonly_rootfs;
        char *hostname; /* NULL: none (the UTS namespace is joined or the host's) */

        OciMount *mounts; /* in order, the defaults first (oci_default_mounts) */
        size_t n_mounts;
        OciNamespace *namespaces;
        size_t n_namespaces;
        bool id_mapped; /* a user namespace (joined by path: the runtime wants its mappings too) */
        OciIdMapping uid_mapping, gid_mapping;
        char **masked_paths, **readonly_paths; /* NULL-terminated */
        OciDevice *devices;
        size_t n_devices;
        bool allow_all_devices; /* privileged: the cgroup allows every device */
        char **sysctls;         /* NULL-terminated "key=value" */

        OciSeccomp seccomp;
        char *seccomp_profile_path;

        /* linux.resources (0: unset) */
        uint64_t cpu_shares, cpu_quota, cpu_period, memory_limit, memory_swap_limit, pids_limit;
        char *cpuset_cpus, *cpuset_mems;

        char *cgroups_path; /* NULL: the runtime's default */
        char **annotations; /* NULL-terminated "key=value" */
} OciSpec;

void oci_spec_done(OciSpec *s);
void oci_mounts_free(OciMount *m, size_t n);

/* Writes path (atomically, 0600) with the spec as config.json (ociVersion 1.0.2). Returns
 * -errno with *error filled; ERROR_INVALID_ARGUMENT for a Localhost seccomp profile that cannot be
 * read or parsed. */
int oci_spec_write(const OciSpec *s, const char *path, Error *error);
/* The same JSON as a string (for tests and verbose status). */
int oci_spec_to_json(const OciSpec *s, char **ret, Error *error);

/* The capabilities containerd and Docker give a container by default (NULL-terminated, static). */
extern const char *const oci_default_capabilities[];
/* Every capability this kernel knows and this process's bounding set holds (for privileged
 * containers and for dropping what cannot be granted); a new NULL-terminated list. */
char **oci_bounding_capabilities(void);
/* Applies add/drop ("ALL" allowed in either, names with or without "CAP_", any case) to base,
 * then keeps only what the bounding set holds; a new list of "CAP_…" names in capability order, or
 * NULL with errno set and *error filled (ERROR_INVALID_ARGUMENT for an unknown name). */
char **oci_capabilities_resolve(const char *const *base, char **add, char **drop, Error *error);

/* The default mounts (proc, /dev tmpfs, devpts, mqueue, sysfs, cgroup), appended to *mounts.
 * readonly_sys: sysfs and cgroup read-only (unprivileged containers). */
int oci_default_mounts(OciMount **mounts, size_t *n, bool readonly_sys);
extern const char *const oci_default_masked_paths[];
extern const char *const oci_default_readonly_paths[];

/* The default seccomp profile as generated JSON is decided by the capabilities (a syscall some
 * capability allows is allowed only when the container has it). Writes the "seccomp" value. */
struct yajl_gen_t;
int oci_seccomp_default_gen(struct yajl_gen_t *g, char **capabilities);
/* A Localhost profile (OCI linux.seccomp, or Docker's format: "archMap", "name", "includes" and
 * "excludes" decided by capabilities, architecture and kernel) read from path and written as the
 * "seccomp" value. -EINVAL with *error (ERROR_INVALID_ARGUMENT) when it cannot be read or is invalid
 * (nothing is generated then). */
int oci_seccomp_profile_gen(struct yajl_gen_t *g, const char *path, char **capabilities, Error *error);

/* Looks a user up in <rootfs>/etc/passwd (name or decimal uid) and its groups in <rootfs>/etc/group,
 * resolving paths inside rootfs (openat2 RESOLVE_IN_ROOT: the image's symlinks cannot lead out).
 * A numeric uid missing from passwd is fine (gid 0 then, unless given). -ENOENT with *error
 * (ERROR_NOT_FOUND) for a name that is not there. ret_gids: the supplementary groups the user is a
 * member of. */
int oci_lookup_user(const char *rootfs, const char *user, uid_t *ret_uid, gid_t *ret_gid, gid_t **ret_gids,
                    size_t *ret_n_gids, Error *error);
/* Looks a group up (name or decimal gid) likewise. */
int oci_lookup_group(const char *rootfs, const char *group, gid_t *ret_gid, Error *error);
