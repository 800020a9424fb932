-- consumer.lua: the Lua consumer of the pipeline demo (producer.c says how
-- the three processes work together).
--
--   lua5.4 consumer.lua SOCKET STRIDE
--
-- Connects to the producer at SOCKET, receives the tensor its results go
-- into and the fence it signals, then digests each frame as it comes: the
-- checksum sum_j (j + 1) * b[j * STRIDE] mod 2^32 and the mean of the same
-- bytes, over the frame's bytes b in row-major order. It reads them in
-- place, one element at a time through a read-only map of a strided view
-- (every STRIDE-th byte of the frame): no byte of the frame is copied, and
-- no Lua string of it is ever made. Ends when the producer closes the
-- channel.

local tb = require "tensorbuf"
local clock = require "pipeline_clock"

local socket, stride = arg[1], math.tointeger(arg[2])
if not socket or not stride or stride < 1 then
  io.stderr:write("usage: lua5.4 consumer.lua SOCKET STRIDE\n")
  os.exit(2)
end

-- fn(...), or nil once the producer has closed the channel.
local function unless_closed(fn, ...)
  local ok, result = pcall(fn, ...)
  if ok then
    return result
  end
  if getmetatable(result) == tb.Error and result.name == "TB_ERR_CLOSED" then
    return nil
  end
  error(result, 0)
end

local function fail(message)
  io.stderr:write("consumer.lua: ", message, "\n")
  os.exit(1)
end

local channel = tb.connect(socket, 10) or fail("no producer at " .. socket)
local results = unless_closed(channel.recv, channel, 10)
local acknowledged = results and unless_closed(channel.recv_fence, channel, 10)
if not acknowledged then
  fail("the producer sent no result tensor and fence")
end
local out <close> = results:map("w")
local FRAME, CHECKSUM, MEAN, LATENCY = {1}, {2}, {3}, {4}

-- Reads the frame's number and the producer's send time from its name.
local function stamp(frame)
  local number, sent = frame:name():match("^frame (%d+) sent (%d+)$")
  return math.tointeger(number), math.tointeger(sent)
end

-- Digests the frame; returns its checksum, its mean and the hand-off
-- latency: from the send to the moment this process had the frame mapped.
local function digest(frame, sent)
  assert(frame:read_only(), "the producer sends frames read-only")
  local bytes = frame:reshape{-1}
  local sample = bytes:slice(1, 1, #bytes, stride) -- a view: nothing copied
  local map <close> = sample:map("r")
  local latency = clock.monotonic_ns() - sent
  local get, index = map.get, {0}
  local sum, weighted = 0, 0
  for j = 1, #sample do
    index[1] = j
    local byte = get(map, index)
    sum = sum + byte
    weighted = weighted + j * byte -- integers wrap mod 2^64
  end
  return weighted & 0xffffffff, sum / #sample, latency
end

while true do
  local frame = unless_closed(channel.recv, channel)
  if frame == nil then
    break
  end
  local number, sent = stamp(frame)
  local checksum, mean, latency = digest(frame, sent)
  -- Lua frees the frame's handles only when it collects them, and the
  -- producer's pool wants the buffer back now.
  frame = nil
  collectgarbage()
  out:set(FRAME, number)
  out:set(CHECKSUM, checksum)
  out:set(MEAN, mean)
  out:set(LATENCY, latency)
  acknowledged:signal(number + 1)
end
