"""Cross-cutting service concerns: security (accounts, tokens, roles)."""
