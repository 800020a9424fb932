/* shm_handoff: hands a tensor to another process without copying a byte.
 *
 * The parent allocates a small RGB image, a u8 tensor [height, width, 3], in
 * shared memory (a sealed memfd), maps it for reading and exports its fd.
 * Then it starts a child (fork, then exec of this same program) that gets
 * nothing but that fd and the tensor's byte offset on its command line (the
 * dtype and shape are compiled in). The child imports the fd, maps the tensor
 * for writing and paints a gradient.
 * Once the child has exited, the parent finds the gradient in the mapping it
 * made before the child existed: both processes mapped the same pages.
 *
 * `./run demo` runs it; ctest runs it as examples.shm_handoff. Exit status:
 * 0 success, 1 failure, 77 shared memory unavailable here. */
#include <tensorbuf/tensorbuf.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { HEIGHT = 48, WIDTH = 64, CHANNELS = 3, NDIM = 3 };

/* Stops the process with the failed call, its status name and message. */
static void check(tb_status status, const char *call) {
  if (status == TB_OK)
    return;
  fprintf(stderr, "shm_handoff: %s failed: %s: %s\n", call,
          tb_status_name(status), tb_last_error());
  exit(EXIT_FAILURE);
}

/* Where pixel (y, x), channel c, lies in the row-major image. */
static int64_t byte_at(int64_t y, int64_t x, int64_t c) {
  return (y * WIDTH + x) * CHANNELS + c;
}

/* The byte the child writes at (y, x, c): a red/green gradient, blue fixed. */
static uint8_t pattern(int64_t y, int64_t x, int64_t c) {
  const int64_t value[CHANNELS] = {x * 255 / (WIDTH - 1),
                                   y * 255 / (HEIGHT - 1), 128};
  return (uint8_t)value[c];
}

static void describe(const char *what, const tb_tensor *tensor) {
  printf("  %s: %s [%" PRId64 ", %" PRId64 ", %" PRId64 "] = %" PRIu64
         " bytes in %s memory, buffer id %" PRIu64 "\n",
         what, tb_dtype_name(tb_tensor_dtype(tensor)), tb_tensor_dim(tensor, 0),
         tb_tensor_dim(tensor, 1), tb_tensor_dim(tensor, 2),
         tb_tensor_nbytes(tensor), tb_memory_name(tb_tensor_memory(tensor)),
         tb_tensor_buffer_id(tensor));
}

