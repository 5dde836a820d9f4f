import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

/** Serves `server` on this process's stdin/stdout until stdin closes. */
export async function serveStdio(server: McpServer): Promise<void> {
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
  });
  await server.connect(transport);
  await closed;
  await server.close();
}

/**
 * Relays stdio to a running Engram's Streamable HTTP endpoint, message by
 * message, presenting `apiKey`. Used when the store is held by a local server
 * (embedded mode) or ENGRAM_URL points elsewhere: the agent still launches
 * `engram mcp`, and the server enforces auth, scopes and audit as for any
 * HTTP client.
 */
export async function bridgeStdio(url: string, apiKey: string): Promise<void> {
  const local = new StdioServerTransport();
  const remote = new StreamableHTTPClientTransport(new URL('/mcp', url), {
    requestInit: { headers: { authorization: `Bearer ${apiKey}` } },
  });
  const done = new Promise<void>((resolve) => {
    local.onclose = () => resolve();
    remote.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
  });
  local.onmessage = (msg) => {
    remote.send(msg).catch((err: unknown) => {
      // Answer the request the server never saw, so the agent does not hang.
      if ('id' in msg && 'method' in msg) {
        void local.send({
          jsonrpc: '2.0',
          id: msg.id,
          error: { code: -32603, message: `Relaying to Engram at ${url} failed: ${(err as Error).message}` },
        });
      }
    });
  };
  remote.onmessage = (msg) => void local.send(msg);
  await remote.start();
  await local.start();
  await done;
  await remote.close().catch(() => undefined);
  await local.close().catch(() => undefined);
}
