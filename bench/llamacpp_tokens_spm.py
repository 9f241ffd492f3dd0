"""Regenerate tests/data/tokens/*.gemma3-ids.json: llama.cpp's token ids for
the .txt files there under a SentencePiece ("llama" tokenizer model)
vocabulary, the oracle for tests/test_tokenizer.py's SentencePiece cases.

    python bench/llamacpp_tokens_spm.py [--llama-bin-dir DIR] [--model GGUF]

The model defaults to Gemma 3 270M as `ditto model pull gemma3-270m` stores
it. Same llama-tokenize flags as bench/llamacpp_tokens.py (--no-parse-special
--no-bos --no-escape). Needs a llama.cpp build; CI only reads the JSON.
"""
from __future__ import annotations


from llamacpp_tokens import DATA, llama_version, parse_args, print_summary, token_record, write_record

import common  # bench/, the script's own folder
from ditto.engine.model_store import model_path

SUFFIX = ".gemma3-ids.json"


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "GGUF with a SentencePiece vocabulary (default: gemma3-270m)")
    model = common.resolve_model(args.model or str(model_path("gemma3-270m")))
    binary = args.llama_tokenize
    version = llama_version(binary)
    summary = {txt.name: write_record(token_record(binary, version, model, txt), txt, SUFFIX)
               for txt in sorted(DATA.glob("*.txt"))}
    print_summary(version, summary)

if __name__ == "__main__":
    main()
