#include "admin/event_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <chrono>
#include <deque>

namespace sluice::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kSnapshotEvery = std::chrono::seconds(1);
// A write that makes no progress for this long ends the stream.
constexpr auto kWriteTimeout = std::chrono::seconds(30);
// Frames waiting for a client that does not read; past it the stream ends
// (the client reconnects and starts from a fresh snapshot).
constexpr std::size_t kMaxPending = 10000;
// Writes `data` as one chunk (or as it is, when not chunked); false when the
// write failed. Locals rather than temporaries in the co_await expression:
// GCC 12 mishandles non-trivial temporaries there.
asio::awaitable<bool> write_frame(beast::tcp_stream& stream, const std::string& data, bool chunked) {
  stream.expires_after(kWriteTimeout);
  if (chunked) {
    auto chunk = http::make_chunk(asio::buffer(data));
    auto [ec, n] = co_await asio::async_write(stream, chunk, use_tuple);
    (void)n;
    co_return !ec;
  }
  auto [ec, n] = co_await asio::async_write(stream, asio::buffer(data), use_tuple);
  (void)n;
  co_return !ec;
}

}  // namespace

struct StreamHub::Client {
  explicit Client(const asio::any_io_executor& ex) : executor(ex), wake(ex) {}
  asio::any_io_executor executor;
  asio::steady_timer wake;  // used on `executor` only
  std::mutex mutex;
  std::deque<std::string> pending;  // guarded by mutex
  bool stopped = false;             // guarded by mutex
  bool overflowed = false;          // guarded by mutex

  // Any thread: the stream looks at its queue as soon as its executor runs.
  static void notify(const std::shared_ptr<Client>& c) {
    asio::post(c->executor, [w = std::weak_ptr<Client>(c)] {
      if (auto c = w.lock()) c->wake.cancel();
    });
  }
};

void StreamHub::publish(const std::string& frame) {
  std::vector<std::shared_ptr<Client>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto& w : clients_)
      if (auto c = w.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) {
    {
      std::lock_guard lock(c->mutex);
      if (c->pending.size() >= kMaxPending) c->overflowed = true;
      else c->pending.push_back(frame);
    }
    Client::notify(c);
  }
}

void StreamHub::stop() {
  std::vector<std::shared_ptr<Client>> live;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    for (auto& w : clients_)
      if (auto c = w.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) {
    {
      std::lock_guard lock(c->mutex);
      c->stopped = true;
    }
    Client::notify(c);
  }
}

std::size_t StreamHub::clients() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(
      std::count_if(clients_.begin(), clients_.end(), [](const auto& w) { return !w.expired(); }));
}

void StreamHub::join(const std::shared_ptr<Client>& c) {
  std::lock_guard lock(mutex_);
  if (stopped_) {
    std::lock_guard client_lock(c->mutex);
    c->stopped = true;
  }
  clients_.push_back(c);
}

void StreamHub::leave(const Client* c) {
  std::lock_guard lock(mutex_);
  std::erase_if(clients_, [c](const auto& w) {
    auto p = w.lock();
    return !p || p.get() == c;
  });
}

std::string sse_frame(std::string_view event, std::string_view data, std::uint64_t id) {
  std::string f;
  f.reserve(event.size() + data.size() + 32);
  f += "event: ";
  f += event;
  f += '\n';
  if (id > 0) {
    f += "id: ";
    f += std::to_string(id);
    f += '\n';
  }
  f += "data: ";
  f += data;
  f += "\n\n";
  return f;
}

asio::awaitable<void> serve_event_stream(beast::tcp_stream& stream, unsigned http_version, StreamHub& hub,
                                         const std::function<std::string()>& snapshot) {
  auto ex = co_await asio::this_coro::executor;
  auto client = std::make_shared<StreamHub::Client>(ex);
  hub.join(client);
  struct Leave {
    StreamHub& hub;
    const StreamHub::Client* c;
    ~Leave() { hub.leave(c); }
  } leave{hub, client.get()};

  // HTTP/1.1: chunked; HTTP/1.0: the body ends when the connection closes.
  const bool chunked = http_version >= 11;
  http::response<http::empty_body> res{http::status::ok, http_version};
  res.set(http::field::server, "sluice-admin");
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Accel-Buffering", "no");  // a proxy in front must not hold frames back
  res.keep_alive(false);
  if (chunked) res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  stream.expires_after(kWriteTimeout);
  auto [header_ec, header_n] = co_await http::async_write_header(stream, sr, use_tuple);
  (void)header_n;
  if (header_ec) co_return;

  // The browser's EventSource reconnects after `retry` ms; fetch readers may use it too.
  std::string out = "retry: 2000\n\n" + snapshot();
  auto next_snapshot = std::chrono::steady_clock::now() + kSnapshotEvery;
  bool stopped = false;
  for (;;) {
    if (!out.empty()) {
      if (!co_await write_frame(stream, out, chunked)) co_return;  // the client went
      out.clear();
    }
    {
      std::lock_guard lock(client->mutex);
      if (client->stopped || client->overflowed) {
        stopped = client->stopped;
        break;
      }
      for (auto& f : client->pending) out += f;
      client->pending.clear();
    }
    if (!out.empty()) continue;
    if (std::chrono::steady_clock::now() >= next_snapshot) {
      out = snapshot();
      next_snapshot = std::chrono::steady_clock::now() + kSnapshotEvery;
      continue;
    }
    client->wake.expires_at(next_snapshot);
    co_await client->wake.async_wait(use_tuple);  // cancelled by publish() and stop()
  }
  if (stopped) {
    auto end = sse_frame("end", "{\"reason\":\"stopping\"}");
    if (!co_await write_frame(stream, end, chunked)) co_return;
  }
  if (chunked) {
    stream.expires_after(kWriteTimeout);
    auto last = http::make_chunk_last();
    co_await asio::async_write(stream, last, use_tuple);
  }
}

}  // namespace sluice::admin
