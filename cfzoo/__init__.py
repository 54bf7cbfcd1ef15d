"""cfzoo: a counter-forensics model zoo.

The core modules (images, manipulations, patches, data, metrics) need numpy and Pillow only.
"""

__version__ = "0.1.0"
