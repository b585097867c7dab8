/* CRI ImageService: translation between runtime.v1 messages and the image store and puller. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.pb-c.h"
#include "cri-call.h"
#include "cri-service.h"
#include "cri-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"
#include "quote.h"
#include "strv.h"

typedef char UserName[256];

/* Fills out from img; strings point into img or into the caller's uid, spec and name storage. */
static void image_to_cri(Image *img, Runtime__V1__Image *out, Runtime__V1__Int64Value *uid, Runtime__V1__ImageSpec *spec,
                         UserName name) {
        char *end;

        *out = (Runtime__V1__Image) RUNTIME__V1__IMAGE__INIT;
        *spec = (Runtime__V1__ImageSpec) RUNTIME__V1__IMAGE_SPEC__INIT;
        *uid = (Runtime__V1__Int64Value) RUNTIME__V1__INT64_VALUE__INIT;
        out->id = img->id;
        out->repo_tags = img->repo_tags;
        out->n_repo_tags = strv_length(img->repo_tags);
        out->repo_digests = img->repo_digests;
        out->n_repo_digests = strv_length(img->repo_digests);
        out->size = img->size;
        spec->image = img->id;
        out->spec = spec;
        /* User "1000", "1000:1000", "app" or "app:group": a number is the uid, else a name. */
        if (img->user && img->user[0]) {
                long long v = strtoll(img->user, &end, 10);
                if (end != img->user && (*end == '\0' || *end == ':')) {
                        uid->value = v;
                        out->uid = uid;
                } else {
                        snprintf(name, sizeof(UserName), "%.*s", (int) strcspn(img->user, ":"), img->user);
                        out->username = name;
                }
        }
}

static Image *find(Manager *m, const Runtime__V1__ImageSpec *spec) {
        return spec && spec->image && spec->image[0] ? image_store_find(m->images, spec->image) : NULL;
}

/* --- PullImage ----------------------------------------------------------------------------------- */

static void detach_pull(void *waiter) {
        pull_waiter_cancel(waiter);
}

static void pull_done(const Error *error, Image *img, void *userdata) {
        CriCall *cc = userdata;
        Runtime__V1__PullImageResponse resp = RUNTIME__V1__PULL_IMAGE_RESPONSE__INIT;

        if (error_is_set(error))
                (void) grpc_call_finish(cc->call, grpc_status_from_error(error), "%s", error_text(error));
        else {
                resp.image_ref = img->id;
                (void) cri_reply(cc->call, &resp.base);
        }
        cri_call_done(cc);
}

int cri_pull_image(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__PullImageRequest *req = runtime__v1__pull_image_request__unpack(NULL, len, msg);
        const Runtime__V1__AuthConfig *a;
        const char *error = NULL;
        PullWaiter *w = NULL;
        CriCall *cc;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "PullImageRequest does not decode");
        if (!req->image || !req->image->image || !req->image->image[0]) {
                runtime__v1__pull_image_request__free_unpacked(req, NULL);
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "image.image is empty");
        }
        a = req->auth;
        PullAuth auth = {
                .username = a ? a->username : NULL,
                .password = a ? a->password : NULL,
                .auth = a ? a->auth : NULL,
                .registry_token = a ? a->registry_token : NULL,
                .identity_token = a ? a->identity_token : NULL,
        };
        cc = cri_call_new(call, m, 0, detach_pull);
        if (!cc) {
                runtime__v1__pull_image_request__free_unpacked(req, NULL);
                return -ENOMEM;
        }
        r = image_pull(m->puller, req->image->image, &auth, pull_done, cc, &w, &error);
        if (r < 0) {
                cri_call_free(cc);
                r = grpc_call_finish(call, r == -EINVAL ? GRPC_STATUS_INVALID_ARGUMENT : grpc_status_from_errno(r),
                                     "image.image %s: %s", QUOTE(req->image->image), error ?: strerror(-r));
                runtime__v1__pull_image_request__free_unpacked(req, NULL);
                return r;
        }
        runtime__v1__pull_image_request__free_unpacked(req, NULL);
        return cri_call_wait(cc, w);
}

/* --- ListImages / ImageStatus / RemoveImage / ImageFsInfo ---------------------------------------- */

