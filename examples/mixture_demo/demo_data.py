"""The demo's default data: real text that every Python installation has, no download.

Four training domains and one held-out target, read byte-level (vocabulary 256):

- ``python``: Python source of the standard library (``sysconfig.get_paths()["stdlib"]``),
- ``cpp``: the C++ headers shipped with torch (``torch/include``),
- ``prose``: English prose of Python's reference documentation (``pydoc_data.topics``),
- ``licenses``: licence texts of the installed packages (deduplicated by content),
- ``readme`` (target only, never trained on, like the paper's OpenHermes): the long
  descriptions of the installed packages (their README text).

Where each domain's documents come from is :mod:`demo_texts`; this module selects,
splits and shards them.

Selection is deterministic for a given installation: documents are ordered by a hash of their
name (so a byte cap takes a spread of packages rather than the alphabet's first letters),
each document is truncated to ``doc_cap`` bytes, and whole documents go to validation until
its cap is met, the rest to training until its cap is met (a split by file, so no validation
text is ever trained on). Each (domain, split) is joined into one text file and cut into
samples of ``seqs_per_sample`` sequences of ``seq_len + 1`` bytes each by
:func:`mixsampler.write_shards`. A manifest records every
document used and its bytes, for the report.

Example:
    >>> from demo_data import DataConfig, build_default_data
    >>> data = build_default_data("demo_out/data", DataConfig(seq_len=64))  # doctest: +SKIP
    >>> data.train_domains  # doctest: +SKIP
    ('cpp', 'licenses', 'prose', 'python')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from demo_texts import SOURCES, LazyText

from mixsampler.checks import check_int

log = logging.getLogger(__name__)

# Separates documents inside one domain's text stream; a sample may straddle two documents,
# as in any packed pretraining stream.
_DOC_SEP = "\n\n"


@dataclass(frozen=True)
class DataConfig:
    """How much of each source the demo takes.

    Attributes:
        seq_len: training context; a sequence is ``seq_len + 1`` bytes (input and shifted
            target).
        seqs_per_sample: sequences packed into one shard sample. Each tar member costs two
            header parses in Python; with one 65-byte sequence per sample, reading the shards
            took a quarter of a proxy run's CPU time. The model unpacks them.
        train_cap: training bytes per domain at most. Domains smaller than the cap keep what
            they have, so the natural mixture (proportional to data) is not uniform.
        val_cap: validation bytes per domain (and for the target); the same fixed set is
            scored at every validation, so its noise is common to all runs.
        doc_cap: bytes kept from the start of each document, so one huge file cannot fill a
            domain's cap alone.
        large_domain: the domain that dominates the natural mixture, as CommonCrawl's 52 % of
            SlimPajama: torch's C++ headers, the largest source by 3x (38 MB here), mostly
            boilerplate (licence headers, includes, macros), so the natural mixture is mostly
            plentiful text of doubtful value; the fitted law says what it is worth.
        large_cap: training bytes of ``large_domain`` (instead of ``train_cap``); 3.3 MB
            against 2 MB of Python and the two small domains gives it about 52 % of the
            natural mixture.
    """

    seq_len: int = 64
    seqs_per_sample: int = 4
    train_cap: int = 2_000_000
    val_cap: int = 8_192
    doc_cap: int = 32_768
    large_domain: str = "cpp"
    large_cap: int = 3_300_000

    def __post_init__(self) -> None:
        for name in (
            "seq_len",
            "seqs_per_sample",
            "train_cap",
            "val_cap",
            "doc_cap",
            "large_cap",
        ):
            check_int(name, getattr(self, name), low=1)
        names = [s.name for s in SOURCES if not s.target]
        if self.large_domain not in names:
            raise ValueError(
                f"large_domain must be one of the training domains {names}, "
                f"got {self.large_domain!r}"
            )
        if self.val_cap < self.sample_bytes:
            raise ValueError(
                f"val_cap must hold at least one sample of seqs_per_sample x (seq_len + 1) = "
                f"{self.sample_bytes} bytes, got {self.val_cap}"
            )

    @property
    def sample_bytes(self) -> int:
        """Bytes of one shard sample (``chunk_tokens`` of :func:`mixsampler.write_shards`)."""
        return self.seqs_per_sample * (self.seq_len + 1)


@dataclass
class DomainData:
    """One domain's shards and what went into them.

    Attributes:
        name: domain name (the run table's ``weight_<name>`` / ``<name>_loss``).
        source: where the text came from, in words.
        train: shard folder for training, or None for a held-out target.
        val: shard folder for validation.
        train_bytes: bytes of training text written (the natural mixture is proportional).
        val_bytes: bytes of validation text written.
        train_docs: names of the documents used for training.
        val_docs: names of the documents used for validation.
        available_bytes: bytes the source had before the caps (None if not measured).
        train_sha256: SHA-256 of the training text (embedded data) or of the training shards'
            bytes in name order (``--data``); None for a held-out target.
        val_sha256: the same for the validation split.
    """

    name: str
    source: str
    train: str | None
    val: str
    train_bytes: int = 0
    val_bytes: int = 0
    train_docs: list[str] = field(default_factory=list)
    val_docs: list[str] = field(default_factory=list)
    available_bytes: int | None = None
    train_sha256: str | None = None
    val_sha256: str = ""


@dataclass
class DemoData:
    """The demo's domains: training domains plus held-out targets.

    Attributes:
        domains: by name, in sorted order.
        origin: "embedded" (built from the installation) or the user's ``--data`` folder.
        config: the DataConfig used (embedded data only).
    """

    domains: dict[str, DomainData]
    origin: str
    config: dict[str, Any] | None = None

    @property
    def train_domains(self) -> tuple[str, ...]:
        return tuple(n for n, d in self.domains.items() if d.train is not None)

    @property
    def targets(self) -> tuple[str, ...]:
        """Held-out targets: evaluated, never trained on."""
        return tuple(n for n, d in self.domains.items() if d.train is None)

    def train_sizes(self) -> dict[str, float]:
        """Each training domain's training bytes: D's unit too, since the models read bytes
        (the optimizer's and the plan's ``available``)."""
        return {n: float(self.domains[n].train_bytes) for n in self.train_domains}

    def natural_weights(self) -> dict[str, float]:
        """The mixture proportional to the training data each domain has."""
        sizes = self.train_sizes()
        total = sum(sizes.values())
        if total <= 0:
            raise ValueError(f"training domains have no data: {sizes}")
        return {n: s / total for n, s in sizes.items()}

    def fingerprint(self) -> str:
        """One hash of every split of every domain: two reports with the same fingerprint
        trained and validated on byte-identical data (the embedded text depends on the
        installation: its packages' READMEs and licences).

        Example:
            >>> DemoData({}, "x").fingerprint()
            'e3b0c44298fc'
        """
        h = hashlib.sha256()
        for name, d in sorted(self.domains.items()):
            h.update(f"{name}:{d.train_sha256}:{d.val_sha256};".encode())
        return h.hexdigest()[:12] if self.domains else hashlib.sha256().hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint(),
            "origin": self.origin,
            "config": self.config,
            "domains": {n: asdict(d) for n, d in self.domains.items()},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DemoData:
        return cls(
            domains={n: DomainData(**d) for n, d in obj["domains"].items()},
            origin=obj["origin"],
            config=obj.get("config"),
        )


def _sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()


def _valid_utf8(raw: bytes) -> bytes:
    # A byte cut may split a multi-byte character; drop its partial bytes.
    return raw.decode("utf-8", errors="ignore").encode("utf-8")


def _order_key(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def select_documents(
    docs: Iterator[tuple[str, str | LazyText]],
    *,
    train_cap: int,
    val_cap: int,
    doc_cap: int,
    target: bool,
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], int]:
    """Split documents by file into (train, val) under byte caps; deterministic.

    Returns:
        ``(train, val, available_bytes)``, lists of ``(name, utf8 bytes)``.

    Example:
        >>> docs = iter([("a", "x" * 10), ("b", "y" * 10), ("c", "z" * 10)])
        >>> tr, va, avail = select_documents(docs, train_cap=15, val_cap=3, doc_cap=8,
        ...                                  target=False)
        >>> va, tr, avail
        ([('c', b'z')], [('a', b'xxxxxxxx'), ('b', b'yyyyyyyy')], 30)
    """
    items = sorted(docs, key=lambda d: _order_key(d[0]))
    available = 0
    train: list[tuple[str, bytes]] = []
    val: list[tuple[str, bytes]] = []
    n_train = n_val = 0
    # Validation takes a window of at most val_cap / 8 bytes from the middle of each document:
    # at least 8 documents per domain, and bodies rather than the licence headers and
    # imports that open most files.
    val_window = max(1, val_cap // 8)
    for name, doc in items:
        if isinstance(doc, LazyText):
            available += doc.size
            if n_val >= val_cap and (target or n_train >= train_cap):
                continue  # files are read only when selected: the headers alone are 40 MB
            raw = doc.read().encode("utf-8")
        else:
            raw = doc.encode("utf-8")
            available += len(raw)
        if n_val < val_cap:
            start = max(0, (len(raw) - val_window) // 2)
            raw = _valid_utf8(raw[start : start + val_window])
            val.append((name, raw))
            n_val += len(raw) + len(_DOC_SEP)
        elif not target and n_train < train_cap:
            raw = _valid_utf8(raw[:doc_cap])
            train.append((name, raw))
            n_train += len(raw) + len(_DOC_SEP)
    return train, val, available


def _write_split(
    docs: list[tuple[str, bytes]], cap: int, raw_dir: Path, shard_dir: Path, domain: str, T: int
) -> tuple[int, str]:
    from mixsampler import write_shards

    # write_shards needs valid UTF-8: the cap must not leave half a character.
    blob = _valid_utf8(_DOC_SEP.encode().join(raw for _, raw in docs)[:cap])
    if len(blob) < T:
        raise ValueError(f"domain {domain!r} has less than one sample ({T} bytes) of text")
    raw_dir.mkdir(parents=True, exist_ok=True)
    text_path = raw_dir / f"{domain}.txt"
    text_path.write_bytes(blob)
    shard_dir.mkdir(parents=True, exist_ok=True)
    res = write_shards(
        [str(text_path)], str(shard_dir), domain=domain, chunk_tokens=T, overwrite=True
    )
    # The tail shorter than one sample is dropped by write_shards: count only what is used.
    return int(res.tokens), hashlib.sha256(blob).hexdigest()


def build_default_data(out_dir: str | os.PathLike[str], cfg: DataConfig) -> DemoData:
    """Build (or reuse) the embedded demo data under ``out_dir``.

    A ``manifest.json`` records the config, every document used and the bytes per split;
    when it matches ``cfg`` the shards are reused.
    """
    out = Path(out_dir)
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            cached = DemoData.from_json(json.loads(manifest.read_text()))
            paths = [d.val for d in cached.domains.values()]
            paths += [d.train for d in cached.domains.values() if d.train]
            if cached.config == asdict(cfg) and all(any(Path(p).glob("*.tar")) for p in paths):
                return cached
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
            log.debug("rebuilding demo data, manifest unusable: %s", err)
    T = cfg.sample_bytes
    domains: dict[str, DomainData] = {}
    for src in SOURCES:
        cap = cfg.large_cap if src.name == cfg.large_domain else cfg.train_cap
        train, val, available = select_documents(
            src.docs(),
            train_cap=cap,
            val_cap=cfg.val_cap,
            doc_cap=cfg.doc_cap,
            target=src.target,
        )
        if not val or (not src.target and not train):
            raise ValueError(
                f"demo data: domain {src.name!r} ({src.description}) found too little text "
                f"in this installation ({available} bytes)"
            )
        dom = DomainData(
            name=src.name,
            source=src.description,
            train=None,
            val=str(out / "shards" / src.name / "val"),
            available_bytes=available,
            val_docs=[n for n, _ in val],
        )
        dom.val_bytes, dom.val_sha256 = _write_split(
            val, cfg.val_cap, out / "text" / "val", Path(dom.val), src.name, T
        )
        if not src.target:
            dom.train = str(out / "shards" / src.name / "train")
            dom.train_docs = [n for n, _ in train]
            dom.train_bytes, dom.train_sha256 = _write_split(
                train, cap, out / "text" / "train", Path(dom.train), src.name, T
            )
        domains[src.name] = dom
    data = DemoData(domains=dict(sorted(domains.items())), origin="embedded", config=asdict(cfg))
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(data.to_json(), indent=1))
    return data


def load_user_data(data_dir: str | os.PathLike[str]) -> DemoData:
    """Read a user's shards laid out as ``DIR/<domain>/train/*.tar`` and ``DIR/<domain>/val/*.tar``.

    A domain with ``val/`` but no ``train/`` is a held-out target (evaluated, never trained
    on). The natural mixture is proportional to the bytes of each domain's training shards.
    Shards are the ones :func:`mixsampler.write_shards` (``mixsampler shards``) writes, cut
    with ``chunk_tokens`` a multiple of ``seq_len + 1`` (each sample holds whole sequences).

    Example:
        >>> load_user_data("my_shards")  # doctest: +SKIP
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--data: {root} is not a directory")
    domains: dict[str, DomainData] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        train, val = sub / "train", sub / "val"
        val_tars = sorted(val.glob("*.tar")) if val.is_dir() else []
        train_tars = sorted(train.glob("*.tar")) if train.is_dir() else []
        if not val_tars:
            raise ValueError(
                f"--data: domain {sub.name!r} has no validation shards in {val} "
                f"(expected {sub}/val/*.tar, and {sub}/train/*.tar for a training domain)"
            )
        domains[sub.name] = DomainData(
            name=sub.name,
            source=str(sub),
            train=str(train) if train_tars else None,
            val=str(val),
            train_bytes=sum(p.stat().st_size for p in train_tars),
            val_bytes=sum(p.stat().st_size for p in val_tars),
            train_docs=[p.name for p in train_tars],
            val_docs=[p.name for p in val_tars],
            train_sha256=_sha256_files(train_tars) if train_tars else None,
            val_sha256=_sha256_files(val_tars),
        )
    data = DemoData(domains=domains, origin=str(root))
    if len(data.train_domains) < 2:
        raise ValueError(
            f"--data: need at least 2 training domains (DIR/<domain>/train/*.tar), "
            f"found {list(data.train_domains)} in {root}"
        )
    return data
