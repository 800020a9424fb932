/* libFuzzer target: the ring's checks (core/sharing/ring.c) of the header,
 * the indices and the records a peer writes into shared memory.
 *
 * Each input turns a freshly made ring into a scribbled one:
 *   byte 0  capacity: 1 << (byte % 13), 1 to 4096 records
 *   byte 1  records the creator pushes before the scribble (mod capacity+1)
 *   rest    XORed into the ring's memory from byte 0 on (header, then lanes)
 * The empty input is a valid ring, so every mutation is a scribble. The
 * other end then attaches, pops every record it can (releasing each), and
 * the creator pops the releases and pushes once more. Every call must
 * succeed or fail with a status a peer may cause; afterwards no fd may be
 * left open (LeakSanitizer sees memory). Anything else aborts. */
#include "sharing/ring.h"

#include "fuzz_fds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* TRUE for success; FALSE for a failure a scribbling peer may cause. */
static gboolean expected(gboolean ok, GError **error) {
  if (ok)
    return TRUE;
  int code = (*error)->code;
  if (code != TB_ERR_PROTOCOL && code != TB_ERR_TIMEOUT &&
      code != TB_ERR_CLOSED) {
    fprintf(stderr, "unexpected ring failure: %s\n", (*error)->message);
    abort();
  }
  g_clear_error(error);
  return FALSE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint32_t capacity = 1u << (size > 0 ? data[0] % 13 : 2);
  uint32_t pushed = size > 1 ? data[1] % (capacity + 1) : 1;
  const uint8_t *scribble = size > 2 ? data + 2 : data;
  size_t scribble_size = size > 2 ? size - 2 : 0;

  int fds_before = fuzz_open_fds();
  GError *error = NULL;
  int fd;
  TbRing *producer = tb_ring_create(capacity, &fd, &error);
  if (producer == NULL)
    abort();
  for (uint32_t i = 0; i < pushed; i++) {
    TbRingRecord record = {.token = i + 1, .generation = i, .layout = 1};
    if (!tb_ring_push(producer, &record, 0, &error))
      abort();
  }

  off_t ring_bytes = lseek(fd, 0, SEEK_END);
  uint8_t *ring = mmap(NULL, (size_t)ring_bytes, PROT_READ | PROT_WRITE,
                       MAP_SHARED, fd, 0);
  if (ring == MAP_FAILED)
    abort();
  for (size_t i = 0; i < scribble_size && i < (size_t)ring_bytes; i++)
    ring[i] ^= scribble[i];
  munmap(ring, (size_t)ring_bytes);

  TbRing *consumer = tb_ring_attach(fd, &error);
  if (expected(consumer != NULL, &error)) {
    TbRingRecord got;
    for (uint32_t i = 0; i <= capacity; i++) {
      if (!expected(tb_ring_pop(consumer, &got, 0, &error), &error))
        break;
      if ((got.flags & ~TB_RING_FLAGS_KNOWN) != 0)
        abort();
      TbRingRecord release = {.token = got.token,
                              .generation = got.generation};
      if (!expected(tb_ring_push(consumer, &release, 0, &error), &error))
        break;
    }
    for (uint32_t i = 0; i <= capacity; i++) {
      if (!expected(tb_ring_pop(producer, &got, 0, &error), &error))
        break;
      if (got.layout != 0)
        abort();
    }
    TbRingRecord record = {.token = 99};
    expected(tb_ring_push(producer, &record, 0, &error), &error);
    tb_ring_free(consumer);
  }
  tb_ring_free(producer);
  close(fd);
  if (fuzz_open_fds() != fds_before) {
    fprintf(stderr, "fds: %d before, %d after\n", fds_before, fuzz_open_fds());
    abort();
  }
  return 0;
}
