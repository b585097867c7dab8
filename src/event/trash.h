/* Deleting trees off the loop. A tree is first renamed into a trash directory on its file system,
 * at once: from then on it is out of every name the daemon reads (a record inside it is gone with
 * it), and a forked child deletes it, however big. What a crash leaves in the trash is deleted by
 * trash_empty() at the next start, again in a child. */
#pragma once

#include <ev.h>

/* Moves path into trash_dir (made when missing) as "<name>.<random>", and deletes it there in a
 * child. 0 when path is gone from its place (or was not there); a negative errno when it could not
 * be moved (EXDEV, EBUSY: a mount on it…): path is then untouched, for the caller to decide. */
int trash_tree(struct ev_loop *loop, const char *trash_dir, const char *path, const char *name);

/* Deletes, in a child, whatever trash_dir holds (a missing trash_dir is empty). */
void trash_empty(struct ev_loop *loop, const char *trash_dir);
