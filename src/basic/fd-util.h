/* File descriptor helpers. */
#pragma once

#include <stdbool.h>

int fd_nonblock(int fd, bool nonblock);
int fd_cloexec(int fd, bool cloexec);
/* mkdir -p with the given mode for every created component. */
int mkdir_parents(const char *path, unsigned mode);
int mkdir_p(const char *path, unsigned mode);
/* rm -rf that stays on path's file system and does not follow symlinks; missing path: 0. */
int rm_rf(const char *path);
