/* CUDA and CUDA_HOST tensors over a tb_channel to another process, on a
 * real GPU. The parent makes a tb_channel_pair and forks before anything
 * touches CUDA (a driver does not survive a fork); the child takes one end.
 * For each check the parent sends, the child checks what arrived and
 * answers on a plain socket (an 8-byte word: a device pointer, or 1).
 *   - a CUDA tensor arrives as CUDA memory of device 0 with a device
 *     pointer the GPU can copy from, holding the parent's bytes; the
 *     child's writes are seen by the parent;
 *   - a CUDA_HOST tensor arrives registered (a device pointer), likewise;
 *     shared read-only it cannot be written; a read-only share of CUDA
 *     memory is refused at the sender;
 *   - pooled 1080p CUDA tensors (a pool of 2, 8 frames): each frame's bytes
 *     arrive, the receiver maps each slot once (2 device pointers in all)
 *     and every tensor returns to the pool;
 *   - tb_tensor_export of a CUDA tensor is a version-3 description naming
 *     CUDA memory of device 0; tb_tensor_import in the child maps it, and
 *     refuses it (TB_ERR_PROTOCOL) when the description names device 999 or
 *     an unknown memory kind;
 *   - to a peer that speaks only versions 1 to 2 (played by hand), CUDA
 *     memory is refused at the sender and CUDA_HOST goes as its memfd.
 * Exit status: 0 passed, 1 failed, 77 skipped (no driver or GPU; the reason
 * on stderr). */
#include "tensorbuf/tensorbuf.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu_check.h"
#include "gpu_socket.h"

#define FRAMES 8
#define PATIENCE_MS 20000
static const int64_t frame_shape[] = {1080, 1920, 4};

/* A word (and bytes after it, and at most one fd) on the plain socket. */
static void send_word(int sock, uint64_t word, int fd, const void *extra,
                      size_t extra_length) {
  uint8_t bytes[8 + 1024];
  memcpy(bytes, &word, 8);
  if (extra_length > 0)
    memcpy(bytes + 8, extra, extra_length);
  CHECK(gpu_send_fd(sock, bytes, 8 + extra_length, fd) ==
            (ssize_t)(8 + extra_length),
        "sendmsg on the answer socket");
}

/* Waits up to PATIENCE_MS for a word; 0 when none came. The bytes after it
 * go to `extra` (*extra_length in: capacity, out: count), its fd to *fd
 * (closed when fd is NULL). */
static uint64_t recv_word(int sock, int *fd, void *extra,
                          size_t *extra_length) {
  struct pollfd p = {.fd = sock, .events = POLLIN};
  uint8_t bytes[8 + 1024];
  int received = -1;
  ssize_t got = poll(&p, 1, PATIENCE_MS) == 1
                    ? gpu_recv_fd(sock, bytes, sizeof bytes, &received)
                    : -1;
  if (fd != NULL)
    *fd = received;
  else if (received >= 0)
    close(received);
  if (got < 8)
    return 0;
  if (extra != NULL) {
    size_t n = (size_t)got - 8;
    *extra_length = n < *extra_length ? n : *extra_length;
    memcpy(extra, bytes + 8, *extra_length);
  }
  uint64_t word;
  memcpy(&word, bytes, 8);
  return word;
}

/* ---- the child ---------------------------------------------------------- */

static tb_tensor *receive(tb_channel *channel) {
  tb_tensor *t = NULL;
  OK(tb_channel_recv(&t, channel, PATIENCE_MS));
  return t;
}

static uint64_t device_ptr(const tb_tensor *t) {
  uint64_t address = 0;
  OK(tb_tensor_device_ptr(&address, t));
  return address;
}

/* The GPU copies from the tensor's device address into new device memory:
 * what arrived is usable on the device, not only through CPU maps. */
static int device_copy_holds(tb_tensor *t, float base) {
  tb_tensor *scratch = gpu_ramp_new(TB_MEMORY_CUDA);
  OK(tb_tensor_copy(scratch, t, 0));
  int same = scratch != NULL && gpu_ramp_holds(scratch, base);
  tb_tensor_unref(scratch);
  return same;
}

/* A tensor of `memory` arrives (device 0, a device pointer) holding the
 * ramp from `seen`, which the CPU and the GPU read; the child writes the
 * ramp from `written` and answers with the device pointer. */
