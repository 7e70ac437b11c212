"""Maps the repository's top-level folders onto one import namespace.

``backend/`` installs as ``kensa.backend``, ``client/`` as ``kensa.client``, ``contract/`` as
``kensa.contract`` and ``models/`` as ``kensa.models``; ``kensa/`` is the composition root.
Nothing generic (``models``, ``client``) lands in site-packages. Everything else is in
pyproject.toml.
"""

from setuptools import find_packages, setup

WINGS = ("backend", "client", "contract", "models")

packages = ["kensa"]
package_dir = {"kensa": "kensa"}
for wing in WINGS:
    package_dir[f"kensa.{wing}"] = wing
    packages += [f"kensa.{wing}", *(f"kensa.{wing}.{sub}" for sub in find_packages(wing))]

setup(packages=packages, package_dir=package_dir)
