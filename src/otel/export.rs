//! OTLP/HTTP export off the request path. A request hands over its spans, already written as
//! protobuf (`wire`), without waiting: past `queue_spans` queued spans it drops them, counted. A
//! thread of the tracer's own gathers them into batches, wraps each batch in one
//! `ExportTraceServiceRequest` and posts it with the gateway's reqwest client, retrying on 429,
//! 502, 503 and 504 within `export_timeout_ms` and honouring `Retry-After` (one that reaches past
//! the deadline fails the batch, and the next waits for it).
//!
//! Not `opentelemetry-otlp`'s exporter: it takes `SpanData`, and building those and converting
//! them again to protobuf cost a kept request about 10 µs of CPU; writing the protobuf once is a
//! fraction of that (BENCHMARKS.md, "Tracing"). The wire types stay `opentelemetry-proto`'s:
//! the JSON protocol decodes each batch into them and serialises them with their OTLP/JSON
//! mapping.
//!
//! The thread ends, after a last export, when its generation is dropped; [`Queue::flush`] sends
//! what is queued before the process exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use prometheus::IntCounter;
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::wire::{self, Value};
use crate::config::{TraceProtocol, TracingConfig};
use crate::error::{Error, ErrorKind, OrErr};

/// How long a batch waits to fill once its first span has arrived: each export is an HTTP
/// request, so a batch of a few spans would cost far more per span than a full one.
const LINGER: Duration = Duration::from_millis(500);
/// How often a filling batch looks at the queue. It is not woken by each request: a wake-up per
/// request cost the request path more than writing its spans did.
const TICK: Duration = Duration::from_millis(10);
/// The first wait before a retry; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(1600);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Largest collector answer read (only to keep the connection for the next export).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

enum Item {
    /// A request's spans (`ScopeSpans.spans` fields) and how many.
    Spans(Vec<u8>, u64),
    /// Export what is queued now; answer when done.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The request path's end of the export queue.
pub struct Queue {
    sender: mpsc::UnboundedSender<Item>,
    /// Spans handed over and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
    capacity: usize,
    queue_full: IntCounter,
}

impl Queue {
    /// The queue, with its export thread started.
    pub fn start(config: &TracingConfig) -> Result<Queue, Error> {
        let exporter = Exporter::new(config)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .or_err(ErrorKind::Tracing, "trace export runtime")?;
        let batch = config.batch_spans as u64;
        let taken = queued.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || runtime.block_on(drain(receiver, taken, exporter, batch)))
            .or_err(ErrorKind::Tracing, "trace export thread")?;
        Ok(Queue {
            sender,
            queued,
            capacity: config.queue_spans,
            queue_full: spans_counter("queue_full"),
        })
    }

    /// Queue a request's `count` spans, or drop and count them if the queue is full.
    pub fn push(&self, spans: Vec<u8>, count: u64) {
        let n = count as usize;
        if self.queued.fetch_add(n, Ordering::AcqRel) + n > self.capacity {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.queue_full.inc_by(count);
            return;
        }
        if self.sender.send(Item::Spans(spans, count)).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            spans_counter("export_failed").inc_by(count);
        }
    }

    /// Export every span queued so far, waiting at most `limit`; returns whether it was done.
    pub fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.sender.send(Item::Flush(done)).is_ok() && wait.recv_timeout(limit).is_ok()
    }
}

fn spans_counter(result: &str) -> IntCounter {
    crate::metrics::get()
        .trace_spans
        .with_label_values(&[result])
}

/// A batch being gathered.
#[derive(Default)]
struct Batch {
    chunks: Vec<Vec<u8>>,
    spans: u64,
    bytes: usize,
    flushes: Vec<std::sync::mpsc::SyncSender<()>>,
}

impl Batch {
    fn take(&mut self, item: Item, queued: &AtomicUsize) {
        match item {
            Item::Spans(chunk, count) => {
                queued.fetch_sub(count as usize, Ordering::AcqRel);
                self.spans += count;
                self.bytes += chunk.len();
                self.chunks.push(chunk);
            }
            Item::Flush(done) => self.flushes.push(done),
        }
    }
}

