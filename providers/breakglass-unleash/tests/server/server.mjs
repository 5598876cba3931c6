// Starts a real unleash-server (the npm package pinned by package-lock.json beside this file)
// for the breakglass-unleash tests. Everything comes from the environment, which the pytest
// fixture in ../conftest.py sets: DATABASE_URL, BG_UNLEASH_PORT (0: any free port, named in the
// ready file), INIT_ADMIN_API_TOKENS, INIT_BACKEND_API_TOKENS, BG_UNLEASH_READY_FILE.
//
// unleash-server >= 7 ships as an ES module only, so this file is .mjs and uses import.
// It installs its own SIGTERM/SIGINT handler (graceful shutdown); adding a second one here
// would make it shut down twice, so there is none.
import { writeFileSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const unleash = await import(require.resolve('unleash-server'));

const env = process.env;
const host = '127.0.0.1';
const port = Number(env.BG_UNLEASH_PORT);
if (!env.BG_UNLEASH_PORT || !Number.isInteger(port)) {
  console.error('[server.mjs] BG_UNLEASH_PORT is not set');
  process.exit(2);
}

const instance = await unleash.start({
  db: { connectionString: env.DATABASE_URL, ssl: false },
  server: {
    host,
    port,
    unleashUrl: `http://${host}:${port}`,
    // The tests stop and restart the server; a long drain only slows them down.
    gracefulShutdownTimeout: 200,
  },
  // Real token checks on /api/admin and /api/client; the tokens come from INIT_*_API_TOKENS.
  authentication: { type: 'open-source', enableApiToken: true },
  // Loopback only: no telemetry, no version check.
  versionCheck: { enable: false },
  telemetry: false,
  logLevel: env.LOG_LEVEL || 'warn',
});

// The fixture waits for this file (the pid of the listening process and the port it listens on)
// before polling /health.
const bound = instance.server.address().port;
if (env.BG_UNLEASH_READY_FILE) {
  writeFileSync(`${env.BG_UNLEASH_READY_FILE}.tmp`, `${process.pid} ${bound}\n`);
  renameSync(`${env.BG_UNLEASH_READY_FILE}.tmp`, env.BG_UNLEASH_READY_FILE);
}
console.log(`[server.mjs] unleash ${instance.version} listening on http://${host}:${bound} (pid ${process.pid})`);
