// Shared helpers for the end-to-end tests: start `sluice sim` and `sluice serve`
// as child processes on port 0, find their ports from the line each prints on
// stdout, and stop them (SIGTERM, then SIGKILL) when a test ends, passes or not.
// Also: read the simulator's /state and the gateway's /api/v1/sessions, read a
// WAV file, and stream PCM in real time.
import { spawn, execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

const HERE = dirname(fileURLToPath(import.meta.url));

/** The sluice binary: env SLUICE_BINARY, else ../../build/sluice from tests/e2e. */
export const BINARY = resolve(HERE, process.env.SLUICE_BINARY ?? "../../build/sluice");
/** The committed speech fixture (16 kHz mono linear16). */
export const SPEECH_WAV = resolve(HERE, "../fixtures/speech.wav");

const READY_TIMEOUT_MS = 30_000; // for a process to print its listening line
const STOP_GRACE_MS = 10_000; // after SIGTERM, before SIGKILL
const LOG_TAIL_LINES = 200;

// Every child still running; killed outright if this process exits early.
const running = new Set();
process.on("exit", () => {
  for (const p of running) {
    try {
      p.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

// Environment for a child: the inherited one without anything that would
// change how sluice is configured, plus `extra`.
function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("SLUICE_") || k.startsWith("DEEPGRAM_")) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** One child process of the binary, with its stdout/stderr kept in a tail. */
class Proc {
  constructor(name, args, env) {
    this.name = name;
    this.args = args;
    this.lines = [];
    this.exited = false;
    this.exitInfo = null;
    this.child = spawn(BINARY, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    running.add(this);
    this.exitPromise = new Promise((resolveExit) => {
      this.child.on("exit", (code, signal) => {
        this.exited = true;
        this.exitInfo = { code, signal };
        running.delete(this);
        resolveExit(this.exitInfo);
      });
      this.child.on("error", (err) => {
        this.log("spawn", String(err));
        this.exited = true;
        this.exitInfo = { error: err };
        running.delete(this);
        resolveExit(this.exitInfo);
      });
    });
    this.stdoutWaiters = [];
    this.stdoutLines = [];
    this.captureLines(this.child.stdout, "stdout", (line) => {
      this.stdoutLines.push(line);
      for (const w of [...this.stdoutWaiters]) w(line);
    });
    this.captureLines(this.child.stderr, "stderr");
  }

  captureLines(stream, tag, onLine) {
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        this.log(tag, line);
        onLine?.(line);
      }
    });
  }

  log(tag, line) {
    this.lines.push(`[${this.name} ${tag}] ${line}`);
    if (this.lines.length > LOG_TAIL_LINES) this.lines.shift();
    if (process.env.SLUICE_E2E_VERBOSE) process.stderr.write(`[${this.name} ${tag}] ${line}\n`);
  }

  /** Resolves with the regex match of the first stdout line matching `re`. */
  waitForLine(re, timeoutMs = READY_TIMEOUT_MS) {
    return new Promise((resolveLine, reject) => {
      const done = (fn) => {
        clearTimeout(timer);
        this.stdoutWaiters = this.stdoutWaiters.filter((w) => w !== onLine);
        fn();
      };
      const onLine = (line) => {
        const m = re.exec(line);
        if (m) done(() => resolveLine(m));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`${this.name}: no line matching ${re} within ${timeoutMs} ms\n${this.tail()}`))),
        timeoutMs,
      );
      for (const line of this.stdoutLines) {
        const m = re.exec(line);
        if (m) return done(() => resolveLine(m));
      }
      this.stdoutWaiters.push(onLine);
      this.exitPromise.then((info) => {
        done(() => reject(new Error(`${this.name} exited (${JSON.stringify(info)}) before it was ready\n${this.tail()}`)));
      });
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = STOP_GRACE_MS) {
    if (this.exited) return this.exitInfo;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (this.exited) return;
      this.log("harness", `still running ${graceMs} ms after SIGTERM: SIGKILL`);
      this.child.kill("SIGKILL");
    }, graceMs);
    try {
      return await this.exitPromise;
    } finally {
      clearTimeout(timer);
    }
  }

  tail() {
    return this.lines.join("\n");
  }
}

/**
 * The processes and temporary files of one test. `stopAll()` ends them all;
 * `e2eTest` calls it whatever the outcome.
 */
export class Stack {
  constructor() {
    this.procs = [];
    this.tmpDirs = [];
  }

