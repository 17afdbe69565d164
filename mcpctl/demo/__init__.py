"""Runnable demos built on the SDK."""
