//! Logs, traces and metrics.
//!
//! `tracing` everywhere. When `[telemetry] otlp_endpoint` is set, spans are also exported over
//! OTLP/gRPC (with W3C trace context carried in gRPC and HTTP headers, so one trace follows a
//! request from a gateway through every service to the stores), and the `metrics` facade's
//! instruments are pushed to the same collector. With no endpoint, nothing of OpenTelemetry is
//! installed and no header is written. Prometheus `/metrics` is independent of both.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::{
    propagation::{Extractor, Injector},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{
    Resource,
    metrics::SdkMeterProvider,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, TelemetryConfig};

/// Histogram buckets of every `*_seconds` metric: 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Whether spans are exported (and so whether trace context is worth carrying).
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// The process's one metrics recorder: Prometheus, plus OpenTelemetry when exporting.
static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// What [`init`] installed; [`Telemetry::shutdown`] flushes what is still buffered.
#[derive(Debug, Default)]
#[must_use = "shut it down to flush the last spans and metrics"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporters.
    pub async fn shutdown(self) {
        // why: the providers' shutdown blocks on their export threads, which need this runtime.
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(tracer) = self.tracer
                && let Err(e) = tracer.shutdown()
            {
                eprintln!("chatmesh: flushing traces: {e}");
            }
            if let Some(meter) = self.meter
                && let Err(e) = meter.shutdown()
            {
                eprintln!("chatmesh: flushing metrics: {e}");
            }
        })
        .await;
    }
}

/// Installs the global subscriber and metrics recorder once; later calls change nothing
/// (tests start many servers in one process). Must run inside the tokio runtime.
/// `service_name` applies when the config names none.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig, service_name: &str) -> Telemetry {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let mut installed = Telemetry::default();
    let name = match telemetry.service_name.as_str() {
        "" => service_name.to_owned(),
        named => named.to_owned(),
    };
    let resource = Resource::builder().with_service_name(name).build();
    let otel_layer = match telemetry.otlp_endpoint.as_str() {
        "" => None,
        endpoint => match tracer_provider(endpoint, telemetry.sample_ratio, resource.clone()) {
            Ok(provider) => {
                let tracer = provider.tracer("chatmesh");
                installed.tracer = Some(provider);
                Some(tracing_opentelemetry::layer().with_tracer(tracer))
            }
            Err(e) => {
                eprintln!("chatmesh: traces not exported: {e}");
                None
            }
        },
    };
    let exporting = otel_layer.is_some();
    // why: the log filter (often `warn`) must not silence the spans traces are made of.
    let registry = tracing_subscriber::registry()
        .with(otel_layer.map(|l| l.with_filter(tracing_subscriber::filter::LevelFilter::INFO)));
    let subscribed = if log.format == crate::config::LogFormat::Json {
        registry.with(fmt::layer().json().with_current_span(true).with_filter(filter)).try_init()
    } else {
        registry.with(fmt::layer().with_target(false).with_filter(filter)).try_init()
    };
    if subscribed.is_err() {
        // Another subscriber came first: spans would not reach this exporter.
        return Telemetry::default();
    }
    if exporting {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        EXPORTING.store(true, Ordering::Release);
    }
    if !telemetry.otlp_endpoint.is_empty() {
        let interval = std::time::Duration::from_millis(telemetry.metrics_interval_ms.max(100));
        match meter_provider(&telemetry.otlp_endpoint, interval, resource) {
            Ok(provider) => {
                use opentelemetry::metrics::MeterProvider as _;
                let recorder = metrics_opentelemetry::OpenTelemetryRecorder::new(
                    metrics_opentelemetry::OpenTelemetryMetrics::new(provider.meter("chatmesh")),
                );
                let _ = PROMETHEUS.get_or_init(|| install_recorder(Some(recorder)));
                installed.meter = Some(provider);
            }
            Err(e) => eprintln!("chatmesh: metrics not exported: {e}"),
        }
    }
    installed
}

fn tracer_provider(
    endpoint: &str,
    ratio: f64,
    resource: Resource,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio.clamp(0.0, 1.0)))))
        .with_resource(resource)
        .build())
}

fn meter_provider(
    endpoint: &str,
    interval: std::time::Duration,
    resource: Resource,
) -> Result<SdkMeterProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::MetricExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).with_interval(interval).build();
    Ok(SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build())
}

