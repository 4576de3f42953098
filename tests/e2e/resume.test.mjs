// Transparent upstream reconnect (resume) on /v1/listen: the official
// Deepgram JS SDK streams the speech fixture through sluice while the
// simulator drops the upstream twice (a close 1011 on the first stream, a TCP
// RST on the gateway's reconnect). The SDK sees no close and no error; its
// final Results form one timeline whose times match the audio positions the
// simulator saw; Metadata.duration is the audio sent; the gateway records two
// resume events naming the upstream request ids the simulator dropped.
import assert from "node:assert/strict";
import { DeepgramClient } from "@deepgram/sdk";

import {
  SPEECH_WAV,
  deferred,
  e2eTest,
  gatewaySessions,
  readWav,
  simState,
  streamRealtime,
  waitForNoStreams,
} from "./harness.mjs";

// The fixture is about 4 s long: it is sent LOOPS times back to back, so that
// both drops and several utterances fit in one stream (about 12 s, real time).
const LOOPS = 3;
const CHUNK_MS = 100;
// The simulator's utterances: a final Results every 3 s of the audio a stream received.
const UTTERANCE = 3.0;
// Stream 1 (the client's first upstream) ends with 1011 after 4 s of its
// audio; stream 2 (the gateway's first reconnect, whose audio starts with the
// replay from the last final) is reset after 4.5 s of its audio. Neither falls
// on an utterance's end, so no final is in flight when the vendor drops.
const DROP_1 = 4.0;
const DROP_2 = 4.5;
const DROP_ARGS = ["--drop-at", `1@audio:${DROP_1}`, "--drop-at", `2@audio:${DROP_2}/reset`];

const CONFIG = `
pools:
  - name: streaming
    match: {path: /v1/listen}
    limit: 50
    resume: {enabled: true, backoff: 50ms}
`;

