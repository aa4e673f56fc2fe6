"""Simulated systems of the public bodies: REST and legacy SOAP providers reached through the bus."""
