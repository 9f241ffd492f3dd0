// The ditto extension: starts `ditto serve` with vscode-languageclient.
//
// - completion and inline ghost text come from the language client's own
//   features (the server advertises completionProvider and
//   inlineCompletionProvider);
// - "Rewrite File with Instruction…" / "Rewrite Files in Workspace…" ask for an
//   instruction, run ditto.rewriteFile / ditto.rewriteWorkspace and show the
//   server's $/progress in a cancellable notification; the result arrives as one
//   workspace/applyEdit, which the language client applies;
// - next-edit suggestions after an edit pauses (next_edit.ts: ghost text or
//   decorations, Tab jumps to them and applies them);
// - a status bar item shows the model and the last acceptance rate of the
//   speculative drafts (from ditto.status);
// - settings changes reach the server at once (workspace/didChangeConfiguration);
//   changing ditto.server.* restarts it;
// - with ditto.server.socket set, it connects to a `ditto serve --socket PATH`
//   the user runs instead of starting its own server over stdio;
// - ditto/didFocus (focus.ts) tells the server which editor is in front and
//   where its cursor is, so the first completion there comes from the cache.
import * as vscode from 'vscode';
import {
    CancellationTokenSource,
    DidChangeConfigurationNotification,
    ExecuteCommandRequest,
    LanguageClient,
    LanguageClientOptions,
    ProgressToken,
    ServerOptions,
    State,
    WorkDoneProgress,
    WorkDoneProgressCancelNotification,
    WorkDoneProgressCreateRequest,
} from 'vscode-languageclient/node';
import { acceptanceRate, connectSocket, serverCommand, serverSettingKeys, serverSettings, serverSocket } from './config';
import { DID_FOCUS, DidFocusParams, FocusTracker, MOVE_DEBOUNCE_MS } from './focus';
import { FileStatus, RewriteFileResult, RewriteWorkspaceResult } from './lsp_ext';
import { NextEdit } from './next_edit';

const SECTION = 'ditto';

let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel;
let statusItem: vscode.StatusBarItem;
let settingKeys: string[] = [];
let refreshTimer: NodeJS.Timeout | undefined;
let lastTotals: { drafted: number; accepted: number } | undefined;
let lastRate: number | undefined;
let modelName = '';

/** Commands waiting for the progress token the server creates for them (first come, first served). */
const waitingForProgress: Array<(token: ProgressToken) => void> = [];

function config(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
}

function settings(): Record<string, unknown> {
    const c = config();
    return serverSettings((k) => c.get(k), settingKeys);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    settingKeys = serverSettingKeys(context.extension.packageJSON);
    output = vscode.window.createOutputChannel('ditto', { log: true });
    statusItem = vscode.window.createStatusBarItem('ditto.status', vscode.StatusBarAlignment.Right, 100);
    statusItem.name = 'ditto';
    statusItem.command = 'ditto.showStatus';
    setStatus('$(loading~spin) ditto', 'ditto: starting the server');
    statusItem.show();

    context.subscriptions.push(
        output,
        statusItem,
        vscode.commands.registerCommand('ditto.rewriteFileWithInstruction', rewriteFile),
        vscode.commands.registerCommand('ditto.rewriteWorkspaceWithInstruction', rewriteWorkspace),
        vscode.commands.registerCommand('ditto.showStatus', showStatus),
        vscode.commands.registerCommand('ditto.restartServer', restart),
        vscode.workspace.onDidChangeConfiguration(onConfigurationChanged),
        new NextEdit(() => client, config),
        { dispose: () => stopRefresh() },
        watchFocus(),
    );
    await start();
}

export async function deactivate(): Promise<void> {
    stopRefresh();
    if (client) {
        const c = client;
        client = undefined;
        await c.stop();
    }
}

// ---- the language client ------------------------------------------------------------------

/** `ditto serve` over stdio, or the socket of a server the user already runs. */
function serverOptions(): ServerOptions {
    const socket = serverSocket((k) => config().get(k));
    if (socket !== undefined) {
        return () => connectSocket(socket);
    }
    const cmd = serverCommand((k) => config().get(k));
    const executable = { command: cmd.command, args: cmd.args, options: { env: { ...process.env, ...cmd.env } } };
    return { run: executable, debug: executable };
}

