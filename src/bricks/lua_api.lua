-- The Lua face of bricks: the BRICKS, PktEngine and Brick globals of SPEC §4, over the Python engine API.
--
-- bricks/lua.py runs this chunk once per Lua state with `native`, a table of
-- Python functions that each return `true, results...` or `false, message`.
-- Everything user-visible is built here so that a failure becomes a Lua
-- error raised at the caller's level (`stdin:1: message`, catchable by
-- pcall), never a Python traceback. The chunk returns the helpers lua.py
-- itself needs (compile, run, field listing).

local native = ...

local pack = function(...) return {n = select("#", ...), ...} end
local unpack = unpack or table.unpack          -- Lua 5.1 / LuaJIT, or a later Lua
local loadstring = loadstring or load

-- Raises a failed native call's message at level 3: the user code that
-- called the API function that called check. Never tail-call check, or the
-- API function's frame disappears and the level is off by one.
local function check(ok, ...)
   if not ok then
      error((...), 3)
   end
   return ...
end

-- Lua object -> the Python object it stands for; weak so wrappers can go.
local handles = setmetatable({}, {__mode = "k"})

local function unwrap_all(...)
   local args = pack(...)
   for index = 1, args.n do
      local value = args[index]
      if value ~= nil and handles[value] ~= nil then
         args[index] = handles[value]
      end
   end
   return unpack(args, 1, args.n)
end

-- A method callable as obj:name(...) and as obj.name(...) (the original
-- accepted pe.show_stats()): without obj as first argument, obj is implied.
local function bound_method(obj, invoke)
   return function(first, ...)
      local results
      if rawequal(first, obj) or (first == nil and select("#", ...) == 0) then
         results = pack(check(invoke(obj, ...)))
      else
         results = pack(check(invoke(obj, first, ...)))
      end
      return unpack(results, 1, results.n)
   end
end

