"""The pcap back-end: files and directories of pcap files as sources, pcap files as sinks (libpcap's format,
read and written by io_pcap.c and brick_pcapwriter.c). Every tree's pcap ports open here, whatever its live
back-end; it runs any plan."""
import glob
import os

from .._ffi import ffi, lib, open_native
from ..errors import BricksError

SNAPLEN = 262144


def pcap_files(path):
    """The files a pcap input names: the file, or a directory's *.pcap in name order."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.pcap")))
        if not files:
            raise BricksError(f"{path}: no *.pcap file in this directory")
        return files
    if not os.path.isfile(path):
        raise BricksError(f"{path}: no such pcap file or directory")
    return [path]


class PcapBackend:
    name = "pcap"
    family = "file"

    def probe(self, plan):
        return None

    def open_source(self, context, port):
        paths = [ffi.new("char[]", path.encode()) for path in pcap_files(port.name)]
        return open_native(lib.brk_source_pcap_open, ffi.new("char *[]", paths), len(paths))

    def open_sink(self, context, node, output):
        return open_native(lib.brk_sink_pcap_open, output.port.name.encode(), SNAPLEN)

    def realise(self, context):
        pass

    def release(self, context):
        pass


BACKEND = PcapBackend()
