/* iceoryx 2.0 as a benchmark peer: RouDi's lifetime and one publisher or
 * subscriber of frames per process (iceoryx_peer.h). */
#define _GNU_SOURCE
#include "iceoryx_peer.h"

#include <iceoryx_binding_c/enums.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/notification_info.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/types.h>
#include <iceoryx_binding_c/wait_set.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUDI "iox-roudi"
#define ROUDI_CONFIG TB_BENCH_SOURCE_DIR "/iceoryx_roudi.toml"
#define ROUDI_READY "RouDi is ready for clients"
/* iceoryx 2.0 allows one RouDi per machine (/tmp/roudi.lock); benchmarks
 * of several checkouts (ctest -j, other users) take turns through this. */
#define ROUDI_TURN_LOCK "/tmp/tensorbuf-bench-roudi.lock"
#define ROUDI_TURN_TIMEOUT_MS 60000
#define ROUDI_START_TIMEOUT_MS 15000
#define ROUDI_STOP_TIMEOUT_MS 10000
#define POLL_INTERVAL_MS 10
#define SERVICE "tensorbuf-bench"
#define EVENT "rgba-frame"

static pid_t roudi_pid = -1;
static int turn_lock = -1;
static char roudi_log[] = "/tmp/tensorbuf-bench-roudi-XXXXXX";

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms) {
  struct timespec ts = {0, (long)ms * 1000000};
  nanosleep(&ts, NULL);
}

/* The start of RouDi's output so far (its log file), for the reason of a
 * failed start. */
