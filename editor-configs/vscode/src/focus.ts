// ditto/didFocus: which document is in front and where its cursor is, so the
// server prefills the prompt of a completion there before the first keystroke
// (didOpen carries no cursor: the server prefills the top of the file).
//
// This module does not import `vscode`: test/protocol.mjs sends what it builds.

export const DID_FOCUS = 'ditto/didFocus';

/** A cursor this many lines from the last one sent gets a new prefill (the
 * server's prompt window moves in blocks of 32 lines, lsp/prompt.py). */
export const FAR_LINES = 32;

/** Cursor moves are sent once the cursor has rested this long. */
export const MOVE_DEBOUNCE_MS = 300;

export interface DidFocusParams {
    textDocument: { uri: string };
    position: { line: number; character: number };
}

export function didFocusParams(uri: string, line: number, character: number): DidFocusParams {
    return { textDocument: { uri }, position: { line, character } };
}

/** Which focus changes are worth a notification: every document brought to
 * the front, and cursor moves that go far from the last position sent. */
export class FocusTracker {
    private readonly sentLine = new Map<string, number>();

    activated(uri: string, line: number, character: number): DidFocusParams {
        this.sentLine.set(uri, line);
        return didFocusParams(uri, line, character);
    }

    moved(uri: string, line: number, character: number): DidFocusParams | undefined {
        const last = this.sentLine.get(uri);
        if (last !== undefined && Math.abs(line - last) < FAR_LINES) {
            return undefined;
        }
        return this.activated(uri, line, character);
    }

    closed(uri: string): void {
        this.sentLine.delete(uri);
    }
}