local function sorted_keys(methods)
   local names = {}
   for name in pairs(methods) do names[#names + 1] = name end
   table.sort(names)
   return names
end

-- Object -> its bound methods. The object itself stays empty, so that every
-- assignment reaches __newindex and objects are read-only.
local members = setmetatable({}, {__mode = "k"})
-- Object -> its class table (PktEngine, Brick): the original's objects
-- reached their class's functions too (pe:help(), b.new).
local class_of = setmetatable({}, {__mode = "k"})

-- Builds the object type `type_name` of class table `class`: a read-only
-- object with bound methods, tostring() from Python, unknown fields a clear
-- error. As in the original, a successful method returns its object, for
-- chaining (b:connect_input(x):connect_output(y), pe:link(b):start()). An
-- object may have more methods than its type (a Filter's drop, allow...,
-- an engine's wait: `extra_names`, a Lua array); those return their own
-- results.
-- The object the last chaining method of the running chunk returned: a
-- shell line such as `pe:start()` is a statement to its typist, as in the
-- original's shell, so the object it returns for chaining is not echoed.
local last_chained

local function object_type(type_name, class, method_names, invoke_method)
   local metatable = {
      __metatable = type_name,
      __tostring = function(obj)
         local ok, text = native.describe(handles[obj])
         return ok and text or type_name
      end,
      __index = function(obj, key)
         local method = members[obj][key]
         if method == nil then
            method = rawget(class, key)
         end
         if method == nil then
            local names = sorted_keys(members[obj])
            for name in pairs(class) do
               names[#names + 1] = name
            end
            table.sort(names)
            error(string.format("%s has no field %s (methods: %s)", type_name,
                                type(key) == "string" and "'" .. key .. "'" or tostring(key),
                                table.concat(names, ", ")), 2)
         end
         return method
      end,
      __newindex = function()
         error(type_name .. " objects are read-only", 2)
      end,
   }
   local function add_method(obj, methods, name, chains)
      methods[name] = bound_method(obj, function(self, ...)
         local results = pack(invoke_method(handles[self], name, unwrap_all(...)))
         if results[1] and chains then
            last_chained = self
            return true, self
         end
         return unpack(results, 1, results.n)
      end)
   end
   return function(handle, extra_names)
      local obj, methods = {}, {}
      for _, name in ipairs(method_names) do
         add_method(obj, methods, name, true)
      end
      for _, name in ipairs(extra_names or {}) do
         add_method(obj, methods, name, false)
      end
      handles[obj] = handle
      members[obj] = methods
      class_of[obj] = class
      return setmetatable(obj, metatable)
   end
end

-- Drops the class table, or an object of the class, when a class function
-- is called with `:` (PktEngine:new(...), pe:help()).
local function without_class(class, first, ...)
   if rawequal(first, class) or (first ~= nil and class_of[first] == class) then
      return ...
   end
   return first, ...
end

---------------------------------------------------------------- PktEngine

PktEngine = {}
local new_engine_object = object_type("PktEngine", PktEngine,
                                      {"delete", "link", "show_stats", "start", "stop", "unlink"},
                                      native.engine_call)
local engine_extras = {"wait", "stats"}   -- pe:wait([seconds]) answers true/false, pe:stats() a table: not pe
local engine_objects = {}        -- name -> the Lua object last handed out for it

local function engine_object(handle, name)
   local known = engine_objects[name]
   if known ~= nil and native.same(handles[known], handle) then
      return known
   end
   local obj = new_engine_object(handle, engine_extras)
   engine_objects[name] = obj
   return obj
end

function PktEngine.new(...)
   local handle, name = check(native.engine_new(without_class(PktEngine, ...)))
   return engine_object(handle, name)
end

function PktEngine.retrieve(...)
   local handle, name = check(native.engine_retrieve(without_class(PktEngine, ...)))
   if handle == nil then
      return nil
   end
   return engine_object(handle, name)
end

function PktEngine.help(...)
   check(native.help_PktEngine(without_class(PktEngine, ...)))
end

---------------------------------------------------------------- Brick

Brick = {}
local new_brick_object = object_type("Brick", Brick, {"connect_input", "connect_output", "connect_outputs", "link"},
                                     native.brick_call)

function Brick.new(...)
   local handle, kind_methods = check(native.brick_new(without_class(Brick, ...)))
   return new_brick_object(handle, kind_methods)
end

function Brick.help(...)
   check(native.help_Brick(without_class(Brick, ...)))
end

-- The Lua object already standing for a Python brick, so that a brick found
-- by name is the very object its creator holds (==, same methods).
local function brick_object(handle, kind_methods)
   for obj, known in pairs(handles) do
      if native.same(known, handle) then
         return obj
      end
   end
   return new_brick_object(handle, kind_methods)
end

-- A global per brick kind with methods (Filter): Kind.retrieve(name) finds a
-- brick of that kind by the name of its first output, from any shell of this
-- Lua state; Kind.help() lists its methods.
for _, kind in ipairs(check(native.kinds_with_methods())) do
   local class = {}
   function class.retrieve(...)
      local handle, kind_methods = check(native.kind_retrieve(kind, without_class(class, ...)))
      if handle == nil then
         return nil
      end
      return brick_object(handle, kind_methods)
   end
   function class.help(...)
      check(native["help_" .. kind](without_class(class, ...)))
   end
   _G[kind] = class
end

---------------------------------------------------------------- BRICKS

-- As the original's BRICKS table: its commands, and who it is.
BRICKS = {
   _VERSION = "BRICKS-" .. native.version,
   _COPYRIGHT = "bricks: BSD-3-Clause; after packet-bricks, Copyright (C) 2014",
   _DESCRIPTION = "BRICKS command line interface",
}

for _, name in ipairs({"help", "print_status", "show_stats", "shutdown", "set_backend"}) do
   local call = native[name == "help" and "help_BRICKS" or name]
   BRICKS[name] = function(...)
      check(call(without_class(BRICKS, ...)))
   end
end

function BRICKS.backend(...)
   return (check(native.backend(without_class(BRICKS, ...))))
end

function BRICKS.stats(...)
   return (check(native.stats(without_class(BRICKS, ...))))
end

---------------------------------------------------------------- output

-- print and io.write go to whoever sent the chunk (local shell, remote client).
function print(...)
   local args = pack(...)
   local parts = {}
   for index = 1, args.n do
      local text = tostring(args[index])
      if type(text) ~= "string" then
         error("'tostring' must return a string to 'print'", 2)
      end
      parts[index] = text
   end
   native.output(table.concat(parts, "\t") .. "\n")
end

io.write = function(...)
   local args = pack(...)
   local parts = {}
   for index = 1, args.n do
      local value = args[index]
      if type(value) ~= "string" and type(value) ~= "number" then
         error(string.format("bad argument #%d to 'write' (string expected, got %s)", index, type(value)), 2)
      end
      parts[index] = tostring(value)
   end
   native.output(table.concat(parts))
   return io.stdout
end

-- utils.lua's sleep: a real sleep, not the original's busy-wait on os.clock.
function bricks_sleep(...)
   check(native.sleep(...))
end

---------------------------------------------------------------- dofile

-- dofile("scripts/utils.lua") works from the repository root, as in the
-- original; run from elsewhere, a relative path is also looked up from the
-- calling script's directory and its parents.
local original_dofile = dofile

local function readable(path)
   local file = io.open(path, "r")
   if file then
      file:close()
      return true
   end
   return false
end

local function caller_directory()
   local info = debug.getinfo(3, "S")
   local source = info and info.source or ""
   if source:sub(1, 1) ~= "@" then
      return nil
   end
   return source:sub(2):match("^(.*)/[^/]*$") or "."
end

function dofile(path)
   if type(path) == "string" and path:sub(1, 1) ~= "/" and not readable(path) then
      local directory = caller_directory()
      for _ = 1, 4 do
         if directory == nil then break end
         local candidate = directory .. "/" .. path
         if readable(candidate) then
            path = candidate
            break
         end
         directory = directory:match("^(.*)/[^/]*$")
      end
   end
   local chunk, message = loadfile(path)
   if chunk == nil then
      error(message, 2)
   end
   return chunk()
end

---------------------------------------------------------------- for lua.py

local internal = {}

function internal.compile(code, name)
   local chunk, message = loadstring(code, name)
   return chunk, message
end

-- Runs a compiled chunk: true and a packed table of its results, or false
-- and the error message (no traceback: operators see one line).
function internal.run(chunk)
   last_chained = nil
   local results = pack(xpcall(chunk, function(message) return tostring(message) end))
   if results[1] then
      return true, {n = results.n - 1, unpack(results, 2, results.n)}
   end
   return false, results[2]
end

-- How the shell shows the values of `=expr` and of a bare expression: a
-- table readably (f:rules(), f:filter_stats()), nested, keys sorted, within
-- bounds so that a huge or cyclic table still prints a few lines.
local SHOW_DEPTH = 5        -- tables nested deeper show as {...}
local SHOW_ITEMS = 100      -- entries of one table beyond this are counted, not shown
local SHOW_WIDTH = 100      -- a table whose text fits in this many columns stays on one line

local LUA_KEYWORDS = {}
for word in ([[and break do else elseif end false for function goto if in local nil not or repeat
               return then true until while]]):gmatch("%a+") do
   LUA_KEYWORDS[word] = true
end

-- Numbers first (ascending), then strings, then anything else by its text.
local function key_before(first, second)
   local first_type, second_type = type(first), type(second)
   if first_type ~= second_type then
      if first_type == "number" or second_type == "number" then
         return first_type == "number"
      end
      return first_type < second_type
   end
   if first_type == "number" or first_type == "string" then
      return first < second
   end
   return tostring(first) < tostring(second)
end

local function shown_scalar(value)
   if type(value) == "string" then
      return (string.format("%q", value):gsub("\\\n", "\\n"))
   end
   return tostring(value)
end

local function shown(value, depth, open)
   if type(value) ~= "table" then
      return shown_scalar(value)
   end
   local metatable = debug.getmetatable(value)
   if metatable and metatable.__tostring then
      return tostring(value)      -- an engine or a brick: its own one-line summary
   end
   if open[value] then
      return "{<cycle>}"
   end
   if next(value) == nil then
      return "{}"
   end
   if depth >= SHOW_DEPTH then
      return "{...}"
   end
   open[value] = true
   local keys = {}
   for key in pairs(value) do
      keys[#keys + 1] = key
   end
   table.sort(keys, key_before)
   local parts, multi_line, in_sequence = {}, false, true
   for index, key in ipairs(keys) do
      if index > SHOW_ITEMS then
         parts[#parts + 1] = string.format("-- %d more", #keys - SHOW_ITEMS)
         multi_line = true
         break
      end
      local text = shown(rawget(value, key), depth + 1, open)
      in_sequence = in_sequence and key == index    -- 1, 2, 3... shown without their keys
      if not in_sequence then
         if type(key) == "string" and key:match("^[%a_][%w_]*$") and not LUA_KEYWORDS[key] then
            text = key .. " = " .. text
         else
            text = "[" .. shown(key, SHOW_DEPTH, open) .. "] = " .. text
         end
      end
      multi_line = multi_line or text:find("\n", 1, true) ~= nil
      parts[#parts + 1] = text
   end
   open[value] = nil
   local one_line = "{" .. table.concat(parts, ", ") .. "}"
   if not multi_line and #one_line + 2 * depth <= SHOW_WIDTH then
      return one_line
   end
   local indent = string.rep("  ", depth)
   return "{\n" .. indent .. "  " .. table.concat(parts, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

-- A value as the shell prints it: tables readably, anything else as print would.
function internal.show(value)
   if type(value) == "table" then
      return shown(value, 0, {})
   end
   return tostring(value)
end

-- Prints the values of a shell line; `explicit` (an `=expr` line) prints
-- them all, else an object returned by a chaining call is left out.
function internal.print_values(values, explicit)
   if not explicit and values.n == 1 and last_chained ~= nil and rawequal(values[1], last_chained) then
      return
   end
   if values.n > 0 then
      local parts = {}
      for index = 1, values.n do
         parts[index] = internal.show(values[index])
      end
      native.output(table.concat(parts, "\t") .. "\n")
   end
end

-- The names reachable as `path[1].path[2]...` and then . or : (methods only).
function internal.fields(path, methods_only)
   local value = _G
   for index = 1, #path do
      if type(value) ~= "table" then return {} end
      value = rawget(value, path[index])
   end
   local names = {}
   local seen = {}
   local function collect(tbl)
      if type(tbl) ~= "table" then return end
      for key, field in pairs(tbl) do
         if type(key) == "string" and not seen[key] and (not methods_only or type(field) == "function") then
            seen[key] = true
            names[#names + 1] = key
         end
      end
   end
   collect(value)
   collect(members[value])
   collect(class_of[value])
   local ok, metatable = pcall(getmetatable, value)
   if ok and type(metatable) == "table" and type(rawget(metatable, "__index")) == "table" then
      collect(rawget(metatable, "__index"))
   end
   table.sort(names)
   return names
end

function internal.set_arguments(script, arguments)
   local args = {[0] = script}
   for index = 1, arguments.n do
      args[index] = arguments[index]
   end
   arg = args
end

return internal