/// Export what the queue holds, a batch at a time (full, or as full as [`LINGER`] makes it, or
/// at once when asked to flush), until every sender is gone.
async fn drain(
    mut receiver: mpsc::UnboundedReceiver<Item>,
    queued: Arc<AtomicUsize>,
    mut exporter: Exporter,
    batch_spans: u64,
) {
    let exported = spans_counter("exported");
    let failed = spans_counter("export_failed");
    let mut failing = false;
    // Woken once, by the first item of a batch.
    while let Some(first) = receiver.recv().await {
        let mut batch = Batch::default();
        batch.take(first, &queued);
        let deadline = Instant::now() + LINGER;
        loop {
            let mut closed = false;
            while batch.spans < batch_spans && batch.flushes.is_empty() {
                match receiver.try_recv() {
                    Ok(item) => batch.take(item, &queued),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if closed || batch.spans >= batch_spans || !batch.flushes.is_empty() || now >= deadline
            {
                break;
            }
            tokio::time::sleep(TICK.min(deadline - now)).await;
        }
        if batch.spans > 0 {
            match exporter.export(&batch).await {
                Ok(()) => {
                    exported.inc_by(batch.spans);
                    if failing {
                        tracing::info!("trace export resumed");
                        failing = false;
                    }
                }
                Err(e) => {
                    failed.inc_by(batch.spans);
                    if !failing {
                        tracing::warn!(error = %e, "trace export failed; spans are dropped until it works again");
                        failing = true;
                    }
                }
            }
        }
        for done in batch.flushes {
            let _ = done.send(());
        }
    }
}

/// Where and how batches are posted.
struct Exporter {
    /// A collector's `Retry-After` that reached past a batch's deadline: nothing is sent before it.
    resume_at: Option<Instant>,
    client: reqwest::Client,
    url: String,
    json: bool,
    headers: HeaderMap,
    timeout: Duration,
    resource: Vec<(&'static str, Value)>,
}

impl Exporter {
    fn new(config: &TracingConfig) -> Result<Exporter, Error> {
        let timeout = Duration::from_millis(config.export_timeout_ms);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .or_err(ErrorKind::Tracing, "trace export HTTP client")?;
        let json = matches!(config.protocol, TraceProtocol::Json);
        let mut headers = HeaderMap::new();
        let content_type = if json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .or_err(ErrorKind::Tracing, "tracing.headers: a header name")?;
            let value = HeaderValue::from_str(value)
                .or_err(ErrorKind::Tracing, "tracing.headers: a header value")?;
            headers.append(name, value);
        }
        Ok(Exporter {
            resume_at: None,
            client,
            url: config.endpoint.clone(),
            json,
            headers,
            timeout,
            resource: resource(config),
        })
    }

    /// Post one batch, retrying what a collector says may be retried, all within the export
    /// timeout.
    async fn export(&mut self, batch: &Batch) -> Result<(), Error> {
        if let Some(at) = self.resume_at.take() {
            tokio::time::sleep_until(at).await;
        }
        let body = self.body(batch)?;
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .timeout(left)
                .body(body.clone())
                .send()
                .await;
            let (wait, failure, throttled) = match sent {
                Ok(mut answer) => {
                    let status = answer.status();
                    // Read (a bounded part of) the answer so the connection can be kept.
                    let mut read = 0;
                    while read < MAX_ANSWER_BYTES
                        && let Ok(Some(chunk)) = answer.chunk().await
                    {
                        read += chunk.len();
                    }
                    if status.is_success() {
                        return Ok(());
                    }
                    let failure = Error::new(
                        ErrorKind::Tracing,
                        format!("the collector answered {status}"),
                    );
                    match (status.as_u16(), retry_after(answer.headers())) {
                        (429 | 503, Some(asked)) => (asked, failure, true),
                        (429 | 502 | 503 | 504, _) => (backoff, failure, false),
                        _ => return Err(failure),
                    }
                }
                Err(e) => (
                    backoff,
                    Error::because(ErrorKind::Tracing, "posting spans to the collector", e),
                    false,
                ),
            };
            if Instant::now() + wait >= deadline {
                if throttled {
                    self.resume_at = Some(Instant::now() + wait);
                }
                return Err(failure);
            }
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The batch's `ExportTraceServiceRequest`, as protobuf or as OTLP/JSON.
    fn body(&self, batch: &Batch) -> Result<Bytes, Error> {
        let scope = ("edgewarden", env!("CARGO_PKG_VERSION"));
        let chunks = batch.chunks.iter().map(Vec::as_slice);
        let protobuf = wire::request(&self.resource, scope, chunks, batch.bytes);
        if !self.json {
            return Ok(Bytes::from(protobuf));
        }
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        let request = ExportTraceServiceRequest::decode(protobuf.as_slice())
            .or_err(ErrorKind::Tracing, "reading back a batch of spans")?;
        let json = serde_json::to_vec(&request).or_err(ErrorKind::Tracing, "spans as OTLP/JSON")?;
        Ok(Bytes::from(json))
    }
}

/// `Retry-After` in seconds (the form collectors send), at most [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// `service.name`, `service.version` and `service.instance.id` (one per process).
fn resource(config: &TracingConfig) -> Vec<(&'static str, Value)> {
    static INSTANCE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().to_string());
    vec![
        ("service.name", Value::from(config.service_name.clone())),
        ("service.version", Value::from(env!("CARGO_PKG_VERSION"))),
        ("service.instance.id", Value::from(INSTANCE.clone())),
    ]
}
