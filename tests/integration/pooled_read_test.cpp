// The relay's read primitive on real loopback sockets: a block is taken only
// when bytes are there, the carried prefix lands in front of them, no data is
// missed whether a read drained the socket or filled its block, and
// cancellation leaves nothing held.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/pooled_read.hpp"
#include "net/read_buffer.hpp"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using sluice::net::PooledReader;
using sluice::net::ReadBuffer;

struct Pair {
  asio::io_context ioc{1};
  tcp::socket reader{ioc};
  tcp::socket writer{ioc};
  Pair() {
    tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    writer.connect(acceptor.local_endpoint());
    acceptor.accept(reader);
  }
  void send(const std::string& bytes) { asio::write(writer, asio::buffer(bytes)); }
};

struct ReadResult {
  boost::system::error_code ec;
  std::size_t n = 0;
  std::string bytes;  // the slot's bytes: prefix, then what was read
  bool done = false;
};

// Starts one read with `prefix`; `out` is filled when it completes.
void start_read(Pair& p, PooledReader& reader, ReadBuffer& slot, std::string prefix, ReadResult& out) {
  asio::co_spawn(
      p.ioc,
      [&reader, &slot, prefix = std::move(prefix), &out]() -> asio::awaitable<void> {
        auto [ec, n] = co_await reader.async_read(slot, reinterpret_cast<const std::uint8_t*>(prefix.data()),
                                                  prefix.size(), asio::as_tuple(asio::use_awaitable));
        out.ec = ec;
        out.n = n;
        if (slot) out.bytes.assign(reinterpret_cast<const char*>(slot.data()), prefix.size() + n);
        out.done = true;
      },
      asio::detached);
}

// Runs the io_context until `done` or a generous bound (a hang fails the
// test instead of blocking the suite).
bool run_until(asio::io_context& ioc, const bool& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  ioc.restart();
  while (!done && std::chrono::steady_clock::now() < deadline) {
    ioc.run_for(std::chrono::milliseconds(20));
    ioc.restart();
  }
  return done;
}

}  // namespace

TEST(PooledRead, PutsTheCarriedPrefixInFrontOfTheBytesRead) {
  Pair p;
  PooledReader reader(p.reader);
  ReadBuffer slot;
  ReadResult r;
  p.send("world");
  start_read(p, reader, slot, "hello ", r);
  ASSERT_TRUE(run_until(p.ioc, r.done));
  EXPECT_FALSE(r.ec);
  EXPECT_EQ(r.n, 5u);
  EXPECT_EQ(r.bytes, "hello world");
  EXPECT_EQ(slot.size(), ReadBuffer::kBlockSize);
}

TEST(PooledRead, AWaitingReadHoldsNoBlockAndTakesOneWhenBytesArrive) {
  Pair p;
  PooledReader reader(p.reader);
  ReadBuffer slot;
  ReadResult r;
  // Warm the cache so that "a block was taken" shows as one fewer cached.
  { auto warm = ReadBuffer::block(); }
  const auto cached = ReadBuffer::cached_blocks();
  ASSERT_GE(cached, 1u);
  start_read(p, reader, slot, "", r);
  // Nothing to read: the read waits, and holds no block meanwhile.
  for (int i = 0; i < 5; ++i) p.ioc.poll();
  EXPECT_FALSE(r.done);
  EXPECT_FALSE(slot);
  EXPECT_EQ(ReadBuffer::cached_blocks(), cached);
  p.send("abc");
  ASSERT_TRUE(run_until(p.ioc, r.done));
  EXPECT_EQ(r.n, 3u);
  ASSERT_TRUE(slot);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(slot.data()), 3), "abc");
  EXPECT_EQ(ReadBuffer::cached_blocks(), cached - 1);
  slot.reset();
  EXPECT_EQ(ReadBuffer::cached_blocks(), cached);  // back to the cache
}

