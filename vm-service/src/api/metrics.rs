//! `GET /metrics`: Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::daemon::vms::Vms;

/// Request counters kept by the API layer.
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Requests answered 2xx.
    pub ok: AtomicU64,
    /// Requests answered 4xx.
    pub client_errors: AtomicU64,
    /// Requests answered 5xx.
    pub server_errors: AtomicU64,
}

impl ApiCounters {
    /// Counts one answer with `status`.
    pub fn record(&self, status: u16) {
        let c = match status {
            500.. => &self.server_errors,
            400.. => &self.client_errors,
            _ => &self.ok,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Renders every metric.
pub fn render(vms: &Vms, api: &ApiCounters) -> String {
    let mut out = String::new();
    let c = vms.counters();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP vm_service_vms VMs by lifecycle state.");
    let _ = writeln!(out, "# TYPE vm_service_vms gauge");
    for (state, n) in vms.state_counts() {
        let _ = writeln!(out, "vm_service_vms{{state=\"{state}\"}} {n}");
    }
    for (name, help, v) in [
        (
            "vm_service_vm_boots_total",
            "VM boots that succeeded.",
            load(&c.boots),
        ),
        (
            "vm_service_vm_boot_failures_total",
            "VM boots that failed.",
            load(&c.boot_failures),
        ),
        (
            "vm_service_vmm_processes_reaped_total",
            "VMM processes reaped.",
            load(&c.processes_reaped),
        ),
        (
            "vm_service_journal_appends_total",
            "Lifecycle events journaled by this daemon.",
            load(&c.journal_appends),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP vm_service_journal_events Events in the journal."
    );
    let _ = writeln!(out, "# TYPE vm_service_journal_events gauge");
    let _ = writeln!(out, "vm_service_journal_events {}", vms.journal_head());
    let _ = writeln!(
        out,
        "# HELP vm_service_api_responses_total API answers by status class."
    );
    let _ = writeln!(out, "# TYPE vm_service_api_responses_total counter");
    for (class, v) in [
        ("2xx", &api.ok),
        ("4xx", &api.client_errors),
        ("5xx", &api.server_errors),
    ] {
        let _ = writeln!(
            out,
            "vm_service_api_responses_total{{class=\"{class}\"}} {}",
            load(v)
        );
    }
    out
}
