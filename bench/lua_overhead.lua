-- Per-call overhead of the Lua binding (bench/README.md gives the protocol):
-- a getter, an element get and set, and a map+unmap, each against a plain
-- Lua call of a stock C function (string.len) and against the same calls
-- made from C in this process (_lua_overhead_peer, timed in alternating
-- batches with the Lua loops). Target: a getter costs at most 3x a plain Lua
-- C function call.
local tb = require "tensorbuf"
local cjson = require "cjson"
local peer = require "_lua_overhead_peer"

local BATCHES = 15 -- alternating pairs; the median of the batch means counts
local BATCH_NS = 2e6 -- each batch runs about this long (CPU time, peer.now)
local filter = os.getenv("TB_BENCH_FILTER")
local memory = tb.memory_available("shm") and "shm" or "heap"

local t = tb.tensor{dtype = "f32", shape = {2, 3}, memory = memory}
peer.init(memory)
local core = tb.core
local text = "tensorbuf"
local index = {1, 2}

-- The Lua side of each comparison: fn(n) runs n calls.
local lua_loops = {
  ["string.len"] = function(n)
    local len = string.len
    for _ = 1, n do
      len(text)
    end
  end,
  ["s:len()"] = function(n)
    for _ = 1, n do
      text:len()
    end
  end,
  ["t:ndim()"] = function(n)
    for _ = 1, n do
      t:ndim()
    end
  end,
  ["tensorbuf_core.tb_tensor_ndim(t)"] = function(n)
    local ndim = core.tb_tensor_ndim
    for _ = 1, n do
      ndim(t)
    end
  end,
  ["t:get{1, 2}"] = function(n)
    for _ = 1, n do
      t:get(index)
    end
  end,
  ["t:set({1, 2}, 1.5)"] = function(n)
    for _ = 1, n do
      t:set(index, 1.5)
    end
  end,
  ['t:map("rw") + m:unmap()'] = function(n)
    for _ = 1, n do
      t:map("rw"):unmap()
    end
  end,
}

-- ns per call of a Lua loop, over n calls.
local function time_lua(loop, n)
  local start = peer.now()
  loop(n)
  return (peer.now() - start) / n
end

-- Calls per batch so that one batch takes about BATCH_NS.
local function calibrate(per_call)
  local n = 1000
  while per_call(n) * n < BATCH_NS / 4 and n < 1e8 do
    n = n * 4
  end
  return math.max(1, math.floor(BATCH_NS / per_call(n)))
end

local function median(values)
  table.sort(values)
  return values[(#values + 1) // 2]
end

-- Median ns per call of `a` and `b` (functions of n), run alternately.
local function compare(a, b)
  local na, nb = calibrate(a), calibrate(b)
  local as, bs = {}, {}
  for i = 1, BATCHES do
    as[i] = a(na)
    bs[i] = b(nb)
  end
  return median(as), median(bs)
end

local function lua(name)
  return function(n) return time_lua(lua_loops[name], n) end
end

local records = {}
local rows = {}

local function record(name, value, peer_name, peer_value, target)
  records[#records + 1] = {name = name, value = value, unit = "ns", peer = peer_name,
                           peer_value = peer_value, ratio = value / peer_value,
                           target = target}
  rows[#rows + 1] = string.format("%-44s %8.1f ns   %-40s %8.1f ns  %5.2fx  %s", name, value,
                                  peer_name, peer_value, value / peer_value, target or "")
end

local function selected(name)
  return filter == nil or name:find(filter, 1, true) ~= nil
end

-- Getters against a plain Lua call of a stock C function, and the method
-- call against the same method call of one (a string's len, found through
-- the string metatable's __index as t:ndim() is through the tensor's).
local against_lua = {
  {"lua getter t:ndim()", "t:ndim()", "string.len", "Lua call of C string.len(s)"},
  {"lua getter tensorbuf_core.tb_tensor_ndim(t)", "tensorbuf_core.tb_tensor_ndim(t)",
   "string.len", "Lua call of C string.len(s)"},
  {"lua getter t:ndim() vs a C method", "t:ndim()", "s:len()", "Lua method call of C s:len()"},
}
for _, case in ipairs(against_lua) do
  local name, loop, plain, plain_name = table.unpack(case)
  if selected(name) then
    local value, plain_value = compare(lua(loop), lua(plain))
    record(name, value, plain_name, plain_value, "<= 3x")
  end
end

-- The same calls from Lua and from C.
local against_c = {
  {"lua getter t:ndim() vs C", "t:ndim()", peer.ndim, "C tb_tensor_ndim"},
  {"lua get t:get{1, 2}", "t:get{1, 2}", peer.get, "C tb_tensor_get_f64"},
  {"lua set t:set({1, 2}, 1.5)", "t:set({1, 2}, 1.5)", peer.set, "C tb_tensor_set_f64"},
  {"lua map+unmap " .. memory, 't:map("rw") + m:unmap()', peer.map,
   "C tb_tensor_map+tb_map_unmap+tb_map_free"},
}
for _, case in ipairs(against_c) do
  local name, loop, c_timing, c_name = table.unpack(case)
  if selected(name) then
    local value, c_value = compare(lua(loop), c_timing)
    record(name, value, c_name, c_value)
  end
end

peer.release()
print(string.format("%-44s %11s   %-40s %11s  %6s  %s", "name", "lua", "peer", "peer", "ratio",
                    "target"))
for _, row in ipairs(rows) do
  print(row)
end

local out = os.getenv("TB_BENCH_OUT")
if out then
  local file = assert(io.open(out, "w"))
  file:write(#records > 0 and cjson.encode(records) or "[]")
  file:close()
end
