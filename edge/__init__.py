"""PneumoEdge edge core: everything the kiosk needs to score an X-ray offline, without TensorFlow."""

__version__ = "0.1.0"