// After a short read (the socket drained) the next read waits for epoll;
// after a read that filled its block it tries the socket at once. Either
// way every byte arrives, in order, whatever the sizes and timing.
TEST(PooledRead, NoByteIsMissedAfterShortOrFullReads) {
  Pair p;
  PooledReader reader(p.reader);
  ReadBuffer slot;
  std::string sent, received;
  // Sizes that end reads short, exactly at the block, and beyond it.
  const std::vector<std::size_t> sizes = {1, 7, ReadBuffer::kBlockSize, ReadBuffer::kBlockSize + 1, 3,
                                          3 * ReadBuffer::kBlockSize + 5, 640, 2};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::string chunk(sizes[i], static_cast<char>('a' + i));
    for (std::size_t j = 0; j < chunk.size(); j += 97) chunk[j] = static_cast<char>('0' + (j % 10));
    sent += chunk;
  }
  bool all = false;
  asio::co_spawn(
      p.ioc,
      [&]() -> asio::awaitable<void> {
        while (received.size() < sent.size()) {
          slot.reset();
          auto [ec, n] = co_await reader.async_read(slot, nullptr, 0, asio::as_tuple(asio::use_awaitable));
          if (ec) co_return;
          received.append(reinterpret_cast<const char*>(slot.data()), n);
        }
        all = true;
      },
      asio::detached);
  // The writer sends chunk by chunk from another thread, each after the
  // reader has had the chance to drain the socket and wait again.
  std::thread writer([&] {
    std::size_t at = 0;
    for (auto size : sizes) {
      asio::write(p.writer, asio::buffer(sent.data() + at, size));
      at += size;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  bool ok = run_until(p.ioc, all);
  writer.join();
  ASSERT_TRUE(ok) << "received " << received.size() << " of " << sent.size() << " bytes";
  EXPECT_EQ(received, sent);
}

TEST(PooledRead, CancellingAWaitingReadAbortsItAndHoldsNothing) {
  Pair p;
  PooledReader reader(p.reader);
  ReadBuffer slot;
  ReadResult r;
  start_read(p, reader, slot, "", r);
  p.ioc.poll();
  p.reader.cancel();
  ASSERT_TRUE(run_until(p.ioc, r.done));
  EXPECT_EQ(r.ec, asio::error::operation_aborted);
  EXPECT_FALSE(slot);
}

TEST(PooledRead, EndOfStreamIsReported) {
  Pair p;
  PooledReader reader(p.reader);
  ReadBuffer slot;
  ReadResult r;
  p.writer.shutdown(tcp::socket::shutdown_send);
  start_read(p, reader, slot, "", r);
  ASSERT_TRUE(run_until(p.ioc, r.done));
  EXPECT_EQ(r.ec, asio::error::eof);
  EXPECT_EQ(r.n, 0u);
}

TEST(PooledRead, APrefixLongerThanAHeaderIsRefused) {
  Pair p;
  PooledReader reader(p.reader);
  ReadBuffer slot;
  std::string prefix(17, 'x');
  bool threw = false;
  asio::co_spawn(
      p.ioc,
      [&]() -> asio::awaitable<void> {
        try {
          co_await reader.async_read(slot, reinterpret_cast<const std::uint8_t*>(prefix.data()), prefix.size(),
                                     asio::as_tuple(asio::use_awaitable));
        } catch (const std::length_error&) {
          threw = true;
        }
      },
      asio::detached);
  ASSERT_TRUE(run_until(p.ioc, threw));
}

TEST(ReadBuffer, BlocksAreCachedPerThreadAndOtherSizesAreNot) {
  std::vector<ReadBuffer> held;  // empties this thread's cache for the test
  while (ReadBuffer::cached_blocks() > 0) held.push_back(ReadBuffer::block());
  auto a = ReadBuffer::block();
  auto* first = a.data();
  a.reset();
  auto b = ReadBuffer::block();
  EXPECT_EQ(b.data(), first);  // the same block, from the cache
  auto odd = ReadBuffer::sized(100);
  EXPECT_EQ(odd.size(), 100u);
  auto before = ReadBuffer::cached_blocks();
  odd.reset();
  EXPECT_EQ(ReadBuffer::cached_blocks(), before);  // not cached
  // A block released on another thread joins that thread's cache.
  std::size_t there = 0;
  std::thread t([&] {
    auto moved = std::move(b);
    moved.reset();
    there = ReadBuffer::cached_blocks();
  });
  t.join();
  EXPECT_EQ(there, 1u);
  EXPECT_FALSE(b);
}
