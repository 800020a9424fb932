/* ThreadSanitizer annotations for GLib's own synchronisation, linked into
 * the unit tests of the tsan preset only.
 *
 * Debian's GLib is not instrumented, and on Linux its GMutex and GCond are
 * futexes rather than pthread calls, so TSan sees neither: every field that
 * the library guards with a GMutex would be reported as a race, and so would
 * the clear function of a g_atomic_rc_box whose count GLib drops. These
 * definitions take precedence over GLib's for libtensorbuf (the executable
 * is searched first), call GLib's through dlsym(RTLD_NEXT), and tell TSan
 * the happens-before edges GLib provides. */
#include <dlfcn.h>
#include <glib.h>
#include <sanitizer/tsan_interface.h>
#include <stdio.h>
#include <stdlib.h>

/* GLib's definition of `name`, looked up on first use. */
#define REAL(name)                                                             \
  static __typeof__(&name) real_##name;                                        \
  if (__atomic_load_n(&real_##name, __ATOMIC_ACQUIRE) == NULL)                 \
    __atomic_store_n(&real_##name, (__typeof__(&name))real_symbol(#name),      \
                     __ATOMIC_RELEASE);

/* The build hides symbols by default; these must be seen by the library. */
#define INTERPOSED __attribute__((visibility("default")))

static void *real_symbol(const char *name) {
  void *symbol = dlsym(RTLD_NEXT, name);
  if (symbol == NULL) {
    fprintf(stderr, "tsan_glib: %s not found after the test: %s\n", name,
            dlerror());
    abort();
  }
  return symbol;
}

INTERPOSED void g_mutex_lock(GMutex *mutex) {
  REAL(g_mutex_lock);
  __tsan_mutex_pre_lock(mutex, 0);
  real_g_mutex_lock(mutex);
  __tsan_mutex_post_lock(mutex, 0, 0);
}

INTERPOSED gboolean g_mutex_trylock(GMutex *mutex) {
  REAL(g_mutex_trylock);
  __tsan_mutex_pre_lock(mutex, __tsan_mutex_try_lock);
  gboolean locked = real_g_mutex_trylock(mutex);
  __tsan_mutex_post_lock(
      mutex, locked ? __tsan_mutex_try_lock : __tsan_mutex_try_lock_failed, 0);
  return locked;
}

INTERPOSED void g_mutex_unlock(GMutex *mutex) {
  REAL(g_mutex_unlock);
  __tsan_mutex_pre_unlock(mutex, 0);
  real_g_mutex_unlock(mutex);
  __tsan_mutex_post_unlock(mutex, 0);
}

/* A condition wait unlocks and relocks the mutex inside GLib. */
INTERPOSED void g_cond_wait(GCond *cond, GMutex *mutex) {
  REAL(g_cond_wait);
  __tsan_mutex_pre_unlock(mutex, 0);
  __tsan_mutex_post_unlock(mutex, 0);
  real_g_cond_wait(cond, mutex);
  __tsan_mutex_pre_lock(mutex, 0);
  __tsan_mutex_post_lock(mutex, 0, 0);
}

INTERPOSED gboolean g_cond_wait_until(GCond *cond, GMutex *mutex,
                                      gint64 end_time) {
  REAL(g_cond_wait_until);
  __tsan_mutex_pre_unlock(mutex, 0);
  __tsan_mutex_post_unlock(mutex, 0);
  gboolean signalled = real_g_cond_wait_until(cond, mutex, end_time);
  __tsan_mutex_pre_lock(mutex, 0);
  __tsan_mutex_post_lock(mutex, 0, 0);
  return signalled;
}

/* g_atomic_rc_box_release_full drops the count inside GLib and calls the
 * clear function on the last drop: every drop releases the box, and the clear
 * function (through a trampoline, told which one by a thread-local) acquires
 * it first, as the decrement's acquire ordering does. */
static _Thread_local GDestroyNotify pending_clear;

static void clear_after_acquire(gpointer data) {
  GDestroyNotify clear = pending_clear;
  __tsan_acquire(data);
  if (clear != NULL)
    clear(data);
}

INTERPOSED void g_atomic_rc_box_release_full(gpointer mem_block,
                                             GDestroyNotify clear) {
  REAL(g_atomic_rc_box_release_full);
  GDestroyNotify outer = pending_clear;
  pending_clear = clear;
  __tsan_release(mem_block);
  real_g_atomic_rc_box_release_full(mem_block, clear_after_acquire);
  pending_clear = outer;
}

INTERPOSED void g_atomic_rc_box_release(gpointer mem_block) {
  g_atomic_rc_box_release_full(mem_block, NULL);
}

