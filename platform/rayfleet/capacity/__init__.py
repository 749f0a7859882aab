"""Where accelerators come from at run time: the capacity fallback along a queue's compute class."""