int cri_list_images(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ListImagesRequest *req = runtime__v1__list_images_request__unpack(NULL, len, msg);
        Runtime__V1__ListImagesResponse resp = RUNTIME__V1__LIST_IMAGES_RESPONSE__INIT;
        size_t cap = m->images->n_images + 1, n = 0;
        Runtime__V1__Image *items = calloc(cap, sizeof *items), **itemp = calloc(cap, sizeof *itemp);
        Runtime__V1__Int64Value *uids = calloc(cap, sizeof *uids);
        Runtime__V1__ImageSpec *specs = calloc(cap, sizeof *specs);
        UserName *names = calloc(cap, sizeof *names);
        Image *only = NULL;
        int r = -ENOMEM;

        if (!req) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ListImagesRequest does not decode");
                goto out;
        }
        if (!items || !itemp || !uids || !specs || !names)
                goto out;
        bool filtered = req->filter && req->filter->image && req->filter->image->image && req->filter->image->image[0];
        if (filtered)
                only = find(m, req->filter->image);
        for (Image *img = m->images->images; img; img = img->next) {
                if (filtered && img != only)
                        continue;
                image_to_cri(img, &items[n], &uids[n], &specs[n], names[n]);
                itemp[n] = &items[n];
                n++;
        }
        resp.images = itemp;
        resp.n_images = n;
        r = cri_reply(call, &resp.base);
out:
        free(items);
        free(itemp);
        free(uids);
        free(specs);
        free(names);
        if (req)
                runtime__v1__list_images_request__free_unpacked(req, NULL);
        return r;
}

/* --- StreamImages -------------------------------------------------------------------------------- */

typedef struct ImageItem {
        Runtime__V1__Image it;
        Runtime__V1__Int64Value uid;
        Runtime__V1__ImageSpec spec;
        UserName name;
} ImageItem;

static bool image_item_fill(Manager *m, const char *id, void *item) {
        ImageItem *it = item;
        Image *img = image_store_find(m->images, id);

        if (!img)
                return false;
        image_to_cri(img, &it->it, &it->uid, &it->spec, it->name);
        return true;
}

static const CriChunkType images_chunk = {
        .response = &runtime__v1__stream_images_response__descriptor,
        .field = "images",
        .item_size = sizeof(ImageItem),
        .fill = image_item_fill,
};

int cri_stream_images(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__StreamImagesRequest *req = runtime__v1__stream_images_request__unpack(NULL, len, msg);
        char **ids = NULL;
        Image *only = NULL;
        size_t n = 0;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StreamImagesRequest does not decode");
        ids = calloc(m->images->n_images + 1, sizeof *ids);
        if (!ids) {
                r = -ENOMEM;
                goto out;
        }
        /* ListImages' filter: one image, by any reference to it. */
        bool filtered = req->filter && req->filter->image && req->filter->image->image && req->filter->image->image[0];
        if (filtered)
                only = find(m, req->filter->image);
        for (Image *img = m->images->images; img; img = img->next)
                if ((!filtered || img == only) && !(ids[n++] = strdup(img->id))) {
                        r = -ENOMEM;
                        goto out;
                }
        r = cri_chunk_stream(call, m, TAKE_PTR(ids), n, &images_chunk);
out:
        strv_free(ids);
        runtime__v1__stream_images_request__free_unpacked(req, NULL);
        return r;
}

int cri_image_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ImageStatusRequest *req = runtime__v1__image_status_request__unpack(NULL, len, msg);
        Runtime__V1__ImageStatusResponse resp = RUNTIME__V1__IMAGE_STATUS_RESPONSE__INIT;
        Runtime__V1__ImageStatusResponse__InfoEntry info = RUNTIME__V1__IMAGE_STATUS_RESPONSE__INFO_ENTRY__INIT;
        Runtime__V1__ImageStatusResponse__InfoEntry *infos[] = { &info };
        Runtime__V1__Image item;
        Runtime__V1__Int64Value uid;
        Runtime__V1__ImageSpec spec;
        UserName name;
        char *config = NULL, *json = NULL;
        Image *img;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ImageStatusRequest does not decode");
        if (!req->image || !req->image->image || !req->image->image[0]) {
                runtime__v1__image_status_request__free_unpacked(req, NULL);
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "image.image is empty");
        }
        /* An unknown image is an empty answer, not an error: the CRI says so. */
        img = find(m, req->image);
        if (img) {
                image_to_cri(img, &item, &uid, &spec, name);
                resp.image = &item;
                if (req->verbose) {
                        char *path = image_config_path(m->images, img);
                        yajl_val v = NULL;
                        if (path && read_file(path, 8 * 1024 * 1024, &config, NULL) >= 0)
                                v = json_parse(config, NULL, 0);
                        yajl_gen g = yajl_gen_alloc(NULL);
                        if (g) {
                                yajl_gen_map_open(g);
                                json_gen_key_str(g, "id", img->id);
                                json_gen_str(g, "layers");
                                yajl_gen_array_open(g);
                                for (size_t i = 0; i < img->n_layers; i++) {
                                        yajl_gen_map_open(g);
                                        json_gen_key_str(g, "digest", img->layers[i].digest);
                                        json_gen_key_str(g, "chainId", img->layers[i].chain_id);
                                        json_gen_key_str(g, "mediaType", img->layers[i].media_type);
                                        json_gen_key_int(g, "size", (long long) img->layers[i].size);
                                        yajl_gen_map_close(g);
                                }
                                yajl_gen_array_close(g);
                                json_gen_str(g, "imageSpec");
                                json_gen_value(g, v);
                                yajl_gen_map_close(g);
                                json = json_gen_steal(g);
                                yajl_gen_free(g);
                        }
                        yajl_tree_free(v);
                        free(path);
                        info.key = (char *) "info";
                        info.value = json ?: (char *) "{}";
                        resp.info = infos;
                        resp.n_info = 1;
                }
        }
        r = cri_reply(call, &resp.base);
        free(config);
        free(json);
        runtime__v1__image_status_request__free_unpacked(req, NULL);
        return r;
}

