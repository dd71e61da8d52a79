"""cytoscreen: screening whole-slide images of cervical cytology for abnormal cells.

Decision support for research use; not a diagnostic device.
"""

__version__ = "0.1.0"