static void child_round_trip(tb_channel *channel, int answers, tb_memory memory,
                             float seen, float written) {
  tb_tensor *t = receive(channel);
  uint32_t device = 99;
  OK(tb_tensor_cuda_device(&device, t));
  CHECK(tb_tensor_memory(t) == memory && device == 0,
        "arrives as %s memory of device 0 (memory %d, device %u)",
        tb_memory_name(memory), (int)tb_tensor_memory(t), device);
  uint64_t address = device_ptr(t);
  CHECK(address != 0, "a device pointer");
  CHECK(gpu_ramp_holds(t, seen), "the child reads what the parent wrote");
  CHECK(device_copy_holds(t, seen), "the GPU copies from it");
  gpu_ramp_fill(t, written);
  tb_tensor_unref(t);
  send_word(answers, address, -1, NULL, 0);
}

static void child_read_only(tb_channel *channel, int answers) {
  tb_tensor *t = receive(channel);
  tb_map *map = NULL;
  CHECK(tb_tensor_read_only(t), "a read-only share arrives read-only");
  CHECK(tb_tensor_map(&map, t, TB_MAP_WRITE) == TB_ERR_READ_ONLY,
        "and cannot be mapped for writing");
  CHECK(gpu_ramp_holds(t, 4000.0f) && device_copy_holds(t, 4000.0f),
        "but is read, by the CPU and the GPU");
  tb_tensor_unref(t);
  send_word(answers, 1, -1, NULL, 0);
}

static void child_pool(tb_channel *channel, int answers) {
  for (int i = 0; i < FRAMES; i++) {
    tb_tensor *t = receive(channel);
    const int64_t first[] = {0, 0, 0}, last[] = {1079, 1919, 3};
    int64_t a = -1, b = -1;
    OK(tb_tensor_get_i64(&a, t, 3, first));
    OK(tb_tensor_get_i64(&b, t, 3, last));
    CHECK(a == i && b == 100 + i, "frame %d holds %lld %lld", i, (long long)a,
          (long long)b);
    uint64_t address = device_ptr(t);
    send_word(answers, address, -1, NULL, 0);
    tb_tensor_unref(t); /* the release goes back to the parent's pool */
  }
}

/* The description and fd of a CUDA tensor from tb_tensor_export, imported
 * as they came, then with the device or the memory kind changed. A
 * version-3 description of one buffer has the entry's memory kind at byte
 * 24 and its device at bytes 28-31. */
static void child_export(int answers) {
  uint8_t descriptor[1024];
  size_t length = sizeof descriptor;
  int fd = -1;
  recv_word(answers, &fd, descriptor, &length);
  CHECK(fd >= 0 && length > 32, "a description (%zu bytes) and its fd", length);
  if (fd < 0 || length <= 32)
    return;
  tb_tensor *t = NULL;
  OK(tb_tensor_import(&t, descriptor, length, &fd, 1));
  CHECK(t != NULL && tb_tensor_memory(t) == TB_MEMORY_CUDA,
        "tb_tensor_import maps cuda memory");
  CHECK(t != NULL && gpu_ramp_holds(t, 5000.0f) &&
            device_copy_holds(t, 5000.0f),
        "holding the exporter's bytes");
  tb_tensor_unref(t);
  const uint32_t no_device = 999;
  memcpy(descriptor + 28, &no_device, sizeof no_device);
  t = NULL;
  CHECK(tb_tensor_import(&t, descriptor, length, &fd, 1) == TB_ERR_PROTOCOL &&
            strstr(tb_last_error(), "device 999") != NULL,
        "device 999 is refused, named");
  memset(descriptor + 28, 0, 4);
  descriptor[24] = 9;
  CHECK(tb_tensor_import(&t, descriptor, length, &fd, 1) == TB_ERR_PROTOCOL,
        "memory kind 9 is refused");
  close(fd);
  send_word(answers, 1, -1, NULL, 0);
}

static int child(tb_channel *channel, tb_channel *parents, int answers) {
  tb_channel_unref(parents); /* the fork's copy of the parent's end */
  /* The parent closes the channel unused when it skips. */
  tb_tensor *first = NULL;
  tb_status status = tb_channel_recv(&first, channel, 3 * PATIENCE_MS);
  if (status == TB_ERR_CLOSED) {
    tb_channel_unref(channel);
    return 0;
  }
  OK(status);
  tb_tensor_unref(first); /* a probe: the parent goes on */
  send_word(answers, 1, -1, NULL, 0);
  child_round_trip(channel, answers, TB_MEMORY_CUDA, 1000.0f, 3000.0f);
  child_round_trip(channel, answers, TB_MEMORY_CUDA_HOST, 2000.0f, 4000.0f);
  child_read_only(channel, answers);
  child_pool(channel, answers);
  child_export(answers);
  tb_channel_unref(channel);
  CHECK(tb_live_objects() == 0, "the child leaves %lld objects",
        (long long)tb_live_objects());
  return failures ? 1 : 0;
}

