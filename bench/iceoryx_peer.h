/* iceoryx 2.0 (Debian's libiceoryx-binding-c-dev) as the peer of the
 * handoff benchmarks: the RouDi daemon the benchmark starts and stops
 * itself, and one publisher and one subscriber of frames through the C
 * binding (loan, write, publish; take, read, release).
 *
 * A process uses at most one publisher or one subscriber, made after fork:
 * iceoryx's runtime is a per-process singleton that a forked child must not
 * inherit, so the process that starts RouDi never registers with it. */
#ifndef TB_BENCH_ICEORYX_PEER_H
#define TB_BENCH_ICEORYX_PEER_H

#include <stdbool.h>
#include <stddef.h>

/* Starts iox-roudi with bench/iceoryx_roudi.toml (a mempool that fits a
 * 1080p RGBA frame) and waits until it serves clients. Returns false, with
 * why in `why`, if it cannot (not installed, another RouDi holds the
 * machine's single RouDi slot, or it did not come up in time). */
bool iceoryx_roudi_start(char *why, size_t why_size);

/* Stops the RouDi that iceoryx_roudi_start started (SIGTERM, then SIGKILL
 * after a deadline) and releases the machine-wide lock. */
void iceoryx_roudi_stop(void);

typedef struct iceoryx_publisher iceoryx_publisher;
typedef struct iceoryx_subscriber iceoryx_subscriber;

/* Registers this process as `runtime_name` and offers the frame service
 * `instance` (one per run, so a port left by an earlier run never matches).
 * Publishing blocks while the subscriber's queue is full. Exits the process
 * if RouDi refuses (iceoryx's own error handler does too). */
iceoryx_publisher *iceoryx_offer(const char *runtime_name,
                                 const char *instance);

/* Waits up to `timeout_ms` for a subscriber; false if none came. */
bool iceoryx_wait_for_subscriber(iceoryx_publisher *publisher, int timeout_ms);

/* A chunk of `bytes` from the shared mempool; exits the process on failure
 * (the mempool does not fit: the config and the frame disagree). */
void *iceoryx_loan(iceoryx_publisher *publisher, size_t bytes);
void iceoryx_publish(iceoryx_publisher *publisher, void *chunk);
void iceoryx_publisher_free(iceoryx_publisher *publisher);

/* Registers this process as `runtime_name` and subscribes to the frame
 * service `instance` with a queue of `queue_capacity` chunks that blocks the
 * publisher when full. */
iceoryx_subscriber *iceoryx_subscribe(const char *runtime_name,
                                      const char *instance,
                                      size_t queue_capacity);

/* The next chunk, sleeping in iceoryx's wait set until one comes. */
const void *iceoryx_take(iceoryx_subscriber *subscriber);
void iceoryx_release(iceoryx_subscriber *subscriber, const void *chunk);
void iceoryx_subscriber_free(iceoryx_subscriber *subscriber);

#endif /* TB_BENCH_ICEORYX_PEER_H */
