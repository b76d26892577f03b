"""A small pure-Python reader of NCBI BLAST protein databases (format version 4: .pin/.phr/.psq).

Enough to read the Swiss-Prot sequences shipped in Debian's ``metastudent-data`` without
installing ``ncbi-blast+``. Layout (all integers big-endian unless said):

- ``.pin``: version (4), type (1 = protein), title and timestamp (length-prefixed strings),
  number of sequences N, total residues (8 bytes, little-endian), longest sequence, then N+1
  header offsets (into .phr) and N+1 sequence offsets (into .psq).
- ``.phr``: per sequence an ASN.1 BER ``Blast-def-line-set``; the first ``VisibleString`` (tag
  0x1a) is the definition-line title (here ``ACCESSION|GO:...``).
- ``.psq``: residues in NCBIstdaa codes, one byte each, sequences separated by a 0 byte.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scprior.errors import ScpriorInputError
from scprior.safe_io import atomic_path

#: NCBIstdaa code -> one-letter amino acid ('-' gap 0, '*' stop 25)
NCBISTDAA = "-ABCDEFGHIKLMNPQRSTVWXYZU*OJ"
_DECODE = np.frombuffer(NCBISTDAA.encode(), dtype=np.uint8)


@dataclass(frozen=True)
class BlastDbIndex:
    """Parsed ``.pin``: title, sequence count and the header/sequence offset arrays (N+1 each)."""

    title: str
    timestamp: str
    n_sequences: int
    total_residues: int
    max_length: int
    header_offsets: np.ndarray
    sequence_offsets: np.ndarray


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">i", buf, pos)
    return buf[pos + 4: pos + 4 + n].decode("latin-1"), pos + 4 + n


def read_index(pin_path: str | os.PathLike) -> BlastDbIndex:
    """Parse a protein ``.pin`` index file."""
    buf = Path(pin_path).read_bytes()
    if len(buf) < 12:
        raise ScpriorInputError(f"{pin_path} is too short to be a BLAST index.")
    version, db_type = struct.unpack_from(">ii", buf, 0)
    if version != 4:
        raise ScpriorInputError(f"{pin_path}: BLAST db format version {version}; only version 4 is read here.")
    if db_type != 1:
        raise ScpriorInputError(f"{pin_path} is a nucleotide BLAST db; a protein db (.pin) is needed.")
    title, pos = _string(buf, 8)
    timestamp, pos = _string(buf, pos)
    (n,) = struct.unpack_from(">i", buf, pos)
    (total,) = struct.unpack_from("<q", buf, pos + 4)
    (max_len,) = struct.unpack_from(">i", buf, pos + 12)
    pos += 16
    hoff = np.frombuffer(buf, dtype=">i4", count=n + 1, offset=pos).astype(np.int64)
    soff = np.frombuffer(buf, dtype=">i4", count=n + 1, offset=pos + 4 * (n + 1)).astype(np.int64)
    return BlastDbIndex(title, timestamp, int(n), int(total), int(max_len), hoff, soff)


def _ber_title(record: bytes) -> str:
    """The first VisibleString (tag 0x1a) of one BER-encoded Blast-def-line-set."""
    k = record.find(b"\x1a")
    if k < 0:
        return ""
    k += 1
    length = record[k]
    k += 1
    if length & 0x80:
        nbytes = length & 0x7F
        length = int.from_bytes(record[k: k + nbytes], "big")
        k += nbytes
    return record[k: k + length].decode("latin-1")


class BlastProteinDb:
    """Read-only access to a protein BLAST db given its base path (``.../goasp.fasta``).

    ``titles()`` gives every definition-line title (cheap); ``sequence(i)`` decodes one sequence.
    """

    def __init__(self, base: str | os.PathLike) -> None:
        base = Path(base)
        self.paths = {ext: base.with_name(base.name + ext) for ext in (".pin", ".phr", ".psq")}
        lacking = [str(p) for p in self.paths.values() if not p.is_file()]
        if lacking:
            raise ScpriorInputError(f"BLAST db files missing: {lacking}; run `python -m scprior.data.fetch`.")
        self.index = read_index(self.paths[".pin"])
        self._psq: np.memmap | None = None

    def __len__(self) -> int:
        return self.index.n_sequences

    def titles(self) -> list[str]:
        """Definition-line title of every sequence, in database order."""
        phr = self.paths[".phr"].read_bytes()
        off = self.index.header_offsets
        return [_ber_title(phr[off[i]: off[i + 1]]) for i in range(len(self))]

    def accessions(self) -> list[str]:
        """The first ``|``-separated field of every title (the accession in metastudent's files)."""
        return [t.split("|", 1)[0].split()[0] if t else "" for t in self.titles()]

    def sequence(self, i: int) -> str:
        """Amino-acid sequence of database entry ``i`` (one-letter codes)."""
        if not 0 <= i < len(self):
            raise IndexError(f"sequence {i} out of range (0..{len(self) - 1})")
        if self._psq is None:
            self._psq = np.memmap(self.paths[".psq"], dtype=np.uint8, mode="r")
        start, stop = self.index.sequence_offsets[i], self.index.sequence_offsets[i + 1]
        codes = np.asarray(self._psq[start:stop])
        codes = codes[codes != 0]  # the 0-byte separator (and any gap code)
        if codes.size and codes.max() >= len(NCBISTDAA):
            raise ScpriorInputError(f"{self.paths['.psq']}: residue code {int(codes.max())} is not NCBIstdaa.")
        return _DECODE[codes].tobytes().decode("ascii")


def write_protein_db(base: str | os.PathLike, records: list[tuple[str, str]], *, title: str = "test") -> None:
    """Write ``[(title, sequence)]`` as a version-4 protein BLAST db (for tests and fixtures).

    Produces the same layout ``makeblastdb -dbtype prot`` writes without ``-parse_seqids``
    (local ids), restricted to what :class:`BlastProteinDb` reads.
    """
    base = Path(base)
    code = {c: i for i, c in enumerate(NCBISTDAA)}
    phr, psq = bytearray(), bytearray(b"\x00")
    hoff, soff = [0], [1]
    for oid, (name, seq) in enumerate(records):
        text = name.encode("latin-1")
        length = bytes([len(text)]) if len(text) < 0x80 else bytes([0x82]) + len(text).to_bytes(2, "big")
        phr += (b"\x30\x80\x30\x80\xa0\x80\x1a" + length + text + b"\x00\x00"
                + b"\xa1\x80\xa0\x80\x02\x01" + bytes([oid % 128]) + b"\x00" * 10)
        hoff.append(len(phr))
        psq += bytes(code[c] for c in seq) + b"\x00"
        soff.append(len(psq))
    title_b, stamp = title.encode(), b"Jan 1, 2000  0:00 AM"
    pin = struct.pack(">ii", 4, 1) + struct.pack(">i", len(title_b)) + title_b
    pin += struct.pack(">i", len(stamp)) + stamp
    pin += struct.pack(">i", len(records)) + struct.pack("<q", sum(len(s) for _, s in records))
    pin += struct.pack(">i", max((len(s) for _, s in records), default=0))
    pin += np.asarray(hoff, dtype=">i4").tobytes() + np.asarray(soff, dtype=">i4").tobytes()
    for ext, payload in ((".pin", pin), (".phr", bytes(phr)), (".psq", bytes(psq))):
        with atomic_path(base.with_name(base.name + ext)) as tmp:
            tmp.write_bytes(payload)
