"""ditto.engine: GGUF loading, tokenizer, decode loop, drafters, rewrites (sessions and the
scheduler belong to the language server, in ditto.lsp)."""
