#include "session/stream_state.hpp"

#include <boost/json/object.hpp>
#include <fmt/format.h>

#include "admin/sessions_json.hpp"
#include "util/log.hpp"

namespace sluice::session {

StreamState::StreamState(std::shared_ptr<history::Recorder> recorder, registry::Registration registration)
    : recorder_(std::move(recorder)), registration_(std::move(registration)) {}

StreamState::~StreamState() {
  if (ended_) return;
  history::Ending how;
  how.outcome = admitted_ ? history::Outcome::interrupted : history::Outcome::abandoned;
  how.outcome_reason = admitted_ ? "the gateway dropped the stream before it ended"
                                 : "the gateway dropped the stream while it waited for admission";
  how.closed_by = "gateway";
  auto line = fmt::format("[S{}] dropped before it ended; recorded as {}", id(), history::outcome_name(how.outcome));
  if (opened_) finished(how, line, spdlog::level::warn);
  else not_opened(how, line, spdlog::level::warn);
}

double StreamState::seconds_since_arrival() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - arrived_).count();
}

void StreamState::admitted(admission::Lease lease) {
  lease_ = std::move(lease);
  entry().set_state(registry::SessionState::connecting);
  entry().counters().admitted_ns.store(registry::mono_ns(), std::memory_order_relaxed);
  if (recorder_) recorder_->admitted(registration_.shared());
  admitted_ = true;
}

void StreamState::connecting() {
  if (lease_) leg_ = lease_.open_leg();
}

void StreamState::opened() {
  entry().counters().upstream_open_ns.store(registry::mono_ns(), std::memory_order_relaxed);
  entry().set_state(registry::SessionState::open);
  opened_ = true;
  if (recorder_) recorder_->opened(entry());
  if (auto* registry = registration_.registry())
    util::log::with_fields(spdlog::level::info, fmt::format("[S{}] opened", id()),
                           admin::session_json(*registry, entry(), registry::mono_ns()));
}

void StreamState::upstream_gone() {
  if (upstream_gone_) return;
  upstream_gone_ = true;
  if (opened_) {
    entry().counters().closed_ns.store(registry::mono_ns(), std::memory_order_relaxed);
    if (recorder_) recorder_->upstream_closed(entry());
  }
  leg_.reset();
  lease_.release();
}

void StreamState::not_opened(const history::Ending& how, std::string_view line, spdlog::level::level_enum level) {
  if (ended_) return;
  ended_ = true;
  upstream_gone();
  if (recorder_) recorder_->not_opened(entry(), how);
  log_ending(how, line, level);
}

void StreamState::finished(const history::Ending& how, std::string_view line, spdlog::level::level_enum level) {
  if (ended_) return;
  ended_ = true;
  upstream_gone();
  if (recorder_) recorder_->finished(entry(), how);
  log_ending(how, line, level);
}

void StreamState::log_ending(const history::Ending& how, std::string_view line, spdlog::level::level_enum level) {
  auto* registry = registration_.registry();
  if (!registry) return;
  auto fields = admin::session_json(*registry, entry(), registry::mono_ns());
  fields["outcome"] = history::outcome_name(how.outcome);
  fields["outcome_reason"] = how.outcome_reason;
  fields["closed_by"] = how.closed_by;
  if (how.close_code) fields["close_code"] = *how.close_code;
  else fields["close_code"] = nullptr;
  fields["close_reason"] = how.close_reason;
  util::log::with_fields(level, line.empty() ? fmt::format("[S{}] ended", id()) : std::string(line), fields);
}

}  // namespace sluice::session
