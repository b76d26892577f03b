"""The pinned raw sources, as recorded in ``data.dvc`` (its ``meta.sources`` block).

``data.dvc`` tracks ``data/raw/``. Its ``meta`` block (ignored by DVC itself) lists, per file under
``data/raw/``, where the file comes from byte for byte and its sha256:

.. code-block:: yaml

    meta:
      sources:
        baron/came_sample_data.zip:
          kind: pip            # pip | apt | url
          package: came
          version: 0.1.13
          member: came/sample_data.zip   # path inside the wheel / sdist / .deb
          license: MIT
          sha256: ...
          description: ...

``kind: url`` entries carry ``url`` (an upstream address pinned to a commit) and are first looked
for, by file name, in local mirror folders (``SCPRIOR_MIRRORS``, then ``../shared/data``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

KINDS = ("pip", "apt", "url")


@dataclass(frozen=True)
class Source:
    """One pinned raw file: ``path`` is relative to ``data/raw/``."""

    path: str
    kind: str
    member: str = ""
    package: str = ""
    version: str = ""
    url: str = ""
    sha256: str = ""
    license: str = ""
    description: str = ""
    real: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def pin(self) -> str:
        """Human-readable pin, e.g. ``pip came==0.1.13`` or ``apt r-bioc-go.db=3.16.0-1``."""
        if self.kind == "pip":
            return f"pip {self.package}=={self.version}"
        if self.kind == "apt":
            return f"apt {self.package}={self.version}"
        return self.url


def read_sources(dvc_file: Path) -> list[Source]:
    """Parse the ``meta.sources`` block of ``dvc_file`` into :class:`Source` records."""
    doc = yaml.safe_load(Path(dvc_file).read_text()) or {}
    entries = (doc.get("meta") or {}).get("sources") or {}
    known = {f for f in Source.__dataclass_fields__ if f not in {"path", "extra"}}
    out = []
    for path, spec in entries.items():
        spec = dict(spec or {})
        if spec.get("kind") not in KINDS:
            raise ValueError(f"{dvc_file}: source {path!r} has kind {spec.get('kind')!r}; use one of {KINDS}")
        fields = {k: spec.pop(k) for k in list(spec) if k in known}
        fields = {k: (str(v) if k not in {"real"} else bool(v)) for k, v in fields.items()}
        out.append(Source(path=str(path), extra=spec, **fields))
    return out
