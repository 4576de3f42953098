#pragma once
// One connection to Redis, on hiredis, blocking: it is used from the cluster
// thread (never from an I/O thread). Replies are parsed by hiredis and copied
// into Reply values; commands go as argument vectors (binary-safe, nothing is
// formatted into a command string).
//
// Errors (connect, I/O, timeouts, an error reply where none is expected) are
// RedisError; their messages name the server by redacted address, never the
// password.
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;

namespace sluice::cluster {

class RedisError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// redis://[[user]:password@]host[:port][/db], from Boost.URL. The password
// may also come percent-encoded.
struct RedisUrl {
  std::string host;
  int port = 6379;
  std::string user;      // empty: AUTH with the password alone
  std::string password;  // empty: no AUTH
  int db = 0;
  std::string redacted;  // for messages: redis://host:port/db, the password as ***
};
// Throws RedisError naming what is wrong (never echoing a password).
RedisUrl parse_redis_url(std::string_view url);

struct Reply {
  enum class Type { nil, integer, string, status, error, array };
  Type type = Type::nil;
  long long integer = 0;
  std::string str;  // string, status and error
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::error; }
  // The integer, or a string holding one; throws RedisError otherwise.
  long long as_integer() const;
};

class RedisConnection {
 public:
  struct Options {
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds command_timeout{1000};  // per reply
  };
  // Connects, authenticates and selects the database; throws RedisError.
  RedisConnection(const RedisUrl& url, Options options);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends one command and waits for its reply. An error reply is returned,
  // not thrown; a broken connection throws, and the connection is unusable
  // after (make a new one).
  Reply command(const std::vector<std::string>& args);
  // Like command(), but an error reply throws too.
  Reply checked(const std::vector<std::string>& args);
  // Sends all, then reads all replies in order: one round trip.
  std::vector<Reply> pipeline(const std::vector<std::vector<std::string>>& commands);
  // For a subscriber: waits up to `timeout` for the next message the server
  // pushes. False when none came; throws on a broken connection.
  bool read_push(Reply& out, std::chrono::milliseconds timeout);

  bool broken() const { return broken_; }
  const std::string& address() const { return address_; }

 private:
  [[noreturn]] void fail(std::string_view what);
  std::unique_ptr<redisContext, void (*)(redisContext*)> ctx_;
  std::string address_;  // redacted URL
  bool broken_ = false;
};

}  // namespace sluice::cluster
