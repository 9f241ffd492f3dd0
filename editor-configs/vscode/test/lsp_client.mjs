// What test/protocol.mjs and test/next_edit.mjs share: VS Code's protocol
// stack started against `ditto serve` as the extension starts it (command,
// arguments, environment and settings from out/config.js and package.json),
// the client capabilities vscode-languageclient 11 sends, a document as VS
// Code holds it, and timeouts for every wait (the protocol stack has none).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
    ApplyWorkspaceEditRequest,
    DidChangeTextDocumentNotification,
    ExitNotification,
    InitializeRequest,
    InitializedNotification,
    LogMessageNotification,
    RegistrationRequest,
    ShowMessageNotification,
    ShutdownRequest,
    StreamMessageReader,
    StreamMessageWriter,
    WorkDoneProgress,
    WorkDoneProgressCreateRequest,
    ConfigurationRequest,
    createProtocolConnection,
} from 'vscode-languageserver-protocol/node';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const require = createRequire(import.meta.url);
const { serverCommand, serverSettingKeys, serverSettings } = require(join(root, 'out', 'config.js'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

export const REQUEST_TIMEOUT_MS = Number(process.env.DITTO_REQUEST_TIMEOUT_MS || 120_000);

export const trail = { messages: [], stderr: '' };

export function fail(message) {
    console.error(`protocol test FAILED: ${message}`);
    console.error(`server messages:\n${trail.messages.slice(-40).join('\n')}\nserver stderr (end):\n${trail.stderr.slice(-3000)}`);
    process.exitCode = 1;
    throw new Error(message);
}

export function check(cond, message) {
    if (!cond) fail(message);
}

export function withTimeout(promise, what, ms = REQUEST_TIMEOUT_MS) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function waitFor(pred, what, ms = REQUEST_TIMEOUT_MS) {
    const start = Date.now();
    while (!pred()) {
        if (Date.now() - start > ms) fail(`${what}: not seen in ${ms} ms`);
        await new Promise((r) => setTimeout(r, 20));
    }
}

// ---- VS Code's view of the settings: package.json defaults, plus the user's ----
export const userSettings = JSON.parse(process.env.DITTO_VSCODE_SETTINGS || '{}');
if (process.env.DITTO_SERVER_PATH) userSettings['server.path'] = process.env.DITTO_SERVER_PATH;
const properties = pkg.contributes.configuration.properties;
export const get = (key) => (key in userSettings ? userSettings[key] : properties[`ditto.${key}`]?.default);
export const keys = serverSettingKeys(pkg);
/** The ditto section as the extension sends it (initializationOptions, didChangeConfiguration). */
export const currentSettings = () => serverSettings(get, keys);

// ---- a document as VS Code holds it ----
export class Document {
    constructor(uri, text) {
        this.uri = uri;
        this.text = text;
        this.version = 1;
    }
    offsetAt({ line, character }) {
        const lines = this.text.split('\n');
        let off = 0;
        for (let i = 0; i < line; i++) off += lines[i].length + 1;
        return off + character; // ASCII test files: UTF-16 units are characters
    }
    positionAt(offset) {
        const before = this.text.slice(0, offset).split('\n');
        return { line: before.length - 1, character: before[before.length - 1].length };
    }
    applyEdits(edits) {
        const sorted = [...edits].sort((a, b) => this.offsetAt(b.range.start) - this.offsetAt(a.range.start));
        for (const e of sorted) {
            this.text = this.text.slice(0, this.offsetAt(e.range.start)) + e.newText + this.text.slice(this.offsetAt(e.range.end));
        }
        this.version += 1;
    }
}

// What vscode-languageclient 11 puts in ClientCapabilities (the parts ditto reads, and the usual rest).
export const capabilities = {
    general: {
        positionEncodings: ['utf-16'],
        staleRequestSupport: { cancel: true, retryOnContentModified: [] },
        regularExpressions: { engine: 'ECMAScript', version: 'ES2020' },
        markdown: { parser: 'marked', version: '1.1.0' },
    },
    window: {
        workDoneProgress: true,
        showMessage: { messageActionItem: { additionalPropertiesSupport: true } },
        showDocument: { support: true },
    },
    workspace: {
        applyEdit: true,
        workspaceEdit: {
            documentChanges: true,
            resourceOperations: ['create', 'rename', 'delete'],
            failureHandling: 'textOnlyTransactional',
            normalizesLineEndings: true,
            changeAnnotationSupport: { groupsOnLabel: true },
        },
        didChangeConfiguration: { dynamicRegistration: true },
        didChangeWatchedFiles: { dynamicRegistration: true, relativePatternSupport: true },
        executeCommand: { dynamicRegistration: true },
        configuration: true,
        workspaceFolders: true,
    },
    textDocument: {
        synchronization: { dynamicRegistration: true, willSave: true, willSaveWaitUntil: true, didSave: true },
        completion: {
            dynamicRegistration: true,
            contextSupport: true,
            completionItem: {
                snippetSupport: true,
                commitCharactersSupport: true,
                documentationFormat: ['markdown', 'plaintext'],
                deprecatedSupport: true,
                preselectSupport: true,
                tagSupport: { valueSet: [1] },
                insertReplaceSupport: true,
                resolveSupport: { properties: ['documentation', 'detail', 'additionalTextEdits'] },
                insertTextModeSupport: { valueSet: [1, 2] },
                labelDetailsSupport: true,
            },
            insertTextMode: 2,
            completionItemKind: { valueSet: Array.from({ length: 25 }, (_, i) => i + 1) },
            completionList: { itemDefaults: ['commitCharacters', 'editRange', 'insertTextFormat', 'insertTextMode', 'data'] },
        },
        inlineCompletion: { dynamicRegistration: true },
        hover: { dynamicRegistration: true, contentFormat: ['markdown', 'plaintext'] },
        publishDiagnostics: { relatedInformation: true, versionSupport: false, tagSupport: { valueSet: [1, 2] } },
    },
};


/** Applies edits to the document and sends the change as VS Code does after an
 * edit (a full-range replacement of what changed; here: the whole document). */
export function applyAndSend(conn, doc, edits) {
    doc.applyEdits(edits);
    conn.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri: doc.uri, version: doc.version },
        contentChanges: [{ text: doc.text }],
    });
}

