"""ppw: an automation worker for PracticePanther."""

__version__ = "0.1.0"
