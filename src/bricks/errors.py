"""The one exception operators see: a one-line message naming the culprit."""


class BricksError(Exception):
    """A request that bricks refuses or cannot carry out; the message is one line."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))
