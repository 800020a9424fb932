-- A minimal test runner for the Lua binding's tests: test() runs a case and
-- records the outcome, the check helpers raise on a mismatch, finish() prints
-- the totals and exits 1 if anything failed.
local tb = require "tensorbuf"

local harness = {passed = 0, failed = 0, skipped = 0}

function harness.test(name, fn)
  local ok, err = xpcall(fn, function(e)
    return debug.traceback(tostring(e), 2)
  end)
  if ok then
    harness.passed = harness.passed + 1
    print("ok    " .. name)
  else
    harness.failed = harness.failed + 1
    print("FAIL  " .. name .. ": " .. err)
  end
end

-- A case that cannot run here, printed with its reason.
function harness.skip(name, reason)
  harness.skipped = harness.skipped + 1
  print("SKIP  " .. name .. ": " .. reason)
end

local function show(value)
  if type(value) == "string" then
    return string.format("%q", value)
  end
  return tostring(value)
end

function harness.eq(actual, expected, what)
  if actual ~= expected then
    error(string.format("%s: got %s, expected %s", what or "value", show(actual),
                        show(expected)), 2)
  end
end

function harness.check(condition, what)
  if not condition then
    error(what, 2)
  end
end

-- Compares two sequences (shapes, strides) entry by entry.
function harness.same_list(actual, expected, what)
  harness.check(type(actual) == "table",
                string.format("%s: got %s, expected a table", what, show(actual)))
  local same = #actual == #expected
  for i = 1, math.max(#actual, #expected) do
    same = same and actual[i] == expected[i]
  end
  if not same then
    error(string.format("%s: got {%s}, expected {%s}", what,
                        table.concat(actual, ", "), table.concat(expected, ", ")), 2)
  end
end

function harness.integer(value, what)
  if math.type(value) ~= "integer" then
    error(string.format("%s: %s is a %s, not an integer", what, show(value),
                        math.type(value) or type(value)), 2)
  end
  return value
end

-- Calls fn(...) and checks that it raises a tensorbuf error named `name`
-- whose message starts with `prefix` (when given); returns the error.
-- `raised`, when given, records the name (for the every-status check).
function harness.raises(name, prefix, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then
    error(string.format("expected %s, but the call succeeded", name), 2)
  end
  if getmetatable(err) ~= tb.Error then
    error(string.format("expected a tensorbuf error %s, got %s", name, show(err)), 2)
  end
  if err.name ~= name then
    error(string.format("expected %s, got %s", name, tostring(err)), 2)
  end
  if tb.errors[err.name] ~= err.code then
    error(string.format("%s carries code %s", err.name, show(err.code)), 2)
  end
  if prefix ~= nil and err.message:sub(1, #prefix) ~= prefix then
    error(string.format("message %q should start with %q", err.message, prefix), 2)
  end
  harness.raised[name] = true
  return err
end
harness.raised = {}

-- Runs fn with a fresh collection before and after; returns the change in
-- tb.live_objects().
function harness.live_delta(fn)
  collectgarbage()
  collectgarbage()
  local before = tb.live_objects()
  fn()
  collectgarbage()
  collectgarbage()
  return tb.live_objects() - before
end

function harness.finish()
  print(string.format("%d passed, %d failed, %d skipped", harness.passed,
                      harness.failed, harness.skipped))
  if harness.failed > 0 then
    os.exit(1)
  end
  -- 77 when every test skipped: ctest reports the file as skipped.
  os.exit((harness.passed == 0 and harness.skipped > 0) and 77 or 0)
end

return harness
