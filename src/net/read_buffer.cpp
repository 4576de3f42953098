#include "net/read_buffer.hpp"

#include <array>

namespace sluice::net {

namespace {

// Enough for every leg one thread handles at a time, with room for bursts;
// beyond it, blocks are freed.
constexpr std::size_t kCacheLimit = 8;

struct Cache {
  std::array<std::uint8_t*, kCacheLimit> blocks{};
  std::size_t count = 0;
  bool closed = false;  // the thread is exiting: free instead of caching
  ~Cache() {
    for (std::size_t i = 0; i < count; ++i) delete[] blocks[i];
    count = 0;
    closed = true;
  }
};

thread_local Cache cache;

}  // namespace

ReadBuffer ReadBuffer::block() {
  if (cache.count > 0) return ReadBuffer(cache.blocks[--cache.count], kBlockSize);
  return ReadBuffer(new std::uint8_t[kBlockSize], kBlockSize);
}

ReadBuffer ReadBuffer::sized(std::size_t size) {
  if (size == kBlockSize) return block();
  return ReadBuffer(new std::uint8_t[size], size);
}

void ReadBuffer::reset() {
  if (!data_) return;
  if (size_ == kBlockSize && !cache.closed && cache.count < kCacheLimit) cache.blocks[cache.count++] = data_;
  else delete[] data_;
  data_ = nullptr;
  size_ = 0;
}

std::size_t ReadBuffer::cached_blocks() { return cache.count; }

}  // namespace sluice::net