/* ---- the parent --------------------------------------------------------- */

static void expect_answer(int answers, const char *what) {
  CHECK(recv_word(answers, NULL, NULL, NULL) != 0, "the child answered: %s",
        what);
}

static void parent_cuda(tb_channel *channel, int answers) {
  tb_tensor *t = gpu_ramp_new(TB_MEMORY_CUDA);
  gpu_ramp_fill(t, 1000.0f);
  CHECK(tb_channel_send(channel, t, TB_SEND_READ_ONLY) == TB_ERR_UNSUPPORTED,
        "a read-only share of cuda memory is refused");
  OK(tb_channel_send(channel, t, 0));
  expect_answer(answers, "cuda");
  CHECK(gpu_ramp_holds(t, 3000.0f), "the parent sees the child's write (cuda)");
  tb_tensor_unref(t);
  printf("PASS a cuda tensor over a channel, both ways\n");
}

static void parent_cuda_host(tb_channel *channel, int answers) {
  tb_tensor *t = gpu_ramp_new(TB_MEMORY_CUDA_HOST);
  gpu_ramp_fill(t, 2000.0f);
  OK(tb_channel_send(channel, t, 0));
  expect_answer(answers, "cuda_host");
  CHECK(gpu_ramp_holds(t, 4000.0f),
        "the parent sees the child's write (cuda_host)");
  OK(tb_channel_send(channel, t, TB_SEND_READ_ONLY));
  expect_answer(answers, "cuda_host read-only");
  tb_tensor_unref(t);
  printf("PASS a cuda_host tensor over a channel, writable and read-only\n");
}

static void parent_pool(tb_channel *channel, int answers) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_CUDA;
  tb_tensor *prototype = NULL;
  tb_pool *pool = NULL;
  OK(tb_tensor_new(&prototype, TB_DTYPE_U8, 3, frame_shape, &opts));
  OK(tb_pool_new(&pool, prototype, 2));
  tb_tensor_unref(prototype);
  if (pool == NULL)
    return;
  uint64_t seen[2] = {0, 0};
  int distinct = 0, extra = 0;
  for (int i = 0; i < FRAMES; i++) {
    tb_tensor *t = NULL;
    OK(tb_pool_acquire(&t, pool, PATIENCE_MS));
    if (t == NULL)
      break;
    const int64_t first[] = {0, 0, 0}, last[] = {1079, 1919, 3};
    OK(tb_tensor_set_i64(t, 3, first, i));
    OK(tb_tensor_set_i64(t, 3, last, 100 + i));
    OK(tb_channel_send(channel, t, 0));
    tb_tensor_unref(t);
    uint64_t address = recv_word(answers, NULL, NULL, NULL);
    CHECK(address != 0, "frame %d: the child had a device pointer", i);
    if (address == seen[0] || address == seen[1])
      continue;
    if (distinct < 2)
      seen[distinct++] = address;
    else
      extra++;
  }
  CHECK(extra == 0, "the child mapped each of the 2 slots once (%d more)",
        extra);
  /* Every tensor comes back: both slots can be taken at once. */
  tb_tensor *a = NULL, *b = NULL;
  OK(tb_pool_acquire(&a, pool, PATIENCE_MS));
  OK(tb_pool_acquire(&b, pool, PATIENCE_MS));
  tb_tensor_unref(a);
  tb_tensor_unref(b);
  tb_pool_unref(pool);
  printf("PASS pooled cuda tensors over a channel return to the pool\n");
}

static void parent_export(int answers) {
  tb_tensor *t = gpu_ramp_new(TB_MEMORY_CUDA);
  gpu_ramp_fill(t, 5000.0f);
  uint8_t descriptor[1024];
  size_t length = 0, nfds = TB_DESCRIPTOR_MAX_FDS;
  int fds[TB_DESCRIPTOR_MAX_FDS];
  OK(tb_tensor_export(descriptor, sizeof descriptor, &length, fds, &nfds, t,
                      0));
  uint32_t version = 0, device = 99;
  memcpy(&version, descriptor, 4);
  memcpy(&device, descriptor + 28, 4);
  CHECK(nfds == 1 && version == 3 && descriptor[24] == TB_MEMORY_CUDA &&
            device == 0,
        "a version-3 description naming cuda memory of device 0 (version "
        "%u, kind %u, device %u)",
        version, descriptor[24], device);
  if (nfds == 1) {
    send_word(answers, 1, fds[0], descriptor, length);
    close(fds[0]);
    expect_answer(answers, "export");
  }
  tb_tensor_unref(t);
  printf("PASS tb_tensor_export / tb_tensor_import of cuda memory\n");
}

