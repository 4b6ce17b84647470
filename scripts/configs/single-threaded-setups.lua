-- Sample brick trees for one packet engine: `sampleSetup = dofile("scripts/configs/single-threaded-setups.lua")`.
--
-- Written for bricks after the configurations the original packet-bricks
-- shipped. Each function links one tree to engine `pe` (nothing is started);
-- call it as sampleSetup:name(pe, ...) or sampleSetup.name(pe, ...). Names:
--   iface    the interface read; defaults to the global INTERFACE (set by the
--            startup scripts), else "eth3" as in the original
--   iface{N  pipe N of iface, written by bricks; consumers read iface}N
-- A brick whose input is iface}N under a parent writing iface{N is an
-- internal edge: no pipe is created for it.

local setups = {}

local DEFAULT_INTERFACE = "eth3"

local function interface_or_default(iface)
   return iface or INTERFACE or DEFAULT_INTERFACE
end

-- Whether interface `name` exists: its directory in /sys/class/net opens (a
-- system without /sys says yes, and linking tells).
local function interface_exists(name)
   local function opens(path)
      local handle = io.open(path, "rb")
      if handle then
         handle:close()
      end
      return handle ~= nil
   end
   return type(name) ~= "string" or not opens("/sys/class/net/") or opens("/sys/class/net/" .. name .. "/")
end

-- Defines setups.<name> so that both setups:<name>(pe, ...) and setups.<name>(pe, ...) work.
local function define(name, implementation)
   setups[name] = function(first, ...)
      if rawequal(first, setups) then
         return implementation(...)
      end
      return implementation(first, ...)
   end
end

-- lb_config: load-balances iface over pipes {0..{3 by IP pair (split 2),
-- plus the real interface `egress` (else the global EGRESS) as a fifth
-- output if given; without one, four outputs.
define("lb_config", function(pe, iface, egress)
   iface = interface_or_default(iface)
   egress = egress or EGRESS
   if egress and not interface_exists(egress) then
      error("lb_config: egress " .. tostring(egress) .. ": no such interface (give an existing one as the "
            .. "third argument or in the global EGRESS, or neither for no egress)", 2)
   end
   local lb = Brick.new("LoadBalancer", 2)
   lb:connect_input(iface)
   lb:connect_output(iface .. "{0", iface .. "{1", iface .. "{2", iface .. "{3")
   if egress then
      lb:connect_output(egress)
   end
   pe:link(lb)
end)

-- duplb_config: duplicates iface to pipes {0 and {1, and load-balances the
-- first copy (an internal edge, iface}0) over pipes {2 and {3.
define("duplb_config", function(pe, iface)
   iface = interface_or_default(iface)
   local dup = Brick.new("Duplicator")
   dup:connect_input(iface)
   dup:connect_output(iface .. "{0", iface .. "{1")
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface .. "}0")
   lb:connect_output(iface .. "{2", iface .. "{3")
   dup:link(lb)
   pe:link(dup)
end)

-- dup_config: gives pipes {0..{3 a copy of every packet of iface.
define("dup_config", function(pe, iface)
   iface = interface_or_default(iface)
   local dup = Brick.new("Duplicator")
   dup:connect_input(iface)
   dup:connect_output(iface .. "{0", iface .. "{1", iface .. "{2", iface .. "{3")
   pe:link(dup)
end)

-- lbmrg_config: load-balances iface over two internal edges and merges them
-- back into pipe {3 (every packet of iface arrives there once).
define("lbmrg_config", function(pe, iface)
   iface = interface_or_default(iface)
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface)
   lb:connect_output(iface .. "{0", iface .. "{1")
   local mrg = Brick.new("Merge")
   mrg:connect_input(iface .. "}0", iface .. "}1")
   mrg:connect_output(iface .. "{3")
   lb:link(mrg)
   pe:link(lb)
end)

-- mrg_config: merges interfaces iface and iface2 into one stream (an
-- internal edge, iface}1) and load-balances it over pipes {2..{5 of iface2.
define("mrg_config", function(pe, iface, iface2)
   iface = interface_or_default(iface)
   iface2 = iface2 or INTERFACE2 or "eth2"
   local mrg = Brick.new("Merge")
   mrg:connect_input(iface, iface2)
   mrg:connect_output(iface .. "{1")
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface .. "}1")
   lb:connect_output(iface2 .. "{2", iface2 .. "{3", iface2 .. "{4", iface2 .. "{5")
   mrg:link(lb)
   pe:link(mrg)
end)

-- lbfilt_config: load-balances iface over pipes {0..{3 and filters the first
-- share into pipe {4. The Filter starts empty (everything passes); add rules
-- from any shell: Filter.retrieve(iface .. "{4"):drop{src = "10.0.0.0/8"}.
define("lbfilt_config", function(pe, iface)
   iface = interface_or_default(iface)
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface)
   lb:connect_output(iface .. "{0", iface .. "{1", iface .. "{2", iface .. "{3")
   local filter = Brick.new("Filter")
   filter:connect_input(iface .. "}0")
   filter:connect_output(iface .. "{4")
   lb:link(filter)
   pe:link(lb)
end)

-- lbmrgpcap_config: load-balances iface over two internal edges, merges them
-- and writes every packet to the pcap file `path` (default "out.pcap").
define("lbmrgpcap_config", function(pe, iface, path)
   iface = interface_or_default(iface)
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface)
   lb:connect_output(iface .. "{0", iface .. "{1")
   local mrg = Brick.new("Merge")
   mrg:connect_input(iface .. "}0", iface .. "}1")
   mrg:connect_output(iface .. "{2")
   lb:link(mrg)
   local writer = Brick.new("PcapWriter")
   writer:connect_input(iface .. "}2")
   writer:connect_output(path or "out.pcap")
   mrg:link(writer)
   pe:link(lb)
end)

-- simple_lbconfig: the smallest load balancer: iface over pipes {0..{3 by
-- IP pair and ports (split 4).
define("simple_lbconfig", function(pe, iface)
   iface = interface_or_default(iface)
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface)
   lb:connect_output(iface .. "{0", iface .. "{1", iface .. "{2", iface .. "{3")
   pe:link(lb)
end)

-- pcapr_config: replays the pcap file or directory `source` (default: the
-- global PCAPDIR) into pipe {0 of iface, the interface the capture stands for.
-- More outputs would be balanced by flow.
define("pcapr_config", function(pe, iface, source)
   iface = interface_or_default(iface)
   local reader = Brick.new("PcapReader")
   reader:connect_input(source or PCAPDIR or "pcapsamples/", iface)
   reader:connect_output(iface .. "{0")
   pe:link(reader)
end)

-- pcapw_config: load-balances iface over pipes {0..{3 and records the shares
-- of {0 and {2 (internal edges) in directory/0.pcap and directory/2.pcap
-- (default: the current directory).
define("pcapw_config", function(pe, iface, directory)
   iface = interface_or_default(iface)
   directory = directory or "."
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface)
   lb:connect_output(iface .. "{0", iface .. "{1", iface .. "{2", iface .. "{3")
   for _, pipe in ipairs({0, 2}) do
      local writer = Brick.new("PcapWriter")
      writer:connect_input(iface .. "}" .. pipe)
      writer:connect_output(directory .. "/" .. pipe .. ".pcap")
      lb:link(writer)
   end
   pe:link(lb)
end)

-- dummy_config: forwards iface unchanged to pipe {0 (performance testing).
define("dummy_config", function(pe, iface)
   iface = interface_or_default(iface)
   local dummy = Brick.new("Dummy")
   dummy:connect_input(iface)
   dummy:connect_output(iface .. "{0")
   pe:link(dummy)
end)

-- lbconfig: load-balances iface over pipes {0..{count-1 (split 4).
define("lbconfig", function(pe, iface, count)
   iface = interface_or_default(iface)
   local lb = Brick.new("LoadBalancer", 4)
   lb:connect_input(iface)
   lb:connect_outputs(iface, count or 4)
   pe:link(lb)
end)

-- dupconfig: gives pipes {0..{count-1 a copy of every packet of iface.
define("dupconfig", function(pe, iface, count)
   iface = interface_or_default(iface)
   local dup = Brick.new("Duplicator")
   dup:connect_input(iface)
   dup:connect_outputs(iface, count or 4)
   pe:link(dup)
end)

return setups
