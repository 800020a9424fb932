/* tb_osutil: the operating-system calls the Lua conformance runner and the
 * Lua binding's tests need and Lua's standard library lacks (fds, memfds,
 * environment). Test support only: it is not part of the binding.
 *
 * Failures raise a string naming the call and errno's text. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fail_errno(lua_State *L, const char *what) {
  return luaL_error(L, "%s: %s", what, strerror(errno));
}

/* Writes all of `data` at offset 0 of `fd`. */
static int write_all(int fd, const char *data, size_t size) {
  for (size_t done = 0; done < size;) {
    ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
    if (n < 0)
      return -1;
    done += (size_t)n;
  }
  return 0;
}

static const struct {
  const char *name;
  int seal;
} seal_names[] = {{"shrink", F_SEAL_SHRINK},
                  {"grow", F_SEAL_GROW},
                  {"write", F_SEAL_WRITE},
                  {"future_write", F_SEAL_FUTURE_WRITE},
                  {"seal", F_SEAL_SEAL}};

/* "shrink|grow" -> F_SEAL_SHRINK | F_SEAL_GROW. */
static int parse_seals(lua_State *L, const char *text) {
  int seals = 0;
  while (*text != '\0') {
    size_t length = strcspn(text, "|");
    size_t i = 0;
    while (i < sizeof seal_names / sizeof *seal_names &&
           (strlen(seal_names[i].name) != length ||
            strncmp(seal_names[i].name, text, length) != 0))
      i++;
    if (i == sizeof seal_names / sizeof *seal_names)
      return luaL_error(L, "unknown seal in \"%s\"", text);
    seals |= seal_names[i].seal;
    text += length + (text[length] == '|');
  }
  return seals;
}

/* memfd(size [, data [, allow_sealing [, seals [, read_only]]]]) -> fd */
static int memfd(lua_State *L) {
  lua_Integer size = luaL_checkinteger(L, 1);
  size_t data_size = 0;
  const char *data = luaL_optlstring(L, 2, NULL, &data_size);
  int allow_sealing = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
  int seals = parse_seals(L, luaL_optstring(L, 4, ""));
  int read_only = lua_toboolean(L, 5);
  int fd = memfd_create("tb-conformance",
                        MFD_CLOEXEC | (allow_sealing ? MFD_ALLOW_SEALING : 0));
  if (fd < 0)
    return fail_errno(L, "memfd_create");
  if (ftruncate(fd, (off_t)size) != 0 || write_all(fd, data, data_size) != 0 ||
      (seals != 0 && fcntl(fd, F_ADD_SEALS, seals) != 0)) {
    int errnum = errno;
    close(fd);
    errno = errnum;
    return fail_errno(L, "making the memfd");
  }
  if (read_only) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int reopened = open(path, O_RDONLY | O_CLOEXEC);
    int errnum = errno;
    close(fd);
    if (reopened < 0) {
      errno = errnum;
      return fail_errno(L, "reopening the memfd read-only");
    }
    fd = reopened;
  }
  lua_pushinteger(L, fd);
  return 1;
}

/* pipe() -> the read end (the write end is closed at once). */
static int pipe_read_end(lua_State *L) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0)
    return fail_errno(L, "pipe2");
  close(ends[1]);
  lua_pushinteger(L, ends[0]);
  return 1;
}

/* tmpfile(size[, data]) -> fd of an unlinked regular file in $TMPDIR (or
 * /tmp), with data written at offset 0. */
static int tmpfile_fd(lua_State *L) {
  lua_Integer size = luaL_checkinteger(L, 1);
  size_t data_size = 0;
  const char *data = luaL_optlstring(L, 2, NULL, &data_size);
  const char *dir = getenv("TMPDIR");
  int fd = open(dir != NULL && *dir != '\0' ? dir : "/tmp",
                O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    return fail_errno(L, "open(O_TMPFILE)");
  if (ftruncate(fd, (off_t)size) != 0 || write_all(fd, data, data_size) != 0) {
    int errnum = errno;
    close(fd);
    errno = errnum;
    return fail_errno(L, "ftruncate");
  }
  lua_pushinteger(L, fd);
  return 1;
}

/* open(path, "rw" | "r" | "directory") -> fd */
static int open_path(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const modes[] = {"rw", "r", "directory", NULL};
  static const int flags[] = {O_RDWR, O_RDONLY, O_RDONLY | O_DIRECTORY};
  int fd = open(path, flags[luaL_checkoption(L, 2, NULL, modes)] | O_CLOEXEC);
  if (fd < 0)
    return fail_errno(L, path);
  lua_pushinteger(L, fd);
  return 1;
}

/* close(fd) */
static int close_fd(lua_State *L) {
  if (close((int)luaL_checkinteger(L, 1)) != 0)
    return fail_errno(L, "close");
  return 0;
}

/* fd_count() -> the number of open fds of this process. */
static int fd_count(lua_State *L) {
  DIR *dir = opendir("/proc/self/fd");
  if (dir == NULL)
    return fail_errno(L, "opendir(/proc/self/fd)");
  lua_Integer count = 0;
  for (struct dirent *entry; (entry = readdir(dir)) != NULL;)
    count += entry->d_name[0] != '.';
  closedir(dir);
  lua_pushinteger(L, count - 1); /* the directory's own fd */
  return 1;
}

/* setenv(name, value) with value nil: unsetenv. */
static int set_env(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int failed = lua_isnoneornil(L, 2) ? unsetenv(name)
                                     : setenv(name, luaL_checkstring(L, 2), 1);
  if (failed)
    return fail_errno(L, "setenv");
  return 0;
}

/* pid() -> this process's id (for names no other process uses). */
static int pid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

int luaopen_tb_osutil(lua_State *L) {
  static const luaL_Reg functions[] = {{"memfd", memfd},
                                       {"pipe", pipe_read_end},
                                       {"tmpfile", tmpfile_fd},
                                       {"open", open_path},
                                       {"close", close_fd},
                                       {"fd_count", fd_count},
                                       {"setenv", set_env},
                                       {"pid", pid},
                                       {NULL, NULL}};
  luaL_newlib(L, functions);
  return 1;
}
