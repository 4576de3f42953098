#include "server/gateway.hpp"

#include <boost/json/array.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>

#include "admin/admin_server.hpp"
#include "admin/metrics.hpp"
#include "admission/controller.hpp"
#include "admin/sessions_json.hpp"
#include "cluster/agent.hpp"
#include "cluster/fleet_reader.hpp"
#include "cluster/wake.hpp"
#include "events/event_log.hpp"
#include "history/recorder.hpp"
#include "net/listener.hpp"
#include "registry/registry.hpp"
#include "session/session.hpp"
#include "util/json_text.hpp"

namespace sluice::server {
namespace {

namespace ssl = boost::asio::ssl;

std::unique_ptr<ssl::context> make_client_tls(const config::TlsConfig& tls) {
  if (!tls.enabled()) return nullptr;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) throw config::ConfigError("tls.cert", "cannot load '" + tls.cert_file + "': " + ec.message());
  ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec);
  if (ec) throw config::ConfigError("tls.key", "cannot load '" + tls.key_file + "': " + ec.message());
  return ctx;
}

std::unique_ptr<ssl::context> make_upstream_tls(const config::UpstreamConfig& up) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  if (!up.verify_tls) {
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
  }
  ctx->set_default_verify_paths();
  ctx->set_verify_mode(ssl::verify_peer);
  if (!up.ca_file.empty()) {
    boost::system::error_code ec;
    ctx->load_verify_file(up.ca_file, ec);
    if (ec) throw config::ConfigError("upstream.ca_file", "cannot load '" + up.ca_file + "': " + ec.message());
  }
  return ctx;
}

history::Micros micros(config::Seconds s) { return static_cast<history::Micros>(s.count() * 1e6); }

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

config::Config normalized(config::Config c) {
  config::validate(c);
  if (c.pools.empty()) c.pools = config::default_pools();
  return c;
}

}  // namespace