function createClient(): LanguageClient {
    const clientOptions: LanguageClientOptions = {
        documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
        initializationOptions: settings(),
        outputChannel: output,
        middleware: {
            provideInlineCompletionItems: (document, position, ctx, token, next) => {
                if (!config().get<boolean>('inlineCompletion.enable', true)) {
                    return undefined;
                }
                return next(document, position, ctx, token);
            },
        },
    };
    const c = new LanguageClient('ditto', 'ditto', serverOptions(), clientOptions);
    c.onDidChangeState((e) => {
        if (e.newState === State.Running) {
            setStatus('$(sparkle) ditto', 'ditto: loading the model');
        } else if (e.newState === State.Stopped) {
            setStatus('$(error) ditto', 'ditto: the server is not running (click for status)', true);
        }
    });
    return c;
}

async function start(): Promise<void> {
    client = createClient();
    try {
        await client.start();
    } catch (e) {
        setStatus('$(error) ditto', `ditto: cannot start the server: ${errorText(e)}`, true);
        const socket = serverSocket((k) => config().get(k));
        void vscode.window.showErrorMessage(
            socket !== undefined
                ? `ditto: cannot connect to ${socket}: ${errorText(e)}. Start \`ditto serve --socket ${socket}\` or clear "ditto.server.socket".`
                : `ditto: cannot start \`${serverCommand((k) => config().get(k)).command} serve\`: ${errorText(e)}. ` +
                      'Install it (pip install ditto) or set "ditto.server.path".',
        );
        return;
    }
    // The language client shows server-created progress in the status bar,
    // where it cannot be cancelled; ditto's rewrites get a cancellable
    // notification instead. Registered after start(), so it replaces the
    // client's own handler (start() registers that one each time).
    client.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
        const waiter = waitingForProgress.shift();
        if (waiter) {
            waiter(params.token);
        } else {
            void showServerProgress(params.token);
        }
    });
    lastTotals = undefined;
    startRefresh();
    const editor = vscode.window.activeTextEditor;
    if (editor) {
        sendFocus(editor, (uri, line, character) => focus.activated(uri, line, character));
    }
}

async function restart(): Promise<void> {
    stopRefresh();
    if (client) {
        const c = client;
        client = undefined;
        try {
            await c.stop();
        } catch (e) {
            output.appendLine(`ditto: stopping the server: ${errorText(e)}`);
        }
    }
    setStatus('$(loading~spin) ditto', 'ditto: restarting the server');
    await start();
}

function onConfigurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration(SECTION)) {
        return;
    }
    if (e.affectsConfiguration('ditto.server')) {
        void restart();
        return;
    }
    if (e.affectsConfiguration('ditto.statusBar')) {
        startRefresh();
    }
    if (client?.isRunning()) {
        void client.sendNotification(DidChangeConfigurationNotification.type, { settings: { ditto: settings() } });
    }
}

async function runningClient(): Promise<LanguageClient | undefined> {
    if (!client) {
        await restart();
    }
    if (!client || !client.isRunning()) {
        void vscode.window.showErrorMessage('ditto: the server is not running (ditto: Restart Server, or see the "ditto" output).');
        return undefined;
    }
    return client;
}

function serverHasCommand(c: LanguageClient, command: string): boolean {
    const commands = c.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    return commands.includes(command);
}

// ---- rewrites -------------------------------------------------------------------------------