/** GET on the gateway's admin API with its token. */
async function adminGet(gw, path) {
  const res = await fetch(`http://${gw.admin}${path}`, { headers: { Authorization: `Bearer ${gw.token}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** The simulator's drops: GET http://ADMIN/drops. */
async function simDrops(sim) {
  const res = await fetch(`http://${sim.admin}/drops`);
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /drops: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

const near = (a, b, tol) => Math.abs(a - b) <= tol;

e2eTest("resume: the upstream drops twice mid-stream; the SDK sees one stream on one timeline", async (t, stack) => {
  const wav = readWav(SPEECH_WAV);
  assert.equal(wav.sampleRate, 16000);
  assert.equal(wav.channels, 1);
  assert.equal(wav.bitsPerSample, 16);
  const pcm = Buffer.concat(Array.from({ length: LOOPS }, () => wav.pcm));
  const bytesPerSecond = wav.sampleRate * 2;
  const seconds = pcm.length / bytesPerSecond;
  const sample = 1 / wav.sampleRate;
  const chunkSeconds = CHUNK_MS / 1000;
  // The second drop must come after the first resume, and both inside the audio.
  assert.ok(Math.floor(DROP_1 / UTTERANCE) * UTTERANCE + DROP_2 + chunkSeconds < seconds, "the cues fall outside the audio");

  const sim = await stack.startSim({ args: DROP_ARGS });
  const gw = await stack.startGateway({ upstream: sim.url, config: CONFIG });

  const client = new DeepgramClient({ apiKey: "e2e-resume-key", baseUrl: gw.url });
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
  let closeStreamSent = false;
  let closedEarly = null;
  const closed = deferred();
  socket.on("open", () => {
    opens += 1;
  });
  socket.on("message", (m) => messages.push(m));
  socket.on("error", (e) => errors.push(e));
  socket.on("close", (e) => {
    if (!closeStreamSent) closedEarly = { code: e?.code, reason: e?.reason };
    closed.resolve(e);
  });

  socket.connect();
  await socket.waitForOpen();

  let sentSoFar = 0;
  const send = (chunk) => {
    if (closedEarly) {
      throw new Error(
        `the SDK saw a close before CloseStream, after ${(sentSoFar / bytesPerSecond).toFixed(3)} s of audio: ` +
          `${JSON.stringify(closedEarly)}; errors: ${errors.map(String).join("; ")}`,
      );
    }
    socket.sendMedia(chunk);
    sentSoFar += chunk.length;
  };
  const sent = await streamRealtime(pcm, send, { sampleRate: 16000, chunkMs: CHUNK_MS });
  assert.equal(sent, pcm.length);
  assert.equal(closedEarly, null, `the SDK saw a close before CloseStream: ${JSON.stringify(closedEarly)}`);

  // While the stream is still open: the gateway's live entry lists every
  // upstream connection it had (the first and the two reconnects).
  const live = await gatewaySessions(gw);
  assert.equal(live.count, 1, `sessions: ${JSON.stringify(live)}`);
  const entry = live.sessions[0];
  assert.equal(entry.resumes, 2, `live entry: ${JSON.stringify(entry)}`);
  assert.equal(entry.upstream_request_ids?.length, 3, `live entry: ${JSON.stringify(entry)}`);

  closeStreamSent = true;
  socket.sendCloseStream({ type: "CloseStream" });

  const close = await closed.promise;
  assert.equal(close.code, 1000, `close code ${close.code} (${close.reason})`);
  assert.equal(opens, 1);
  assert.deepEqual(errors, []);

  // --- The simulator's ground truth: two drops, at the cued positions. ---
  const drops = await simDrops(sim);
  assert.equal(drops.streams, 3, `sim /drops: ${JSON.stringify(drops)}`);
  assert.equal(drops.drops.length, 2, `sim /drops: ${JSON.stringify(drops)}`);
  const [d1, d2] = drops.drops;
  assert.equal(d1.stream, 1);
  assert.equal(d1.how, "1011");
  assert.equal(d2.stream, 2);
  assert.equal(d2.how, "reset");
  // A drop falls within one frame (one chunk) past its cue.
  assert.ok(d1.audio_seconds >= DROP_1 - 1e-9 && d1.audio_seconds <= DROP_1 + chunkSeconds + 1e-9, `drop 1 at ${d1.audio_seconds} s`);
  assert.ok(d2.audio_seconds >= DROP_2 - 1e-9 && d2.audio_seconds <= DROP_2 + chunkSeconds + 1e-9, `drop 2 at ${d2.audio_seconds} s`);
  assert.notEqual(d1.request_id, d2.request_id);

  // Where each drop lies on the client's timeline, and where each new
  // upstream's zero must be: the end of the last final the client had (the
  // simulator's finals end every UTTERANCE seconds of each stream's audio).
  const offset1 = Math.floor(d1.audio_seconds / UTTERANCE) * UTTERANCE;
  const dropAt2 = offset1 + d2.audio_seconds;
  const offset2 = Math.floor(dropAt2 / UTTERANCE) * UTTERANCE;

  // --- The gateway's resume events. ---
  const ev = await adminGet(gw, "/api/v1/events?type=resume");
  assert.equal(ev.count, 2, `resume events: ${JSON.stringify(ev)}`);
  assert.equal(ev.events.length, 2);
  const [r1, r2] = ev.events;
  for (const r of ev.events) {
    assert.equal(r.type, "resume");
    assert.equal(r.outcome, "resumed", `event: ${JSON.stringify(r)}`);
    assert.ok(r.attempts >= 1, `event: ${JSON.stringify(r)}`);
    assert.equal(typeof r.reason, "string");
    assert.equal(r.lost_seconds, 0, `event: ${JSON.stringify(r)}`);
    assert.equal(typeof r.gap_ms, "number");
  }
  assert.equal(r1.close_code, 1011, `event 1: ${JSON.stringify(r1)}`);
  // An RST has no close code (null; a lost connection).
  assert.ok(r2.close_code == null || r2.close_code === 0, `event 2: ${JSON.stringify(r2)}`);
  assert.equal(r1.old_request_id, d1.request_id, "the first resume replaces the first stream dropped");
  assert.equal(r1.new_request_id, d2.request_id, "the first resume's upstream is the second stream dropped");
  assert.equal(r2.old_request_id, d2.request_id, "the second resume replaces the second stream dropped");
  assert.equal(typeof r2.new_request_id, "string");
  assert.ok(![d1.request_id, d2.request_id].includes(r2.new_request_id), `event 2: ${JSON.stringify(r2)}`);
  assert.deepEqual(entry.upstream_request_ids, [d1.request_id, d2.request_id, r2.new_request_id]);
  // Each new upstream starts at the last final; the replay holds at least
  // the audio from there to the drop (plus what arrived during the gap).
  assert.ok(near(r1.offset_seconds, offset1, 1e-3), `event 1 offset ${r1.offset_seconds}, expected ${offset1}`);
  assert.ok(near(r2.offset_seconds, offset2, 1e-3), `event 2 offset ${r2.offset_seconds}, expected ${offset2}`);
  const replayLow1 = d1.audio_seconds - offset1 - chunkSeconds;
  const replayLow2 = dropAt2 - offset2 - chunkSeconds;
  assert.ok(r1.replay_seconds >= replayLow1, `event 1 replay ${r1.replay_seconds} s < ${replayLow1}`);
  assert.ok(r2.replay_seconds >= replayLow2, `event 2 replay ${r2.replay_seconds} s < ${replayLow2}`);
  for (const [r, low] of [[r1, replayLow1], [r2, replayLow2]]) {
    const high = low + 2 * chunkSeconds + r.gap_ms / 1000 + 0.5;
    assert.ok(r.replay_seconds <= high, `replay ${r.replay_seconds} s > ${high} (gap ${r.gap_ms} ms): ${JSON.stringify(r)}`);
  }

  // --- What the SDK received: one timeline. ---
  const results = messages.filter((m) => m.type === "Results");
  const finals = results.filter((r) => r.is_final === true);
  // The utterances' boundaries on the client's timeline: every new upstream
  // starts at a final's end, so they are the multiples of UTTERANCE, then
  // the end of the audio (the final CloseStream asks for).
  const ends = [];
  for (let e = UTTERANCE; e < seconds - 1e-9; e += UTTERANCE) ends.push(e);
  ends.push(seconds);
  assert.deepEqual(
    finals.map((f) => Number((f.start + f.duration).toFixed(6))),
    ends.map((e) => Number(e.toFixed(6))),
    `finals: ${JSON.stringify(finals.map((f) => [f.start, f.duration]))}`,
  );
  let prevEnd = 0;
  let prevWord = -Infinity;
  let words = 0;
  for (const f of finals) {
    assert.ok(near(f.start, prevEnd, 1e-6), `a final starts at ${f.start}, the previous one ended at ${prevEnd}`);
    const end = f.start + f.duration;
    const ws = f.channel?.alternatives?.[0]?.words ?? [];
    for (const w of ws) {
      assert.ok(w.start > prevWord, `word ${JSON.stringify(w)} does not start after ${prevWord}`);
      // Word times are rounded to the millisecond by the simulator.
      assert.ok(w.start >= f.start - 5e-4 && w.end <= end + 5e-4 && w.start <= w.end,
        `word ${JSON.stringify(w)} outside its Result [${f.start}, ${end}]`);
      prevWord = w.start;
      words += 1;
    }
    prevEnd = end;
  }
  assert.ok(words > 0, "no words in the finals");
  assert.ok(near(prevEnd, seconds, sample + 1e-6), `the last final ends at ${prevEnd}, sent ${seconds} s`);

  // Interim Results (the new upstreams' included) lie on the same timeline:
  // each covers the current utterance so far, from the last final's end.
  let utteranceStart = 0;
  for (const r of results) {
    if (r.is_final) {
      utteranceStart = r.start + r.duration;
      continue;
    }
    assert.ok(near(r.start, utteranceStart, 1e-6), `interim ${JSON.stringify([r.start, r.duration])} after a final ending at ${utteranceStart}`);
    assert.ok(r.start + r.duration <= utteranceStart + UTTERANCE + 1e-6, `interim ${JSON.stringify([r.start, r.duration])}`);
  }

  // The summary Metadata is the last message, once, and covers exactly the audio sent.
  const last = messages.at(-1);
  assert.equal(last?.type, "Metadata", `last message is ${JSON.stringify(last)}`);
  assert.equal(messages.filter((m) => m.type === "Metadata").length, 1);
  assert.ok(near(last.duration, seconds, sample + 1e-9), `Metadata.duration ${last.duration} s, sent ${seconds} s`);

  // Nothing left behind; the simulator saw the client's handshake and the
  // gateway's two reconnects.
  const { state } = await waitForNoStreams(gw, sim);
  assert.equal(state.handshakes, 3);

  const requestIds = [...new Set(results.map((r) => r.metadata?.request_id))];
  t.diagnostic(`${seconds.toFixed(6)} s sent; ${results.length} Results, ${finals.length} finals, ${words} words`);
  t.diagnostic(`Results [start, duration, is_final]: ${JSON.stringify(results.map((r) => [r.start, r.duration, r.is_final]))}`);
  t.diagnostic(`finals: ${JSON.stringify(finals.map((f) => [f.start, f.duration, f.channel.alternatives[0].words.length]))}`);
  t.diagnostic(`sim drops: ${JSON.stringify(drops.drops.map((d) => ({ stream: d.stream, audio_seconds: d.audio_seconds, after_seconds: d.after_seconds, how: d.how })))}`);
  for (const r of ev.events) {
    t.diagnostic(
      `resume: reason=${JSON.stringify(r.reason)} close_code=${r.close_code} attempts=${r.attempts} gap_ms=${r.gap_ms} ` +
        `replay_seconds=${r.replay_seconds} lost_seconds=${r.lost_seconds} offset_seconds=${r.offset_seconds}`,
    );
  }
  t.diagnostic(`Results request_ids seen by the client: ${JSON.stringify(requestIds)}; Metadata.request_id ${last.request_id}`);
});
