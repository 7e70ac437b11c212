"""kensa 検査: visual inspection for steel and other industrial surfaces.

One import namespace over the repository's top-level folders (see ``setup.py``):
``kensa.models`` (the ML core), ``kensa.contract`` (wire schemas, constants, API client),
``kensa.backend`` (the service), ``kensa.client`` (the tablet app). This package itself is the
composition root: ``kensa.cli`` (the ``kensa`` command) and ``kensa.app`` (the service with the
web client mounted).
"""

__version__ = "0.2.0"
