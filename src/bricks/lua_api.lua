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

-- Builds the object type `type_name`: a read-only object with bound methods,
-- tostring() from Python, unknown fields a clear error. With returns_self, a
-- successful method returns its object, for chaining
-- (b:connect_input(x):connect_output(y)). An object may have more methods
-- than its type (a Filter's drop, allow...: `extra_names`, a Lua array);
-- those return their own results.
local function object_type(type_name, method_names, invoke_method, returns_self)
   local metatable = {
      __metatable = type_name,
      __tostring = function(obj)
         local ok, text = native.describe(handles[obj])
         return ok and text or type_name
      end,
      __index = function(obj, key)
         local method = members[obj][key]
         if method == nil then
            error(string.format("%s has no field %s (methods: %s)", type_name,
                                type(key) == "string" and "'" .. key .. "'" or tostring(key),
                                table.concat(sorted_keys(members[obj]), ", ")), 2)
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
            return true, self
         end
         return unpack(results, 1, results.n)
      end)
   end
   return function(handle, extra_names)
      local obj, methods = {}, {}
      for _, name in ipairs(method_names) do
         add_method(obj, methods, name, returns_self)
      end
      for _, name in ipairs(extra_names or {}) do
         add_method(obj, methods, name, false)
      end
      handles[obj] = handle
      members[obj] = methods
      return setmetatable(obj, metatable)
   end
end

-- Drops the class table when a class function is called with `:`.
local function without_class(class, first, ...)
   if rawequal(first, class) then
      return ...
   end
   return first, ...
end

---------------------------------------------------------------- PktEngine

PktEngine = {}
local engine_methods = {"delete", "link", "show_stats", "start", "stop", "unlink"}
local new_engine_object = object_type("PktEngine", engine_methods, native.engine_call, false)
local engine_objects = {}        -- name -> the Lua object last handed out for it

local function engine_object(handle, name)
   local known = engine_objects[name]
   if known ~= nil and native.same(handles[known], handle) then
      return known
   end
   local obj = new_engine_object(handle)
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

function PktEngine.help()
   check(native.help("PktEngine"))
end

---------------------------------------------------------------- Brick

Brick = {}
local new_brick_object = object_type("Brick", {"connect_input", "connect_output", "connect_outputs", "link"},
                                     native.brick_call, true)

function Brick.new(...)
   local handle, kind_methods = check(native.brick_new(without_class(Brick, ...)))
   return new_brick_object(handle, kind_methods)
end

function Brick.help()
   check(native.help("Brick"))
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
   function class.help()
      check(native.help(kind))
   end
   _G[kind] = class
end

---------------------------------------------------------------- BRICKS

BRICKS = {}

function BRICKS.help()
   check(native.help("BRICKS"))
end

function BRICKS.print_status()
   check(native.print_status())
end

function BRICKS.show_stats()
   check(native.show_stats())
end

function BRICKS.shutdown()
   check(native.shutdown())
end

function BRICKS.set_backend(...)
   check(native.set_backend(without_class(BRICKS, ...)))
end

function BRICKS.backend()
   return (check(native.backend()))
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
function bricks_sleep(seconds)
   check(native.sleep(seconds))
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
   local results = pack(xpcall(chunk, function(message) return tostring(message) end))
   if results[1] then
      return true, {n = results.n - 1, unpack(results, 2, results.n)}
   end
   return false, results[2]
end

function internal.print_values(values)
   if values.n > 0 then
      print(unpack(values, 1, values.n))
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
