/* File descriptor helpers. */
#pragma once

#include <stdbool.h>

int fd_nonblock(int fd, bool nonblock);
int fd_cloexec(int fd, bool cloexec);
/* mkdir -p with the given mode for every created component. */
int mkdir_parents(const char *path, unsigned mode);
int mkdir_p(const char *path, unsigned mode);
/* rm -rf that stays on path's mount and does not follow symlinks; missing path: 0. A mount below
 * path (a bind mount of the same file system too) is left as it is, with what holds it: -EBUSY. */
int rm_rf(const char *path);
/* rm_rf() of each path, saying on stderr which failed (for children); the last error, or 0. */
int rm_rf_all(char *const *paths);
/* Calls fn for every entry of dir named by a 64-hex-digit id (the records of pods and containers),
 * in lexical order. A missing dir is empty. */
int dir_for_each_id(const char *dir, void (*fn)(const char *id, void *userdata), void *userdata);
/* The first dirs[i]/name that is executable (a new string), or NULL. */
char *find_executable(char *const *dirs, const char *name);
