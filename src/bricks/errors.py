"""The one exception operators see: a one-line message naming the culprit."""
import errno
import os

NOT_PERMITTED = os.strerror(errno.EPERM)
PRIVILEGES = "run as root, or give bricks CAP_NET_ADMIN and CAP_NET_RAW"


class BricksError(Exception):
    """A request that bricks refuses or cannot carry out; the message is one line."""

    def __init__(self, message):
        text = " ".join(str(message).split())
        # The kernel answers EPERM when a capability is missing (netlink, ethtool, AF_PACKET): say which.
        if text.endswith(NOT_PERMITTED):
            text = f"{text}: {PRIVILEGES}"
        super().__init__(text)


class LinkError(BricksError):
    """A link operation (or port name) that failed; the message is one line naming the interface."""
