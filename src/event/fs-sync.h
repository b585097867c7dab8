/* Durability off the loop. Records are saved with write_file_replace() (json_gen_save()): written
 * and renamed on the loop, which takes microseconds, and which a crash of the daemon cannot undo or
 * leave half done (the page cache is the kernel's). What only a power loss could take is made
 * durable soon after by syncfs(2) in a thread that does only that, coalesced: one at a time, one
 * more when saves came meanwhile, however many. */
#pragma once


typedef struct FsSync FsSync;

/* For the file system that holds path. */
int fs_sync_new(const char *path, FsSync **ret);
/* Something was saved: sync the file system soon. */
void fs_sync_request(FsSync *s);
/* At exit: a sync still owed is done before the thread ends. */
FsSync *fs_sync_free(FsSync *s);