async function rewriteFile(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
        void vscode.window.showErrorMessage('ditto: open the file to rewrite first.');
        return;
    }
    const selection = editor.selection;
    const instruction = await vscode.window.showInputBox({
        title: selection.isEmpty ? 'ditto: rewrite the file' : 'ditto: rewrite the selection',
        prompt: 'Instruction',
        placeHolder: 'e.g. add type hints; rename total to subtotal; convert to a dataclass',
        ignoreFocusOut: true,
        validateInput: (v) => (v.trim() === '' ? 'Type an instruction' : undefined),
    });
    if (!instruction) {
        return;
    }
    const c = await runningClient();
    if (!c) {
        return;
    }
    const doc = editor.document;
    const args: unknown[] = [doc.uri.toString(), instruction];
    if (!selection.isEmpty) {
        args.push(c.code2ProtocolConverter.asRange(selection));
    }
    const name = vscode.workspace.asRelativePath(doc.uri);
    const result = await runCommandWithProgress(c, 'ditto.rewriteFile', args, `ditto: rewriting ${name}`);
    if (result && typeof result === 'object') {
        const r = result as RewriteFileResult;
        const drafted = r.stats?.drafted ?? 0;
        if (drafted > 0) {
            lastRate = (r.stats?.accepted ?? 0) / drafted;
            renderStatus();
        }
        if (r.applied) {
            void vscode.window.showInformationMessage(
                r.changed === false ? `ditto: ${name} was already as asked (no change).` : `ditto: rewrote ${name}.`,
            );
        }
        // Not applied: the server says why with window/showMessage.
    }
}

async function rewriteWorkspace(): Promise<void> {
    const c = await runningClient();
    if (!c) {
        return;
    }
    if (!serverHasCommand(c, 'ditto.rewriteWorkspace')) {
        void vscode.window.showErrorMessage('ditto: this server has no ditto.rewriteWorkspace command; update ditto.');
        return;
    }
    const glob = await vscode.window.showInputBox({
        title: 'ditto: rewrite files in the workspace (1/2)',
        prompt: 'Files to rewrite (a glob relative to the workspace folder)',
        value: '**/*.py',
        ignoreFocusOut: true,
        validateInput: (v) => (v.trim() === '' ? 'Type a glob' : undefined),
    });
    if (!glob) {
        return;
    }
    const instruction = await vscode.window.showInputBox({
        title: `ditto: rewrite ${glob} (2/2)`,
        prompt: 'Instruction',
        placeHolder: 'e.g. add type hints',
        ignoreFocusOut: true,
        validateInput: (v) => (v.trim() === '' ? 'Type an instruction' : undefined),
    });
    if (!instruction) {
        return;
    }
    const result = await runCommandWithProgress(c, 'ditto.rewriteWorkspace', [glob, instruction], `ditto: rewriting ${glob}`);
    if (result !== undefined) {
        output.appendLine(`ditto.rewriteWorkspace ${glob}: ${JSON.stringify(result, null, 2)}`);
        void vscode.window.showInformationMessage(`ditto: ${summarize(result)}`, 'Details').then((choice) => {
            if (choice) {
                output.show(true);
            }
        });
    }
}

function summarize(result: unknown): string {
    if (result && typeof result === 'object') {
        const r = result as RewriteWorkspaceResult;
        const counts = new Map<FileStatus, number>();
        for (const f of r.results ?? []) {
            counts.set(f.status, (counts.get(f.status) ?? 0) + 1);
        }
        const parts = [`${r.files} files`, ...[...counts].map(([status, n]) => `${n} ${status}`)];
        if ((r.skipped ?? []).length > 0) {
            parts.push(`${r.skipped.length} skipped`);
        }
        return `workspace rewrite done: ${parts.join(', ')}.`;
    }
    return 'workspace rewrite done.';
}

/**
 * Runs a server command that reports work-done progress, in a cancellable
 * notification. Cancel sends window/workDoneProgress/cancel for the server's
 * token: the server stops within one forward pass and applies nothing.
 *
 * ($/cancelRequest for the executeCommand request stops a rewrite the same
 * way; the progress token is the one the notification already follows.)
 * If Cancel is pressed before the server has begun its progress, the cancel
 * is sent as soon as the begin report arrives (the server registers the
 * token only then).
 */
