-- The README's Lua example runs as written: README.md's "## Lua" section
-- holds example.lua verbatim in a ```lua block, and running example.lua
-- prints what its "--> " comments say (a tab stands between values).
--   lua5.4 test_readme.lua README.md example.lua
local readme_path, example_path = ...

local function read(path)
  local file = io.open(path, "rb")
  if file == nil then
    return nil
  end
  local text = file:read("a")
  file:close()
  return text
end

local example = assert(read(example_path), "cannot read " .. example_path)
local readme = read(readme_path) or ""
local section = readme:match("\n## Lua\n(.-)\n## ") or readme:match("\n## Lua\n(.*)$")
if section == nil or not section:find("```lua\n", 1, true) then
  print("SKIP: " .. readme_path .. " has no ## Lua section with a ```lua block yet")
  os.exit(77)
end
local block = section:match("```lua\n(.-)```")
if block ~= example then
  print("FAIL: the ```lua block of README.md's ## Lua section differs from " .. example_path)
  os.exit(1)
end

local expected = {}
for line in example:gmatch("[^\n]+") do
  local output = line:match("%-%->%s(.*)$")
  if output then
    expected[#expected + 1] = output
  end
end

-- Run the example in this interpreter, collecting what it prints.
local printed = {}
local function capture(...)
  local values = table.pack(...)
  for i = 1, values.n do
    values[i] = tostring(values[i])
  end
  printed[#printed + 1] = table.concat(values, "\t", 1, values.n)
end
local env = setmetatable({print = capture}, {__index = _G})
assert(load(example, "=example.lua", "t", env))()

local failed = #printed ~= #expected
for i = 1, math.max(#printed, #expected) do
  if printed[i] ~= expected[i] then
    failed = true
    print(string.format("line %d: printed %q, the comment says %q", i,
                        tostring(printed[i]), tostring(expected[i])))
  end
end
if failed then
  print("FAIL: the example's output differs from its comments")
  os.exit(1)
end
print(string.format("ok: the README example ran and printed its %d lines", #printed))
