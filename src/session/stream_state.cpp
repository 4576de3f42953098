#include "session/stream_state.hpp"

#include <spdlog/spdlog.h>

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
  spdlog::warn("[S{}] dropped before it ended; recorded as {}", id(), history::outcome_name(how.outcome));
  if (opened_) finished(how);
  else not_opened(how);
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

void StreamState::not_opened(const history::Ending& how) {
  if (ended_) return;
  ended_ = true;
  upstream_gone();
  if (recorder_) recorder_->not_opened(entry(), how);
}

void StreamState::finished(const history::Ending& how) {
  if (ended_) return;
  ended_ = true;
  upstream_gone();
  if (recorder_) recorder_->finished(entry(), how);
}

}  // namespace sluice::session
