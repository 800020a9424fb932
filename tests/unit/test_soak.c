/* Soak: pooled 1080p RGBA frames handed from one process to another many
 * times, with fds, live handles and resident memory checked flat on both
 * sides from the end of the warm-up to the end. TB_SOAK_FRAMES sets the count
 * (default 20,000; the soak is TB_SOAK_FRAMES=1000000); the producer
 * prints the count, the time and the figures it compared. */
#include "tb_peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATIENCE_MS 20000
enum { POOL_SIZE = 4, WARM_UP = 1000, HEIGHT = 1080, WIDTH = 1920 };
/* Resident memory may move by a few pages (GLib's and libc's caches); a
 * leak of a frame or a mapping per handoff would be megabytes. Under
 * AddressSanitizer freed memory stays resident in its quarantine (256 MB),
 * so there only fds and live handles are compared. */
#define RSS_SLACK_KB 1024
#ifdef __SANITIZE_ADDRESS__
#define RSS_CHECKED 0
#else
#define RSS_CHECKED 1
#endif

static long soak_frames(void) {
  const char *text = getenv("TB_SOAK_FRAMES");
  long frames = text != NULL ? strtol(text, NULL, 10) : 20000;
  return frames > WARM_UP ? frames : WARM_UP + 1;
}

typedef struct footprint {
  tb_test_snapshot handles; /* live handles, open fds */
  long rss_kb;              /* RssAnon + RssShmem */
} footprint;

static long status_kb(const char *field) {
  FILE *status = fopen("/proc/self/status", "re");
  TB_PEER_ASSERT(status != NULL);
  char line[256];
  long kb = -1;
  size_t length = strlen(field);
  while (fgets(line, sizeof line, status) != NULL)
    if (strncmp(line, field, length) == 0)
      kb = strtol(line + length, NULL, 10);
  fclose(status);
  TB_PEER_ASSERT(kb >= 0);
  return kb;
}

static footprint measure(void) {
  return (footprint){.handles = tb_peer_snapshot(),
                     .rss_kb = status_kb("RssAnon:") + status_kb("RssShmem:")};
}

static void assert_flat(const char *side, footprint start, footprint end) {
  printf("soak %s: live handles %lld -> %lld, fds %d -> %d, RSS %ld -> %ld "
         "kB\n",
         side, (long long)start.handles.live_objects,
         (long long)end.handles.live_objects, start.handles.open_fds,
         end.handles.open_fds, start.rss_kb, end.rss_kb);
  fflush(stdout); /* a child leaves by _exit */
  TB_PEER_ASSERT(end.handles.live_objects == start.handles.live_objects);
  TB_PEER_ASSERT(end.handles.open_fds == start.handles.open_fds);
  TB_PEER_ASSERT(!RSS_CHECKED || end.rss_kb <= start.rss_kb + RSS_SLACK_KB);
}

static const int64_t first_pixel[] = {0, 0, 0},
                     last_pixel[] = {HEIGHT - 1, WIDTH - 1, 3};

/* Child: receives every frame, checks its two stamps, drops it. */
static void consume(tb_peer_end *end, void *arg) {
  long frames = *(const long *)arg;
  /* tb_peer's alarm allows a minute; a long soak needs more. */
  alarm((unsigned)(60 + frames / 2000));
  footprint start = {0};
  for (long frame = 0; frame < frames; frame++) {
    if (frame == WARM_UP)
      start = measure();
    tb_tensor *tensor = NULL;
    TB_PEER_ASSERT_OK(tb_channel_recv(&tensor, end->channel, PATIENCE_MS));
    int64_t head = -1, tail = -1;
    TB_PEER_ASSERT_OK(tb_tensor_get_i64(&head, tensor, 3, first_pixel));
    TB_PEER_ASSERT_OK(tb_tensor_get_i64(&tail, tensor, 3, last_pixel));
    TB_PEER_ASSERT(head == frame % 251 && tail == frame % 241);
    tb_tensor_unref(tensor);
  }
  assert_flat("consumer", start, measure());
}

/* Waits for every frame to come home and measures with the pool full. */
static footprint measure_with_all_home(tb_pool *pool) {
  tb_tensor *all[POOL_SIZE];
  for (int i = 0; i < POOL_SIZE; i++)
    TB_ASSERT_OK(tb_pool_acquire(&all[i], pool, PATIENCE_MS));
  for (int i = 0; i < POOL_SIZE; i++)
    tb_tensor_unref(all[i]);
  return measure();
}

static void pooled_1080p_handoffs_stay_flat(void **state) {
  (void)state;
  long frames = soak_frames();
  const int64_t shape[] = {HEIGHT, WIDTH, 4};
  tb_alloc_options opts = tb_test_options(TB_MEMORY_SHM);
  tb_tensor *prototype = NULL;
  TB_ASSERT_OK(tb_tensor_new(&prototype, TB_DTYPE_U8, 3, shape, &opts));
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, POOL_SIZE));
  tb_tensor_unref(prototype);
  tb_peer_end end;
  pid_t child =
      tb_peer_start(&end, TB_PEER_CHANNEL, consume, TB_PEER_CHANNEL, &frames);
  footprint start = {0};
  int64_t started_ms = tb_peer_now_ms();
  for (long frame = 0; frame < frames; frame++) {
    if (frame == WARM_UP)
      start = measure_with_all_home(pool);
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, PATIENCE_MS));
    TB_ASSERT_OK(tb_tensor_set_i64(tensor, 3, first_pixel, frame % 251));
    TB_ASSERT_OK(tb_tensor_set_i64(tensor, 3, last_pixel, frame % 241));
    TB_ASSERT_OK(tb_channel_send(end.channel, tensor, 0));
    tb_tensor_unref(tensor);
  }
  int64_t elapsed_ms = tb_peer_now_ms() - started_ms;
  tb_peer_join(child);
  printf("soak: %ld pooled 1080p RGBA u8 handoffs in %.1f s (%.0f frames/s)\n",
         frames, elapsed_ms / 1000.0,
         elapsed_ms > 0 ? frames * 1000.0 / elapsed_ms : 0.0);
  assert_flat("producer", start, measure_with_all_home(pool));
  tb_peer_end_close(&end);
  tb_pool_unref(pool);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(pooled_1080p_handoffs_stay_flat),
  };
  return TB_RUN_TESTS(tests);
}
