// The results of ditto's commands and of its request ditto/nextEdit, mirrored
// field for field from the server's lsp/results.py (as rust-analyzer's
// lsp_ext.ts mirrors its server). A test checks that the two declare the same
// fields; optional (?) fields are the ones the server leaves out when they do
// not apply.
import type { Position, Range } from 'vscode-languageclient';

/** The method, advertised as capabilities.experimental.ditto.nextEdit. */
export const NEXT_EDIT_METHOD = 'ditto/nextEdit';

/** What became of one file (engine/rewrite.py Status). */
export type FileStatus =
    | 'changed'
    | 'unchanged'
    | 'written'
    | 'applied'
    | 'resumed'
    | 'failed'
    | 'conflict'
    | 'refused'
    | 'cancelled';

/** A decode's statistics (engine/decode.py DecodeStats.as_dict). */
export type DecodeStats = Record<string, number>;

/** ditto.rewriteFile: whether the edit was applied, and why not. */
export interface RewriteFileResult {
    applied: boolean;
    /** applied: did the text change (false: already as asked) */
    changed?: boolean;
    /** not applied: why */
    reason?: string;
    stats?: DecodeStats;
}

/** One file of ditto.rewriteWorkspace. */
export interface FileResult {
    uri: string;
    status: FileStatus;
    /** a status that is not ok: why */
    reason?: string;
    /** applied: the decode's statistics */
    stats?: DecodeStats;
}

export interface SkippedFile {
    path: string;
    reason: string;
}

/** ditto.rewriteWorkspace: one result per matching file, and what was not even tried. */
export interface RewriteWorkspaceResult {
    /** files that matched the glob */
    files: number;
    /** files whose edit the editor applied */
    applied: number;
    results: FileResult[];
    skipped: SkippedFile[];
}

/** ditto/nextEdit (null: no suggestion): replace `range`, whole lines, with `newText`, and put the cursor at `jump`. */
export interface NextEditResult {
    range: Range;
    newText: string;
    jump: Position;
}
