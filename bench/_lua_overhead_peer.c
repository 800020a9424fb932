/* _lua_overhead_peer: the C side of bench/lua_overhead.lua, as a Lua module,
 * so that the Lua calls and the same calls made from C are timed in one
 * process, in alternating batches (bench/README.md). Each timing function
 * runs `iterations` calls on a tensor of its own and returns nanoseconds
 * per call; now() is the same clock in integer nanoseconds for the Lua side.
 * The clock is the process's CPU time (what os.clock() reads, with a finer
 * unit): the loops never block, and on a shared 2-core VM it leaves out the
 * time the process waits for a core, which wall-clock batches catch. */
#include <lauxlib.h>
#include <lua.h>
#include <tensorbuf/tensorbuf.h>
#include <time.h>

/* What each timed call needs: an f32 {2, 3} tensor like the Lua side's. */
static tb_tensor *subject;
static const int64_t element[2] = {0, 1};
/* Results go here so the compiler cannot drop the calls. */
static volatile double sink;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int now(lua_State *L) {
  lua_pushinteger(L, now_ns());
  return 1;
}

static void check(lua_State *L, tb_status status) {
  if (status != TB_OK)
    luaL_error(L, "%s", tb_last_error());
}

/* Runs `body` luaL_checkinteger(L, 1) times; pushes ns per iteration. */
#define TIMED(L, body)                                                         \
  do {                                                                         \
    lua_Integer iterations_ = luaL_checkinteger(L, 1);                         \
    int64_t start_ = now_ns();                                                 \
    for (lua_Integer i_ = 0; i_ < iterations_; i_++) {                         \
      body;                                                                    \
    }                                                                          \
    lua_pushnumber(L, (double)(now_ns() - start_) / (double)iterations_);      \
  } while (0)

static int time_ndim(lua_State *L) {
  TIMED(L, sink = (double)tb_tensor_ndim(subject));
  return 1;
}

static int time_get(lua_State *L) {
  TIMED(L, {
    double value;
    check(L, tb_tensor_get_f64(&value, subject, 2, element));
    sink = value;
  });
  return 1;
}

static int time_set(lua_State *L) {
  TIMED(L, check(L, tb_tensor_set_f64(subject, 2, element, 1.5)));
  return 1;
}

static int time_map(lua_State *L) {
  TIMED(L, {
    tb_map *map;
    check(L, tb_tensor_map(&map, subject, TB_MAP_READ | TB_MAP_WRITE));
    tb_map_unmap(map);
    tb_map_free(map);
  });
  return 1;
}

/* init(memory): makes the tensor, in memory kind `memory` ("shm", "heap"). */
static int init(lua_State *L) {
  tb_alloc_options options;
  check(L, tb_alloc_options_init(&options, TB_ALLOC_OPTIONS_VERSION));
  tb_memory memory;
  check(L, tb_memory_from_name(&memory, luaL_checkstring(L, 1)));
  options.memory = memory;
  tb_tensor_unref(subject);
  subject = NULL;
  check(L, tb_tensor_new(&subject, TB_DTYPE_F32, 2, (const int64_t[]){2, 3},
                         &options));
  return 0;
}

/* release(): drops the tensor. */
static int release(lua_State *L) {
  (void)L;
  tb_tensor_unref(subject);
  subject = NULL;
  return 0;
}

__attribute__((visibility("default"))) int
luaopen__lua_overhead_peer(lua_State *L) {
  static const luaL_Reg functions[] = {{"init", init},       {"now", now},
                                       {"ndim", time_ndim},  {"get", time_get},
                                       {"set", time_set},    {"map", time_map},
                                       {"release", release}, {NULL, NULL}};
  luaL_newlib(L, functions);
  return 1;
}