async function runCommandWithProgress(
    c: LanguageClient,
    command: string,
    args: unknown[],
    title: string,
): Promise<unknown> {
    return vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title, cancellable: true },
        async (progress, cancel) => {
            let token: ProgressToken | undefined;
            let begun = false;
            let cancelSent = false;
            let reported = 0;
            let sub: vscode.Disposable | undefined;
            const sendCancel = () => {
                if (token !== undefined && begun && !cancelSent) {
                    cancelSent = true;
                    progress.report({ message: 'cancelling…' });
                    void c.sendNotification(WorkDoneProgressCancelNotification.type, { token });
                }
            };
            const waiter = (t: ProgressToken) => {
                token = t;
                sub = c.onProgress(WorkDoneProgress.type, t, (value) => {
                    if (value.kind === 'begin') {
                        begun = true;
                        if (cancel.isCancellationRequested) {
                            sendCancel();
                        }
                    }
                    if (value.kind === 'end' || cancelSent) {
                        return;
                    }
                    const pct = value.percentage;
                    const increment = typeof pct === 'number' && pct > reported ? pct - reported : undefined;
                    if (increment !== undefined) {
                        reported = pct as number;
                    }
                    progress.report({ message: value.message, increment });
                });
            };
            waitingForProgress.push(waiter);
            const onCancel = cancel.onCancellationRequested(sendCancel);
            try {
                // When cancelled, the server says so itself (window/showMessage).
                return await c.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
            } catch (e) {
                void vscode.window.showErrorMessage(`${title}: ${errorText(e)}`);
                return undefined;
            } finally {
                const i = waitingForProgress.indexOf(waiter);
                if (i >= 0) {
                    waitingForProgress.splice(i, 1);
                }
                onCancel.dispose();
                sub?.dispose();
                void refreshStatus();
            }
        },
    );
}

/** Progress the server started on its own (not for one of our commands). */
async function showServerProgress(token: ProgressToken): Promise<void> {
    const c = client;
    if (!c) {
        return;
    }
    let finish: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (finish = resolve));
    void vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'ditto', cancellable: true },
        async (progress, cancel) => {
            let reported = 0;
            const sub = c.onProgress(WorkDoneProgress.type, token, (value) => {
                if (value.kind === 'end') {
                    finish();
                    return;
                }
                const pct = value.percentage;
                const increment = typeof pct === 'number' && pct > reported ? pct - reported : undefined;
                if (increment !== undefined) {
                    reported = pct as number;
                }
                const message = value.kind === 'begin' ? [value.title, value.message].filter(Boolean).join(': ') : value.message;
                progress.report({ message, increment });
            });
            // (ProgressLocation.Notification shows the notification once the begin report came.)
            const onCancel = cancel.onCancellationRequested(() => {
                void c.sendNotification(WorkDoneProgressCancelNotification.type, { token });
            });
            await done;
            onCancel.dispose();
            sub.dispose();
        },
    );
}

// ---- status -----------------------------------------------------------------------------------

interface StatusAnswer {
    model?: { name?: string; path?: string; n_ctx?: number; threads?: number };
    stats?: { drafted?: number; accepted?: number; completions?: number; cache_hits?: number; rewrites?: number };
    server?: { version?: string; max_rss_mb?: number };
}

async function fetchStatus(): Promise<StatusAnswer | undefined> {
    const c = client;
    if (!c || !c.isRunning()) {
        return undefined;
    }
    const request = new CancellationTokenSource();
    const timer = setTimeout(() => request.cancel(), 30_000);
    try {
        return (await c.sendRequest(ExecuteCommandRequest.type, { command: 'ditto.status', arguments: [] }, request.token)) as StatusAnswer;
    } finally {
        clearTimeout(timer);
        request.dispose();
    }
}

async function refreshStatus(): Promise<StatusAnswer | undefined> {
    let status: StatusAnswer | undefined;
    try {
        status = await fetchStatus();
    } catch (e) {
        setStatus('$(warning) ditto', `ditto: ${errorText(e)}`, true);
        return undefined;
    }
    if (!status) {
        return undefined;
    }
    modelName = status.model?.name ?? '';
    const totals = { drafted: status.stats?.drafted ?? 0, accepted: status.stats?.accepted ?? 0 };
    const rate = acceptanceRate(lastTotals, totals);
    if (rate !== undefined) {
        lastRate = rate;
    }
    lastTotals = totals;
    renderStatus(status);
    return status;
}

