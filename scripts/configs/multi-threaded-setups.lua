-- Per-engine brick trees for several engines sharing one interface.
-- Usage: dofile("scripts/configs/multi-threaded-setups.lua")
--
-- Written for bricks after the original packet-bricks configuration. Engine
-- number n reads hardware queue n of the interface (with the packet back-end:
-- a flow-hashed share, all shares together disjoint and complete) and writes
-- it to pipe iface{n. lb_config is a global, as the original startup script
-- expects, and a field of the returned table.

local setups = {}

-- lb_config: links to `pe` a LoadBalancer reading share n of iface (default:
-- the global INTERFACE, else "eth3") into pipe iface{n.
function lb_config(pe, iface, n)
   iface = iface or INTERFACE or "eth3"
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface)
   lb:connect_output(iface .. "{" .. n)
   pe:link(lb, PKT_BATCH or 1024, n)
end

setups.lb_config = function(first, ...)
   if rawequal(first, setups) then
      return lb_config(...)
   end
   return lb_config(first, ...)
end

return setups