  /** A temporary directory removed at the end of the test. */
  tempDir() {
    const d = mkdtempSync(join(tmpdir(), "sluice-e2e-"));
    this.tmpDirs.push(d);
    return d;
  }

  /**
   * Starts `sluice sim` on ephemeral ports.
   * options: keys (accepted API keys; none: any key), limits ({family: n}),
   * inactivityTimeout (seconds), args (extra arguments).
   * Returns { proc, listen: "HOST:PORT", url: "ws://HOST:PORT", admin: "HOST:PORT" }.
   */
  async startSim({ keys = [], limits = {}, inactivityTimeout, args = [] } = {}) {
    const argv = ["sim", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    for (const k of keys) argv.push("--key", k);
    for (const [family, n] of Object.entries(limits)) argv.push("--limit", `${family}=${n}`);
    if (inactivityTimeout != null) argv.push("--inactivity-timeout", String(inactivityTimeout));
    argv.push(...args);
    const proc = new Proc("sim", argv, childEnv());
    this.procs.push(proc);
    const m = await proc.waitForLine(/^sluice sim listening on (\S+) admin (\S+)\s*$/);
    const sim = { proc, listen: m[1], url: `ws://${m[1]}`, admin: m[2] };
    await waitForHttp(`http://${sim.admin}/state`);
    return sim;
  }

  /**
   * Starts `sluice serve` on ephemeral ports.
   * options: upstream (ws:// URL; omitted: the in-process simulator), config
   * (YAML text, written to a temp file), env (extra environment), args.
   * Returns { proc, listen, url: "ws://HOST:PORT", admin, token }.
   */
  async startGateway({ upstream, config, env = {}, args = [] } = {}) {
    const token = `e2e-admin-${randomUUID()}`;
    const dir = this.tempDir();
    const argv = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    if (upstream) argv.push("--upstream", upstream);
    if (config != null) {
      const file = join(dir, "sluice.yaml");
      writeFileSync(file, config);
      argv.push("--config", file);
    }
    // Only used if the token from the environment were missing; keeps the tree clean.
    argv.push("--admin-token-file", join(dir, "admin.token"));
    argv.push(...args);
    const proc = new Proc("serve", argv, childEnv({ SLUICE_ADMIN_TOKEN: token, SLUICE_DATA_DIR: join(dir, "data"), ...env }));
    this.procs.push(proc);
    const m = await proc.waitForLine(/^sluice listening on (\S+) admin (\S+)\s*$/);
    const gw = { proc, listen: m[1], url: `ws://${m[1]}`, admin: m[2], token };
    await waitForHttp(`http://${gw.admin}/healthz`);
    return gw;
  }

  /** Stops every process, newest first (the gateway before its upstream). */
  async stopAll() {
    const procs = [...this.procs].reverse();
    this.procs = [];
    for (const p of procs) await p.stop();
    for (const d of this.tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }

  logs() {
    return this.procs.map((p) => p.tail()).join("\n");
  }
}

/**
 * A node:test test with its own Stack. The stack is stopped when the test
 * ends, fails or is cancelled (timeout); on failure the processes' last log
 * lines are attached to the error.
 */
export function e2eTest(name, fn, { timeout = 180_000 } = {}) {
  return test(name, { timeout }, async (t) => {
    if (!existsSync(BINARY)) throw new Error(`sluice binary not found at ${BINARY} (build it, or set SLUICE_BINARY)`);
    const stack = new Stack();
    const onAbort = () => {
      stack.stopAll().catch(() => {});
    };
    t.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await fn(t, stack);
    } catch (err) {
      const logs = stack.logs();
      if (logs) {
        t.diagnostic(`process logs (last ${LOG_TAIL_LINES} lines each):`);
        for (const line of logs.split("\n")) t.diagnostic(line);
      }
      throw err;
    } finally {
      t.signal?.removeEventListener("abort", onAbort);
      await stack.stopAll();
    }
  });
}

/** Retries a GET until the server answers at all (any HTTP status). */
export async function waitForHttp(url, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      return res.status;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms: ${err.message}`);
      await sleep(50);
    }
  }
}

async function getJson(url, headers = {}) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** The simulator's ground truth: GET http://ADMIN/state. */
export function simState(sim) {
  return getJson(`http://${sim.admin}/state`);
}

/** Streams open at the simulator, summed over projects and families. */
export function simOpenCount(state) {
  let open = 0;
  for (const families of Object.values(state.projects ?? {})) {
    for (const f of Object.values(families ?? {})) open += f?.open ?? 0;
  }
  return open;
}

/** The gateway's open sessions: GET /api/v1/sessions with the admin token. */
export function gatewaySessions(gw) {
  return getJson(`http://${gw.admin}/api/v1/sessions`, { Authorization: `Bearer ${gw.token}` });
}

/**
 * Polls `probe` until it returns a truthy value, and returns that value. For
 * state that settles shortly after an event (a session leaving a list once
 * its close has been relayed), not for timing assertions: the limit is only
 * there so a broken build fails instead of hanging.
 */
export async function waitFor(probe, { timeoutMs = 30_000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await sleep(intervalMs);
  }
}

/** Waits until the gateway lists no sessions and the simulator has none open. */
export async function waitForNoStreams(gw, sim) {
  const sessions = await waitFor(
    async () => {
      const s = await gatewaySessions(gw);
      return s.count === 0 && s.sessions.length === 0 ? s : false;
    },
    { what: "the gateway's session list to be empty" },
  );
  const state = sim
    ? await waitFor(
        async () => {
          const st = await simState(sim);
          return simOpenCount(st) === 0 ? st : false;
        },
        { what: "the simulator to have no open streams" },
      )
    : undefined;
  return { sessions, state };
}

/** `sluice hash-key KEY` → "sha256:<hex>". */
export function hashKey(key) {
  return new Promise((resolveHash, reject) => {
    execFile(BINARY, ["hash-key", key], { env: childEnv() }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`sluice hash-key failed: ${err.message}\n${stderr}`));
      resolveHash(stdout.trim());
    });
  });
}

