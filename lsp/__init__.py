"""ditto's language server: completion, inline completion and rewrite commands.

server.py builds the pygls server and adds one LanguageFeature (feature.py)
per module: each registers its handlers, keeps its own state and hears of
document events; shared pieces live in their own modules (suggestions.py,
edits.py, rewriting.py, results.py), never in another feature's.
scheduler.py owns the model on one thread; sessions.py maps documents to
sequences of the context; completer.py turns a document and a cursor into a
prompt, a decode and a suggestion.
"""
