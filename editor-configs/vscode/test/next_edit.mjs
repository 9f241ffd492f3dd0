// ditto/nextEdit through VS Code's protocol stack, as the extension sends it
// (src/next_edit.ts): the server advertises capabilities.experimental.ditto.
// nextEdit; a parameter renamed at its definition (an incremental didChange)
// gets a suggestion for the next use; the extension's plan for showing it
// (out/next_edit_plan.js) is decorations, since it is not on the cursor's
// line; applying it as VS Code does gives the renamed use, and ditto.status
// counts it applied. Meant for a server whose model follows a script
// (tests/scripted_model.py): the expected text is then exact.
//
// Usage: node test/next_edit.mjs FILE   (FILE's first line defines a function
// whose first parameter is used again below; environment as protocol.mjs)
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
    CancellationTokenSource,
    DidChangeTextDocumentNotification,
    DidOpenTextDocumentNotification,
    ExecuteCommandRequest,
} from 'vscode-languageserver-protocol/node';
import { applyAndSend, check, closeSession, openSession } from './lsp_client.mjs';

const require = createRequire(import.meta.url);
const out = join(dirname(dirname(fileURLToPath(import.meta.url))), 'out');
const { planNextEdit } = require(join(out, 'next_edit_plan.js'));
const { NEXT_EDIT_METHOD } = require(join(out, 'lsp_ext.js'));

async function main() {
    const source = process.argv[2];
    check(source, 'usage: node test/next_edit.mjs FILE');
    const session = await openSession(source, () => ({ applied: false, failureReason: 'no edit expected' }));
    const { doc, conn, request, init } = session;
    check(init.capabilities.experimental?.ditto?.nextEdit === true,
        `capabilities.experimental is ${JSON.stringify(init.capabilities.experimental)}`);
    conn.sendNotification(DidOpenTextDocumentNotification.type, {
        textDocument: { uri: doc.uri, languageId: 'python', version: doc.version, text: doc.text },
    });
    const status = () => request(ExecuteCommandRequest.type, { command: 'ditto.status', arguments: [] }, 'ditto.status', 120_000);
    await status(); // the model is loaded

    // Rename the first parameter at the definition, as typing it would.
    const first = doc.text.split('\n')[0];
    const [, param] = first.match(/^def \w+\((\w+)/);
    const start = { line: 0, character: first.indexOf(param) };
    const end = { line: 0, character: start.character + param.length };
    doc.text = doc.text.slice(0, doc.offsetAt(start)) + 'items' + doc.text.slice(doc.offsetAt(end));
    doc.version += 1;
    conn.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri: doc.uri, version: doc.version },
        contentChanges: [{ range: { start, end }, rangeLength: param.length, text: 'items' }],
    });
    const before = doc.text;
    const cursor = { line: 0, character: start.character + 'items'.length };
    // As src/next_edit.ts sends it: the method by name, the params, a cancellation
    // token (without one, vscode-jsonrpc would send [params, undefined]).
    const result = await request(NEXT_EDIT_METHOD, { textDocument: { uri: doc.uri }, position: cursor },
        NEXT_EDIT_METHOD, 300_000, new CancellationTokenSource().token);
    check(result && result.range && typeof result.newText === 'string' && result.jump,
        `${NEXT_EDIT_METHOD} answered ${JSON.stringify(result)}`);
    const lines = doc.text.split('\n');
    const plan = planNextEdit(result, (line) => lines[line], cursor.line);

    // The ghost-text form, for an insertion on the cursor's own line.
    const inline = planNextEdit({ range: { start: { line: 1, character: 0 }, end: { line: 2, character: 0 } },
        newText: `${lines[1]}  # more\n`, jump: { line: 1, character: lines[1].length } }, (line) => lines[line], 1);
    check(inline.kind === 'inline' && inline.insertText === `${lines[1]}  # more`, `inline plan ${JSON.stringify(inline)}`);

    applyAndSend(conn, doc, [{ range: result.range, newText: result.newText }]);
    const counts = (await status()).next_edit;
    const serverExit = await closeSession(session);
    console.log(JSON.stringify({ ok: true, before, result, plan, after: doc.text, counts, serverExit }));
}

main().then(
    () => process.exit(process.exitCode ?? 0),
    (e) => {
        if (!process.exitCode) console.error(`next-edit protocol test FAILED: ${e.stack || e}`);
        process.exit(1);
    },
);
