// The admin dashboard in a real browser: Debian's chromium driven by
// playwright-core, against sluice and its simulator on 127.0.0.1. The page
// logs in, shows a stream this test opened, its pool's chart rises, a 429
// from the vendor expands into its snapshot, ending the stream from the table
// closes it at the client, and the peaks form answers (and exports CSV). A
// screenshot of each view is kept in SLUICE_SCREENSHOT_DIR (ctest: the build
// folder's screenshots/). Waits are polls with generous bounds, except the
// one the dashboard promises: a new stream is on the page within 2 s.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { e2eTest, gatewaySessions, waitFor } from "./harness.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const SHOTS = resolve(process.env.SLUICE_SCREENSHOT_DIR ?? join(HERE, "../../build/screenshots"));
const CHROMIUM = process.env.SLUICE_CHROMIUM ?? "/usr/bin/chromium";
const LISTEN = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1";
const SHOWN_WITHIN_MS = 2000;

const CONFIG = `
pools:
  - name: streaming
    match: {path: /v1/listen}
    limit: 5
relay:
  idle_after: 1s
upstream:
  retry_429:
    initial_backoff: 100ms
    max_backoff: 200ms
    deadline: 1s
store:
  flush_interval: 50ms
`;

/** Opens a stream through the gateway; resolves with { ws, requestId, closed }. */
function openStream(gw) {
  return new Promise((resolveOpen, reject) => {
    const ws = new WebSocket(`${gw.url}${LISTEN}`, { headers: { Authorization: "Token e2e-key" } });
    let requestId = null;
    const closed = new Promise((r) => ws.on("close", (code) => r(code)));
    ws.on("upgrade", (res) => (requestId = res.headers["dg-request-id"] ?? null));
    ws.on("open", () => resolveOpen({ ws, requestId, closed }));
    ws.on("unexpected-response", (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.on("error", reject);
  });
}

/** A stream refused in the end: resolves with the HTTP status of the refusal. */
function refusedStream(gw) {
  return openStream(gw).then(
    ({ ws }) => {
      ws.close();
      return 101;
    },
    (err) => err.status ?? -1,
  );
}

async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, `dashboard-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

e2eTest("the dashboard shows, charts and ends streams, expands a 429 and answers the peaks question", async (t, stack) => {
  assert.ok(existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (scripts/install-deps.sh installs it)`);
  const sim = await stack.startSim({ limits: { streaming: 1 } });
  const gw = await stack.startGateway({ upstream: sim.url, config: CONFIG });
  const base = `http://${gw.admin}`;

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const streams = [];
  let audio;
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    // Only the gateway's admin listener on 127.0.0.1 is reached: any other request fails the test.
    const elsewhere = [];
    page.on("request", (req) => {
      const u = new URL(req.url());
      if (!(u.protocol === "blob:" || (u.hostname === "127.0.0.1" && u.host === gw.admin))) elsewhere.push(req.url());
    });
    const pageErrors = [];
    page.on("pageerror", (err) => pageErrors.push(String(err)));

    // Log in. The page itself is public; every piece of data needs the token.
    await page.goto(`${base}/`);
    await page.waitForSelector("#login-form");
    await shot(page, "login");
    await page.fill("#token", "not-the-token");
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("refused"));
    await page.fill("#token", gw.token);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#tabs:not([hidden])");
    await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("live"));
    assert.ok(!page.url().includes(gw.token), "the token is never in a URL");

    // A stream opened now is in the sessions table within 2 s.
    await page.click("#tabs button[data-view=sessions]");
    const a = await openStream(gw);
    streams.push(a);
    assert.ok(a.requestId, "the gateway answered with a dg-request-id");
    const openedAt = Date.now();
    // Half a second of audio, then only KeepAlives: after relay.idle_after
    // (1 s here) the stream is idle and KeepAlive-only.
    let ticks = 0;
    audio = setInterval(() => {
      if (a.ws.readyState !== WebSocket.OPEN) return;
      if (ticks < 5) a.ws.send(Buffer.alloc(3200));
      else if (ticks % 3 === 0) a.ws.send(JSON.stringify({ type: "KeepAlive" }));
      ticks++;
    }, 100);
    await page.waitForSelector(`#sessions-table tbody tr:has(td.rid:text-is("${a.requestId}"))`, { timeout: SHOWN_WITHIN_MS });
    t.diagnostic(`the stream was on the page ${Date.now() - openedAt} ms after it opened`);
    const row = page.locator(`#sessions-table tbody tr:has(td.rid:text-is("${a.requestId}"))`);
    const sessionId = await row.getAttribute("data-id");
    assert.match(sessionId, /^\d+$/);

    // Its pool's chart rises.
    await page.click("#tabs button[data-view=pools]");
    await page.waitForFunction(() => Number(document.querySelector("#chart-streaming")?.dataset.max) >= 1, null, { timeout: 30_000 });
    await page.waitForSelector('#pools-table tr[data-pool="streaming"] td.in-use:text-is("1")');

    // A second stream meets the vendor's 429 (the simulator allows one): the
    // event opens into who held the pool.
    const refused = await refusedStream(gw);
    assert.equal(refused, 429, "the client got the gateway's 429 once its retries ran out");
    await page.click("#tabs button[data-view=events]");
    const ev429 = page.locator("details.ev-429").first();
    await ev429.waitFor({ timeout: 30_000 });
    await ev429.locator("summary").click();
    await page.waitForSelector(`details.ev-429[open] table.snapshot td.rid:text-is("${a.requestId}")`, { timeout: 30_000 });
    await shot(page, "events");

    // The chart shows the 429 as a marker (the pools view, with the 429 in it).
    await page.click("#tabs button[data-view=pools]");
    await page.waitForFunction(
      () => (window.sluiceDashboard.state.charts.get("streaming")?.data[4] ?? []).some((v) => v != null),
      null,
      { timeout: 30_000 },
    );
    await shot(page, "pools");

    // The range picker reads the history for a past range, then goes back to live.
    await page.selectOption("#range", "6h");
    await page.waitForFunction(() => document.querySelector("#range-note").textContent.includes("the most open in each"), null, {
      timeout: 30_000,
    });
    assert.ok(Number(await page.locator("#chart-streaming").getAttribute("data-points")) > 0, "the past range has points");
    await page.selectOption("#range", "live");

    // The stream that only keeps alive is highlighted; the refused one has left the table.
    await page.click("#tabs button[data-view=sessions]");
    await page.waitForSelector(`#sessions-table tbody tr.keepalive[data-id="${sessionId}"]`, { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelectorAll("#sessions-table tbody tr").length === 1, null, { timeout: 30_000 });
    await shot(page, "sessions");

    // End the stream from the table, confirming: it closes at the client.
    await page.click(`#sessions-table button.end[data-id="${sessionId}"]`);
    await page.waitForSelector("#confirm-end[open]");
    await page.click("#confirm-end-ok");
    const code = await waitFor(() => Promise.race([a.closed, new Promise((r) => setTimeout(() => r(null), 200))]), {
      what: "the stream to close at the client",
    });
    assert.equal(code, 1000);
    clearInterval(audio);
    await waitFor(async () => (await gatewaySessions(gw)).count === 0, { what: "the gateway's session list to empty" });
    await page.waitForFunction(() => document.querySelectorAll("#sessions-table tbody tr").length === 0, null, { timeout: 30_000 });

    // The peaks form: the peak of the last 10 minutes, when, and the streams open then.
    await page.click("#tabs button[data-view=peaks]");
    await page.fill("#peaks-from", "-10m");
    await page.fill("#peaks-to", "now");
    await page.fill("#peaks-window", "1m");
    await waitFor(
      async () => {
        await page.click("#peaks-form button[type=submit]");
        await page.waitForSelector("#peaks-result .peak, #peaks-error:not(:empty)", { timeout: 30_000 });
        return (await page.locator(`.peak[data-pool="streaming"] td.rid:text-is("${a.requestId}")`).count()) > 0;
      },
      { what: "the peaks form to show the stream", intervalMs: 500 },
    );
    const heading = await page.locator('.peak[data-pool="streaming"] h3').textContent();
    assert.match(heading, /peak 1\b/);
    await shot(page, "peaks");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#peaks-csv")]);
    const csv = readFileSync(await download.path(), "utf8");
    assert.match(csv.split("\r\n")[0], /^pool,peak,peak_at,/);
    assert.ok(csv.includes(a.requestId), "the CSV lists the stream's request id");

    assert.deepEqual(elsewhere, [], "no request left the admin listener");
    assert.deepEqual(pageErrors, [], "no script error on the page");

    // The gateway stops (SIGTERM, nothing to drain): the page's stream ends
    // with the gateway's last frame rather than a broken connection.
    await gw.proc.stop();
    await page.waitForFunction(() => window.sluiceDashboard.state.stopped === true, null, { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("the gateway stopped"));
  } finally {
    clearInterval(audio);
    for (const s of streams) s.ws.terminate();
    await browser.close();
  }
});
