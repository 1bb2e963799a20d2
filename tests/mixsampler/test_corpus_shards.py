"""Issue 20: jsonl/parquet corpora, a real (locally trained) BPE tokenizer, packed token shards."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os

import numpy as np
import pytest
import webdataset as wds

from mixsampler import TokenWindows, token_ids, write_shards
from mixsampler.cli import main
from mixsampler.corpus import CorpusFormatError, read_documents
from mixsampler.tokens import HFTokenizer

EOS = "<|endoftext|>"


def _documents(n: int = 60) -> list[str]:
    """Varied text, not written for this code: prose, code, unicode, blank lines, duplicates."""
    words = "the of mixture domain token läuft 数据 naïve café loss weight scale ✓".split()
    docs = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            docs.append(" ".join(words[(i * k) % len(words)] for k in range(5 + i % 13)) + ".")
        elif kind == 1:
            docs.append(f"def f{i}(x):\n    return x * {i}  # {words[i % len(words)]}\n")
        elif kind == 2:
            docs.append(f'{{"nested": "json text {i}", "n": [1, 2]}}\n\n\tindented {i}')
        else:
            docs.append(words[i % len(words)] * (1 + i % 9))
    docs[7] = docs[3]  # a duplicate: it must not straddle the split
    return docs


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    """A byte-level BPE trained here on the test's own text (nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_documents(200), trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def _encode(tokenizer_file: str, text: str) -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(tokenizer_file).encode(text, add_special_tokens=False).ids


