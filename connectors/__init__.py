"""I/O adapters: every library that talks to the outside world is wrapped here, once."""