/// The Prometheus view of this process's metrics (installing the recorder on first use).
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS.get_or_init(|| install_recorder(None)).clone()
}

fn install_recorder(otel: Option<metrics_opentelemetry::OpenTelemetryRecorder>) -> Option<PrometheusHandle> {
    let builder =
        match PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS) {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                return None;
            }
        };
    let prometheus = builder.build_recorder();
    let handle = prometheus.handle();
    let installed = match otel {
        Some(otel) => metrics::set_global_recorder(
            metrics_util::layers::FanoutBuilder::default().add_recorder(prometheus).add_recorder(otel).build(),
        )
        .map_err(|e| e.to_string()),
        None => metrics::set_global_recorder(prometheus).map_err(|e| e.to_string()),
    };
    if let Err(e) = installed {
        tracing::warn!(error = %e, "metrics recorder not installed");
        return None;
    }
    let upkeep = handle.clone();
    // why: histograms drain their buffers only on upkeep; without it they grow until scraped.
    let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            upkeep.run_upkeep();
        }
    });
    Some(handle)
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Acquire)
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into `headers`.
pub fn inject(headers: &mut http::HeaderMap) {
    if !exporting() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the trace context in `headers`, when there is one.
pub fn adopt(span: &tracing::Span, headers: &http::HeaderMap) {
    if !exporting() || !headers.contains_key("traceparent") {
        return;
    }
    let context =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(context);
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// An RPC as metrics and spans name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcLabels {
    pub service: &'static str,
    pub method: &'static str,
    /// `service/method`, the span's name.
    pub name: &'static str,
}

/// The open services' methods (they are not in the contracts' descriptor pool).
const OPEN_SERVICE_METHODS: &[(&str, &[&str])] = &[
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    ("grpc.reflection.v1.ServerReflection", &["ServerReflectionInfo"]),
    ("grpc.reflection.v1alpha.ServerReflection", &["ServerReflectionInfo"]),
];

/// Labels of an RPC's metrics: its service and method when the path names one of ours
/// (contracts, health, reflection), else `unknown` — bounded label values whatever clients
/// send, and no allocation per call (the table is built once).
pub fn rpc_labels(path: &str) -> RpcLabels {
    static KNOWN: OnceLock<std::collections::HashMap<String, RpcLabels>> = OnceLock::new();
    const UNKNOWN: RpcLabels = RpcLabels { service: "unknown", method: "unknown", name: "unknown" };
    let known = KNOWN.get_or_init(|| {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let contracts = chatmesh_api::descriptor_pool()
            .services()
            .flat_map(|s| s.methods().map(|m| (s.full_name().to_owned(), m.name().to_owned())).collect::<Vec<_>>());
        let open = OPEN_SERVICE_METHODS
            .iter()
            .flat_map(|(service, methods)| methods.iter().map(|m| ((*service).to_owned(), (*m).to_owned())));
        contracts
            .chain(open)
            .map(|(service, method)| {
                let name = leak(format!("{service}/{method}"));
                let labels = RpcLabels { service: &name[..service.len()], method: &name[service.len() + 1..], name };
                (format!("/{name}"), labels)
            })
            .collect()
    });
    known.get(path).copied().unwrap_or(UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_labels_stay_bounded() {
        let pair = |path| {
            let labels = rpc_labels(path);
            (labels.service, labels.method)
        };
        let chat = "chatmesh.chat.v1.ChatService";
        assert_eq!(pair("/chatmesh.chat.v1.ChatService/CreateChat"), (chat, "CreateChat"));
        assert_eq!(
            rpc_labels("/chatmesh.chat.v1.ChatService/CreateChat").name,
            "chatmesh.chat.v1.ChatService/CreateChat"
        );
        assert_eq!(pair("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        assert_eq!(pair("/grpc.health.v1.Health/xyz"), ("unknown", "unknown"), "open services too");
        assert_eq!(pair("/chatmesh.chat.v1.ChatService/Nope123"), ("unknown", "unknown"));
        assert_eq!(pair("/chatmesh.nope.v1.X/CreateChat"), ("unknown", "unknown"));
        assert_eq!(pair("garbage"), ("unknown", "unknown"));
    }

    #[test]
    fn nothing_is_injected_when_not_exporting() {
        let mut headers = http::HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
    }
}
