#include "cluster/redis.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/time.h>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <fmt/format.h>

#include <charconv>

namespace sluice::cluster {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default: out.type = Reply::Type::nil; break;
  }
  return out;
}

struct ReplyDeleter {
  void operator()(void* r) const { freeReplyObject(r); }
};
using OwnedReply = std::unique_ptr<void, ReplyDeleter>;

void append(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  redisAppendCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data());
}

}  // namespace

RedisUrl parse_redis_url(std::string_view text) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) throw RedisError("cluster.redis_url: not a URL (expected redis://[:password@]host[:port][/db])");
  boost::urls::url u(*parsed);
  if (u.scheme() != "redis")
    throw RedisError(fmt::format("cluster.redis_url: the scheme must be redis, not '{}' (TLS to Redis is not supported)",
                                 std::string(u.scheme())));
  RedisUrl out;
  out.host = u.host();
  if (out.host.empty()) throw RedisError("cluster.redis_url: no host");
  if (u.has_port()) {
    auto p = u.port_number();
    if (p == 0) throw RedisError(fmt::format("cluster.redis_url: bad port '{}'", std::string(u.port())));
    out.port = p;
  }
  if (u.has_userinfo()) {
    out.user = u.user();
    out.password = u.password();
    // redis://secret@host is a password alone, as redis-cli reads it.
    if (!u.has_password()) std::swap(out.user, out.password);
  }
  std::string path = u.path();
  if (!path.empty() && path != "/") {
    std::string_view db(path);
    if (db.front() == '/') db.remove_prefix(1);
    int n = -1;
    auto [ptr, ec] = std::from_chars(db.data(), db.data() + db.size(), n);
    if (ec != std::errc() || ptr != db.data() + db.size() || n < 0)
      throw RedisError(fmt::format("cluster.redis_url: the path must be a database number, not '{}'", std::string(db)));
    out.db = n;
  }
  if (!u.params().empty()) throw RedisError("cluster.redis_url: query parameters are not supported");
  out.redacted = fmt::format("redis://{}{}:{}/{}", out.password.empty() ? "" : (out.user + ":***@"), out.host,
                             out.port, out.db);
  return out;
}

long long Reply::as_integer() const {
  if (type == Type::integer) return integer;
  if (type == Type::string || type == Type::status) {
    long long v = 0;
    auto [ptr, ec] = std::from_chars(str.data(), str.data() + str.size(), v);
    if (ec == std::errc() && ptr == str.data() + str.size()) return v;
  }
  throw RedisError("redis: expected an integer in the reply");
}

RedisConnection::RedisConnection(const RedisUrl& url, Options options)
    : ctx_(nullptr, redisFree), address_(url.redacted) {
  ctx_.reset(redisConnectWithTimeout(url.host.c_str(), url.port, to_timeval(options.connect_timeout)));
  if (!ctx_) throw RedisError(fmt::format("redis {}: out of memory connecting", address_));
  if (ctx_->err) throw RedisError(fmt::format("redis {}: cannot connect: {}", address_, ctx_->errstr));
  if (redisSetTimeout(ctx_.get(), to_timeval(options.command_timeout)) != REDIS_OK)
    throw RedisError(fmt::format("redis {}: cannot set the timeout: {}", address_, ctx_->errstr));
  if (!url.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!url.user.empty()) auth.push_back(url.user);
    auth.push_back(url.password);
    auto r = command(auth);
    // The server's answer names no secret; pass it on.
    if (r.is_error()) throw RedisError(fmt::format("redis {}: authentication failed: {}", address_, r.str));
  }
  if (url.db != 0) checked({"SELECT", std::to_string(url.db)});
}

RedisConnection::~RedisConnection() = default;

void RedisConnection::fail(std::string_view what) {
  broken_ = true;
  throw RedisError(fmt::format("redis {}: {}: {}", address_, what,
                               ctx_->err ? ctx_->errstr : "connection closed"));
}

Reply RedisConnection::command(const std::vector<std::string>& args) {
  auto replies = pipeline({args});
  return std::move(replies.front());
}

Reply RedisConnection::checked(const std::vector<std::string>& args) {
  auto r = command(args);
  if (r.is_error())
    throw RedisError(fmt::format("redis {}: {} failed: {}", address_, args.empty() ? "" : args.front(), r.str));
  return r;
}

std::vector<Reply> RedisConnection::pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (broken_) throw RedisError(fmt::format("redis {}: the connection is broken", address_));
  for (auto& c : commands) append(ctx_.get(), c);
  std::vector<Reply> out;
  out.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || !raw) fail("no reply");
    OwnedReply r(raw);
    out.push_back(convert(static_cast<redisReply*>(raw)));
  }
  return out;
}

bool RedisConnection::read_push(Reply& out, std::chrono::milliseconds timeout) {
  if (broken_) throw RedisError(fmt::format("redis {}: the connection is broken", address_));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(ctx_->reader, &raw) != REDIS_OK) fail("bad reply");
    if (raw) {
      OwnedReply r(raw);
      out = convert(static_cast<redisReply*>(raw));
      return true;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{ctx_->fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    if (n == 0) return false;
    if (redisBufferRead(ctx_.get()) != REDIS_OK) fail("read");
  }
}

}  // namespace sluice::cluster
