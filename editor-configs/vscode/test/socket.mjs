// Connects to a running `ditto serve --socket PATH` as the extension does
// when "ditto.server.socket" is set: the stream comes from connectSocket()
// in out/config.js (what the extension hands vscode-languageclient), then
// initialize / shutdown / exit with VS Code's protocol stack. Prints one JSON
// line; exits 1 on a failed check.
//
// Usage: node test/socket.mjs   (environment: DITTO_VSCODE_SETTINGS = JSON of
// ditto.* settings without the prefix, with "server.socket")
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
    ExitNotification,
    InitializeRequest,
    ShutdownRequest,
    StreamMessageReader,
    StreamMessageWriter,
    createProtocolConnection,
} from 'vscode-languageserver-protocol/node';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const { connectSocket, serverSettingKeys, serverSettings, serverSocket } = require(join(root, 'out', 'config.js'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const userSettings = JSON.parse(process.env.DITTO_VSCODE_SETTINGS || '{}');
const properties = pkg.contributes.configuration.properties;
const get = (key) => (key in userSettings ? userSettings[key] : properties[`ditto.${key}`]?.default);

function withTimeout(promise, what, ms = 60_000) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const socketPath = serverSocket(get);
if (socketPath === undefined) {
    console.error('socket test FAILED: ditto.server.socket is not set');
    process.exit(1);
}
const { reader, writer } = await withTimeout(connectSocket(socketPath), 'connect');
const connection = createProtocolConnection(new StreamMessageReader(reader), new StreamMessageWriter(writer));
connection.listen();
const init = await withTimeout(connection.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: null,
    capabilities: {},
    initializationOptions: serverSettings(get, serverSettingKeys(pkg)),
}), 'initialize');
if (!init.capabilities?.completionProvider) {
    console.error(`socket test FAILED: no completionProvider in ${JSON.stringify(init)}`);
    process.exit(1);
}
await withTimeout(connection.sendRequest(ShutdownRequest.type), 'shutdown');
await connection.sendNotification(ExitNotification.type);
const closed = await withTimeout(new Promise((resolve) => reader.once('close', () => resolve(true))), 'close');
console.log(JSON.stringify({ ok: true, socket: socketPath, server: init.serverInfo, closedByServer: closed }));
connection.dispose();
