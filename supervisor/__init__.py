"""Erlang/OTP supervisor semantics for OS processes. Mirrors supervisor.erl."""
