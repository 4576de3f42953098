#pragma once
// Read buffers for the relay. A plain TCP leg borrows a block only while it
// has bytes to handle: the block is taken when the socket is readable, right
// before recv(), and given back once the bytes are written on. An open stream
// that is waiting for its next frame therefore holds no read buffer at all;
// what is held is a few blocks per thread, not one or two per stream.
//
// Blocks of kBlockSize come from a small per-thread cache, so the per-frame
// path allocates nothing once warm; buffers of any other size (a TLS leg's,
// the bytes that arrived with a handshake) are ordinary allocations.
//
// Thread safety: a ReadBuffer is owned by one user at a time; it may be
// released on another thread than the one it was taken on (it then joins
// that thread's cache).
#include <cstddef>
#include <cstdint>
#include <utility>

namespace sluice::net {

class ReadBuffer {
 public:
  static constexpr std::size_t kBlockSize = 16 * 1024;

  ReadBuffer() = default;
  ReadBuffer(ReadBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  ReadBuffer& operator=(ReadBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;
  ~ReadBuffer() { reset(); }

  // A block of kBlockSize bytes from this thread's cache (or a new one).
  static ReadBuffer block();
  // A buffer of exactly `size` bytes (a block when size == kBlockSize).
  static ReadBuffer sized(std::size_t size);

  std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  explicit operator bool() const { return data_ != nullptr; }
  // Gives the bytes back (a block to the current thread's cache).
  void reset();

  // Blocks cached by the calling thread (for tests).
  static std::size_t cached_blocks();

 private:
  ReadBuffer(std::uint8_t* d, std::size_t s) : data_(d), size_(s) {}
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sluice::net