int cri_remove_image(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__RemoveImageRequest *req = runtime__v1__remove_image_request__unpack(NULL, len, msg);
        Image *img;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "RemoveImageRequest does not decode");
        if (!req->image || !req->image->image || !req->image->image[0]) {
                runtime__v1__remove_image_request__free_unpacked(req, NULL);
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "image.image is empty");
        }
        img = find(m, req->image);
        if (img && img->users > 0) {
                r = grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION, "image %s is used by %u container(s)", img->id,
                                     img->users);
                runtime__v1__remove_image_request__free_unpacked(req, NULL);
                return r;
        }
        if (img) {
                log_info("Removing image %s (%s).", img->id, QUOTE(req->image->image));
                r = image_store_remove(m->images, img);
                if (r < 0) {
                        r = grpc_call_finish(call, grpc_status_from_errno(r), "remove image %s: %s",
                                             QUOTE(req->image->image), strerror(-r));
                        runtime__v1__remove_image_request__free_unpacked(req, NULL);
                        return r;
                }
        }
        /* Removing what is not there is fine: the CRI asks for idempotence. */
        runtime__v1__remove_image_request__free_unpacked(req, NULL);
        return cri_reply_empty(call);
}

int cri_image_fs_info(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ImageFsInfoResponse resp = RUNTIME__V1__IMAGE_FS_INFO_RESPONSE__INIT;
        Runtime__V1__FilesystemUsage fs = RUNTIME__V1__FILESYSTEM_USAGE__INIT, *fsp[] = { &fs };
        Runtime__V1__FilesystemIdentifier id = RUNTIME__V1__FILESYSTEM_IDENTIFIER__INIT;
        Runtime__V1__UInt64Value bytes = RUNTIME__V1__UINT64_VALUE__INIT, inodes = RUNTIME__V1__UINT64_VALUE__INIT;
        Runtime__V1__FilesystemUsage cfs = RUNTIME__V1__FILESYSTEM_USAGE__INIT, *cfsp[] = { &cfs };
        Runtime__V1__FilesystemIdentifier cid = RUNTIME__V1__FILESYSTEM_IDENTIFIER__INIT;
        Runtime__V1__UInt64Value cbytes = RUNTIME__V1__UINT64_VALUE__INIT, cinodes = RUNTIME__V1__UINT64_VALUE__INIT;
        _cleanup_free_ char *layers = NULL;
        struct timespec ts;
        int r;

        r = image_store_usage(m->images, &bytes.value, &inodes.value);
        if (r < 0)
                return grpc_call_finish(call, grpc_status_from_errno(r), "image store usage: %s", strerror(-r));
        clock_gettime(CLOCK_REALTIME, &ts);
        fs.timestamp = (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
        id.mountpoint = m->images->dir;
        fs.fs_id = &id;
        fs.used_bytes = &bytes;
        fs.inodes_used = &inodes;
        resp.image_filesystems = fsp;
        resp.n_image_filesystems = 1;
        /* The containers' writable layers (their upper directories), as containerd reports its
         * snapshotter's: the sum of the last background walks. */
        layers = ctr_layers_dir(m->containers);
        if (!layers)
                return -ENOMEM;
        ctr_layers_usage(m->containers, &cbytes.value, &cinodes.value);
        cfs.timestamp = fs.timestamp;
        cid.mountpoint = layers;
        cfs.fs_id = &cid;
        cfs.used_bytes = &cbytes;
        cfs.inodes_used = &cinodes;
        resp.container_filesystems = cfsp;
        resp.n_container_filesystems = 1;
        return cri_reply(call, &resp.base);
}
