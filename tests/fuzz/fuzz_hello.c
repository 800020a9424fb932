/* libFuzzer target: the hello parser, directly and as a channel's first
 * message.
 *
 * Each input is parsed by tb_hello_parse; an accepted hello must hold a
 * version range (1 <= min <= max), write back to the same fixed part, and
 * agree with our range exactly when the ranges overlap. The input is then
 * sent as the peer's hello to a channel (tb_channel_from_fd), which must
 * refuse or accept it as the parser did, leaving no fd and no handle. */
#include "sharing/descriptor.h"
#include "sharing/hello.h"

#include "fuzz_fds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void parse_directly(const uint8_t *data, size_t size) {
  TbHello hello;
  GError *error = NULL;
  if (!tb_hello_parse(data, size, &hello, &error)) {
    if (error == NULL || error->code != TB_ERR_PROTOCOL)
      abort();
    g_error_free(error);
    return;
  }
  if (hello.min_version == 0 || hello.min_version > hello.max_version)
    abort();
  uint8_t again[TB_HELLO_WRITE_BYTES];
  tb_hello_write(&hello, again);
  if (memcmp(again + 8, data + 8, TB_HELLO_FIXED_BYTES - 8) != 0)
    abort();
  TbHello ours = {.min_version = TB_WIRE_VERSION_MIN,
                  .max_version = TB_WIRE_VERSION_MAX};
  uint32_t version = 0;
  gboolean overlap = hello.min_version <= ours.max_version &&
                     ours.min_version <= hello.max_version;
  gboolean agreed = tb_hello_agree(&ours, &hello, &version, &error);
  if (agreed != overlap ||
      (agreed && (version < hello.min_version || version > hello.max_version ||
                  version < ours.min_version || version > ours.max_version)))
    abort();
  g_clear_error(&error);
}

/* As a channel's first message: the first operation reads it. */
static void parse_on_channel(const uint8_t *data, size_t size) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    abort();
  if (send(pair[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
    abort();
  tb_channel *channel = NULL;
  if (tb_channel_from_fd(&channel, pair[1]) != TB_OK)
    abort();
  close(pair[1]);
  tb_tensor *tensor = NULL;
  tb_status status = tb_channel_recv(&tensor, channel, 0);
  /* Accepted: nothing else waits (TB_ERR_TIMEOUT). Refused: the hello's
   * error, and the same again on the next call. */
  if (status == TB_OK)
    abort();
  if (status == TB_ERR_PROTOCOL &&
      tb_channel_recv(&tensor, channel, 0) != TB_ERR_PROTOCOL)
    abort();
  close(pair[0]);
  tb_channel_unref(channel);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > TB_HELLO_MAX_BYTES + 16)
    return -1;
  int fds_before = fuzz_open_fds();
  int64_t live_before = tb_live_objects();
  parse_directly(data, size);
  if (size > 0)
    parse_on_channel(data, size);
  if (tb_live_objects() != live_before || fuzz_open_fds() != fds_before) {
    fprintf(stderr, "leak: live handles %lld -> %lld, open fds %d -> %d\n",
            (long long)live_before, (long long)tb_live_objects(), fds_before,
            fuzz_open_fds());
    abort();
  }
  return 0;
}
