// Drives `ditto serve` over stdio with VS Code's own protocol stack
// (vscode-languageserver-protocol + vscode-jsonrpc, the packages
// vscode-languageclient is built on), the way the extension does:
//
//   - the server is started with the command, arguments, environment and
//     initializationOptions the extension computes (out/config.js, compiled
//     from src/config.ts, with VS Code's defaults from package.json);
//   - initialize with the client capabilities vscode-languageclient 11 sends
//     (window.workDoneProgress, workspaceEdit.documentChanges, inlineCompletion);
//   - didChangeConfiguration as the extension sends it on a settings change;
//   - textDocument/inlineCompletion and textDocument/completion;
//   - ditto.rewriteFile: window/workDoneProgress/create and $/progress are
//     answered and recorded, workspace/applyEdit is applied to the document as
//     VS Code does (versioned documentChanges) and answered {applied: true};
//   - a rewrite cancelled with window/workDoneProgress/cancel (the
//     extension's Cancel button) and one cancelled with $/cancelRequest leave
//     the document unchanged;
//   - ditto.status;
//   - ditto/didFocus as the extension sends it for the editor in front
//     (out/focus.js): the server prefills the prompt at that cursor.
//
// Every request has a timeout (Promise.race). Prints one JSON line with what
// happened; exits 1 with the reason on the first failed check.
//
// Usage: node test/protocol.mjs FILE   (environment: DITTO_SERVER_PATH,
// DITTO_VSCODE_SETTINGS = JSON of ditto.* settings without the prefix)
import {
    CancellationTokenSource,
    CompletionRequest,
    DidChangeConfigurationNotification,
    DidChangeTextDocumentNotification,
    DidOpenTextDocumentNotification,
    ExecuteCommandRequest,
    InlineCompletionRequest,
    InlineCompletionTriggerKind,
    WorkDoneProgressCancelNotification,
} from 'vscode-languageserver-protocol/node';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { applyAndSend, check, closeSession, currentSettings, openSession, trail, userSettings, waitFor, withTimeout } from './lsp_client.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { DID_FOCUS, FocusTracker } = createRequire(import.meta.url)(join(root, 'out', 'focus.js'));

