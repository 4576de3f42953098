#include "admin/sessions_json.hpp"

#include <boost/json/array.hpp>

#include "util/time_json.hpp"

#include "protocol/endpoint.hpp"

namespace sluice::admin {

using util::time_json;

boost::json::object session_json(const registry::Registry& registry, const registry::SessionEntry& e,
                                 std::int64_t now) {
  // `now` and the counters are steady; what is shown as an instant is the
  // session's wall time for them (SessionInfo::to_wall_ns).
  const auto& i = e.info();
  const auto& c = e.counters();
  boost::json::object o;
  o["id"] = i.id;
  o["tenant"] = i.tenant;
  o["pool"] = i.pool;
  o["path"] = protocol::endpoint_path(i.endpoint);
  o["family"] = protocol::family_name(protocol::endpoint_family(i.endpoint));
  o["model"] = i.model;
  boost::json::object params;
  for (const auto& [k, v] : i.params) params[k] = v;
  o["params"] = std::move(params);
  o["client_address"] = i.client_address;
  o["user_agent"] = i.user_agent;
  auto rid = e.request_id();
  o["request_id"] = rid.empty() ? boost::json::value(nullptr) : boost::json::value(rid);
  {
    boost::json::array ids;
    for (auto& id : e.upstream_request_ids()) ids.emplace_back(id);
    o["upstream_request_ids"] = std::move(ids);
    o["resumes"] = e.resumes();
  }
  o["state"] = registry.display_state(e, now);
  o["accepted_at"] = time_json(i.accepted_ns());
  o["upstream_open_at"] = time_json(i.to_wall_ns(c.upstream_open_ns.load()));
  o["last_audio_at"] = time_json(i.to_wall_ns(c.last_audio_ns.load()));
  o["last_text_at"] = time_json(i.to_wall_ns(c.last_text_ns.load()));
  o["last_upstream_at"] = time_json(i.to_wall_ns(c.last_upstream_ns.load()));
  o["age_seconds"] = i.age_seconds(now);
  o["idle_seconds"] = registry::Registry::idle_seconds(e, now);
  o["keep_alive_only"] = registry.keep_alive_only(e, now);
  boost::json::object counters;
  counters["client_messages"] = c.client_messages.load();
  counters["client_bytes"] = c.client_bytes.load();
  counters["upstream_messages"] = c.upstream_messages.load();
  counters["upstream_bytes"] = c.upstream_bytes.load();
  counters["audio_messages"] = c.audio_messages.load();
  counters["audio_bytes"] = c.audio_bytes.load();
  counters["keep_alive"] = c.keep_alive.load();
  counters["finalize"] = c.finalize.load();
  counters["close_stream"] = c.close_stream.load();
  o["counters"] = std::move(counters);
  o["audio_seconds"] = e.audio_seconds();
  return o;
}

}  // namespace sluice::admin
