/* Channel, listener, pool and descriptor entry points. */
#include "sharing/channel.h"
#include "boundary.h"

G_STATIC_ASSERT(TB_DESCRIPTOR_MAX_FDS == TB_WIRE_MAX_BUFFERS);

/* The bodies of the calls that make channels with and without options,
 * after their argument checks; errors name `function`, the caller's. */
static tb_status make_pair(const char *function, tb_channel **out_a,
                           tb_channel **out_b, const tb_channel_options *opts) {
  GError *error = NULL;
  tb_channel *a, *b;
  if (!tb_channel_make_pair(&a, &b, opts, &error))
    return tb_fail_with(function, error);
  *out_a = a;
  *out_b = b;
  return TB_OK;
}

/* `error` is read after `channel` is made: pass it by address. */
static tb_status made(const char *function, tb_channel **out,
                      tb_channel *channel, GError **error) {
  if (channel == NULL)
    return tb_fail_with(function, *error);
  *out = channel;
  return TB_OK;
}

tb_status tb_channel_pair_with(tb_channel **out_a, tb_channel **out_b,
                               const tb_channel_options *opts) {
  TB_REQUIRE(out_a);
  TB_REQUIRE(out_b);
  return make_pair(__func__, out_a, out_b, opts);
}

tb_status tb_channel_pair(tb_channel **out_a, tb_channel **out_b) {
  TB_REQUIRE(out_a);
  TB_REQUIRE(out_b);
  return make_pair(__func__, out_a, out_b, NULL);
}

tb_status tb_channel_options_init(tb_channel_options *opts, uint32_t version) {
  TB_REQUIRE(opts);
  tb_channel_options defaults = TB_CHANNEL_OPTIONS_INIT;
  defaults.version = version;
  return tb_options_init(__func__, opts, &defaults,
                         tb_channel_options_size(version), version,
                         TB_CHANNEL_OPTIONS_VERSION);
}

tb_status tb_channel_version(tb_channel *channel, uint32_t *version) {
  TB_REQUIRE(channel);
  GError *error = NULL;
  uint32_t agreed;
  TbHello own, peer;
  if (!tb_channel_agreed(channel, &agreed, &own, &peer, &error))
    return tb_fail_with(__func__, error);
  if (version != NULL)
    *version = agreed;
  return TB_OK;
}

tb_status tb_channel_limits(tb_channel *channel, uint32_t *own_max_buffers,
                            uint64_t *own_max_mapped_bytes,
                            uint32_t *peer_max_buffers,
                            uint64_t *peer_max_mapped_bytes) {
  TB_REQUIRE(channel);
  GError *error = NULL;
  uint32_t agreed;
  TbHello own, peer;
  if (!tb_channel_agreed(channel, &agreed, &own, &peer, &error))
    return tb_fail_with(__func__, error);
  if (own_max_buffers != NULL)
    *own_max_buffers = own.max_buffers;
  if (own_max_mapped_bytes != NULL)
    *own_max_mapped_bytes = own.max_bytes;
  if (peer_max_buffers != NULL)
    *peer_max_buffers = peer.max_buffers;
  if (peer_max_mapped_bytes != NULL)
    *peer_max_mapped_bytes = peer.max_bytes;
  return TB_OK;
}

tb_status tb_listener_listen(tb_listener **out, const char *path) {
  TB_REQUIRE(out);
  TB_REQUIRE(path);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_listener_open(path, NULL, &error), error);
}

tb_status tb_listener_options_init(tb_listener_options *opts,
                                   uint32_t version) {
  TB_REQUIRE(opts);
  tb_listener_options defaults = TB_LISTENER_OPTIONS_INIT;
  defaults.version = version;
  return tb_options_init(__func__, opts, &defaults,
                         tb_listener_options_size(version), version,
                         TB_LISTENER_OPTIONS_VERSION);
}

tb_status tb_listener_listen_with(tb_listener **out, const char *path,
                                  const tb_listener_options *opts) {
  TB_REQUIRE(out);
  TB_REQUIRE(path);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_listener_open(path, opts, &error), error);
}

