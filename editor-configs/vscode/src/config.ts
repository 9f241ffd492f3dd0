// How the extension starts `ditto serve` and which settings it sends.
//
// This module does not import `vscode`, so test/protocol.mjs can load the
// compiled out/config.js and start the server exactly as the extension does.

import * as net from 'net';

/** Reads a setting of the `ditto` section (VS Code's WorkspaceConfiguration.get). */
export type Getter = (key: string) => unknown;

export interface ServerCommand {
    command: string;
    args: string[];
    env: Record<string, string>;
}

/** Settings under `ditto.` that are the client's own (everything else goes to the server). */
export const CLIENT_ONLY_PREFIXES = ['server.', 'inlineCompletion.', 'nextEdit.', 'statusBar.', 'trace.'];

/** The camelCase names of the server settings: `ditto.X` keys of package.json's configuration, minus the client's own. */
export function serverSettingKeys(packageJson: any): string[] {
    const props = packageJson?.contributes?.configuration?.properties ?? {};
    return Object.keys(props)
        .filter((k) => k.startsWith('ditto.'))
        .map((k) => k.slice('ditto.'.length))
        .filter((k) => !CLIENT_ONLY_PREFIXES.some((p) => k.startsWith(p)));
}

/** `ditto serve --stdio` plus the user's extra arguments and environment. */
export function serverCommand(get: Getter): ServerCommand {
    const path = get('server.path');
    const args = get('server.args');
    const env = get('server.env');
    return {
        command: typeof path === 'string' && path.trim() !== '' ? path.trim() : 'ditto',
        args: ['serve', '--stdio', ...(Array.isArray(args) ? args.map(String) : [])],
        env: env && typeof env === 'object' ? Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])) : {},
    };
}

/** The Unix socket of a running `ditto serve --socket PATH` to connect to, if one is set. */
export function serverSocket(get: Getter): string | undefined {
    const socket = get('server.socket');
    return typeof socket === 'string' && socket.trim() !== '' ? socket.trim() : undefined;
}

/** A connected stream to the server's Unix socket, as the language client takes it. */
export function connectSocket(path: string): Promise<{ reader: net.Socket; writer: net.Socket }> {
    return new Promise((resolve, reject) => {
        const socket = net.connect(path);
        socket.once('connect', () => resolve({ reader: socket, writer: socket }));
        socket.once('error', reject);
    });
}

/** The object sent as initializationOptions and in workspace/didChangeConfiguration ({ditto: ...}). */
export function serverSettings(get: Getter, keys: string[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const key of keys) {
        const value = get(key);
        if (value !== undefined) {
            out[key] = value;
        }
    }
    return out;
}

/** Acceptance rate of speculative drafts between two ditto.status answers (or overall, the first time). */
export function acceptanceRate(
    previous: { drafted: number; accepted: number } | undefined,
    current: { drafted: number; accepted: number },
): number | undefined {
    const drafted = current.drafted - (previous?.drafted ?? 0);
    const accepted = current.accepted - (previous?.accepted ?? 0);
    return drafted > 0 ? accepted / drafted : undefined;
}