async function main() {
    const source = process.argv[2];
    check(source, 'usage: node test/protocol.mjs FILE');
    let editsAllowed = true;
    const { doc, conn, proc, cmd, log, request, init } = await openSession(source, (params, doc) => {
        if (!editsAllowed) {
            return { applied: false, failureReason: 'the test did not expect an edit now' };
        }
        const { edit } = params;
        if (edit.documentChanges) {
            for (const change of edit.documentChanges) {
                if (change.textDocument.uri !== doc.uri) return { applied: false, failureReason: 'unknown document' };
                if (change.textDocument.version !== null && change.textDocument.version !== doc.version) {
                    return { applied: false, failureReason: `version ${change.textDocument.version} != ${doc.version}` };
                }
            }
            applyAndSend(conn, doc, edit.documentChanges.flatMap((change) => change.edits));
        } else if (edit.changes) {
            for (const uri of Object.keys(edit.changes)) {
                if (uri !== doc.uri) return { applied: false, failureReason: 'unknown document' };
            }
            applyAndSend(conn, doc, Object.values(edit.changes).flat());
        }
        return { applied: true };
    });
    const caps = init.capabilities;
    check(caps.inlineCompletionProvider, 'the server does not advertise inlineCompletionProvider');
    check(caps.completionProvider, 'the server does not advertise completionProvider');
    const commands = caps.executeCommandProvider?.commands ?? [];
    for (const c of ['ditto.rewriteFile', 'ditto.status']) check(commands.includes(c), `${c} is not advertised`);
    const syncKind = typeof caps.textDocumentSync === 'number' ? caps.textDocumentSync : caps.textDocumentSync?.change;
    check(syncKind === 2, `textDocumentSync is ${JSON.stringify(caps.textDocumentSync)}, not incremental`);

    // A settings change, as the extension sends it (the whole ditto section).
    userSettings.maxTokens = Number(userSettings.maxTokens ?? 12);
    conn.sendNotification(DidChangeConfigurationNotification.type, { settings: { ditto: currentSettings() } });

    conn.sendNotification(DidOpenTextDocumentNotification.type, {
        textDocument: { uri: doc.uri, languageId: 'python', version: doc.version, text: doc.text },
    });

    // The extension's status bar asks ditto.status once the client runs; its
    // answer comes when the model is loaded (a completion sent before that
    // spends its time budget waiting for the load and comes back empty).
    const first = await request(ExecuteCommandRequest.type, { command: 'ditto.status', arguments: [] }, 'ditto.status', 120_000);
    check(first?.model?.name, `ditto.status has no model name: ${JSON.stringify(first)}`);

    // At the end of the first line that opens a block: the model has to write the body.
    const lines = doc.text.split('\n');
    const blockLine = lines.findIndex((l) => /:\s*$/.test(l));
    check(blockLine >= 0, 'the test file needs a line ending with ":"');

    // ---- ditto/didFocus: the editor is in front with its cursor there ----
    const focus = new FocusTracker();
    conn.sendNotification(DID_FOCUS, focus.activated(doc.uri, blockLine, lines[blockLine].length));
    check(focus.moved(doc.uri, blockLine + 1, 0) === undefined, 'a cursor move of one line would be sent');
    const focusDone = (m) => m.includes('ditto: prefilled ') && m.endsWith(` of ${doc.uri} at line ${blockLine + 1}`);
    await waitFor(() => log.messages.some(focusDone), 'the prefill at the focused cursor', 120_000);
    const focusPrefill = log.messages.find(focusDone);

    // ---- inline completion (ghost text) ----
    // Type a newline and the indentation, as a user would (incremental change).
    const indent = (lines[blockLine].match(/^\s*/)[0] || '') + '    ';
    const at = { line: blockLine, character: lines[blockLine].length };
    const typed = '\n' + indent;
    doc.text = doc.text.slice(0, doc.offsetAt(at)) + typed + doc.text.slice(doc.offsetAt(at));
    doc.version += 1;
    conn.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri: doc.uri, version: doc.version },
        contentChanges: [{ range: { start: at, end: at }, rangeLength: 0, text: typed }],
    });
    const cursor = { line: blockLine + 1, character: indent.length };
    const t0 = Date.now();
    const inline = await request(InlineCompletionRequest.type, {
        textDocument: { uri: doc.uri },
        position: cursor,
        context: { triggerKind: InlineCompletionTriggerKind.Automatic, selectedCompletionInfo: undefined },
    }, 'textDocument/inlineCompletion', 180_000);
    const inlineMs = Date.now() - t0;
    const items = Array.isArray(inline) ? inline : inline?.items;
    check(Array.isArray(items), `inlineCompletion answered ${JSON.stringify(inline)}`);
    check(items.length >= 1 && typeof items[0].insertText === 'string' && items[0].insertText.trim() !== '',
        `no inline suggestion: ${JSON.stringify(inline)}`);
    if (items[0].range) {
        check(items[0].range.start.line === cursor.line && items[0].range.start.character === cursor.character,
            `inline item range ${JSON.stringify(items[0].range)} is not at the cursor`);
    }
    // Accepting it is an ordinary edit in VS Code; the server sees it as a change.
    const suggestion = items[0].insertText;

    // ---- the completion menu at the same place ----
    const completion = await request(CompletionRequest.type, {
        textDocument: { uri: doc.uri }, position: cursor, context: { triggerKind: 1 },
    }, 'textDocument/completion', 120_000);
    const citems = Array.isArray(completion) ? completion : completion?.items;
    check(Array.isArray(citems), `completion answered ${JSON.stringify(completion)}`);

    // Undo the typing, as VS Code would send it.
    const end = { line: cursor.line, character: cursor.character };
    doc.text = doc.text.slice(0, doc.offsetAt(at)) + doc.text.slice(doc.offsetAt(end));
    doc.version += 1;
    conn.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri: doc.uri, version: doc.version },
        contentChanges: [{ range: { start: at, end }, rangeLength: typed.length, text: '' }],
    });
    const original = doc.text;

    // ---- a rewrite cancelled from the progress notification (window/workDoneProgress/cancel) ----
    editsAllowed = false;
    const createdBefore = log.created.length;
    const cancelled = request(ExecuteCommandRequest.type, {
        command: 'ditto.rewriteFile', arguments: [doc.uri, 'Add a docstring to every function.'],
    }, 'ditto.rewriteFile (cancelled by progress)', 180_000);
    await waitFor(() => log.created.length > createdBefore && log.progress[log.created[createdBefore]].length > 0,
        'window/workDoneProgress/create and the begin report', 60_000);
    const cancelToken = log.created[createdBefore];
    const begin = log.progress[cancelToken][0];
    check(begin.kind === 'begin' && begin.cancellable === true, `progress begin is ${JSON.stringify(begin)}`);
    conn.sendNotification(WorkDoneProgressCancelNotification.type, { token: cancelToken });
    const cancelledResult = await cancelled;
    check(cancelledResult && cancelledResult.applied === false, `cancelled rewrite answered ${JSON.stringify(cancelledResult)}`);
    check(log.applyEdits === 0, 'a cancelled rewrite sent workspace/applyEdit');
    check(doc.text === original, 'a cancelled rewrite changed the document');
    await waitFor(() => log.progress[cancelToken].some((v) => v.kind === 'end'), 'progress end after the cancel', 30_000);

    // ---- a rewrite that runs to the end: one workspace/applyEdit, applied as VS Code would ----
    editsAllowed = true;
    const createdBeforeRun = log.created.length;
    const versionBefore = doc.version;
    const t1 = Date.now();
    const result = await request(ExecuteCommandRequest.type, {
        command: 'ditto.rewriteFile', arguments: [doc.uri, process.env.DITTO_REWRITE_INSTRUCTION || 'Rename the function add to plus.'],
    }, 'ditto.rewriteFile', 240_000);
    const rewriteMs = Date.now() - t1;
    check(result && typeof result === 'object', `rewriteFile answered ${JSON.stringify(result)}`);
    check(log.created.length > createdBeforeRun, 'the rewrite created no progress token');
    const runProgress = log.progress[log.created[createdBeforeRun]];
    check(runProgress[0]?.kind === 'begin' && runProgress[runProgress.length - 1]?.kind === 'end',
        `progress of the rewrite: ${JSON.stringify(runProgress)}`);
    check(result.applied === true, `the rewrite was not applied: ${JSON.stringify(result)}; ${log.messages.filter((m) => m.startsWith('show')).join(' | ')}`);
    check(log.applyEdits === 1, `expected one workspace/applyEdit, got ${log.applyEdits}`);
    const dc = log.lastEdit.edit.documentChanges;
    check(Array.isArray(dc) && dc[0].textDocument.version === versionBefore,
        'VS Code advertises documentChanges: the edit must be a versioned TextDocumentEdit');
    check(doc.version === versionBefore + 1, 'the edit was not applied');

    // ---- ditto.status (what the status bar shows) ----
    const status = await request(ExecuteCommandRequest.type, { command: 'ditto.status', arguments: [] }, 'ditto.status', 60_000);
    check(status?.model?.name, `ditto.status has no model name: ${JSON.stringify(status)}`);
    check(typeof status?.stats?.drafted === 'number' && typeof status?.stats?.accepted === 'number',
        'ditto.status has no drafted/accepted counts');

    // ---- $/cancelRequest on a rewrite (what a generic LSP client sends): reported, not asserted here ----
    // The extension does not rely on it (see runCommandWithProgress); the
    // Python test reports whether the server honours it.
    const applyBefore = log.applyEdits;
    const textBefore = doc.text;
    const shownBefore = log.messages.length;
    editsAllowed = true;
    const cts = new CancellationTokenSource();
    const viaRequest = conn.sendRequest(ExecuteCommandRequest.type, {
        command: 'ditto.rewriteFile', arguments: [doc.uri, 'Add a docstring to every function.'],
    }, cts.token);
    setTimeout(() => cts.cancel(), 50);
    let requestOutcome;
    try {
        requestOutcome = await withTimeout(viaRequest, 'ditto.rewriteFile (cancelled by $/cancelRequest)', 120_000);
    } catch (e) {
        requestOutcome = { error: e.code ?? e.message };
    }
    // The rewrite itself is over when the server logs its outcome.
    const outcomeSeen = () => log.messages.slice(shownBefore).some((m) => /rewrite .*(applied|cancelled|not applied)/.test(m));
    const startWait = Date.now();
    while (!outcomeSeen() && Date.now() - startWait < 60_000) await new Promise((r) => setTimeout(r, 50));
    const cancelRequest = {
        answer: requestOutcome,
        honoured: log.applyEdits === applyBefore && doc.text === textBefore,
        applyEdits: log.applyEdits - applyBefore,
        serverMessages: log.messages.slice(shownBefore).filter((m) => /rewrite/.test(m)),
    };

    const serverExit = await closeSession({ conn, proc, request });

    console.log(JSON.stringify({
        ok: true,
        command: [cmd.command, ...cmd.args],
        inline: { text: suggestion, ms: inlineMs },
        focusPrefill,
        completionItems: citems.length,
        cancelledByProgress: cancelledResult,
        cancelRequest,
        rewrite: { result, ms: rewriteMs, progressReports: runProgress.length },
        newText: doc.text,
        status: { model: status.model.name, drafted: status.stats.drafted, accepted: status.stats.accepted },
        serverExit,
    }));
    if (process.env.DITTO_DEBUG) console.error(trail.stderr, log.messages.join('\n'));
}

main().then(
    () => process.exit(process.exitCode ?? 0),
    (e) => {
        if (!process.exitCode) console.error(`protocol test FAILED: ${e.stack || e}`);
        process.exit(1);
    },
);
