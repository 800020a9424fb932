/* What every fuzz target checks after each input: its open fds. */
#ifndef TB_FUZZ_FDS_H
#define TB_FUZZ_FDS_H

#include <dirent.h>
#include <stdlib.h>

/* Open fds of this process (aborts if it cannot tell). */
static inline int fuzz_open_fds(void) {
  DIR *dir = opendir("/proc/self/fd");
  if (dir == NULL)
    abort();
  int count = 0;
  const struct dirent *entry;
  while ((entry = readdir(dir)) != NULL)
    count += entry->d_name[0] != '.';
  closedir(dir);
  return count - 1; /* the directory's own fd */
}

#endif
