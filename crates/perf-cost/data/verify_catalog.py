#!/usr/bin/env python3
"""Check data/catalog.toml against LiteLLM 1.109.1 and tokencost 0.1.26 price files.

    pip download litellm==1.109.1 --no-deps -d /tmp/litellm && (cd /tmp/litellm && unzip -o *.whl)
    pip download tokencost==0.1.26 --no-deps -d /tmp/tokencost && (cd /tmp/tokencost && unzip -o *.whl)
    python3 crates/perf-cost/data/verify_catalog.py /tmp/litellm /tmp/tokencost

Every price in the catalog must equal the source's per-token cost times one million; exits 1 on any
mismatch and prints which model and field differ.
"""
import glob
import json
import os
import sys
import tomllib
from decimal import Decimal

FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "batch_input": "input_cost_per_token_batches",
    "batch_output": "output_cost_per_token_batches",
    "batch_cached_input": "cache_read_input_token_cost_batches",
}


def load(root, name):
    path = glob.glob(os.path.join(root, "**", name), recursive=True)[0]
    with open(path) as fh:
        return json.load(fh)


def main():
    litellm = load(sys.argv[1], "model_prices_and_context_window_backup.json")
    tokencost = load(sys.argv[2], "model_prices.json")
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "catalog.toml"), "rb") as fh:
        catalog = tomllib.load(fh)
    bad = 0
    for model, entry in catalog["models"].items():
        src, origin = litellm.get(model), "litellm"
        if src is None:
            src, origin = tokencost.get(model), "tokencost"
        if src is None:
            print(f"{model}: in neither source")
            bad += 1
            continue
        for ours, theirs in FIELDS.items():
            if ours in entry:
                want = Decimal(str(src.get(theirs, "nan"))) * 1_000_000
                got = Decimal(str(entry[ours]))
                if want != got:
                    print(f"{model}.{ours}: catalog {got}, {origin} {want}")
                    bad += 1
        if entry.get("context_window") != src.get("max_input_tokens"):
            print(f"{model}.context_window: {entry.get('context_window')} vs {src.get('max_input_tokens')}")
            bad += 1
        if "deprecation" in entry and entry["deprecation"] != src.get("deprecation_date"):
            print(f"{model}.deprecation: {entry['deprecation']} vs {src.get('deprecation_date')}")
            bad += 1
        lc = entry.get("long_context")
        if lc:
            suffix = f"_above_{lc['threshold'] // 1000}k_tokens"
            for ours, theirs in [("input", "input_cost_per_token"), ("output", "output_cost_per_token"),
                                 ("cached_input", "cache_read_input_token_cost")]:
                if ours in lc:
                    want = Decimal(str(src.get(theirs + suffix, "nan"))) * 1_000_000
                    if want != Decimal(str(lc[ours])):
                        print(f"{model}.long_context.{ours}: {lc[ours]} vs {origin} {want}")
                        bad += 1
    print(f"{len(catalog['models'])} models checked, {bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
