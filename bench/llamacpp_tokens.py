"""Regenerate tests/data/tokens/*.ids.json: llama.cpp's token ids for the
.txt files there, the oracle for tests/test_tokenizer.py.

    python bench/llamacpp_tokens.py [--llama-tokenize PATH] [--model GGUF]

For every tests/data/tokens/<name>.txt it runs

    llama-tokenize -m MODEL -f <name>.txt --ids --log-disable \
        --no-parse-special --no-bos --no-escape

(--no-escape: the file is read verbatim, a backslash-n in source code stays two
characters; --no-parse-special: "<|im_end|>" in the text stays plain text;
--no-bos: no BOS, as the default model's GGUF says anyway) and writes
<name>.ids.json with the ids under "ids".

It also checks the other pre-tokenizers ditto implements: it writes copies of
the model's metadata with tokenizer.ggml.pre replaced (no tensors: llama-tokenize
loads the vocabulary only) and stores those ids under "pre_variants". The
splitting regexes do not depend on the vocabulary, so SmolLM2's vocabulary is
enough to pin them down.

Needs a llama.cpp build (bench/README.md); CI only reads the committed JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf

import common  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "tokens"
PRE_VARIANTS = ("qwen2", "gpt-2", "default", "llama3")


def llama_tokenize(binary: str, model: Path, text_file: Path) -> list[int]:
    cmd = [binary, "-m", str(model), "-f", str(text_file), "--ids", "--log-disable",
           "--no-parse-special", "--no-bos", "--no-escape"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"llama-tokenize failed on {text_file}:\n{res.stderr}")
    return json.loads(res.stdout.strip())


def token_record(binary: str, version: str, model: Path, text_file: Path) -> dict:
    """llama.cpp's ids for one file, with how they were made."""
    return {
        "source": "llama.cpp llama-tokenize",
        "llama_cpp_version": version,
        "command": "llama-tokenize -m MODEL -f FILE --ids --log-disable "
                   "--no-parse-special --no-bos --no-escape",
        "model": model.name,
        "ids": llama_tokenize(binary, model, text_file),
    }


def write_record(record: dict, text_file: Path, suffix: str) -> int:
    """Writes <name><suffix> next to the text; returns its token count."""
    out = text_file.parent / (text_file.stem + suffix)
    out.write_text(json.dumps(record, separators=(",", ":")) + "\n")
    return len(record["ids"])


def print_summary(version: str, summary: dict) -> None:
    json.dump({"llama_cpp_version": version, "tokens": summary}, sys.stdout, indent=1)
    print()


def llama_version(binary: str) -> str:
    res = subprocess.run([binary, "--version"], capture_output=True, text=True)
    lines = (res.stdout + res.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def vocab_only_copy(model: Path, pre: str, out: Path) -> None:
    """The model's metadata (no tensors) with tokenizer.ggml.pre = pre."""
    reader = gguf.GGUFReader(model)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = pre if name == "tokenizer.ggml.pre" else field.contents()
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, vtype, sub_type=sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def parse_args(description: str, model_help: str) -> argparse.Namespace:
    """--llama-bin-dir and --model, shared by the token-data scripts; args.model
    is None when not given, args.llama_tokenize the binary."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--llama-bin-dir", default=os.environ.get("LLAMA_CPP_BIN_DIR"),
                    help="directory with llama.cpp's llama-tokenize (default: $LLAMA_CPP_BIN_DIR)")
    ap.add_argument("--model", default=None, help=model_help)
    args = ap.parse_args()
    args.llama_tokenize = common.llama_binary(args.llama_bin_dir, "llama-tokenize")
    return args


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "GGUF (default: ditto's default model)")
    args.model = common.resolve_model(args.model)
    texts = sorted(DATA.glob("*.txt"))
    if not texts:
        raise SystemExit(f"no .txt inputs in {DATA}")
    version = llama_version(args.llama_tokenize)
    reader = gguf.GGUFReader(args.model)
    base_pre = reader.fields["tokenizer.ggml.pre"].contents()
    del reader
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        for pre in PRE_VARIANTS:
            path = Path(tmp) / f"vocab-{pre}.gguf"
            vocab_only_copy(args.model, pre, path)
            variants[pre] = path
        summary = {}
        for txt in texts:
            record = token_record(args.llama_tokenize, version, args.model, txt)
            record["pre"] = base_pre
            record["pre_variants"] = {pre: llama_tokenize(args.llama_tokenize, path, txt)
                                      for pre, path in variants.items()}
            summary[txt.name] = write_record(record, txt, ".ids.json")
    print_summary(version, summary)


if __name__ == "__main__":
    main()
