// Next-edit suggestions in VS Code (ditto/nextEdit, when the server
// advertises capabilities.experimental.ditto.nextEdit).
//
// After an edit pauses (ditto.nextEdit.debounceMs) the suggestion for the
// active editor is asked for; how it is shown is planned in next_edit_plan.ts:
// ghost text (an inline completion item over the cursor's line) when it only
// inserts on that line, else decorations (deleted text struck through, the new
// lines after the range) with the context key ditto.nextEditVisible, which
// binds Tab to ditto.applyNextEdit (jump to it, then apply it) and Escape to
// ditto.dismissNextEdit. Any edit or cursor move to another document drops it.
import * as vscode from 'vscode';
import { LanguageClient } from 'vscode-languageclient/node';
import { NEXT_EDIT_METHOD, NextEditResult } from './lsp_ext';
import { NextEditPlan, planNextEdit } from './next_edit_plan';

const CONTEXT_KEY = 'ditto.nextEditVisible';

interface Shown {
    editor: vscode.TextEditor;
    version: number;
    result: NextEditResult;
    plan: NextEditPlan;
    jumped: boolean;
}

export class NextEdit implements vscode.Disposable, vscode.InlineCompletionItemProvider {
    private shown: Shown | undefined;
    private timer: NodeJS.Timeout | undefined;
    private request: vscode.CancellationTokenSource | undefined;
    private readonly deleted = vscode.window.createTextEditorDecorationType({
        backgroundColor: new vscode.ThemeColor('diffEditor.removedTextBackground'),
        textDecoration: 'line-through',
    });
    private readonly added = vscode.window.createTextEditorDecorationType({
        after: { color: new vscode.ThemeColor('editorGhostText.foreground'), margin: '0 0 0 2em' },
    });
    private readonly subscriptions: vscode.Disposable[];

    constructor(
        private readonly client: () => LanguageClient | undefined,
        private readonly config: () => vscode.WorkspaceConfiguration,
    ) {
        this.subscriptions = [
            this.deleted,
            this.added,
            vscode.commands.registerCommand('ditto.applyNextEdit', () => this.apply()),
            vscode.commands.registerCommand('ditto.dismissNextEdit', () => this.dismiss()),
            vscode.commands.registerCommand('ditto.suggestNextEdit', () => this.ask()),
            vscode.languages.registerInlineCompletionItemProvider({ pattern: '**' }, this),
            vscode.workspace.onDidChangeTextDocument((e) => this.onChange(e)),
            vscode.window.onDidChangeActiveTextEditor(() => this.dismiss()),
        ];
    }

    dispose(): void {
        this.dismiss();
        this.subscriptions.forEach((d) => d.dispose());
    }

    private supported(c: LanguageClient): boolean {
        const experimental = c.initializeResult?.capabilities.experimental as { ditto?: { nextEdit?: boolean } } | undefined;
        return experimental?.ditto?.nextEdit === true;
    }

    private onChange(e: vscode.TextDocumentChangeEvent): void {
        const editor = vscode.window.activeTextEditor;
        if (!editor || e.document !== editor.document || e.contentChanges.length === 0) {
            return;
        }
        this.dismiss();
        if (!this.config().get<boolean>('nextEdit.enable', true)) {
            return;
        }
        // VS Code gives extensions no view of the suggest widget: Tab's `when`
        // clause leaves it to an open menu or ghost text instead.
        this.timer = setTimeout(() => void this.ask(), this.config().get<number>('nextEdit.debounceMs', 500));
    }

    /** Asks for the next edit at the active editor's cursor and shows it. */
    async ask(): Promise<void> {
        const editor = vscode.window.activeTextEditor;
        const c = this.client();
        if (!editor || !c || !c.isRunning() || !this.supported(c)) {
            return;
        }
        this.request?.cancel();
        const request = (this.request = new vscode.CancellationTokenSource());
        const version = editor.document.version;
        const params = {
            textDocument: { uri: c.code2ProtocolConverter.asUri(editor.document.uri) },
            position: c.code2ProtocolConverter.asPosition(editor.selection.active),
        };
        let result: NextEditResult | null;
        try {
            result = await c.sendRequest<NextEditResult | null>(NEXT_EDIT_METHOD, params, request.token);
        } catch {
            return; // cancelled by the next edit, or the server said why in its log
        }
        if (!result || request.token.isCancellationRequested || editor.document.version !== version) {
            return;
        }
        const plan = planNextEdit(result, (line) => editor.document.lineAt(line).text, editor.selection.active.line);
        this.shown = { editor, version, result, plan, jumped: false };
        if (plan.kind === 'inline') {
            await vscode.commands.executeCommand('editor.action.inlineSuggest.trigger');
            return;
        }
        editor.setDecorations(this.deleted, plan.deleted.map((s) => new vscode.Range(s.line, s.start, s.line, s.end)));
        const after = editor.document.lineAt(Math.min(plan.afterLine, editor.document.lineCount - 1)).range.end;
        editor.setDecorations(this.added, [{
            range: new vscode.Range(after, after),
            renderOptions: { after: { contentText: `→ ${plan.added.join(' ⏎ ')}` } },
        }]);
        await vscode.commands.executeCommand('setContext', CONTEXT_KEY, true);
    }

    /** The ghost-text form of a suggestion on the cursor's line. */
    provideInlineCompletionItems(document: vscode.TextDocument, position: vscode.Position): vscode.InlineCompletionItem[] {
        const s = this.shown;
        if (!s || s.plan.kind !== 'inline' || s.editor.document !== document || document.version !== s.version
            || position.line !== s.plan.line) {
            return [];
        }
        const line = document.lineAt(s.plan.line).range;
        return [new vscode.InlineCompletionItem(s.plan.insertText, line)];
    }

    /** Tab: jump to the suggestion, or apply it when the cursor is there already. */
    async apply(): Promise<void> {
        const s = this.shown;
        const c = this.client();
        if (!s || !c || s.editor.document.version !== s.version) {
            this.dismiss();
            return;
        }
        const jump = c.protocol2CodeConverter.asPosition(s.result.jump);
        if (!s.jumped && !s.editor.selection.active.isEqual(jump)) {
            s.jumped = true;
            s.editor.selection = new vscode.Selection(jump, jump);
            s.editor.revealRange(new vscode.Range(jump, jump));
            return;
        }
        this.dismiss();
        const range = c.protocol2CodeConverter.asRange(s.result.range);
        const done = await s.editor.edit((edit) => edit.replace(range, s.result.newText));
        if (done) {
            s.editor.selection = new vscode.Selection(jump, jump);
        }
    }

    dismiss(): void {
        if (this.timer) {
            clearTimeout(this.timer);
            this.timer = undefined;
        }
        this.request?.cancel();
        this.request = undefined;
        if (this.shown) {
            this.shown.editor.setDecorations(this.deleted, []);
            this.shown.editor.setDecorations(this.added, []);
            this.shown = undefined;
            void vscode.commands.executeCommand('setContext', CONTEXT_KEY, false);
        }
    }
}