def _write_corpus(folder, docs, kind: str) -> None:
    """Two files of ``kind`` with extra metadata fields, as SlimPajama/FineWeb ship them."""
    folder.mkdir(parents=True, exist_ok=True)
    halves = [docs[: len(docs) // 3], docs[len(docs) // 3 :]]
    for part, chunk in enumerate(halves):
        rows = [{"text": t, "meta": {"source": "x", "i": i}, "id": i} for i, t in enumerate(chunk)]
        if kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
            pq.write_table(table, folder / f"part-{part}.parquet", row_group_size=7)
            continue
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        name = folder / f"part-{part}.jsonl"
        if kind == "jsonl":
            name.write_bytes(data)
        elif kind == "jsonl.gz":
            (folder / f"part-{part}.jsonl.gz").write_bytes(gzip.compress(data))
        else:
            import zstandard

            (folder / f"part-{part}.jsonl.zst").write_bytes(zstandard.compress(data))


def _ids(paths) -> list[np.ndarray]:
    return [token_ids(s) for s in wds.WebDataset(paths, shardshuffle=False, empty_check=False)]


def _held_out(text: str, fraction: float) -> bool:
    """Reference for the split: SHA-1 of the text, first 8 bytes as a fraction of 2**64."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") < fraction * 2**64


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "jsonl.zst", "parquet"])
def test_shards_decode_back_to_the_documents_with_eos_between_them(kind, tokenizer_file, tmp_path):
    docs = _documents()
    _write_corpus(tmp_path / "corpus", docs, kind)
    size = 48
    r = write_shards(
        tmp_path / "corpus",
        tmp_path / "out",
        domain="web",
        tokenizer=tokenizer_file,
        chunk_tokens=size,
        val_fraction=0.25,
        samples_per_shard=5,
    )
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_file)
    eos = tok.token_to_id(EOS)  # the default --eos: the tokenizer's end-of-text token
    # Reference stream, computed independently: files in sorted order, documents in file
    # order, each one's ids and then the EOS; the split by the hash of the document's text.
    ordered = docs[: len(docs) // 3] + docs[len(docs) // 3 :]
    streams: dict[bool, list[int]] = {False: [], True: []}
    for text in ordered:
        streams[_held_out(text, 0.25)] += _encode(tokenizer_file, text) + [eos]
    for part, held in ((r, False), (r.val, True)):
        samples = _ids(part.paths)
        assert all(len(s) == size and s.dtype == np.uint16 for s in samples)
        got = np.concatenate(samples).tolist()
        want = streams[held]
        # ntok adds up to the corpus's tokens less at most one sample of tail.
        assert part.tokens == len(got) == len(want) - part.dropped_tokens
        assert 0 <= part.dropped_tokens < size
        assert got == want[: len(got)]
    # The validation split holds whole documents: its stream, cut at EOS, is documents.
    val_ids = np.concatenate(_ids(r.val.paths)).tolist()
    pieces, cur = [], []
    for i in val_ids:
        if i == eos:
            pieces.append(tok.decode(cur))
            cur = []
        else:
            cur.append(i)
    val_docs = {d for d in docs if _held_out(d, 0.25)}
    assert pieces and set(pieces) <= val_docs and not set(pieces) & (set(docs) - val_docs)
    assert docs[3] in val_docs or docs[3] not in pieces  # duplicates stay on one side
    assert r.documents + r.val.documents == len(docs)
    assert 0 < r.val.documents < len(docs)


def test_output_is_identical_for_1_and_4_workers(tokenizer_file, tmp_path, monkeypatch):
    import mixsampler.shards as shards

    monkeypatch.setattr(shards, "_JOB_DOCS", 5)  # many small jobs, so all workers get some
    docs = _documents(120)
    _write_corpus(tmp_path / "corpus", docs, "jsonl.zst")
    digests = []
    for n in (1, 4):
        r = write_shards(
            tmp_path / "corpus",
            tmp_path / f"out{n}",
            domain="d",
            tokenizer=tokenizer_file,
            chunk_tokens=32,
            val_fraction=0.2,
            samples_per_shard=4,
            workers=n,
        )
        paths = r.paths + r.val.paths
        assert len(paths) > 3
        digests.append(
            [(os.path.basename(p), hashlib.sha256(open(p, "rb").read()).hexdigest()) for p in paths]
        )
    assert digests[0] == digests[1]


def test_default_samples_are_blocks_of_16385_tokens_at_about_2_bytes_per_token(
    tokenizer_file, tmp_path
):
    docs = _documents(40) * 150  # ~ 100K tokens
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    r = write_shards(tmp_path / "c", tmp_path / "out", domain="d", tokenizer=tokenizer_file)
    samples = _ids(r.paths)
    assert r.dtype == "uint16" and all(len(s) == 16385 for s in samples)
    # Measured 2.xx: 2 bytes of id plus about 1.8 KiB of tar headers per 16,385 tokens and
    # the shard's end padding (one per shard, large here with only a few samples).
    overhead = r.shard_bytes - 2 * r.tokens
    assert overhead / r.samples < 2048 + 10240 / r.samples
    x, y = TokenWindows(seq_len=1024)(
        [{"bin": s.tobytes(), "ntok": str(len(s)).encode()} for s in samples[:2]]
    )
    assert x.shape == y.shape == (32, 1024) and x.dtype == y.dtype
    assert (x[:, 1:] == y[:, :-1]).all() and y[0, -1] == x[1, 0]  # windows overlap by one


def test_a_file_that_is_not_what_its_name_says_is_an_error_naming_it(tokenizer_file, tmp_path):
    cases = {
        "text.jsonl": (b"just some text\n", "text.jsonl line 1 is not JSON"),
        "plain.jsonl.gz": (b'{"text": "a"}\n', "plain.jsonl.gz is named as gzip-compressed"),
        "plain.jsonl.zst": (gzip.compress(b'{"text": "a"}\n'), "is named as zstd-compressed but"),
        "t.parquet": (b'{"text": "a"}\n', "t.parquet is named .parquet but is not a parquet"),
        "secret.txt": (gzip.compress(b"hello"), "secret.txt is a gzip file, not text"),
        "list.jsonl": (b'["text"]\n', "list.jsonl line 1 is a JSON list, expected an object"),
        "nofield.jsonl": (b'{"content": "a", "id": 3}\n', "has no 'text' field .*'content', 'id'"),
        "num.jsonl": (b'{"text": 5}\n', "field 'text' is a int, expected a string"),
        "bad.jsonl.gz": (b"\x1f\x8b\x08\x00garbage", "bad.jsonl.gz: cannot decompress it"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorpusFormatError, match=message):
            write_shards(path, tmp_path / "out", domain="d")
        assert not os.path.exists(tmp_path / "out") or not [
            p for p in os.listdir(tmp_path / "out") if p.endswith(".tar") or p.startswith(".st")
        ]
    # --text-field picks another field, and the line number is named past the first line.
    good = tmp_path / "ok.jsonl"
    good.write_text('{"content": "a b"}\n\n{"content": "c"}\n{"text": "x"}\n')
    with pytest.raises(CorpusFormatError, match=r"ok.jsonl line 4 has no 'content' field"):
        write_shards(good, tmp_path / "out", domain="d", text_field="content")
    first = itertools.islice(read_documents(str(good), "content"), 2)
    assert [(d.text, d.number) for d in first] == [("a b", 1), ("c", 3)]


def test_tokenizer_options_are_checked_and_a_folder_works(tokenizer_file, tmp_path):
    folder = tmp_path / "pretrained"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(open(tokenizer_file).read())
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": EOS}}))
    assert HFTokenizer(folder).eos_id == HFTokenizer(tokenizer_file).eos_id
    assert HFTokenizer(tokenizer_file, eos="7").eos_id == 7
    with pytest.raises(ValueError, match=r"eos \(--eos\) token '<nope>' is not in the vocab"):
        HFTokenizer(tokenizer_file, eos="<nope>")
    with pytest.raises(ValueError, match=r"eos \(--eos\) id 400 is outside the vocabulary"):
        HFTokenizer(tokenizer_file, eos=400)
    with pytest.raises(FileNotFoundError, match="holds no tokenizer.json"):
        HFTokenizer(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="bad.json cannot be loaded by tokenizers"):
        HFTokenizer(bad)
    doc = tmp_path / "d.txt"
    doc.write_text("hello")
    with pytest.raises(ValueError, match=r"eos \(--eos\) '1' needs a tokenizer"):
        write_shards(doc, tmp_path / "o", domain="d", eos="1")


def test_a_failure_part_way_keeps_the_old_shards_and_overwrite_clears_old_val(
    tokenizer_file, tmp_path
):
    corpus = tmp_path / "c"
    _write_corpus(corpus, _documents(), "jsonl")
    out = tmp_path / "out"
    first = write_shards(corpus, out, domain="d", chunk_tokens=40, val_fraction=0.3)
    before = {p: open(p, "rb").read() for p in first.paths + first.val.paths}
    (corpus / "zz-last.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(CorpusFormatError, match="zz-last.jsonl line 2 is not JSON"):
        write_shards(corpus, out, domain="d", chunk_tokens=20, val_fraction=0.3, overwrite=True)
    # Nothing new looks complete, nothing old is lost, no staging folder is left behind.
    assert {p: open(p, "rb").read() for p in before} == before
    assert sorted(os.listdir(out)) == sorted(
        [os.path.basename(p) for p in first.paths]
        + [f".{os.path.basename(p)}.idx" for p in first.paths]
        + ["val"]
    )
    os.remove(corpus / "zz-last.jsonl")
    # Overwrite without a split: the old validation shards (whose documents the new training
    # shards hold) are removed too.
    again = write_shards(corpus, out, domain="d", chunk_tokens=40, overwrite=True)
    assert again.val is None and not [p for p in os.listdir(out / "val") if p.endswith(".tar")]
    with pytest.raises(ValueError, match="already holds .* shards of domain 'd'"):
        write_shards(corpus, out, domain="d", chunk_tokens=40)


def test_cli_tokenizes_jsonl_zst_with_workers(tokenizer_file, tmp_path, capsys):
    _write_corpus(tmp_path / "web", _documents(), "jsonl.zst")
    _write_corpus(tmp_path / "code", _documents()[::-1], "parquet")
    args = ["shards", f"web={tmp_path / 'web'}", f"code={tmp_path / 'code'}"]
    args += ["-o", str(tmp_path / "out"), "--tokenizer", tokenizer_file, "--chunk-tokens", "33"]
    args += ["--workers", "2", "--val-fraction", "0.2", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("bytes/token") == 4 and "web\ttrain" in out and "code\tval" in out
    assert main(args[:-1] + ["--workers", "0", "-q"]) == 2
    assert "workers must be an integer >= 1, got 0" in capsys.readouterr().err


def test_jsonl_and_parquet_to_a_trainer_with_the_built_in_collate(tokenizer_file, tmp_path):
    """The LLM quick start: corpus + tokenizer.json -> shards -> MixtureDataModule -> Trainer."""
    import lightning.pytorch as pl
    import torch
    from torch import nn
    from torch.nn import functional as F

    from mixsampler import MixtureDataModule

    _write_corpus(tmp_path / "web", _documents(), "jsonl.gz")
    _write_corpus(tmp_path / "code", _documents()[::-1], "parquet")
    shards = {}
    for name in ("web", "code"):
        shards[name] = write_shards(
            tmp_path / name,
            tmp_path / "shards",
            domain=name,
            tokenizer=tokenizer_file,
            chunk_tokens=4 * 16 + 1,
            val_fraction=0.3,
        )

    class NanoLM(pl.LightningModule):  # a model with the common (idx, targets) signature
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.head = nn.Embedding(400, 8), nn.Linear(8, 400)
            self.shapes: list[tuple[int, ...]] = []

        def forward(self, idx, targets):
            logits = self.head(self.emb(idx))
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.shapes.append((*x.shape, x.dtype == torch.long, y.dtype == torch.long))
            return self(x, y)

        def validation_step(self, batch, batch_idx):
            return self(*batch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = MixtureDataModule(
        train={n: r.pattern for n, r in shards.items()},
        weights={"web": 0.7, "code": 0.3},
        val={n: r.val.pattern for n, r in shards.items()},
        batch_size=2,
        unit="tokens",
        collate_fn=TokenWindows(seq_len=16),
    )
    model = NanoLM()
    trainer = pl.Trainer(
        max_steps=3,
        limit_val_batches=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert model.shapes == [(8, 16, True, True)] * 3  # 2 samples x 4 windows of 16 tokens


def test_token_samples_that_do_not_add_up_are_errors_naming_shard_and_key():
    where = {"__key__": "000000007", "__url__": "s/web-000001.tar"}
    with pytest.raises(ValueError, match=r"'000000007' of shard s/web-000001.tar has no 'bin'"):
        token_ids({**where, "ntok": b"3"})
    with pytest.raises(ValueError, match=r"has no 'ntok' member"):
        TokenWindows(4)([{**where, "bin": b"abcdefgh"}])
    with pytest.raises(ValueError, match=r"7 bytes of 'bin' for ntok=3 tokens"):
        token_ids({**where, "bin": b"1234567", "ntok": b"3"})
    with pytest.raises(ValueError, match=r"holds 5 tokens, fewer than seq_len \+ 1 = 9"):
        TokenWindows(8)([{**where, "bin": b"12345", "ntok": b"5"}])
    with pytest.raises(ValueError, match="seq_len must be an integer >= 1, got 0"):
        TokenWindows(0)
    wide = np.array([70000, 1, 2], np.uint32)
    assert token_ids({"bin": wide.tobytes(), "ntok": b"3"}).tolist() == [70000, 1, 2]


def test_a_domain_is_not_confused_with_one_whose_name_extends_it(tmp_path):
    doc = tmp_path / "d.txt"
    doc.write_text("hello world")
    out = tmp_path / "out"
    write_shards(doc, out, domain="web-code")
    write_shards(doc, out, domain="web")  # web-code-000000.tar is not a shard of "web"
    write_shards(doc, out, domain="web", overwrite=True)
    assert sorted(p for p in os.listdir(out) if p.endswith(".tar")) == [
        "web-000000.tar",
        "web-code-000000.tar",
    ]


def test_workers_that_cannot_start_are_an_error_not_a_hang(tmp_path):
    """Code piped to python's stdin cannot be re-imported by a forkserver worker."""
    import subprocess
    import sys

    (tmp_path / "d.txt").write_text("some text " * 50)
    code = (
        "from mixsampler import write_shards\n"
        f"write_shards({str(tmp_path / 'd.txt')!r}, {str(tmp_path / 'o')!r}, domain='d',"
        " workers=2)\n"
    )
    run = subprocess.run(
        [sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert "WorkerError: a tokenizer worker process (workers=2) died or could not" in run.stderr
    assert os.listdir(tmp_path / "o") == []  # no shard, no staging folder left


def test_cli_worker_that_cannot_start_is_one_line_exit_1(tmp_path):
    """``mixsampler shards --workers 2`` whose workers cannot start (its main module is stdin,
    which a forkserver worker cannot import again; a worker killed for memory ends the same
    way): one line naming the cause, exit 1 (the machine, not the input), no traceback."""
    import subprocess
    import sys

    (tmp_path / "d.txt").write_text("some text " * 50)
    code = (
        "import sys\nfrom mixsampler.cli import main\n"
        f"sys.exit(main(['shards', 'd={tmp_path / 'd.txt'}', '-o', {str(tmp_path / 'o')!r},"
        " '--workers', '2', '-q']))\n"
    )
    run = subprocess.run(
        [sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1, run.stderr
    # the workers' own tracebacks may come first; the CLI's error is its last line, alone
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("mixsampler shards: error: a tokenizer worker process (workers=2)")
    assert "cli.py" not in run.stderr  # no traceback of the command itself
    # an OSError to the CLI (exit 1), still the RuntimeError library callers caught before
    from mixsampler.shards import WorkerError

    assert issubclass(WorkerError, OSError) and issubclass(WorkerError, RuntimeError)
    assert os.listdir(tmp_path / "o") == []
