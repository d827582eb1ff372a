// The real natterd for browser tests: the workspace's debug build on an ephemeral port with a
// fresh SQLite database in a temporary directory, stopped (and the directory removed) after.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The workspace's target directory. */
export const target = new URL('../../../target/', import.meta.url).pathname;

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Runs natterd on `port` with the database in `dir`; resolves once it answers /readyz. */
async function spawnNatterd(binary, dir, port, admin) {
  const child = spawn(
    binary,
    [
      '--listen', `127.0.0.1:${port}`,
      '--admin-listen', `127.0.0.1:${admin}`,
      '--database-url', `sqlite://${join(dir, 'natter.db')}`,
      '--argon2-memory-kib', '8',
      '--argon2-iterations', '1',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const run = { child, log: '' };
  child.stderr.on('data', (chunk) => (run.log += chunk));
  run.exited = new Promise((resolve) => child.once('exit', resolve));
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`natterd (${binary}) exited: ${run.log}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return run;
    } catch {
      // not listening yet
    }
    if (i > 200) throw new Error(`natterd did not become ready: ${run.log}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs sqlite3 (Debian's) on the database in `dir`. */
function sqlite(dir, sql, ...options) {
  return execFileSync('sqlite3', [...options, join(dir, 'natter.db'), sql], { encoding: 'utf8' });
}

/**
 * Starts natterd; resolves once it is ready, with its base URL, its database's directory,
 * `log()` (everything it wrote to stderr), `down()`/`up()` and `restart()` (the same port and
 * database), `operator(sql)`, `query(sql)` and `stop()`.
 */
export async function startNatterd() {
  const binary = process.env.NATTERD ?? join(target, 'debug/natterd');
  const dir = mkdtempSync(join(tmpdir(), 'natter-web-'));
  const [port, admin] = [await freePort(), await freePort()];
  const logs = [];
  let run = await spawnNatterd(binary, dir, port, admin);
  const down = async () => {
    if (!run) return;
    run.child.kill('SIGTERM');
    await run.exited;
    logs.push(run.log);
    run = null;
  };
  const up = async () => {
    run ??= await spawnNatterd(binary, dir, port, admin);
  };
  return {
    url: `http://127.0.0.1:${port}`,
    dir,
    log: () => logs.join('') + (run?.log ?? ''),
    down,
    up,
    async restart() {
      await down();
      await up();
    },
    async stop() {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
    /**
     * Runs SQL on natterd's database as its operator would (Debian's sqlite3), natterd stopped
     * meanwhile so that nothing it holds in memory disagrees; returns what it printed.
     */
    async operator(sql) {
      await down();
      try {
        return sqlite(dir, sql);
      } finally {
        await up();
      }
    },
    /** Reads natterd's database while it runs; returns what sqlite3 printed, trimmed. */
    query: (sql) => sqlite(dir, sql, '-readonly').trim(),
  };
}
