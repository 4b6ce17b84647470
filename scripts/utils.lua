-- Utilities and constants for bricks startup scripts: `utilObj = dofile("scripts/utils.lua")`.
--
-- Written for bricks after the layout of the original packet-bricks scripts,
-- which call these as methods (utilObj:sleep(1)); calling them as plain
-- functions (utilObj.sleep(1)) works as well. The constants are both globals,
-- as the original scripts expect, and fields of the returned object.

local utils = {}

utils.STATS_PRINT_CYCLE_DEFAULT = 2   -- how many times start() prints the statistics
utils.SLEEP_TIMEOUT = 1               -- seconds between two statistics prints
utils.PKT_BATCH = 1024                -- packets per read
utils.NETMAP_PIPES = 4                -- pipes per interface the netmap module pre-allocates
utils.NO_CPU_AFF = -1                 -- do not pin an engine's thread to a CPU
utils.NO_QIDS = -1                    -- read every hardware queue of an interface
utils.BUFFER_SZ = 1024                -- slots per queue of an engine

for name, value in pairs(utils) do
   _G[name] = value
end

local NETMAP_DEVICE = "/dev/netmap"
local NETMAP_PIPES_PARAMETER = "/sys/module/netmap/parameters/default_pipes"

-- Defines utils.<name> so that utils:<name>(...) and utils.<name>(...) both work.
local function define(name, implementation)
   utils[name] = function(first, ...)
      if rawequal(first, utils) then
         return implementation(...)
      end
      return implementation(first, ...)
   end
end

-- The original's file helpers. As there, file_exists and lines_from are
-- also globals (its load-balance script calls lines_from(...) directly).

-- Whether `path` can be opened for reading (a directory counts, as in the original).
local function file_exists(path)
   if type(path) ~= "string" then
      return false
   end
   local file = io.open(path, "rb")
   if file then
      file:close()
      return true
   end
   return false
end

-- The lines of file `path` as an array, without their line ends; {} when it cannot be read.
local function lines_from(path)
   local lines = {}
   if not file_exists(path) then
      return lines
   end
   local ok = pcall(function()
      for line in io.lines(path) do
         lines[#lines + 1] = line
      end
   end)
   return ok and lines or {}
end

-- Whether `path` is a directory: only a directory opens with a "/" appended
-- (no shell command, unlike the original's `cd`).
local function directory_exists(path)
   if type(path) ~= "string" or path == "" then
      return false
   end
   return file_exists(path:sub(-1) == "/" and path or path .. "/")
end


define("file_exists", file_exists)
define("lines_from", lines_from)
define("directory_exists", directory_exists)
_G.file_exists = file_exists
_G.lines_from = lines_from

-- The output of shell command `command`, as one string.
define("shell", function(command)
   local pipe = assert(io.popen(command, "r"))
   local output = pipe:read("*a")
   pipe:close()
   return output
end)

-- Sleeps `seconds` (fractions allowed) without spinning a CPU.
define("sleep", function(seconds)
   if bricks_sleep then
      bricks_sleep(seconds)
   else
      os.execute("sleep " .. tonumber(seconds))
   end
end)

-- Whether the active back-end can run: the original asked for the netmap
-- module; bricks also runs on AF_PACKET, available on every Linux kernel.
define("netmap_loaded", function()
   if file_exists(NETMAP_DEVICE) then
      return true
   end
   return BRICKS ~= nil and BRICKS.backend() ~= nil
end)

-- Whether the script runs as root (engines open interfaces and create pipes).
define("check_superuser", function()
   return utils.shell("id -u"):match("^%s*(%d+)") == "0"
end)

-- Asks the netmap module for NETMAP_PIPES pipes per interface, where that
-- module is loaded; elsewhere pipes need no enabling and nothing is done.
-- Kept for the original's scripts: current netmap makes pipes on demand and
-- ignores default_pipes (a parameter it keeps only for compatibility), so
-- this write changes nothing there; it mattered to netmap before 2018.
define("enable_nmpipes", function()
   if not file_exists(NETMAP_PIPES_PARAMETER) then
      return false
   end
   local parameter = io.open(NETMAP_PIPES_PARAMETER, "w")
   if parameter == nil then
      return false
   end
   parameter:write(tostring(utils.NETMAP_PIPES))
   parameter:close()
   return true
end)

-- What every startup script checks before it creates engines: a back-end that
-- can run, root, and pipes enabled where netmap needs that. Raises otherwise.
define("prepare_to_run", function()
   if not utils.netmap_loaded() then
      error("no back-end can run here (neither netmap nor AF_PACKET)", 0)
   end
   if not utils.check_superuser() then
      error("you have to be superuser to run this script", 0)
   end
   utils.enable_nmpipes()
end)

-- How many CPUs this machine has (engines may be pinned to 0 .. count-1).
define("cpu_count", function()
   return tonumber(utils.shell("getconf _NPROCESSORS_ONLN 2>/dev/null"):match("%d+")) or 1
end)

return utils
