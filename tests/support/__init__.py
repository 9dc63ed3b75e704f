"""Helpers the tests share: real server processes on free loopback ports, reference models."""
