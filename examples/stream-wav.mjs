#!/usr/bin/env node
// Streams a WAV file through a sluice gateway with the official Deepgram JS SDK
// and prints the transcripts and the final Metadata.
//
//   node examples/stream-wav.mjs ws://127.0.0.1:8080 tests/fixtures/speech.wav [KEY]
//
// KEY defaults to $DEEPGRAM_API_KEY, else "demo-key" (fine when the gateway is
// in pass-through mode in front of the bundled simulator). The WAV must be
// 16-bit linear PCM; it is sent in real time, 100 ms per message, on
// /v1/listen (nova-3, interim results on), then CloseStream.
//
// The SDK is loaded from tests/e2e/node_modules: run `npm ci` there first
// (scripts/install-deps.sh does), or install @deepgram/sdk next to this file.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

function loadSdk() {
  const tries = [join(here, "../tests/e2e/package.json"), join(here, "package.json")];
  for (const from of tries) {
    try {
      return createRequire(from)("@deepgram/sdk");
    } catch (err) {
      if (err.code !== "MODULE_NOT_FOUND") throw err;
    }
  }
  console.error("stream-wav: @deepgram/sdk not found; run `npm ci` in tests/e2e (or scripts/install-deps.sh)");
  process.exit(2);
}

function readWav(path) {
  const buf = readFileSync(path);
  if (buf.toString("ascii", 0, 4) !== "RIFF" || buf.toString("ascii", 8, 12) !== "WAVE") {
    throw new Error(`${path}: not a WAV file`);
  }
  let fmt;
  let pcm;
  for (let off = 12; off + 8 <= buf.length; ) {
    const id = buf.toString("ascii", off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    const body = buf.subarray(off + 8, Math.min(off + 8 + size, buf.length));
    if (id === "fmt ") {
      fmt = { format: body.readUInt16LE(0), channels: body.readUInt16LE(2), sampleRate: body.readUInt32LE(4), bits: body.readUInt16LE(14) };
    } else if (id === "data") {
      pcm = body;
    }
    off += 8 + size + (size & 1);
  }
  if (!fmt || !pcm) throw new Error(`${path}: no fmt or data chunk`);
  if ((fmt.format !== 1 && fmt.format !== 0xfffe) || fmt.bits !== 16) {
    throw new Error(`${path}: expected 16-bit linear PCM (convert with: sox in.wav -b 16 -e signed-integer out.wav)`);
  }
  return { ...fmt, pcm };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const [gateway, wavPath, keyArg] = process.argv.slice(2);
  if (!gateway || !wavPath) {
    console.error("usage: node examples/stream-wav.mjs ws://HOST:PORT file.wav [KEY]");
    process.exit(2);
  }
  const apiKey = keyArg ?? process.env.DEEPGRAM_API_KEY ?? "demo-key";
  const wav = readWav(wavPath);
  const seconds = wav.pcm.length / (2 * wav.channels) / wav.sampleRate;
  console.log(`streaming ${wavPath} (${seconds.toFixed(2)} s, ${wav.sampleRate} Hz, ${wav.channels} ch) to ${gateway}/v1/listen`);

  const { DeepgramClient } = loadSdk();
  const client = new DeepgramClient({ apiKey, baseUrl: gateway });
  const socket = await client.listen.v1.connect({
    model: "nova-3",
    encoding: "linear16",
    sample_rate: wav.sampleRate,
    channels: wav.channels,
    interim_results: true,
    punctuate: true,
    reconnectAttempts: 0,
  });

  let metadata;
  const closed = new Promise((resolve) => {
    socket.on("close", (event) => resolve(event));
  });
  socket.on("message", (m) => {
    if (m.type === "Results") {
      const text = m.channel?.alternatives?.[0]?.transcript ?? "";
      const at = `${m.start.toFixed(2)}-${(m.start + m.duration).toFixed(2)}s`;
      if (m.is_final) console.log(`final   ${at}: ${text}`);
      else if (text) console.log(`interim ${at}: ${text}`);
    } else if (m.type === "Metadata") {
      metadata = m;
    } else if (typeof m === "object" && m?.type) {
      console.log(`${m.type}: ${JSON.stringify(m)}`);
    }
  });
  socket.on("error", (err) => console.error(`error: ${err.message ?? err}`));

  socket.connect();
  try {
    await socket.waitForOpen();
  } catch (err) {
    console.error(`could not open ${gateway}/v1/listen: ${err?.message ?? err?.error?.message ?? "connection failed"}`);
    process.exit(1);
  }

  const chunkBytes = (wav.sampleRate / 10) * 2 * wav.channels; // 100 ms
  const start = Date.now();
  for (let i = 0, off = 0; off < wav.pcm.length; i++, off += chunkBytes) {
    const wait = start + i * 100 - Date.now();
    if (wait > 0) await sleep(wait);
    socket.sendMedia(wav.pcm.subarray(off, Math.min(off + chunkBytes, wav.pcm.length)));
  }
  socket.sendCloseStream({ type: "CloseStream" });

  const close = await closed;
  if (metadata) console.log(`Metadata: ${JSON.stringify(metadata, null, 2)}`);
  console.log(`closed: ${close.code}${close.reason ? ` ${close.reason}` : ""}`);
  process.exit(close.code === 1000 ? 0 : 1);
}

main().catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
