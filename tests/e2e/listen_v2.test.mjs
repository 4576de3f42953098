// The official Deepgram JS SDK streams speech through sluice (pass-through
// mode) to the bundled simulator on /v2/listen (Flux), in real time, and
// closes with CloseStream, after which Flux closes without a status code.
import assert from "node:assert/strict";
import { DeepgramClient } from "@deepgram/sdk";

import { SPEECH_WAV, deferred, e2eTest, readWav, streamRealtime, waitForNoStreams } from "./harness.mjs";

e2eTest("listen v2 (Flux): SDK gets Connected and TurnInfo events, and CloseStream ends with no status (1005)", async (t, stack) => {
  const wav = readWav(SPEECH_WAV);
  assert.equal(wav.sampleRate, 16000);

  const sim = await stack.startSim();
  const gw = await stack.startGateway({ upstream: sim.url });

  const client = new DeepgramClient({ apiKey: "e2e-listen-v2-key", baseUrl: gw.url });
  const socket = await client.listen.v2.connect({
    model: "flux-general-en",
    encoding: "linear16",
    sample_rate: 16000,
    reconnectAttempts: 0,
  });

  const messages = [];
  const errors = [];
  let opens = 0;
  const closed = deferred();
  const connected = deferred();
  socket.on("open", () => {
    opens += 1;
  });
  socket.on("message", (m) => {
    messages.push(m);
    if (m.type === "Connected") connected.resolve(m);
  });
  socket.on("error", (e) => errors.push(e));
  socket.on("close", (e) => closed.resolve(e));

  socket.connect();
  await socket.waitForOpen();
  // Flux greets every stream before any audio.
  const hello = await connected.promise;
  assert.equal(hello.sequence_id, 0);
  assert.equal(typeof hello.request_id, "string");

  await streamRealtime(wav.pcm, (chunk) => socket.sendMedia(chunk), { sampleRate: 16000, chunkMs: 100 });
  socket.sendCloseStream({ type: "CloseStream" });

  const close = await closed.promise;
  assert.equal(close.code, 1005, `close code ${close.code} (${close.reason}); Flux closes without a status`);
  assert.equal(opens, 1);
  assert.deepEqual(errors, []);

  assert.equal(messages[0]?.type, "Connected");
  const turns = messages.filter((m) => m.type === "TurnInfo");
  assert.ok(turns.length >= 3, `only ${turns.length} TurnInfo messages`);
  const events = new Set(turns.map((m) => m.event));
  assert.ok(events.has("StartOfTurn"), `events: ${[...events]}`);
  assert.ok(events.has("Update"), `events: ${[...events]}`);
  assert.ok(events.has("EndOfTurn"), `events: ${[...events]}`);
  for (const m of turns) {
    assert.equal(m.request_id, hello.request_id);
    assert.equal(typeof m.turn_index, "number");
    assert.equal(typeof m.audio_window_end, "number");
    assert.ok(m.audio_window_end <= wav.seconds + 1e-6, `audio_window_end ${m.audio_window_end} past the audio sent`);
  }
  // Every message relayed once and in order: sequence_id counts up from 0.
  assert.deepEqual(
    messages.map((m) => m.sequence_id),
    messages.map((_, i) => i),
  );

  // The SDK does not reconnect after a 1005 that follows CloseStream; nothing
  // is left open at the gateway or the simulator.
  const { state } = await waitForNoStreams(gw, sim);
  assert.equal(state.handshakes, 1);
  t.diagnostic(`${turns.length} TurnInfo: ${turns.map((m) => m.event).join(", ")}`);
});