/* A peer that speaks protocol versions 1 to 2 only, played by hand on a
 * socket: CUDA memory cannot be described to it (refused at the sender,
 * naming the version), CUDA_HOST memory goes as the memfd it is, in a
 * version-2 message. */
static void parent_older_peer(void) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    return;
  /* The hello (core/sharing/hello.h): "TBHL", 'H', versions 1 to 2. */
  uint8_t hello[32] = {'T', 'B', 'H', 'L', 'H'};
  const uint32_t versions[] = {1, 2};
  memcpy(hello + 8, versions, sizeof versions);
  CHECK(send(pair[1], hello, sizeof hello, 0) == sizeof hello, "hello");
  tb_channel *channel = NULL;
  OK(tb_channel_from_fd(&channel, pair[0]));
  close(pair[0]);
  tb_tensor *device = gpu_ramp_new(TB_MEMORY_CUDA);
  tb_tensor *host = gpu_ramp_new(TB_MEMORY_CUDA_HOST);
  CHECK(tb_channel_send(channel, device, 0) == TB_ERR_UNSUPPORTED &&
            strstr(tb_last_error(), "version 2") != NULL,
        "cuda memory to a version-2 peer is refused, naming the version");
  OK(tb_channel_send(channel, host, 0));
  uint8_t message[4096];
  int fd = -1;
  ssize_t got;
  do /* its hello, then the tensor */
    got = gpu_recv_fd(pair[1], message, sizeof message, &fd);
  while (got >= 5 && memcmp(message, "TBHL", 4) == 0);
  uint32_t version = 0;
  if (got >= 5)
    memcpy(&version, message, sizeof version);
  CHECK(got >= 5 && version == 2 && message[4] == 'T' && fd >= 0,
        "cuda_host memory goes to it as a version-2 tensor message with its "
        "memfd (version %u)",
        version);
  if (fd >= 0)
    close(fd);
  tb_tensor_unref(device);
  tb_tensor_unref(host);
  tb_channel_unref(channel);
  close(pair[1]);
  printf("PASS a peer of version 2: cuda refused, cuda_host as a memfd\n");
}

int main(void) {
  tb_channel *ours = NULL, *theirs = NULL;
  int answers[2];
  if (tb_channel_pair(&ours, &theirs) != TB_OK ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, answers) != 0) {
    fprintf(stderr, "cuda_channel: %s\n", tb_last_error());
    return 1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(answers[0]);
    _exit(child(theirs, ours, answers[1]));
  }
  close(answers[1]);
  tb_channel_unref(theirs);
  if (!tb_memory_available(TB_MEMORY_CUDA) ||
      !tb_memory_available(TB_MEMORY_CUDA_HOST)) {
    tb_tensor *t = NULL;
    tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
    opts.memory = TB_MEMORY_CUDA;
    (void)tb_tensor_new(&t, TB_DTYPE_U8, 0, NULL, &opts);
    fprintf(stderr, "SKIP cuda_channel: %s\n", tb_last_error());
    tb_channel_unref(ours);
    waitpid(pid, NULL, 0);
    return 77;
  }
  /* A probe in shared memory first: the child then knows not to skip. */
  const int64_t one[] = {1};
  tb_tensor *probe = NULL;
  tb_alloc_options shm = TB_ALLOC_OPTIONS_INIT;
  shm.memory = TB_MEMORY_SHM;
  OK(tb_tensor_new(&probe, TB_DTYPE_U8, 1, one, &shm));
  OK(tb_channel_send(ours, probe, 0));
  tb_tensor_unref(probe);
  expect_answer(answers[0], "probe");
  parent_cuda(ours, answers[0]);
  parent_cuda_host(ours, answers[0]);
  parent_pool(ours, answers[0]);
  parent_export(answers[0]);
  parent_older_peer();
  tb_channel_unref(ours);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "child exit %d",
        wstatus);
  close(answers[0]);
  CHECK(tb_live_objects() == 0, "live objects %lld",
        (long long)tb_live_objects());
  printf("%s cuda_channel (%d failures)\n", failures ? "FAIL" : "PASS",
         failures);
  return failures ? 1 : 0;
}
