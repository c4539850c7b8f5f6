"""xsched-llama: a patch-and-build toolkit for a priority-scheduled llama.cpp server."""

__version__ = "0.1.0"
