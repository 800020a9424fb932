/* pipeline_clock: CLOCK_MONOTONIC for consumer.lua, as a Lua module.
 *
 * The producer stamps each frame with CLOCK_MONOTONIC when it sends it, and
 * each consumer reads the same clock once it has the frame mapped, so the
 * difference is the hand-off latency across processes. Python has that clock
 * (time.monotonic_ns); Lua's standard library has none (os.clock is CPU time,
 * os.time whole seconds), hence this one-function module. It never touches
 * the frames. */
#include <lauxlib.h>
#include <lua.h>
#include <time.h>

/* monotonic_ns(): the clock in integer nanoseconds. */
static int monotonic_ns(lua_State *L) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  lua_pushinteger(L, (lua_Integer)now.tv_sec * 1000000000 + now.tv_nsec);
  return 1;
}

/* The module's entry point: the one symbol the build exports. */
int luaopen_pipeline_clock(lua_State *L) {
  const luaL_Reg functions[] = {{"monotonic_ns", monotonic_ns}, {NULL, NULL}};
  luaL_newlib(L, functions);
  return 1;
}
