"""The wire contract both wings speak: schemas, constants and the typed API client."""
