/* What the container module's files share. */
#pragma once

#include "ctr.h"
#include "json-util.h"
#include "op.h"
#include "strv.h"

#define CTR_SYSTEMD_TIMEOUT_USEC (90ULL * 1000 * 1000)
#define CTR_CHILD_TIMEOUT_USEC (60ULL * 1000 * 1000)

void ctr_link(CtrTable *t, Container *c);
void ctr_free(Container *c);
/* <root>/containers/<id>: state.json, config.pb, upper/, work/. */
char *ctr_root_dir(const Container *c);
/* <state>/containers/<id>: the bundle (config.json, rootfs/, pid, runtime.log). */
char *ctr_run_dir(const Container *c);
char *ctr_path(const Container *c, bool run, const char *name);
int ctr_save(const Container *c);
int ctr_load(CtrTable *t, const char *id, Container **ret);
CtrState ctr_state_from_string(const char *s);

/* ctr-handler.c: c's runtime as its handler runs it: the binary, the handler's options, --root,
 * then args (NULL-terminated). A new strv, NULL on OOM. */
char **ctr_runtime_argv(const Container *c, char *const *args);
/* c is run with h from now on (saved with it). */
int ctr_take_handler(Container *c, const CtrHandler *h);

/* ctr-oci.c: config.json for a container whose rootfs is mounted. */
/* image_config: the image's config, parsed (NULL: it could not be read, an error). */
int ctr_write_oci_config(Container *c, const Pod *pod, const Image *image, yajl_val image_config, const CtrSpec *spec,
                         Error *error);
/* The image's config: its stop signal ("SIGTERM" when none). */
/* The image config's StopSignal, else SIGTERM. */
int ctr_image_stop_signal(yajl_val image_config);
/* The image's config, parsed once per CreateContainer (up to 4 MiB), or NULL. */
yajl_val ctr_image_config(ImageStore *s, const Image *image);

/* ctr-rootfs.c: children that mount the overlay rootfs or unmount it. */
typedef struct CtrRootfs {
        char *lower; /* "a:b:c", top layer first */
        char *upper, *work, *target;
        char *userns; /* the pod's pinned user namespace, NULL: none (the layers are not idmapped) */
        uid_t root_uid; /* the pod's root on the host, who owns the upper directory */
        gid_t root_gid;
        /* With userns: the host paths of the CRI's mounts to idmap at <volumes>/<i> (NULL: not
         * that one), n_volumes of them (ctr_volume_source() says which were); readonly[i]: the CRI's
         * mount i is read-only (1), with its submounts (2), so is its clone. */
        char **volumes, *volumes_dir;
        uint8_t *readonly;
        size_t n_volumes;
        pid_t daemon_pid; /* the mount child's parent, whose death kills it */
} CtrRootfs;
int ctr_rootfs_prepare(const Container *c, const Pod *pod, const CtrSpec *spec, ImageStore *s, const Image *image,
                       CtrRootfs *ret);
void ctr_rootfs_done(CtrRootfs *r);
int ctr_rootfs_mount_child(void *userdata);
int ctr_rootfs_umount_child(void *userdata); /* userdata: the target path */
/* ctr-userns.c: in the mount child, the overlay of r's layers idmapped to r->userns on r->target;
 * the probe of whether that works here, started at load (ctr_handler_user_namespaces() answers). */
int ctr_rootfs_mount_idmapped(const CtrRootfs *r);
/* The idmapped mount of the CRI's mount i the mount child made, or NULL (none: the host path as it
 * is). In the umount child: those mounts unmounted, their mount points removed. */
char *ctr_volume_source(const Container *c, size_t i);
int ctr_volumes_umount(const char *volumes_dir);
void ctr_userns_probe(CtrTable *t);

/* The container's log_path relative to its log_dir ("" when it has no log). */
const char *ctr_log_relative(const Container *c);

/* ctr-io.c: the container's stdio. Pipes (or a pseudo-terminal) whose far ends go to systemd; the
 * near ends are read in the loop into the CRI log, log_path beneath log_dir (see cri_log_open();
 * log_path "" or NULL: no log). */
int ctr_io_new(struct ev_loop *loop, const char *container_id, const char *log_dir, const char *log_path, bool tty,
               bool stdin_, CtrIo **ret, int ret_fds[3]);
CtrIo *ctr_io_free(CtrIo *io);
/* Reopens the log (or opens it, when it could not be opened before). */
int ctr_io_reopen(CtrIo *io);
/* Adopts the read ends a previous daemon kept in systemd's fd store, if any. A log that cannot be
 * opened is no failure here: the output is dropped until a reopen succeeds. */
int ctr_io_adopt(struct ev_loop *loop, CtrStoredFds *stored, const char *container_id, const char *log_dir, const char *log_path,
                 bool tty, bool stdin_, CtrIo **ret);
/* The container exited: what its pipes still hold goes to the log and the attachments, which end. */
void ctr_io_exited(CtrIo *io);
/* Drops the container's fds from systemd's fd store. */
void ctr_io_forget(const char *container_id);

/* Tells the table's observer (ctr.c). */
void ctr_emit(CtrTable *t, CtrEvent event, const char *container_id, const char *pod_id);

/* systemd has answered for c's unit since the start (ctr.c). */
void ctr_confirmed(Container *c);

/* ctr-run.c: the step table of each kind of operation (0 create, 1 start, 2 stop, 3 remove), for
 * tests; NULL past the last. */
const OpKind *ctr_op_kind(unsigned kind);
