// The official Deepgram JS SDK streams speech through sluice (pass-through
// mode) to the bundled simulator on /v1/listen, in real time, and closes with
// CloseStream.
import assert from "node:assert/strict";
import { DeepgramClient } from "@deepgram/sdk";

import { SPEECH_WAV, deferred, e2eTest, readWav, simState, streamRealtime, waitForNoStreams } from "./harness.mjs";

e2eTest("listen v1: SDK streams a WAV through the gateway and gets Results, Metadata and a normal close", async (t, stack) => {
  const wav = readWav(SPEECH_WAV);
  assert.equal(wav.sampleRate, 16000);
  assert.equal(wav.channels, 1);
  assert.equal(wav.bitsPerSample, 16);

  const sim = await stack.startSim();
  const gw = await stack.startGateway({ upstream: sim.url });

  const client = new DeepgramClient({ apiKey: "e2e-listen-v1-key", baseUrl: gw.url });
  const socket = await client.listen.v1.connect({
    model: "nova-3",
    encoding: "linear16",
    sample_rate: 16000,
    interim_results: true,
    reconnectAttempts: 0,
  });

  const messages = [];
  const errors = [];
  let opens = 0;
  const closed = deferred();
  socket.on("open", () => {
    opens += 1;
  });
  socket.on("message", (m) => messages.push(m));
  socket.on("error", (e) => errors.push(e));
  socket.on("close", (e) => closed.resolve(e));

  socket.connect();
  await socket.waitForOpen();

  const sent = await streamRealtime(wav.pcm, (chunk) => socket.sendMedia(chunk), { sampleRate: 16000, chunkMs: 100 });
  assert.equal(sent, wav.pcm.length);
  socket.sendCloseStream({ type: "CloseStream" });

  const close = await closed.promise;
  assert.equal(close.code, 1000, `close code ${close.code} (${close.reason})`);
  assert.equal(opens, 1);
  assert.deepEqual(errors, []);

  const results = messages.filter((m) => m.type === "Results");
  assert.ok(results.length >= 2, `only ${results.length} Results`);
  assert.ok(results.some((r) => r.is_final === true), "no final Results");
  assert.ok(results.some((r) => r.is_final === false), "no interim Results (interim_results=true)");
  for (const r of results) {
    assert.equal(typeof r.start, "number");
    assert.equal(typeof r.duration, "number");
    assert.ok(Array.isArray(r.channel?.alternatives), "Results without channel.alternatives");
  }
  const transcripts = results.filter((r) => r.is_final).map((r) => r.channel.alternatives[0]?.transcript ?? "");
  assert.ok(transcripts.some((s) => s.length > 0), "every final transcript is empty");

  // The summary Metadata is the last message, and covers exactly the audio sent.
  const last = messages.at(-1);
  assert.equal(last?.type, "Metadata", `last message is ${JSON.stringify(last)}`);
  assert.equal(messages.filter((m) => m.type === "Metadata").length, 1);
  const frame = 1 / wav.sampleRate;
  assert.ok(
    Math.abs(last.duration - wav.seconds) <= frame + 1e-9,
    `Metadata.duration ${last.duration} s, sent ${wav.seconds} s`,
  );
  assert.equal(last.channels, 1);
  assert.equal(typeof last.request_id, "string");

  // Nothing left behind: the gateway's session list is empty, the simulator
  // has no stream open, and the SDK connected exactly once.
  const { state } = await waitForNoStreams(gw, sim);
  assert.equal(state.handshakes, 1);
  t.diagnostic(`${results.length} Results; final transcripts: ${JSON.stringify(transcripts)}`);
});
