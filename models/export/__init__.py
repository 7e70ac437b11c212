"""Exported serving: a detector's tensor part as an ONNX / OpenVINO graph, its Python pre- and
post-processing unchanged around it (``kensa export``)."""
