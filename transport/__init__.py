"""ZeroMQ messaging with gen_statem-style cast/call. No ra equivalent (BEAM distribution)."""
