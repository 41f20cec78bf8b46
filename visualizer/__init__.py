"""fmviz: look inside convolutional networks, layer by layer and channel by channel."""

__version__ = "0.1.0"
