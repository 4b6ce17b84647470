-- Starts several packet engines sharing one interface, each writing its own pipe.
-- Usage: bricks -f scripts/startup-multi-threads.lua [IFACE [ENGINES]]
--
-- Written for bricks after the original packet-bricks startup script. The
-- interface read is the first script argument, else $BRICKS_IFACE, else
-- "eth3"; the number of engines the second argument, else $BRICKS_ENGINES,
-- else 4. Engine "eN" reads share N of the interface (hardware queue N; with
-- the packet back-end a flow-hashed share: together disjoint and complete),
-- runs on CPU N when the machine has one, and writes pipe IFACE{N. The script
-- sets up and starts the engines, prints the status and returns to the shell,
-- where these functions remain:
--   watch4()  print the statistics STATS_PRINT_CYCLE_DEFAULT times, every
--             SLEEP_TIMEOUT seconds
--   stop4()   print the statistics, stop and delete every engine
--   BRICKS.shutdown()  stop everything and leave

utilObj = dofile("scripts/utils.lua")
sampleSetup = dofile("scripts/configs/multi-threaded-setups.lua")

local script_arguments = arg or {}
INTERFACE = script_arguments[1] or os.getenv("BRICKS_IFACE") or "eth3"
ENGINES = tonumber(script_arguments[2] or os.getenv("BRICKS_ENGINES") or 4)
if ENGINES == nil or ENGINES < 1 or ENGINES % 1 ~= 0 then
   error("the number of engines must be a whole number of at least 1")
end

local function each_engine(action)
   for number = 0, ENGINES - 1 do
      action(number, "e" .. number)
   end
end

-- init4: checks that bricks can run here, creates the engines and links
-- each to its share (see lb_config in configs/multi-threaded-setups.lua).
function init4()
   utilObj:prepare_to_run()

   local cpus = utilObj:cpu_count()
   local ok, message = pcall(each_engine, function(number, name)
      local pe = PktEngine.new(name, BUFFER_SZ, number < cpus and number or NO_CPU_AFF)
      lb_config(pe, INTERFACE, number)
   end)
   if not ok then
      each_engine(function(_, name)     -- leave nothing half-built behind
         local pe = PktEngine.retrieve(name)
         if pe then pe:delete() end
      end)
      error(message, 0)
   end
end

-- start4: starts every engine and says whether BRICKS is online.
function start4()
   each_engine(function(_, name) PktEngine.retrieve(name):start() end)
   BRICKS.print_status()
end

-- watch4: prints the statistics of every engine now and then, a bounded number of times.
function watch4()
   for _ = 1, STATS_PRINT_CYCLE_DEFAULT do
      utilObj:sleep(SLEEP_TIMEOUT)
      BRICKS.show_stats()
   end
end

-- stop4: prints the final statistics, stops every engine and deletes them.
function stop4()
   BRICKS.show_stats()
   each_engine(function(_, name) PktEngine.retrieve(name):stop() end)
   each_engine(function(_, name) PktEngine.retrieve(name):delete() end)
end

init4()
start4()
