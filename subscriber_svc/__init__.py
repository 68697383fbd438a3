"""Subscriber node: follows a cluster publisher and streams swarms to viewers."""
