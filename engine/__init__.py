"""ditto.engine: GGUF loading, tokenizer, sessions, drafters, scheduler."""
