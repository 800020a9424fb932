-- Leak check: make and drop many objects of every kind (errors too), then
-- after collectgarbage() the library's live handles, the process's open fds
-- and the wrapped copies are back where they started.
local tb = require "tensorbuf"
local h = require "harness"
local osutil = require "tb_osutil"
local core = tb.core

local ROUNDS = 500
local SHM = tb.memory_available("shm")

local function churn_tensors()
  local t = tb.tensor{dtype = "f32", shape = {4, 4}, memory = "heap", name = "churn"}
  t:set({1, 1}, 1)
  local views = {t:reshape{16}, t:slice(1, 2, 3), t:buffer():view{dtype = "u8", shape = {8}}}
  local m = t:map("rw")
  m:set({2, 2}, 2)
  local w = tb.wrap("0123456789abcdef"):view{dtype = "u8", shape = {16}}
  w:set_quantization{scale = 0.25, zero_point = 1}
  -- Failed calls must not leak what they made before failing.
  pcall(tb.tensor, {dtype = "f32", shape = {-1}})
  pcall(t.reshape, t, {5})
  pcall(m.write, m, "short")
  pcall(views[2].reshape, views[2], {8})
  pcall(core.tb_tensor_new, core.TB_DTYPE_U8, {1}, {memory = "nowhere"})
  return views, m, w
end

local function churn_shared()
  local t = tb.tensor{dtype = "u8", shape = {64}, memory = "shm"}
  local fd = t:export_fd()
  local u = tb.import_fd{fd = fd, dtype = "u8", shape = {64}}
  pcall(tb.import_fd, {fd = fd, dtype = "u8", shape = {65}})
  tb.close_fd(fd)
  local descriptor, fds = t:export()
  local v = tb.import(descriptor, fds)
  for _, f in ipairs(fds) do
    tb.close_fd(f)
  end
  local a, b = tb.channel_pair()
  a:send(t)
  local r = b:recv(1)
  local f = tb.fence()
  a:send_fence(f)
  local g = b:recv_fence(1)
  local p = tb.pool(t, 2)
  local x = p:acquire(0)
  local img = tb.image{width = 4, height = 2, format = "nv12", memory = "shm"}
  return u, v, r, g, x, img:plane(2)
end

collectgarbage()
collectgarbage()
local live = tb.live_objects()
local fds = osutil.fd_count()
local wrapped = core.wrapped_alive()

h.test("objects of every kind are released by the collector", function()
  for _ = 1, ROUNDS do
    churn_tensors()
    if SHM then
      churn_shared()
    end
  end
  collectgarbage()
  collectgarbage()
  h.eq(tb.live_objects(), live, "live objects after collectgarbage()")
  h.eq(osutil.fd_count(), fds, "open fds")
  h.eq(core.wrapped_alive(), wrapped, "wrapped copies not yet destroyed")
end)

if not SHM then
  h.skip("shared objects", "shared memory (memfd) is not available here")
end

h.test("live_objects counts what is held, not what is collectable", function()
  local held = {}
  for i = 1, 100 do
    held[i] = tb.tensor{dtype = "u8", shape = {1}, memory = "heap"}
  end
  collectgarbage()
  -- A heap tensor is two handles: the tensor and its buffer.
  h.eq(tb.live_objects() - live, 200, "held")
  held = nil
  collectgarbage()
  collectgarbage()
  h.eq(tb.live_objects(), live, "released")
end)

h.finish()