Gateway::Gateway(boost::asio::io_context& ioc, config::Config raw) : ioc_(ioc) {
  auto config = normalized(std::move(raw));
  services_ = std::make_shared<session::SessionServices>();
  services_->ticker = session::Ticker::create(ioc_);
  services_->registry = std::make_shared<registry::Registry>(config.relay.idle_after);
  services_->admission =
      std::make_shared<admission::Controller>(config.pools, config.tenants, config.upstream.retry_429,
                                              ioc.get_executor());
  services_->events = std::make_shared<events::EventLog>();
  event_counters_ = std::make_shared<admin::EventCounters>();
  services_->events->subscribe([counters = event_counters_](const events::Event& e) { counters->observe(e); });
  metrics_per_tenant_->store(config.admin.metrics_per_tenant);
  if (config.store.enabled) {
    auto listen_ep = net::parse_endpoint(config.listen);
    history::RecorderOptions ro;
    ro.url = config.store.effective_url();
    ro.instance = config.store.instance.empty() ? host_name() + ":" + std::to_string(listen_ep.port()) : config.store.instance;
    ro.version = SLUICE_VERSION;
    ro.heartbeat = micros(config.store.heartbeat);
    ro.flush_interval = micros(config.store.flush_interval);
    ro.queue_limit = config.store.queue_limit;
    ro.stale_after = config.store.stale_after > config::Seconds(0)
                         ? micros(config.store.stale_after)
                         : std::max<history::Micros>(micros(config.store.heartbeat) * 6, 30'000'000);
    const auto& rt = config.store.retention;
    ro.retention = {micros(rt.sessions), micros(rt.events), micros(rt.seconds), micros(rt.minutes), micros(rt.rollup_after)};
    ro.retention_interval = micros(rt.interval);
    try {
      services_->recorder = std::make_shared<history::Recorder>(std::move(ro));
    } catch (const history::DbError& e) {
      throw std::runtime_error(std::string("history store: ") + e.what());
    }
    spdlog::info("history: recording to {} (run {})", services_->recorder->describe(), services_->recorder->run_id());
    services_->events->subscribe([rec = std::weak_ptr<history::Recorder>(services_->recorder)](const events::Event& e) {
      if (auto r = rec.lock()) r->event(e);
    });
  }
  if (config.cluster.enabled()) {
    const auto& cl = config.cluster;
    cluster::RedisUrl url;
    try {
      url = cluster::parse_redis_url(cl.redis_url);
    } catch (const cluster::RedisError& e) {
      std::string_view m = e.what();
      if (m.starts_with("cluster.redis_url: ")) m.remove_prefix(19);
      throw config::ConfigError("cluster.redis_url", std::string(m));
    }
    auto ms = [](config::Seconds s) { return std::chrono::duration_cast<std::chrono::milliseconds>(s); };
    cluster::Agent::Options o;
    o.store.prefix = cl.key_prefix;
    o.store.ttl = ms(cl.lease_ttl);
    o.store.connection.connect_timeout = ms(cl.redis_timeout);
    o.store.connection.command_timeout = ms(cl.redis_timeout);
    o.renew_every = ms(cl.renew_interval);
    o.reconnect_every = std::min(ms(cl.renew_interval), std::chrono::milliseconds(500));
    o.instance = !cl.instance.empty()          ? cl.instance
                 : !config.store.instance.empty() ? config.store.instance
                                                  : host_name() + ":" + std::to_string(net::parse_endpoint(config.listen).port());
    // The fleet view: this instance's live sessions, published for the
    // others' admin API; and their requests to end one of them.
    // One session at a time, so that only the text is held, never a
    // document of every session.
    o.sessions_snapshot = [registry = std::weak_ptr<registry::Registry>(services_->registry)] {
      std::string out = "[";
      if (auto r = registry.lock()) {
        auto now = registry::mono_ns();
        for (const auto& e : r->list()) {
          if (out.size() > 1) out += ',';
          util::append_json_text(out, admin::session_json(*r, *e, now));
        }
      }
      out += ']';
      return out;
    };
    o.on_end = [registry = std::weak_ptr<registry::Registry>(services_->registry)](const std::string& text) {
      registry::SessionId id = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
      auto r = registry.lock();
      if (ec != std::errc() || p != text.data() + text.size() || !r) return;
      if (auto entry = r->find(id)) {
        spdlog::info("[S{}] ending at another instance's request (DELETE through the fleet view)", id);
        entry->request_end();
      }
    };
    // The fleet's release delay, as each script reports it, for this
    // instance's view of its pools (the fleet itself applies it).
    services_->admission->share_with_fleet(true);
    o.on_delay = [admission = std::weak_ptr<admission::Controller>(services_->admission)](
                     const std::string& pool, const cluster::FleetDelay& d) {
      if (auto a = admission.lock()) a->note_fleet_delay(pool, d);
    };
    services_->fleet_wake = std::make_shared<cluster::FleetWake>();
    services_->cluster = cluster::Agent::start(
        url, o, [wake = std::weak_ptr<cluster::FleetWake>(services_->fleet_wake)](const std::string& pool) {
          if (auto w = wake.lock()) w->notify(pool);
        });
    spdlog::info("cluster: instance '{}' shares its pools' limits through {}", o.instance, url.redacted);
    fleet_instance_ = o.instance;
    fleet_reader_ = std::make_shared<cluster::FleetReader>(url, o.store);
  }
  services_->upstream_tls = make_upstream_tls(config.upstream);
  services_->client_tls = make_client_tls(config.tls);
  auto listen = net::parse_endpoint(config.listen);
  auto admin_listen = net::parse_endpoint(config.admin.listen);
  auto admin_token = config.admin.token;
  std::string store_url = config.store.enabled ? config.store.effective_url() : "";
  auto query_timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(config.store.query_timeout);
  const bool one_thread = config.threads <= 1;
  const bool refuse_without_redis = config.cluster.enabled() && config.cluster.on_redis_loss == "refuse";
  auto cluster_figures = [&]() -> std::function<admin::ClusterFigures()> {
    if (!services_->cluster) return {};
    return [agent = std::weak_ptr<cluster::Agent>(services_->cluster),
            wake = std::weak_ptr<cluster::FleetWake>(services_->fleet_wake),
            services = std::weak_ptr<session::SessionServices>(services_)] {
      admin::ClusterFigures f;
      if (auto a = agent.lock()) {
        f.redis_up = a->redis_ok();
        f.leases_held = a->held();
        f.reregistered = a->reregistered();
        f.acquire = a->acquire_latency();
      }
      if (auto w = wake.lock()) f.waiting = w->waiting();
      if (auto s = services.lock()) f.local_share_admissions = s->cluster_degraded_admissions.load();
      return f;
    };
  };
  services_->policy.store(std::make_shared<const session::SessionPolicy>(std::move(config)));
  auto services = services_;
  listener_ = std::make_unique<net::Listener>(
      ioc_, listen, [services](boost::asio::ip::tcp::socket s) { return session::run_connection(std::move(s), services); },
      "gateway", !one_thread);
  admin_ = std::make_unique<admin::AdminServer>(
      ioc_, admin_listen, admin::AdminDeps{services_->registry, services_->admission, services_->events,
                                           services_->recorder, std::move(admin_token), ready_,
                                           std::move(store_url), query_timeout, event_counters_,
                                           metrics_per_tenant_, cluster_figures(), refuse_without_redis,
                                           fleet_reader_, fleet_instance_});
}