function renderStatus(status?: StatusAnswer): void {
    const rate = lastRate === undefined ? '' : ` · ${Math.round(lastRate * 100)}%`;
    const lines = [`ditto: ${modelName || 'model loading'}`];
    if (lastRate !== undefined) {
        lines.push(`last acceptance rate of speculative drafts: ${(lastRate * 100).toFixed(1)}%`);
    }
    if (status?.stats) {
        lines.push(`completions: ${status.stats.completions ?? 0}, cache hits: ${status.stats.cache_hits ?? 0}, rewrites: ${status.stats.rewrites ?? 0}`);
    }
    if (status?.server?.max_rss_mb !== undefined) {
        lines.push(`server memory: ${status.server.max_rss_mb} MB`);
    }
    lines.push('Click for the full status');
    setStatus(`$(sparkle) ${modelName || 'ditto'}${rate}`, lines.join('\n'));
}

async function showStatus(): Promise<void> {
    const c = await runningClient();
    if (!c) {
        return;
    }
    const status = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: 'ditto: status' },
        () => refreshStatus(),
    );
    if (!status) {
        return;
    }
    output.appendLine(`ditto.status ${new Date().toISOString()}:\n${JSON.stringify(status, null, 2)}`);
    const rate = lastRate === undefined ? 'no drafts yet' : `last acceptance ${(lastRate * 100).toFixed(1)}%`;
    const choice = await vscode.window.showInformationMessage(
        `ditto ${status.server?.version ?? ''}: ${status.model?.name ?? 'no model'} (${rate}, ` +
            `${status.stats?.completions ?? 0} completions, ${status.stats?.rewrites ?? 0} rewrites)`,
        'Details',
    );
    if (choice) {
        output.show(true);
    }
}

function startRefresh(): void {
    stopRefresh();
    const seconds = config().get<number>('statusBar.refreshSeconds', 15);
    void refreshStatus();
    if (seconds > 0) {
        refreshTimer = setInterval(() => void refreshStatus(), seconds * 1000);
    }
}

function stopRefresh(): void {
    if (refreshTimer) {
        clearInterval(refreshTimer);
        refreshTimer = undefined;
    }
}

function setStatus(text: string, tooltip: string, error = false): void {
    statusItem.text = text;
    statusItem.tooltip = tooltip;
    statusItem.backgroundColor = error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
}

function errorText(e: unknown): string {
    return e instanceof Error ? e.message : String(e);
}

// ---- ditto/didFocus ------------------------------------------------------------------------

const focus = new FocusTracker();

/** Sends what `pick` makes of the editor's document and cursor, if anything
 * (documents the client does not sync are not the server's to prefill). */
function sendFocus(
    editor: vscode.TextEditor,
    pick: (uri: string, line: number, character: number) => DidFocusParams | undefined,
): void {
    const c = client;
    const doc = editor.document;
    if (!c || !c.isRunning() || (doc.uri.scheme !== 'file' && doc.uri.scheme !== 'untitled')) {
        return;
    }
    const cursor = editor.selection.active;
    const params = pick(c.code2ProtocolConverter.asUri(doc.uri), cursor.line, cursor.character);
    if (params) {
        void c.sendNotification(DID_FOCUS, params);
    }
}

/** A focus when an editor comes to the front, and when its cursor, moved by the
 * user (keys, mouse, a command such as go to definition), rests far from the last one sent. */
function watchFocus(): vscode.Disposable {
    let timer: NodeJS.Timeout | undefined;
    return vscode.Disposable.from(
        vscode.window.onDidChangeActiveTextEditor((editor) => {
            if (editor) {
                sendFocus(editor, (uri, line, character) => focus.activated(uri, line, character));
            }
        }),
        vscode.window.onDidChangeTextEditorSelection((e) => {
            if (e.kind === undefined) {
                return; // moved by an edit (typing): the completion there keeps its own cache warm
            }
            clearTimeout(timer);
            timer = setTimeout(
                () => sendFocus(e.textEditor, (uri, line, character) => focus.moved(uri, line, character)),
                MOVE_DEBOUNCE_MS,
            );
        }),
        vscode.workspace.onDidCloseTextDocument((doc) => focus.closed(doc.uri.toString())),
        { dispose: () => clearTimeout(timer) },
    );
}
