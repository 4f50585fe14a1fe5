//! Drives load with oha (`--output-format json`) and reads its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// One load run.
pub struct Load<'a> {
    pub url: String,
    pub headers: &'a [(String, String)],
    pub duration: Duration,
    pub connections: usize,
    /// Offered requests per second (open model, latency corrected); `None`: as fast as possible.
    pub rate: Option<u32>,
    /// CPU the generator is pinned to, when the machine has more than one.
    pub cpu: Option<usize>,
}

/// What oha measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Status code → count.
    pub statuses: Vec<(u16, u64)>,
    pub errors: u64,
}

impl Measured {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }
}

pub fn run(oha: &Path, load: &Load<'_>) -> Result<Measured, String> {
    let mut command = match load.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(oha);
            c
        }
        None => Command::new(oha),
    };
    command
        .args(["--no-tui", "--output-format", "json"])
        .args(["-z", &format!("{}ms", load.duration.as_millis())])
        .args(["-c", &load.connections.to_string()]);
    if let Some(rate) = load.rate {
        command.args(["-q", &rate.to_string(), "--latency-correction"]);
    }
    for (name, value) in load.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    command.arg(&load.url);
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", oha.display()))?;
    if !output.status.success() {
        return Err(format!(
            "oha failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    parse(&output.stdout)
}

fn parse(json: &[u8]) -> Result<Measured, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| format!("oha output: {e}"))?;
    let ms = |p: &str| v["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let mut statuses: Vec<(u16, u64)> = v["statusCodeDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| Some((k.parse().ok()?, n.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    statuses.sort();
    // Requests still in flight when the run ends are cancelled by the generator, not failed.
    let errors = v["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(kind, _)| !kind.contains("aborted due to deadline"))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0);
    let requests = statuses.iter().map(|(_, n)| n).sum::<u64>();
    Ok(Measured {
        requests,
        rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: ms("p50"),
        p99_ms: ms("p99"),
        p999_ms: ms("p99.9"),
        statuses,
        errors,
    })
}