static void read_log(char *text, size_t size) {
  text[0] = '\0';
  int fd = open(roudi_log, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t got = read(fd, text, size - 1);
  close(fd);
  text[got > 0 ? got : 0] = '\0';
}

static bool take_turn(char *why, size_t why_size) {
  turn_lock = open(ROUDI_TURN_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (turn_lock < 0) {
    snprintf(why, why_size, "cannot open %s: %s", ROUDI_TURN_LOCK,
             strerror(errno));
    return false;
  }
  int64_t deadline = now_ms() + ROUDI_TURN_TIMEOUT_MS;
  while (flock(turn_lock, LOCK_EX | LOCK_NB) != 0) {
    if (now_ms() >= deadline) {
      snprintf(why, why_size,
               "another benchmark held the machine's RouDi (%s) for %d s",
               ROUDI_TURN_LOCK, ROUDI_TURN_TIMEOUT_MS / 1000);
      close(turn_lock);
      turn_lock = -1;
      return false;
    }
    pause_ms(50);
  }
  return true;
}

static void give_turn_back(void) {
  if (turn_lock >= 0)
    close(turn_lock); /* releases the flock */
  turn_lock = -1;
}

bool iceoryx_roudi_start(char *why, size_t why_size) {
  if (!take_turn(why, why_size))
    return false;
  int log = mkstemp(roudi_log);
  if (log < 0) {
    snprintf(why, why_size, "mkstemp for RouDi's log: %s", strerror(errno));
    give_turn_back();
    return false;
  }
  fflush(NULL);
  roudi_pid = fork();
  if (roudi_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a failed benchmark */
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    execlp(ROUDI, ROUDI, "-c", ROUDI_CONFIG, "-m", "off", "-l", "info",
           (char *)NULL);
    _exit(127);
  }
  close(log);
  char text[4096];
  int64_t deadline = now_ms() + ROUDI_START_TIMEOUT_MS;
  while (roudi_pid > 0) {
    read_log(text, sizeof text);
    if (strstr(text, ROUDI_READY) != NULL)
      return true;
    int status;
    if (waitpid(roudi_pid, &status, WNOHANG) == roudi_pid) {
      roudi_pid = -1;
      read_log(text, sizeof text);
      if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        snprintf(why, why_size, "%s is not installed (Debian package iceoryx)",
                 ROUDI);
      else
        snprintf(why, why_size, "%s -c %s exited at start: %.3000s", ROUDI,
                 ROUDI_CONFIG, text);
      break;
    }
    if (now_ms() >= deadline) {
      snprintf(why, why_size, "%s did not say \"%s\" within %d s: %.3000s",
               ROUDI, ROUDI_READY, ROUDI_START_TIMEOUT_MS / 1000, text);
      iceoryx_roudi_stop();
      return false;
    }
    pause_ms(POLL_INTERVAL_MS);
  }
  unlink(roudi_log);
  give_turn_back();
  return false;
}

void iceoryx_roudi_stop(void) {
  if (roudi_pid > 0) {
    kill(roudi_pid, SIGTERM);
    int64_t deadline = now_ms() + ROUDI_STOP_TIMEOUT_MS;
    int status;
    while (waitpid(roudi_pid, &status, WNOHANG) == 0) {
      if (now_ms() >= deadline) {
        fprintf(stderr, "iceoryx peer: RouDi ignored SIGTERM; killing it\n");
        kill(roudi_pid, SIGKILL);
        waitpid(roudi_pid, &status, 0);
        break;
      }
      pause_ms(POLL_INTERVAL_MS);
    }
    roudi_pid = -1;
    unlink(roudi_log);
  }
  give_turn_back();
}

/* ---- publisher and subscriber (in the benchmark's child processes) ------ */

struct iceoryx_publisher {
  iox_pub_storage_t storage;
  iox_pub_t port;
};

struct iceoryx_subscriber {
  iox_sub_storage_t storage;
  iox_sub_t port;
  iox_ws_storage_t wait_set_storage;
  iox_ws_t wait_set;
};

/* Registers this process with RouDi, quietly (its runtime logs every
 * segment it maps at debug level). */
static void register_runtime(const char *runtime_name) {
  iox_set_loglevel(Iceoryx_LogLevel_Warn);
  iox_runtime_init(runtime_name);
}

static void *allocate(size_t bytes) {
  void *memory = calloc(1, bytes);
  if (memory == NULL) {
    fprintf(stderr, "iceoryx peer: out of memory\n");
    exit(EXIT_FAILURE);
  }
  return memory;
}

iceoryx_publisher *iceoryx_offer(const char *runtime_name,
                                 const char *instance) {
  register_runtime(runtime_name);
  iceoryx_publisher *publisher = allocate(sizeof *publisher);
  iox_pub_options_t options;
  iox_pub_options_init(&options);
  options.historyCapacity = 0;
  options.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
  publisher->port =
      iox_pub_init(&publisher->storage, SERVICE, instance, EVENT, &options);
  return publisher;
}

bool iceoryx_wait_for_subscriber(iceoryx_publisher *publisher, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  while (!iox_pub_has_subscribers(publisher->port)) {
    if (now_ms() >= deadline)
      return false;
    pause_ms(1);
  }
  return true;
}

void *iceoryx_loan(iceoryx_publisher *publisher, size_t bytes) {
  void *chunk = NULL;
  enum iox_AllocationResult result =
      iox_pub_loan_chunk(publisher->port, &chunk, (uint32_t)bytes);
  if (result != AllocationResult_SUCCESS) {
    fprintf(stderr,
            "iceoryx peer: loan of %zu bytes failed (AllocationResult %d): "
            "does %s have a mempool that fits?\n",
            bytes, (int)result, ROUDI_CONFIG);
    exit(EXIT_FAILURE);
  }
  return chunk;
}

void iceoryx_publish(iceoryx_publisher *publisher, void *chunk) {
  iox_pub_publish_chunk(publisher->port, chunk);
}

void iceoryx_publisher_free(iceoryx_publisher *publisher) {
  iox_pub_deinit(publisher->port);
  free(publisher);
}

iceoryx_subscriber *iceoryx_subscribe(const char *runtime_name,
                                      const char *instance,
                                      size_t queue_capacity) {
  register_runtime(runtime_name);
  iceoryx_subscriber *subscriber = allocate(sizeof *subscriber);
  iox_sub_options_t options;
  iox_sub_options_init(&options);
  options.queueCapacity = queue_capacity;
  options.historyRequest = 0;
  options.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
  subscriber->port =
      iox_sub_init(&subscriber->storage, SERVICE, instance, EVENT, &options);
  subscriber->wait_set = iox_ws_init(&subscriber->wait_set_storage);
  if (iox_ws_attach_subscriber_state(subscriber->wait_set, subscriber->port,
                                     SubscriberState_HAS_DATA, 0,
                                     NULL) != WaitSetResult_SUCCESS) {
    fprintf(stderr, "iceoryx peer: cannot attach the subscriber to a wait "
                    "set\n");
    exit(EXIT_FAILURE);
  }
  return subscriber;
}

const void *iceoryx_take(iceoryx_subscriber *subscriber) {
  for (;;) {
    const void *chunk = NULL;
    enum iox_ChunkReceiveResult result =
        iox_sub_take_chunk(subscriber->port, &chunk);
    if (result == ChunkReceiveResult_SUCCESS)
      return chunk;
    if (result != ChunkReceiveResult_NO_CHUNK_AVAILABLE) {
      fprintf(stderr, "iceoryx peer: take failed (ChunkReceiveResult %d)\n",
              (int)result);
      exit(EXIT_FAILURE);
    }
    iox_notification_info_t notification;
    uint64_t missed = 0;
    iox_ws_wait(subscriber->wait_set, &notification, 1, &missed);
  }
}

void iceoryx_release(iceoryx_subscriber *subscriber, const void *chunk) {
  iox_sub_release_chunk(subscriber->port, chunk);
}

void iceoryx_subscriber_free(iceoryx_subscriber *subscriber) {
  iox_ws_detach_subscriber_state(subscriber->wait_set, subscriber->port,
                                 SubscriberState_HAS_DATA);
  iox_ws_deinit(subscriber->wait_set);
  iox_sub_deinit(subscriber->port);
  free(subscriber);
}
