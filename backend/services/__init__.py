"""Work the API delegates: content-addressed storage, inference, the inspection pipeline."""
