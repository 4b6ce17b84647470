-- The guard around every chunk a shell or a client runs: interruptible Lua and restricted environments.
--
-- bricks/lua.py runs this chunk once per Lua state, after lua_api.lua, with
-- `pending`, a Python function answering nil or why the running chunk must
-- stop (Ctrl+C, a client's interrupt, the daemon's chunk time limit), and the
-- names of the broker API globals. A count hook asks it every HOOK_COUNT
-- instructions, so even `while true do end` ends. The chunk returns the
-- functions lua.py needs.

local pending, api_names = ...

local sethook, getinfo = debug.sethook, debug.getinfo
local setfenv = setfenv

-- Hooks do not run inside JIT-compiled traces: a hot loop compiled by LuaJIT
-- would never be interrupted. The control plane only configures engines (the
-- packets never pass through Lua), so the interpreter is fast enough.
if jit then
   jit.off()
   jit.flush()
end

-- ~0.2 ms of interpreted Lua between two checks. Any count hook slows the
-- interpreter by about a third (LuaJIT's hooked dispatch); at this count the
-- Python check itself adds ~5%, at 10,000 it would add ~40%.
local HOOK_COUNT = 100000

-- Sources of our own code: after an interrupt the hook raises only in the
-- user's code, so that our error handler and result packing still run.
local OWN_SOURCES = {["=lua_api.lua"] = true, ["=lua_guard.lua"] = true}

local guard = {}

local function stop_hook()
   local reason = pending()
   if reason == nil then
      return
   end
   local info = getinfo(2, "S")
   if info and OWN_SOURCES[info.source] then
      return
   end
   -- From now on every instruction checks: a pcall in the chunk may catch
   -- the error once, but the loop around it cannot go on.
   sethook(stop_hook, "", 1)
   error(reason, 0)
end

-- Runs `chunk` with `run` (lua_api's internal.run) under the hook.
function guard.run(run, chunk)
   sethook(stop_hook, "", HOOK_COUNT)
   local ok, result = run(chunk)
   sethook()
   return ok, result
end

-- Compiled chunks of a restricted client see its own environment.
function guard.bind(chunk, environment)
   return setfenv(chunk, environment)
end

-- What a restricted client may use: plain Lua without a door to the system
-- (no os, io, debug, load*, dofile, require, package, getfenv/setfenv, jit)
-- and the broker API. A whitelist, so that globals a start-up script adds
-- (utils.lua's shell()) never reach a restricted client.
local SAFE_NAMES = {
   "assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawlen", "rawset",
   "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION",
}
local SAFE_LIBRARIES = {"string", "table", "math", "coroutine", "bit"}

local safe = {}
for _, name in ipairs(SAFE_NAMES) do
   safe[name] = _G[name]
end
for index = 1, #api_names do
   safe[api_names[index]] = _G[api_names[index]]
end
local libraries = {}
for _, name in ipairs(SAFE_LIBRARIES) do
   libraries[name] = _G[name]
end
-- string.dump turns functions into bytecode, which only a loader could use.
local hidden_fields = {string = {dump = true}}

-- What a restricted client reading `os` hears: why, in one line, instead of
-- "attempt to index global 'os' (a nil value)".
local CLOSED = {"os", "io", "debug", "load", "loadstring", "loadfile", "dofile", "require", "package",
                "module", "getfenv", "setfenv", "jit", "python"}
local closed_set = {}
for _, name in ipairs(CLOSED) do
   closed_set[name] = true
end
local closed_names = {
   __index = function(_, name)
      if closed_set[name] then
         error(tostring(name) .. " is for root only (this client is restricted)", 2)
      end
      return nil
   end,
   __metatable = false,
}

-- A fresh environment for one restricted client: its own globals, its own
-- copies of the libraries (changing string.format there changes nobody
-- else's), the broker API shared with everyone.
function guard.restricted_environment()
   local environment = {}
   for name, value in pairs(safe) do
      environment[name] = value
   end
   for name, library in pairs(libraries) do
      local copy = {}
      for key, value in pairs(library) do
         if not (hidden_fields[name] and hidden_fields[name][key]) then
            copy[key] = value
         end
      end
      environment[name] = copy
   end
   environment._G = environment
   return setmetatable(environment, closed_names)
end

return guard
