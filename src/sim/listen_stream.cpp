// /v1/listen and /v2/listen: audio in, transcripts out.
// g++ 12 takes Asio's coroutine frame allocator (awaitable_frame_base's
// operator new/delete) for a mismatched pair in some coroutines: a false
// positive that would fail -Werror builds.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
#include <spdlog/spdlog.h>

#include "protocol/message.hpp"
#include "sim/flux_recognizer.hpp"
#include "sim/listen_recognizer.hpp"
#include "sim/streams.hpp"

namespace sluice::sim {

using Kind = StreamEvent::Kind;
using protocol::MessageType;

asio::awaitable<bool> send_all(StreamIo& io, const std::vector<std::string>& messages) {
  for (const auto& m : messages)
    if (!co_await io.send_text(m)) co_return false;
  co_return true;
}

asio::awaitable<void> serve_listen(StreamIo& io, const StreamParams& params, const StreamContext& ctx) {
  ListenRecognizer recognizer(params, ctx.request_id, ctx.seed, ctx.created);
  for (;;) {
    auto event = co_await io.next();
    switch (event.kind) {
      case Kind::binary:
        if (event.data.empty()) {
          // An empty frame asks the vendor to close, like CloseStream.
          if (co_await send_all(io, recognizer.close_stream()))
            co_await io.close(websocket::close_code::normal);
          co_return;
        }
        if (!co_await send_all(io, recognizer.on_audio(event.data))) co_return;
        break;
      case Kind::text: {
        auto type = protocol::classify(protocol::sniff_type(event.data));
        if (type == MessageType::finalize) {
          if (!co_await send_all(io, recognizer.finalize())) co_return;
        } else if (type == MessageType::close_stream) {
          if (co_await send_all(io, recognizer.close_stream()))
            co_await io.close(websocket::close_code::normal);
          co_return;
        }
        // KeepAlive only resets the inactivity timer (the reader did);
        // other messages are ignored, as Deepgram ignores them.
        break;
      }
      case Kind::inactivity:
        // Deepgram sends its summary just before the NET-0001 close.
        if (co_await io.send_text(recognizer.metadata())) co_await io.end(event);
        co_return;
      case Kind::client_gone:
        spdlog::debug("{} client gone after {:.3f}s of audio: {}", ctx.log_prefix,
                      recognizer.audio_seconds(), event.error.message());
        co_return;
      default:
        co_await io.end(event);
        co_return;
    }
  }
}

asio::awaitable<void> serve_flux(StreamIo& io, const StreamParams& params, const StreamContext& ctx) {
  FluxRecognizer recognizer(params, ctx.request_id, ctx.seed);
  if (!co_await io.send_text(recognizer.connected())) co_return;
  for (;;) {
    auto event = co_await io.next();
    switch (event.kind) {
      case Kind::binary:
        if (!co_await send_all(io, recognizer.on_audio(event.data.size()))) co_return;
        break;
      case Kind::text: {
        auto type = protocol::sniff_type(event.data);
        if (type == "CloseStream") {
          // Flux reports what it heard, sends no EndOfTurn and no summary,
          // and closes without a status code (the client sees 1005).
          if (co_await send_all(io, recognizer.close_stream()))
            co_await io.close(websocket::close_reason{});
          co_return;
        }
        if (type == "Configure") {
          if (!co_await io.send_text(recognizer.configure(event.data))) co_return;
        } else if (type == "ForceEndTurn") {
          if (!co_await send_all(io, recognizer.force_end_turn())) co_return;
        }
        break;
      }
      case Kind::client_gone: co_return;
      default:
        co_await io.end(event);
        co_return;
    }
  }
}

}  // namespace sluice::sim
