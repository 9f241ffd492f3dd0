// How a ditto/nextEdit answer is shown, decided without `vscode` (so
// test/next_edit.mjs can load the compiled out/next_edit_plan.js):
//
// - `inline`: the change is on the cursor's line only and only inserts text
//   there, which VS Code can show as ghost text: an inline completion item
//   whose range is that whole line (an item's range must stay on one line,
//   and VS Code shows it when the replaced text is a prefix of it or only
//   gains insertions);
// - `decorate`: anything else: the old text the edit deletes is marked, the
//   new lines are shown after the range, and Tab (ditto.applyNextEdit) jumps
//   to it, then applies it.
import type { NextEditResult } from './lsp_ext';

/** A span of one line, in the document's characters (UTF-16, as VS Code counts). */
export interface Span {
    line: number;
    start: number;
    end: number;
}

export type NextEditPlan =
    | { kind: 'inline'; line: number; oldText: string; insertText: string }
    | { kind: 'decorate'; deleted: Span[]; added: string[]; afterLine: number };

/** The lines newText puts in place of the range (it ends with a newline unless it reaches the end of the text). */
export function newLines(result: NextEditResult): string[] {
    const lines = result.newText.split(/\r?\n/);
    if (/\n$/.test(result.newText)) {
        lines.pop();
    }
    return lines;
}

/** The lines the range replaces. */
export function oldLineNumbers(result: NextEditResult): number[] {
    const { start, end } = result.range;
    const last = end.character > 0 ? end.line : end.line - 1;
    return Array.from({ length: Math.max(0, last - start.line + 1) }, (_, i) => start.line + i);
}

/** The part of `before` that differs from `after` (their common head and tail left out). */
export function changedSpan(before: string, after: string): { start: number; end: number; inserted: string } {
    let head = 0;
    while (head < Math.min(before.length, after.length) && before[head] === after[head]) {
        head++;
    }
    let tail = 0;
    while (tail < Math.min(before.length, after.length) - head && before[before.length - 1 - tail] === after[after.length - 1 - tail]) {
        tail++;
    }
    return { start: head, end: before.length - tail, inserted: after.slice(head, after.length - tail) };
}

/** How to show the suggestion, given the document's lines and the cursor's line. */
export function planNextEdit(result: NextEditResult, lineAt: (line: number) => string, cursorLine: number): NextEditPlan {
    const old = oldLineNumbers(result);
    const added = newLines(result);
    if (old.length === 1 && added.length === 1 && old[0] === cursorLine) {
        const oldText = lineAt(cursorLine);
        const span = changedSpan(oldText, added[0]);
        if (span.start === span.end) {
            return { kind: 'inline', line: cursorLine, oldText, insertText: added[0] };
        }
    }
    const deleted: Span[] = [];
    old.forEach((line, i) => {
        const text = lineAt(line);
        const span = i < added.length ? changedSpan(text, added[i]) : { start: 0, end: text.length };
        if (span.end > span.start) {
            deleted.push({ line, start: span.start, end: span.end });
        }
    });
    return { kind: 'decorate', deleted, added, afterLine: old.length > 0 ? old[old.length - 1] : result.range.start.line };
}
