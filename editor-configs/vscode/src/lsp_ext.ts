// The results of ditto's commands, mirrored field for field from the
// server's lsp/results.py (as rust-analyzer's lsp_ext.ts mirrors its server).
// A test checks that the two declare the same fields; optional (?) fields are
// the ones the server leaves out when they do not apply.

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
