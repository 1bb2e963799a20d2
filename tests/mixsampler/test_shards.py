"""write_shards and ``mixsampler shards`` (issue 3, point 8)."""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest
import webdataset as wds

from mixsampler import MixtureDataset, write_shards
from mixsampler.cli import main


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    texts = {
        "b.txt": "second file, with ünïcode\n",
        "a.txt": "first file\n" * 5,
        "sub/c.md": "third " * 40,
        "empty.txt": "",
        ".hidden": "never read",
    }
    for name, text in texts.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def _read(paths):
    return list(wds.WebDataset(paths, shardshuffle=False))


def test_one_sample_per_file_in_sorted_order_with_token_counts(corpus, tmp_path):
    result = write_shards([corpus], tmp_path / "out", domain="web", samples_per_shard=2)
    assert [os.path.basename(p) for p in result.paths] == ["web-000000.tar", "web-000001.tar"]
    samples = _read(result.paths)
    expected = [
        (corpus / n).read_bytes() for n in ("a.txt", "b.txt", "sub/c.md")
    ]  # sorted paths; empty and hidden files skipped
    assert [s["bin"] for s in samples] == expected
    assert [int(s["ntok"]) for s in samples] == [len(b) for b in expected]
    assert set(samples[0]) == {"__key__", "__url__", "__local_path__", "bin", "ntok"}
    assert (result.samples, result.tokens, result.files) == (3, sum(map(len, expected)), 4)
    assert result.skipped_files == 1
    assert result.pattern.endswith("web-{000000..000001}.tar")


def test_chunks_have_exactly_chunk_tokens_bytes_and_the_tail_is_reported(corpus, tmp_path):
    result = write_shards(corpus, tmp_path / "out", domain="web", chunk_tokens=16)
    stream = b"\n".join(
        (corpus / n).read_bytes() for n in ("a.txt", "b.txt", "sub/c.md")
    )  # empty.txt adds nothing
    samples = _read(result.paths)
    assert all(len(s["bin"]) == 16 and s["ntok"] == b"16" for s in samples)
    assert b"".join(s["bin"] for s in samples) == stream[: 16 * len(samples)]
    assert result.dropped_tokens == len(stream) % 16
    assert result.tokens == 16 * result.samples


def test_output_is_deterministic_and_feeds_the_tokens_unit(corpus, tmp_path):
    def digest(folder):
        result = write_shards(corpus, folder, domain="d", chunk_tokens=8, samples_per_shard=7)
        return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in result.paths], result

    first, result = digest(tmp_path / "x")
    second, _ = digest(tmp_path / "y")
    assert first == second
    ds = MixtureDataset({"d": result.pattern, "e": range(100)}, {"d": 1, "e": 0})
    assert all(int(s["ntok"]) == 8 for s in itertools.islice(ds, 5))
    tokens = MixtureDataset({"d": result.paths}, {"d": 1}, unit="tokens")
    next(iter(tokens))
    assert tokens.counts()["tokens"]["d"] == 8


def test_bad_inputs_get_clear_messages(corpus, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="input .*nope does not exist"):
        write_shards([tmp_path / "nope"], out, domain="web")
    with pytest.raises(FileNotFoundError, match="matches no files"):
        write_shards([str(tmp_path / "*.zzz")], out, domain="web")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8 text: invalid byte at offset 3"):
        write_shards([bad], out, domain="web")
    with pytest.raises(ValueError, match="chunk_tokens must be a positive integer"):
        write_shards(corpus, out, domain="web", chunk_tokens=0)
    with pytest.raises(ValueError, match="domain must be a name"):
        write_shards(corpus, out, domain="a/b")
    with pytest.raises(ValueError, match="fewer than chunk_tokens=100000"):
        write_shards(corpus, out, domain="web", chunk_tokens=100000)
    write_shards(corpus, out, domain="web")
    with pytest.raises(ValueError, match="already holds 1 shards of domain 'web'"):
        write_shards(corpus, out, domain="web")
    write_shards(corpus, out, domain="web", overwrite=True)


def test_cli_writes_each_domain(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "shards",
            f"web={corpus / 'a.txt'}",
            f"web={corpus / 'b.txt'}",
            f"code={corpus / 'sub'}",
            "-o",
            str(out),
            "--chunk-tokens",
            "8",
            "--samples-per-shard",
            "3",
            "-q",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "web\t" in printed and "code\t" in printed and "code-{000000..000009}.tar" in printed
    assert sorted(os.listdir(out))[:2] == ["code-000000.tar", "code-000001.tar"]
    assert main(["shards", "nodomain", "-o", str(out)]) == 2
    assert "inputs are DOMAIN=PATH" in capsys.readouterr().err
