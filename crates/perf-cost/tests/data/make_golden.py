#!/usr/bin/env python3
"""Produce golden token counts for perf-cost with OpenAI's Python tiktoken, offline.

How the golden counts were produced (re-run to check them):

    pip install tiktoken            # version recorded in golden.json
    python3 crates/perf-cost/tests/data/make_golden.py

The rank files are the ones tiktoken-rs ships (its `assets/` directory in the cargo registry), loaded
with tiktoken's own `load_tiktoken_bpe`, so no network access is needed and both libraries use the
same vocabulary. The split patterns and special tokens are copied from tiktoken's
`tiktoken_ext/openai_public.py` (imported, not retyped). Corpus files are read as bytes and decoded
as UTF-8, so CRLF line ends are kept (text mode would rewrite them).

Counts are `len(enc.encode_ordinary(text))`: special-token text is counted as ordinary text, which is
what perf-cost counts. Generated cases (long repeated-character texts) are described in the JSON
by `repeat`, `times` and `suffix` (the text is `repeat * times + suffix`) instead of being stored
as files.
"""
import glob
import json
import os
import sys

import tiktoken
import tiktoken_ext.openai_public as public
from tiktoken.load import load_tiktoken_bpe

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["english.txt", "code.txt", "cjk.txt", "emoji.txt", "whitespace.txt"]
# (character, times, suffix). Python tiktoken (like tiktoken-rs) panics with a fancy-regex
# StackOverflow on 1 MiB of spaces, so whitespace runs stop at 256 KiB here.
GENERATED = [
    ("a", 1 << 20, ""),
    ("中", 1 << 17, ""),
    ("!", 1 << 18, ""),
    ("7", 1 << 18, ""),
    (" ", 1 << 16, ""),
    (" ", 1 << 18, "x"),
    ("\n", 1 << 16, ""),
    ("\t", 1 << 16, "end"),
]


def assets_dir():
    pattern = os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-0.12*/assets")
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"tiktoken-rs assets not found at {pattern}; run `cargo fetch` first")
    return found[-1]


def encodings():
    assets = assets_dir()
    out = {}
    for name, ctor, rank_file in [
        ("cl100k_base", public.cl100k_base, "cl100k_base.tiktoken"),
        ("o200k_base", public.o200k_base, "o200k_base.tiktoken"),
    ]:
        # The constructor returns the pat_str, special tokens and a (network) rank loader; we keep
        # the first two and give it the local rank file instead.
        original = public.load_tiktoken_bpe
        local = os.path.join(assets, rank_file)
        # expected_hash is OpenAI's sha256 of the published file: checking it proves tiktoken-rs's
        # copy is byte-identical to what OpenAI serves.
        public.load_tiktoken_bpe = lambda _url, expected_hash=None: load_tiktoken_bpe(
            local, expected_hash=expected_hash
        )
        try:
            spec = ctor()
        finally:
            public.load_tiktoken_bpe = original
        out[name] = tiktoken.Encoding(
            name,
            pat_str=spec["pat_str"],
            mergeable_ranks=spec["mergeable_ranks"],
            special_tokens=spec["special_tokens"],
        )
    return out


def chat_tokens(enc, messages, per_message=3, per_name=1):
    """The OpenAI cookbook's num_tokens_from_messages."""
    n = 0
    for m in messages:
        n += per_message
        for key, value in m.items():
            n += len(enc.encode_ordinary(value))
            if key == "name":
                n += per_name
    return n + 3


CHATS = {
    "simple": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "How much does gpt-4o cost per million tokens?"},
    ],
    "named": [
        {"role": "system", "content": "You translate English to French.", "name": "translator"},
        {"role": "user", "content": "Where is the library?", "name": "example_user"},
        {"role": "assistant", "content": "Où est la bibliothèque ?", "name": "example_assistant"},
        {"role": "user", "content": "東京はどこですか？ 🚀"},
    ],
}


def main():
    encs = encodings()
    cases = []
    for f in FILES:
        with open(os.path.join(HERE, f), "rb") as fh:
            text = fh.read().decode("utf-8")
        counts = {name: len(enc.encode_ordinary(text)) for name, enc in encs.items()}
        cases.append({"file": f, "bytes": len(text.encode("utf-8")), "counts": counts})
    for ch, times, suffix in GENERATED:
        text = ch * times + suffix
        counts = {name: len(enc.encode_ordinary(text)) for name, enc in encs.items()}
        cases.append({"repeat": ch, "times": times, "suffix": suffix, "counts": counts})
    chats = []
    for name, msgs in CHATS.items():
        chats.append({
            "name": name,
            "messages": msgs,
            "counts": {n: chat_tokens(e, msgs) for n, e in encs.items()},
        })
    out = {
        "produced_by": "crates/perf-cost/tests/data/make_golden.py",
        "tiktoken_version": tiktoken.__version__,
        "rank_files": "tiktoken-rs 0.12 assets/",
        "count": "len(encoding.encode_ordinary(text))",
        "cases": cases,
        "chats": chats,
    }
    with open(os.path.join(HERE, "golden.json"), "w", newline="\n") as fh:
        json.dump(out, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


if __name__ == "__main__":
    main()
