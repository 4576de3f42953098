// Browsers cannot set an Authorization header on a WebSocket, so Deepgram
// (and sluice) accept the key as the subprotocol pair ["token", KEY]. These
// tests use a raw `ws` client the way a browser would.
import assert from "node:assert/strict";
import WebSocket from "ws";

import {
  SPEECH_WAV,
  deferred,
  e2eTest,
  hashKey,
  readWav,
  simState,
  streamRealtime,
  waitForNoStreams,
} from "./harness.mjs";

const LISTEN_QUERY = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true";

// Opens a socket and records what happens to it.
function openSocket(url, protocols) {
  const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
  const out = {
    ws,
    messages: [],
    opened: deferred(),
    closed: deferred(),
    rejected: deferred(), // HTTP answer other than 101
  };
  ws.on("open", () => out.opened.resolve());
  ws.on("message", (data, isBinary) => {
    out.messages.push(isBinary ? data : JSON.parse(data.toString("utf8")));
  });
  ws.on("close", (code, reason) => {
    const ev = { code, reason: reason.toString("utf8") };
    out.closed.resolve(ev);
    out.opened.reject(new Error(`closed before open: ${JSON.stringify(ev)}`));
  });
  ws.on("error", (err) => {
    out.opened.reject(err);
    out.rejected.reject(err);
  });
  ws.on("unexpected-response", (req, res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (c) => {
      body += c;
    });
    res.on("end", () => {
      out.rejected.resolve({ statusCode: res.statusCode, headers: res.headers, body });
      out.opened.reject(new Error(`HTTP ${res.statusCode} instead of an upgrade`));
      req.destroy();
    });
  });
  // Whichever of these is not the outcome must not be reported as unhandled.
  out.opened.promise.catch(() => {});
  out.rejected.promise.catch(() => {});
  return out;
}

// Streams the fixture, ends with CloseStream, and returns the close event.
async function streamAndClose(sock, wav) {
  await streamRealtime(wav.pcm, (chunk) => sock.ws.send(chunk), { sampleRate: 16000, chunkMs: 100 });
  sock.ws.send(JSON.stringify({ type: "CloseStream" }));
  return sock.closed.promise;
}

function assertTranscribed(messages, wav) {
  const results = messages.filter((m) => m.type === "Results");
  assert.ok(results.length >= 2, `only ${results.length} Results`);
  assert.ok(results.some((r) => r.is_final === true), "no final Results");
  const last = messages.at(-1);
  assert.equal(last?.type, "Metadata");
  assert.ok(Math.abs(last.duration - wav.seconds) <= 1 / wav.sampleRate + 1e-9, `Metadata.duration ${last.duration}`);
}

e2eTest("browser subprotocol: ['token', KEY] opens, is answered with 'token' only, and Results flow", async (t, stack) => {
  const wav = readWav(SPEECH_WAV);
  const key = "e2e-browser-pass-through-key";
  const sim = await stack.startSim();
  const gw = await stack.startGateway({ upstream: sim.url });

  const sock = openSocket(gw.url + LISTEN_QUERY, ["token", key]);
  await sock.opened.promise;
  // The selected subprotocol is the scheme word; the secret is never echoed.
  assert.equal(sock.ws.protocol, "token");
  assert.ok(!sock.ws.protocol.includes(key));

  const close = await streamAndClose(sock, wav);
  assert.equal(close.code, 1000, `close ${JSON.stringify(close)}`);
  assertTranscribed(sock.messages, wav);

  const { state } = await waitForNoStreams(gw, sim);
  assert.equal(state.handshakes, 1);
});

e2eTest("browser subprotocol, virtual-key mode: an unknown key gets HTTP 401 and never reaches the upstream", async (t, stack) => {
  const wav = readWav(SPEECH_WAV);
  const clientKey = "e2e-web-tenant-key";
  const upstreamKey = "e2e-upstream-deepgram-key";
  const hash = await hashKey(clientKey);
  assert.match(hash, /^sha256:[0-9a-f]{64}$/);

  // The simulator accepts only the upstream key, so a stream that reaches it
  // proves the gateway injected that key in place of the client's.
  const sim = await stack.startSim({ keys: [upstreamKey] });
  const config = ["tenants:", "  - name: web", "    keys:", `      - "${hash}"`, ""].join("\n");
  const gw = await stack.startGateway({ upstream: sim.url, config, env: { DEEPGRAM_API_KEY: upstreamKey } });

  // A key that no tenant has.
  const wrongKey = "e2e-not-a-tenant-key";
  const wrong = openSocket(gw.url + LISTEN_QUERY, ["token", wrongKey]);
  const refused = await wrong.rejected.promise;
  assert.equal(refused.statusCode, 401);
  assert.ok(!refused.body.includes(wrongKey), "the 401 body repeats the key");

  // No credential at all.
  const none = openSocket(gw.url + LISTEN_QUERY);
  assert.equal((await none.rejected.promise).statusCode, 401);

  // The upstream's own key, offered by a client, is not a tenant key either.
  const upstreamAsClient = openSocket(gw.url + LISTEN_QUERY, ["token", upstreamKey]);
  assert.equal((await upstreamAsClient.rejected.promise).statusCode, 401);

  let state = await simState(sim);
  assert.equal(state.handshakes, 0, `the simulator saw ${state.handshakes} handshake(s) for refused clients`);

  // The tenant's key opens, with the same subprotocol answer, and is relayed.
  const good = openSocket(gw.url + LISTEN_QUERY, ["token", clientKey]);
  await good.opened.promise;
  assert.equal(good.ws.protocol, "token");
  const close = await streamAndClose(good, wav);
  assert.equal(close.code, 1000, `close ${JSON.stringify(close)}`);
  assertTranscribed(good.messages, wav);

  ({ state } = await waitForNoStreams(gw, sim));
  assert.equal(state.handshakes, 1);
});