/**
 * Reads a RIFF/WAVE file with PCM data.
 * Returns { sampleRate, channels, bitsPerSample, pcm: Buffer, seconds }.
 */
export function readWav(path) {
  const buf = readFileSync(path);
  if (buf.toString("ascii", 0, 4) !== "RIFF" || buf.toString("ascii", 8, 12) !== "WAVE") {
    throw new Error(`${path}: not a RIFF/WAVE file`);
  }
  let fmt;
  let pcm;
  for (let off = 12; off + 8 <= buf.length; ) {
    const id = buf.toString("ascii", off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    const body = buf.subarray(off + 8, Math.min(off + 8 + size, buf.length));
    if (id === "fmt ") {
      fmt = {
        format: body.readUInt16LE(0),
        channels: body.readUInt16LE(2),
        sampleRate: body.readUInt32LE(4),
        bitsPerSample: body.readUInt16LE(14),
      };
    } else if (id === "data") {
      pcm = body;
    }
    off += 8 + size + (size & 1);
  }
  if (!fmt || !pcm) throw new Error(`${path}: missing fmt or data chunk`);
  if (fmt.format !== 1 && fmt.format !== 0xfffe) throw new Error(`${path}: not PCM (format ${fmt.format})`);
  const frameBytes = (fmt.bitsPerSample / 8) * fmt.channels;
  return {
    sampleRate: fmt.sampleRate,
    channels: fmt.channels,
    bitsPerSample: fmt.bitsPerSample,
    pcm,
    seconds: pcm.length / frameBytes / fmt.sampleRate,
  };
}

/**
 * Sends `pcm` through `send` in chunks of `chunkMs` of audio, one chunk every
 * `chunkMs` of wall time (paced against the start, so it does not drift).
 * Returns the number of bytes sent.
 */
export async function streamRealtime(pcm, send, { sampleRate = 16000, bytesPerFrame = 2, chunkMs = 100 } = {}) {
  const chunkBytes = Math.round((sampleRate * chunkMs) / 1000) * bytesPerFrame;
  const start = Date.now();
  let sent = 0;
  for (let i = 0; sent < pcm.length; i++) {
    const due = start + i * chunkMs;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    const chunk = pcm.subarray(sent, Math.min(sent + chunkBytes, pcm.length));
    send(chunk);
    sent += chunk.length;
  }
  return sent;
}

/** A promise with its resolve/reject exposed. */
export function deferred() {
  let resolveFn;
  let rejectFn;
  const promise = new Promise((res, rej) => {
    resolveFn = res;
    rejectFn = rej;
  });
  return { promise, resolve: resolveFn, reject: rejectFn };
}