/**
 * A copy of `source` in a fresh workspace folder, `ditto serve` started there as
 * the extension starts it, answering what VS Code answers (progress tokens,
 * configuration, registrations; workspace/applyEdit through
 * onApplyEdit(params, doc) -> ApplyWorkspaceEditResult), initialized.
 */
export async function openSession(source, onApplyEdit) {
    const dir = mkdtempSync(join(tmpdir(), 'ditto-vscode-'));
    const file = join(dir, basename(source));
    writeFileSync(file, readFileSync(source, 'utf8'));
    const doc = new Document(pathToFileURL(file).href, readFileSync(file, 'utf8'));
    const log = { messages: trail.messages, progress: {}, applyEdits: 0, created: [] };

    // ---- start the server as the extension does ----
    const cmd = serverCommand(get);
    const proc = spawn(cmd.command, cmd.args, { env: { ...process.env, ...cmd.env }, cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    proc.stderr.on('data', (d) => (trail.stderr += d.toString()));
    proc.on('error', (e) => fail(`cannot start ${cmd.command}: ${e.message}`));
    const conn = createProtocolConnection(new StreamMessageReader(proc.stdout), new StreamMessageWriter(proc.stdin));

    // ---- what VS Code answers ----
    conn.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
        log.created.push(params.token);
        log.progress[params.token] = [];
        conn.onProgress(WorkDoneProgress.type, params.token, (value) => log.progress[params.token].push(value));
        return null;
    });
    conn.onRequest(ApplyWorkspaceEditRequest.type, (params) => {
        log.applyEdits += 1;
        log.lastEdit = params;
        return onApplyEdit(params, doc);
    });
    conn.onRequest(RegistrationRequest.type, () => null);
    conn.onRequest(ConfigurationRequest.type, (params) => params.items.map(() => serverSettings(get, keys)));
    conn.onNotification(ShowMessageNotification.type, (p) => log.messages.push(`show ${p.type}: ${p.message}`));
    conn.onNotification(LogMessageNotification.type, (p) => log.messages.push(`log ${p.type}: ${p.message}`));
    conn.listen();

    const request = (type, params, what, ms, token) => withTimeout(conn.sendRequest(type, params, token), what, ms);

    // ---- initialize ----
    const init = await request(InitializeRequest.type, {
        processId: process.pid,
        clientInfo: { name: 'Visual Studio Code', version: '1.91.0' },
        locale: 'en',
        rootPath: dir,
        rootUri: pathToFileURL(dir).href,
        workspaceFolders: [{ uri: pathToFileURL(dir).href, name: basename(dir) }],
        capabilities,
        initializationOptions: serverSettings(get, keys),
        trace: get('trace.server'),
    }, 'initialize', 60_000);
    conn.sendNotification(InitializedNotification.type, {});
    return { dir, doc, conn, proc, cmd, log, request, init };
}

/** shutdown, exit, and the server's exit code. */
export async function closeSession({ conn, proc, request }) {
    await request(ShutdownRequest.type, undefined, 'shutdown', 30_000);
    conn.sendNotification(ExitNotification.type);
    await withTimeout(new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r))), 'server exit', 15_000);
    return proc.exitCode;
}