/* The child: argv is "--child <fd> <byte offset>". */
static int run_child(const char *fd_text, const char *offset_text) {
  const int fd = atoi(fd_text);
  const uint64_t offset = strtoull(offset_text, NULL, 10);
  const int64_t shape[NDIM] = {HEIGHT, WIDTH, CHANNELS};
  printf("child (pid %d), started by exec\n", (int)getpid());

  tb_tensor *tensor = NULL;
  check(tb_tensor_import_fd(&tensor, fd, TB_DTYPE_U8, NDIM, shape, offset),
        "tb_tensor_import_fd");
  close(fd); /* the tensor holds its own duplicate */
  char what[32];
  snprintf(what, sizeof what, "imported fd %d", fd);
  describe(what, tensor);
  printf("  (the kernel said what the fd is; buffer ids count per process)\n");

  tb_map *map = NULL;
  check(tb_tensor_map(&map, tensor, TB_MAP_WRITE), "tb_tensor_map");
  uint8_t *pixels = tb_map_data(map);
  for (int64_t y = 0; y < HEIGHT; y++)
    for (int64_t x = 0; x < WIDTH; x++)
      for (int64_t c = 0; c < CHANNELS; c++)
        pixels[byte_at(y, x, c)] = pattern(y, x, c);
  printf("  mapped it for writing at %p and painted a gradient\n",
         (void *)pixels);
  tb_map_free(map);
  tb_tensor_unref(tensor);
  printf("  released everything: %" PRId64 " live objects\n",
         tb_live_objects());
  return tb_live_objects() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* Starts this program again as the child, passing `fd` across exec. */
static pid_t start_child(int fd, uint64_t offset) {
  char fd_text[16], offset_text[32];
  snprintf(fd_text, sizeof fd_text, "%d", fd);
  snprintf(offset_text, sizeof offset_text, "%" PRIu64, offset);
  fflush(stdout); /* or the child would print the parent's buffer again */
  const pid_t pid = fork();
  if (pid == 0) {
    /* Exported fds are close-on-exec; this one is meant for the child. */
    if (fcntl(fd, F_SETFD, 0) == 0) {
      char *const argv[] = {"shm_handoff", "--child", fd_text, offset_text,
                            NULL};
      execv("/proc/self/exe", argv);
    }
    perror("shm_handoff: starting the child");
    _exit(EXIT_FAILURE);
  }
  return pid;
}

/* Counts the bytes of the image that differ from the child's pattern, or
 * (before the child ran) from zero. */
static int64_t count_mismatches(const uint8_t *pixels, bool painted) {
  int64_t wrong = 0;
  for (int64_t y = 0; y < HEIGHT; y++)
    for (int64_t x = 0; x < WIDTH; x++)
      for (int64_t c = 0; c < CHANNELS; c++)
        wrong += pixels[byte_at(y, x, c)] != (painted ? pattern(y, x, c) : 0);
  return wrong;
}

static int run_parent(void) {
  if (!tb_memory_available(TB_MEMORY_SHM)) {
    printf("shm_handoff: skipped, shared memory (memfd) is not available\n");
    return 77;
  }
  printf("shm_handoff: a child process paints an image that its parent "
         "owns, through shared memory\n");
  printf("parent (pid %d)\n", (int)getpid());
  tb_alloc_options options = TB_ALLOC_OPTIONS_INIT;
  options.memory = TB_MEMORY_SHM;
  options.name = "frame";
  const int64_t shape[NDIM] = {HEIGHT, WIDTH, CHANNELS};
  tb_tensor *frame = NULL;
  check(tb_tensor_new(&frame, TB_DTYPE_U8, NDIM, shape, &options),
        "tb_tensor_new");
  describe("allocated", frame);

  tb_map *map = NULL;
  check(tb_tensor_map(&map, frame, TB_MAP_READ), "tb_tensor_map");
  const uint8_t *pixels = tb_map_data(map);
  if (count_mismatches(pixels, false) != 0) {
    fprintf(stderr, "shm_handoff: a new tensor is not zero-filled\n");
    return EXIT_FAILURE;
  }
  printf("  mapped it for reading at %p: all %" PRIu64 " bytes are 0\n",
         (const void *)pixels, tb_tensor_nbytes(frame));
  int fd = -1;
  check(tb_tensor_export_fd(&fd, frame), "tb_tensor_export_fd");
  printf("  exported it as fd %d and started a child with only that fd\n", fd);

  const pid_t child = start_child(fd, tb_tensor_offset(frame));
  close(fd);
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child) {
    perror("shm_handoff: running the child");
    return EXIT_FAILURE;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "shm_handoff: the child failed (wait status %d)\n", status);
    return EXIT_FAILURE;
  }

  printf("parent, after the child exited with status 0\n");
  const int64_t wrong = count_mismatches(pixels, true);
  if (wrong != 0) {
    fprintf(stderr,
            "shm_handoff: %" PRId64 " of %" PRIu64
            " bytes differ from what the child wrote\n",
            wrong, tb_tensor_nbytes(frame));
    return EXIT_FAILURE;
  }
  const int64_t y = HEIGHT - 1, x = WIDTH - 1;
  printf("  all %" PRIu64 " bytes at %p are the child's gradient, e.g. pixel "
         "(%" PRId64 ", %" PRId64 ") = (%u, %u, %u)\n",
         tb_tensor_nbytes(frame), (const void *)pixels, y, x,
         pixels[byte_at(y, x, 0)], pixels[byte_at(y, x, 1)],
         pixels[byte_at(y, x, 2)]);
  printf("  no copy: only an fd crossed between the processes, and the parent "
         "read the bytes in the mapping it made before the child started\n");
  tb_map_free(map);
  tb_tensor_unref(frame);
  printf("  released everything: %" PRId64 " live objects\n",
         tb_live_objects());
  return tb_live_objects() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--child") == 0)
    return run_child(argv[2], argv[3]);
  if (argc != 1) {
    fprintf(stderr, "usage: %s\n", argv[0]);
    return EXIT_FAILURE;
  }
  return run_parent();
}
