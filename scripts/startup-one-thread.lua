-- Starts one packet engine that load-balances an interface over four pipes.
-- Usage: bricks -f scripts/startup-one-thread.lua [IFACE [EGRESS]]
--
-- Written for bricks after the original packet-bricks startup script. The
-- interface read is the first script argument, else $BRICKS_IFACE, else
-- "eth3". A real interface that receives a fifth share (the egress) is
-- optional: the second argument, else $BRICKS_EGRESS; neither (or an empty
-- value): no egress.
-- The script sets up and starts engine "e0", prints the status and returns
-- to the shell, where these functions remain:
--   watch()   print the statistics STATS_PRINT_CYCLE_DEFAULT times, every
--             SLEEP_TIMEOUT seconds
--   stop()    print the statistics, stop and delete the engine
--   BRICKS.shutdown()  stop everything and leave

utilObj = dofile("scripts/utils.lua")
sampleSetup = dofile("scripts/configs/single-threaded-setups.lua")

local script_arguments = arg or {}
INTERFACE = script_arguments[1] or os.getenv("BRICKS_IFACE") or "eth3"
EGRESS = script_arguments[2] or os.getenv("BRICKS_EGRESS")
if EGRESS == "" then
   EGRESS = nil
end
local EGRESS_HOW = "give the egress as the script's second argument or in $BRICKS_EGRESS, or neither for none"
PCAPDIR = os.getenv("BRICKS_PCAPDIR") or "pcapsamples/"

ENGINE_NAME = "e0"

-- init: checks that bricks can run here, creates the engine and links the
-- load balancer (see lb_config in configs/single-threaded-setups.lua).
function init()
   utilObj:prepare_to_run()
   if EGRESS and not utilObj:directory_exists("/sys/class/net/" .. EGRESS) then
      error(string.format("egress %s: no such interface (%s)", EGRESS, EGRESS_HOW), 0)
   end

   local pe = PktEngine.new(ENGINE_NAME, BUFFER_SZ, NO_CPU_AFF)
   local ok, message = pcall(sampleSetup.lb_config, pe, INTERFACE, EGRESS)
   if not ok then
      pe:delete()     -- leave nothing half-built behind
      error(message, 0)
   end
end

-- start: starts the engine and says whether BRICKS is online.
function start()
   PktEngine.retrieve(ENGINE_NAME):start()
   BRICKS.print_status()
end

-- watch: prints the statistics of every engine now and then, a bounded number of times.
function watch()
   for _ = 1, STATS_PRINT_CYCLE_DEFAULT do
      utilObj:sleep(SLEEP_TIMEOUT)
      BRICKS.show_stats()
   end
end

-- stop: prints the final statistics, stops the engine and deletes it (its pipes go too).
function stop()
   local pe = PktEngine.retrieve(ENGINE_NAME)
   BRICKS.show_stats()
   pe:stop()
   pe:delete()
end

init()
start()