tb_status tb_channel_peer_credentials(const tb_channel *channel, int64_t *pid,
                                      int64_t *uid, int64_t *gid) {
  TB_REQUIRE(channel);
  int64_t p, u, g;
  if (!tb_channel_peer(channel, &p, &u, &g))
    return tb_fail(__func__, TB_ERR_UNSUPPORTED,
                   "the kernel gave no credentials for this channel's peer");
  if (pid != NULL)
    *pid = p;
  if (uid != NULL)
    *uid = u;
  if (gid != NULL)
    *gid = g;
  return TB_OK;
}

tb_status tb_listener_accept(tb_channel **out, tb_listener *listener,
                             int timeout_ms) {
  TB_REQUIRE(out);
  TB_REQUIRE(listener);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_listener_take(listener, timeout_ms, &error), error);
}

tb_status tb_channel_connect_with(tb_channel **out, const char *path,
                                  int timeout_ms,
                                  const tb_channel_options *opts) {
  TB_REQUIRE(out);
  TB_REQUIRE(path);
  GError *error = NULL;
  return made(__func__, out, tb_channel_dial(path, timeout_ms, opts, &error),
              &error);
}

tb_status tb_channel_connect(tb_channel **out, const char *path,
                             int timeout_ms) {
  TB_REQUIRE(out);
  TB_REQUIRE(path);
  GError *error = NULL;
  return made(__func__, out, tb_channel_dial(path, timeout_ms, NULL, &error),
              &error);
}

tb_status tb_channel_from_fd_with(tb_channel **out, int fd,
                                  const tb_channel_options *opts) {
  TB_REQUIRE(out);
  if (fd < 0)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "fd is %d", fd);
  GError *error = NULL;
  return made(__func__, out, tb_channel_adopt_fd(fd, opts, &error), &error);
}

tb_status tb_channel_from_fd(tb_channel **out, int fd) {
  TB_REQUIRE(out);
  if (fd < 0)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "fd is %d", fd);
  GError *error = NULL;
  return made(__func__, out, tb_channel_adopt_fd(fd, NULL, &error), &error);
}

tb_status tb_channel_send(tb_channel *channel, tb_tensor *tensor,
                          uint32_t flags) {
  TB_REQUIRE(channel);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN(tb_channel_put(channel, tensor, flags, &error), error);
}

tb_status tb_channel_recv(tb_tensor **out, tb_channel *channel,
                          int timeout_ms) {
  TB_REQUIRE(out);
  TB_REQUIRE(channel);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_channel_take(channel, timeout_ms, &error), error);
}

tb_status tb_channel_send_fence(tb_channel *channel, tb_fence *fence) {
  TB_REQUIRE(channel);
  TB_REQUIRE(fence);
  GError *error = NULL;
  TB_RETURN(tb_channel_put_fence(channel, fence, &error), error);
}

tb_status tb_channel_recv_fence(tb_fence **out, tb_channel *channel,
                                int timeout_ms) {
  TB_REQUIRE(out);
  TB_REQUIRE(channel);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_channel_take_fence(channel, timeout_ms, &error),
                   error);
}

tb_status tb_tensor_export(uint8_t *descriptor, size_t capacity, size_t *length,
                           int *fds, size_t *nfds, const tb_tensor *tensor,
                           uint32_t flags) {
  TB_REQUIRE_ARRAY(descriptor, capacity);
  TB_REQUIRE(length);
  TB_REQUIRE(nfds);
  TB_REQUIRE_ARRAY(fds, *nfds);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  if (!tb_tensor_describe(tensor, flags, descriptor, capacity, length, fds,
                          nfds, &error))
    return tb_fail_with(__func__, error);
  return TB_OK;
}

tb_status tb_tensor_import(tb_tensor **out, const uint8_t *descriptor,
                           size_t length, const int *fds, size_t nfds) {
  TB_REQUIRE(out);
  TB_REQUIRE(descriptor);
  TB_REQUIRE_ARRAY(fds, nfds);
  GError *error = NULL;
  TB_RETURN_HANDLE(
      out, tb_tensor_from_description(descriptor, length, fds, nfds, &error),
      error);
}

tb_status tb_pool_new(tb_pool **out, const tb_tensor *prototype, size_t count) {
  TB_REQUIRE(out);
  TB_REQUIRE(prototype);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_pool_create(prototype, count, &error), error);
}

tb_status tb_pool_acquire(tb_tensor **out, tb_pool *pool, int timeout_ms) {
  TB_REQUIRE(out);
  TB_REQUIRE(pool);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_pool_take(pool, timeout_ms, &error), error);
}
