"""Simulator of the national e-payments switch: speaks the protocol in PROTOCOL.md with configurable behaviour."""
