//! The `vm-service` daemon: VMs managed through a REST API on a Unix socket,
//! each in its own process, every lifecycle change journaled.
//!
//! - [`server`]: the socket, the accept loop, signals and graceful shutdown.
//! - [`vms`]: lifecycle actions, journaled before they are acknowledged, and
//!   recovery from the journal after a restart.
//! - [`process`]: one `vm-service vmm` child per running VM, over a socketpair.
//! - [`protocol`]: the length-prefixed JSON frames between the two.
//! - [`vmm_process`]: the child's side.
//! - [`journal`]: the v2 event store in the state directory.
//! - [`serial_log`]: each VM's console tail and live feed.
//!
//! **Ctrl-Alt-Del.** On a PC the key combination reaches the guest through
//! the i8042 keyboard controller (scan codes and IRQ 1), and Linux reboots,
//! which with `reboot=k` ends in a reset that this VMM turns into a stop. The
//! i8042 model here (vm-superio) has no keyboard buffer or interrupt line, so
//! the key sequence cannot be injected. `ctrl-alt-del` therefore stops the VM
//! directly, as the guest's reset would have; the VM's `stop_reason` says
//! `ctrl-alt-del`.
//!
//! **Recovery.** The daemon does not re-adopt VM processes after a restart:
//! their control socket dies with the daemon, and a VMM process that sees it
//! close stops its guest and exits. VMs the journal shows as running or
//! paused are recorded `stopped` with reason `daemon_restarted`; their
//! configs are kept and `start` boots them again.
//!
//! **Networking.** A `switch` interface plugs into a virtual switch inside the
//! VM's own process, which joins the cross-process segment of the same name
//! in `<state-dir>/switches/` (`vm_device::virtio::net::segment`): VMs naming
//! the same switch exchange frames although each runs in its own process.
//! TAP devices (`host_dev_name`) reach the host's network.

pub mod ctl;
pub mod journal;
pub mod process;
pub mod protocol;
pub mod serial_log;
pub mod server;
pub mod vmm_process;
pub mod vms;

/// `e` and its sources, joined with `: ` (repeated text left out).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}