Gateway::~Gateway() {
  // The fleet's leases this instance still holds go back now, not at their expiry.
  if (services_->cluster) services_->cluster->stop();
  if (services_->recorder) services_->recorder->stop();
}

void Gateway::start() {
  listener_->start();
  admin_->start();
  ready_ = true;
  boost::json::object ev;
  ev["listen"] = net::to_string(endpoint());
  services_->events->record("start", std::move(ev));
}

void Gateway::reload(config::Config raw) {
  auto config = normalized(std::move(raw));
  auto old = services_->policy.load();
  if (config.listen != old->config.listen || config.admin.listen != old->config.admin.listen)
    spdlog::warn("reload: listener addresses change only on restart");
  if (config.tls.cert_file != old->config.tls.cert_file || config.tls.key_file != old->config.tls.key_file)
    spdlog::warn("reload: TLS files change only on restart");
  // Build everything first, so a failure leaves the running configuration.
  auto policy = std::make_shared<const session::SessionPolicy>(config);
  services_->admission->reconfigure(config.pools, config.tenants, config.upstream.retry_429);
  services_->registry->set_idle_after(config.relay.idle_after);
  metrics_per_tenant_->store(config.admin.metrics_per_tenant);
  services_->policy.store(policy);
  boost::json::object ev;
  ev["pools"] = static_cast<std::uint64_t>(config.pools.size());
  ev["tenants"] = static_cast<std::uint64_t>(config.tenants.size());
  services_->events->record("config_reload", std::move(ev));
}

void Gateway::stop_accepting() {
  ready_ = false;
  listener_->stop();
  services_->admission->close();
  // Streams waiting for the fleet's room see the pool closed at once.
  if (services_->fleet_wake) services_->fleet_wake->notify("");
}

void Gateway::end_all_sessions() {
  for (auto& e : services_->registry->list()) e->request_end();
}

void Gateway::stop() {
  stop_accepting();
  admin_->stop();
}

boost::asio::ip::tcp::endpoint Gateway::endpoint() const { return listener_->local_endpoint(); }
boost::asio::ip::tcp::endpoint Gateway::admin_endpoint() const { return admin_->endpoint(); }
registry::Registry& Gateway::registry() { return *services_->registry; }
admission::Controller& Gateway::admission() { return *services_->admission; }
events::EventLog& Gateway::events() { return *services_->events; }
history::Recorder* Gateway::recorder() { return services_->recorder.get(); }

void check_tls_files(const config::Config& config) {
  make_client_tls(config.tls);
  make_upstream_tls(config.upstream);
}

}  // namespace sluice::server
