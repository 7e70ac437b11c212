"""Reusable pieces of the tablet screens."""
