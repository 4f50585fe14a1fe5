//! OTLP/HTTP export off the request path. A request pushes its finished spans into a bounded
//! queue without waiting (a full queue drops them, counted); a thread of the tracer's own drains
//! the queue in batches through `opentelemetry-otlp`'s exporter, which encodes protobuf or JSON
//! and retries on 429/503 honouring `Retry-After`. The exporter sends with the gateway's reqwest
//! client (through [`Client`]), so the tree keeps a single reqwest. The thread ends, after a last
//! export, when its generation is dropped.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::config::{TraceProtocol, TracingConfig};
use crate::error::{Error, ErrorKind, OrErr};

/// Largest collector answer read (the exporter only looks at partial-success counts).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long a batch waits to fill once its first span has arrived: each export is an HTTP
/// request, so a batch of a few spans would cost far more per span than a full one.
const LINGER: Duration = Duration::from_millis(500);
/// How often a filling batch looks at the queue. It is not woken by each span pushed: a wake-up
/// per span cost the request path more than building the span did.
const TICK: Duration = Duration::from_millis(10);

/// The request path's end of the export queue.
pub struct Queue {
    sender: mpsc::Sender<SpanData>,
    queue_full: IntCounter,
}

impl Queue {
    /// The queue, with the exporter and its thread started.
    pub fn start(config: &TracingConfig) -> Result<Queue, Error> {
        let exporter = exporter(config)?;
        let (sender, receiver) = mpsc::channel(config.queue_spans);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .or_err(ErrorKind::Tracing, "trace export runtime")?;
        let batch = config.batch_spans;
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || runtime.block_on(drain(receiver, exporter, batch)))
            .or_err(ErrorKind::Tracing, "trace export thread")?;
        Ok(Queue {
            sender,
            queue_full: spans_counter("queue_full"),
        })
    }

    /// Queue a request's spans; those that find the queue full are dropped and counted.
    pub fn push(&self, spans: Vec<SpanData>) {
        for span in spans {
            if self.sender.try_send(span).is_err() {
                self.queue_full.inc();
            }
        }
    }
}

fn spans_counter(result: &str) -> IntCounter {
    crate::metrics::get()
        .trace_spans
        .with_label_values(&[result])
}

/// Export what the queue holds, a batch at a time (full, or as full as [`LINGER`] makes it),
/// until every sender is gone.
async fn drain(
    mut receiver: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    batch: usize,
) {
    let exported = spans_counter("exported");
    let failed = spans_counter("export_failed");
    let mut failing = false;
    let mut spans = Vec::with_capacity(batch);
    // Woken once, by the first span of a batch.
    while receiver.recv_many(&mut spans, batch).await > 0 {
        let deadline = tokio::time::Instant::now() + LINGER;
        loop {
            let room = batch - spans.len();
            let now = tokio::time::Instant::now();
            if room == 0 || receiver.len() >= room || now >= deadline || receiver.is_closed() {
                while spans.len() < batch
                    && let Ok(span) = receiver.try_recv()
                {
                    spans.push(span);
                }
                break;
            }
            tokio::time::sleep(TICK.min(deadline - now)).await;
        }
        let count = spans.len() as u64;
        match exporter.export(std::mem::take(&mut spans)).await {
            Ok(()) => {
                exported.inc_by(count);
                if failing {
                    tracing::info!("trace export resumed");
                    failing = false;
                }
            }
            Err(e) => {
                failed.inc_by(count);
                if !failing {
                    tracing::warn!(error = %e, "trace export failed; spans are dropped until it works again");
                    failing = true;
                }
            }
        }
    }
}

/// The OTLP/HTTP exporter of `[tracing]`, with the process's resource attributes.
fn exporter(config: &TracingConfig) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    let timeout = Duration::from_millis(config.export_timeout_ms);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .or_err(ErrorKind::Tracing, "trace export HTTP client")?;
    let protocol = match config.protocol {
        TraceProtocol::Protobuf => Protocol::HttpBinary,
        TraceProtocol::Json => Protocol::HttpJson,
    };
    let headers: HashMap<String, String> = config.headers.iter().cloned().collect();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client(client))
        .with_protocol(protocol)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(timeout)
        .with_headers(headers)
        .build()
        .or_err(ErrorKind::Tracing, "OTLP exporter")?;
    exporter.set_resource(&resource(config));
    Ok(exporter)
}

/// `service.name`, `service.version` and `service.instance.id` (one per process).
fn resource(config: &TracingConfig) -> Resource {
    static INSTANCE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().to_string());
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", config.service_name.clone()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", INSTANCE.clone()),
        ])
        .build()
}

/// The gateway's reqwest client, as the exporter's HTTP client.
#[derive(Debug)]
struct Client(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let mut response = self.0.execute(request).await?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Box::new(opentelemetry_http::ResponseBodyTooLarge::new()));
            }
            body.extend_from_slice(&chunk);
        }
        let mut answer = Response::builder().status(status).body(Bytes::from(body))?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}
