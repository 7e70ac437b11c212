"""One module per screen: capture, result, history, detail, charts, demo, settings."""
