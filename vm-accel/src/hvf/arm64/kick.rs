//! Kicking an HVF vCPU: a pending flag checked before every `hv_vcpu_run`,
//! `hv_vcpus_exit` for a vCPU inside it (callable from any thread), and a
//! wake-up of a powered-off vCPU waiting for PSCI `CPU_ON`.

use super::ffi;
use crate::decode::hvf_abi::describe_status;
use crate::kick::Kick;
use crate::psci::PsciPower;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Kick state shared by a vCPU and its handles.
#[derive(Debug)]
pub(super) struct HvfKick {
    pending: AtomicBool,
    /// The hardware vCPU once created; cleared before it is destroyed, under
    /// the lock, so `hv_vcpus_exit` never sees a stale handle.
    vcpu: Mutex<Option<ffi::hv_vcpu_t>>,
    psci: Arc<PsciPower>,
}

impl HvfKick {
    pub(super) fn new(psci: Arc<PsciPower>) -> Self {
        Self {
            pending: AtomicBool::new(false),
            vcpu: Mutex::new(None),
            psci,
        }
    }

    /// Publishes (or, with `None`, withdraws) the hardware vCPU handle.
    pub(super) fn set_vcpu(&self, vcpu: Option<ffi::hv_vcpu_t>) {
        *self.vcpu.lock().unwrap_or_else(PoisonError::into_inner) = vcpu;
    }

    /// Takes a pending kick.
    pub(super) fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }

    /// Whether a kick is pending, without taking it.
    pub(super) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }
}

impl Kick for HvfKick {
    fn kick(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let vcpu = self.vcpu.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = *vcpu {
            // SAFETY: `handle` is a live vCPU of this process's VM (withdrawn under
            // this lock before destruction); hv_vcpus_exit may be called from any
            // thread and, for a vCPU not in hv_vcpu_run, makes the next run exit at once.
            let code = unsafe { ffi::hv_vcpus_exit(&raw const handle, 1) };
            if code != 0 {
                tracing::warn!(error = %describe_status(code), "hv_vcpus_exit failed");
            }
        }
        drop(vcpu);
        self.psci.wake_all();
    }
}
