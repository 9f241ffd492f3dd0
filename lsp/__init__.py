"""ditto's language server: completion, inline completion and rewrite commands.

server.py builds the pygls server and registers one module per feature;
scheduler.py owns the model on one thread; sessions.py maps documents to
sequences of the context; completer.py turns a document and a cursor into a
prompt, a decode and a suggestion.
"""
